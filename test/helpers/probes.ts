// Small traffic tools the data plane tests run inside namespaces, for either address family: a named UDP
// echo, a UDP exchange, and an iperf3 transfer.
import type { NetnsLab } from './netns.ts';

type Family = 4 | 6;

/** `node -e` program: a UDP echo on `port` that answers "<name>:<size>" and logs each datagram it got. */
export function udpEcho(family: Family): string {
  const [type, any] = family === 4 ? ['udp4', '0.0.0.0'] : ['udp6', '::'];
  return `const d=require('node:dgram');const [port,name]=process.argv.slice(1);
const s=d.createSocket({type:'${type}'});
s.on('message',(m,r)=>{console.log('rx '+r.address+' '+m.length);s.send(Buffer.from(name+':'+m.length),r.port,r.address)});
s.bind(Number(port),'${any}',()=>console.log('ready'));`;
}

// Ends once every reply is in, or 1.5 s after the last send: the first packets on a fresh topology wait for
// neighbour discovery on every hop, which takes longer than 300 ms when other tests load the machine.
function udpClient(family: Family): string {
  const [type, any] = family === 4 ? ['udp4', '0.0.0.0'] : ['udp6', '::'];
  return `const d=require('node:dgram');const [dst,port,size,count,bind]=process.argv.slice(1);
const s=d.createSocket({type:'${type}'});const got=[];let done=false;
const end=()=>{if(done)return;done=true;console.log(JSON.stringify(got));s.close()};
s.on('message',m=>{got.push(m.toString());if(got.length>=+count)end()});
s.on('error',e=>got.push('error '+e.code));
s.bind(0,bind||'${any}',()=>{for(let i=0;i<+count;i++)setTimeout(()=>s.send(Buffer.alloc(+size,120),+port,dst),i*20);
setTimeout(end,+count*20+1500)});`;
}

/** Send `count` datagrams of `size` bytes from `ns` to `dst` port 7; the echo replies ("<name>:<size>"). */
export async function udpExchange(
  lab: NetnsLab,
  ns: string,
  dst: string,
  size: number,
  options: { count?: number; bind?: string } = {},
): Promise<string[]> {
  const family: Family = dst.includes(':') ? 6 : 4;
  const argv = [dst, '7', String(size), String(options.count ?? 3), options.bind ?? ''];
  const { stdout } = await lab.exec(ns, ['node', '-e', udpClient(family), ...argv]);
  return JSON.parse(stdout) as string[];
}

/** Resolves when `child` has printed something matching `pattern` (stdout or stderr), within 5 s. */
export function waitForOutput(child: ReturnType<NetnsLab['spawn']>, pattern: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${pattern}: ${seen}`)), 5000);
    const on = (d: Buffer) => {
      seen += d;
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
  });
}

/** Bytes the receiver got in an iperf3 run of `seconds` from the client to `server` (reversed with -R). */
export async function iperfBytes(
  lab: NetnsLab,
  server: { ns: string; addr: string },
  clientNs: string,
  options: { reverse: boolean; seconds?: number },
): Promise<number> {
  const seconds = options.seconds ?? 2;
  const child = lab.spawn(server.ns, ['iperf3', '-s', '-1', '--forceflush', '--idle-timeout', '10']);
  await waitForOutput(child, /listening/);
  const family = server.addr.includes(':') ? '-6' : '-4';
  const argv = [
    'timeout',
    String(seconds + 6),
    'iperf3',
    family,
    '-c',
    server.addr,
    '-t',
    String(seconds),
    '-J',
  ];
  const { stdout } = await lab
    .exec(clientNs, [...argv, ...(options.reverse ? ['-R'] : [])])
    .catch((e: Error) => ({ stdout: `{"error":${JSON.stringify(e.message)}}` }));
  const r = JSON.parse(stdout) as { end?: { sum_received?: { bytes?: number } } };
  return r.end?.sum_received?.bytes ?? 0;
}
