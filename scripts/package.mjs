// Builds the Debian package a production host installs: dist/offlink_<version>_amd64.deb.
//
// It carries what `offlink ha` and `offlink agent` run and nothing of the lab: src/cli/production.ts
// bundled by esbuild (the lab's command is not in it, and the build fails if any lab source is), the npm
// packages that bundle imports (copied from this checkout's node_modules: the same, locked versions, the
// native better-sqlite3 built for this Node), the eBPF object and its bpf(2) addon (build/), the
// systemd units, the command /usr/bin/offlink, and the docs and example configs.
//
// Inside the package the files keep their places relative to each other (/usr/lib/offlink/{dist,src,
// build,node_modules,package.json}); `import.meta.url` in each bundled source is rewritten to that
// source's place there, so it finds package.json, build/ and the store's worker script as in a checkout.
//
// Usage: scripts/package [--out DIR]   (run scripts/bootstrap first; needs dpkg-deb)
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const say = (line) => process.stdout.write(`package: ${line}\n`);

function fail(message) {
  process.stderr.write(`package: ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
if (args.some((a, i) => a !== '--out' && i !== outIndex + 1) || (outIndex >= 0 && !args[outIndex + 1])) {
  fail('usage: scripts/package [--out DIR]');
}
const outDir = resolve(outIndex >= 0 ? args[outIndex + 1] : join(REPO, 'dist'));
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
const RUNTIME_FILES = [
  'build/offlink.bpf.o',
  'build/offlink_bpf.node',
  'src/homeagent/storeworker.js',
  'src/homeagent/checkpointer.js',
];
for (const f of RUNTIME_FILES) {
  if (!existsSync(join(REPO, f)))
    fail(`${f} is missing: run scripts/bootstrap (it builds the eBPF data plane)`);
}
const nodeMajor = Number(process.versions.node.split('.')[0]);

const stage = mkdtempSync(join(tmpdir(), 'offlink-package-'));
try {
  const lib = join(stage, 'usr/lib/offlink');
  const repoDist = join(REPO, 'dist');

  say('bundling src/cli/production.ts');
  const esbuild = await import('esbuild');
  let result;
  try {
    result = await esbuild.build({
      entryPoints: [join(REPO, 'src/cli/production.ts')],
      absWorkingDir: REPO,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: `node${nodeMajor}`,
      packages: 'external',
      outfile: join(lib, 'dist/offlink.mjs'),
      metafile: true,
      logLevel: 'error',
      plugins: [
        {
          // Each source's import.meta.url becomes its place in the package, relative to the bundle.
          name: 'import-meta-url-in-package',
          setup(build) {
            build.onLoad({ filter: /\.ts$/ }, (a) => {
              const rel = relative(repoDist, a.path);
              const url = `new URL(${JSON.stringify(rel)}, import.meta.url).href`;
              return {
                contents: readFileSync(a.path, 'utf8').replaceAll('import.meta.url', url),
                loader: 'ts',
              };
            });
          },
        },
      ],
    });
  } finally {
    await esbuild.stop();
  }
  const inputs = Object.keys(result.metafile.inputs);
  const lab = inputs.filter((p) => p.startsWith('src/lab/') || p === 'src/cli/lab.ts');
  if (lab.length > 0) fail(`the production bundle would carry lab code: ${lab.join(', ')}`);
  say(`bundle: ${inputs.length} sources, none of the lab`);

  // The packages the bundle and the worker script import, and everything they need.
  const imported = new Set(['better-sqlite3']);
  for (const out of Object.values(result.metafile.outputs)) {
    for (const i of out.imports) {
      if (!i.external || i.path.startsWith('node:')) continue;
      const parts = i.path.split('/');
      imported.add(i.path.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]);
    }
  }
  const lock = JSON.parse(readFileSync(join(REPO, 'node_modules/.package-lock.json'), 'utf8')).packages;
  const needed = new Set();
  const resolvePkg = (from, name) => {
    // Node's lookup: node_modules/<name> in `from`'s own folder first, then in each parent.
    for (
      let dir = from;
      ;
      dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : ''
    ) {
      const key = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
      if (lock[key]) return key;
      if (!dir) return undefined;
    }
  };
  const visit = (key) => {
    if (needed.has(key)) return;
    needed.add(key);
    for (const dep of Object.keys({ ...lock[key].dependencies, ...lock[key].optionalDependencies })) {
      const found = resolvePkg(key, dep);
      if (found) visit(found);
      else if (!lock[key].optionalDependencies?.[dep]) fail(`${key} needs ${dep}, which is not installed`);
    }
  };
  for (const name of imported) {
    const key = resolvePkg('', name);
    if (!key) fail(`the bundle imports ${name}, which is not in node_modules: run scripts/bootstrap`);
    visit(key);
  }
  for (const key of [...needed].sort()) {
    if (lock[key].dev) fail(`${key} is a dev dependency but the bundle needs it: make it a dependency`);
    cpSync(join(REPO, key), join(lib, key), {
      recursive: true,
      filter: (src) => !src.slice(join(REPO, key).length).includes('/node_modules/'),
    });
  }
  say(`npm packages: ${[...needed].map((k) => k.slice(k.lastIndexOf('node_modules/') + 13)).join(', ')}`);

  for (const f of RUNTIME_FILES) cpSync(join(REPO, f), join(lib, f));
  cpSync(join(REPO, 'src/hypervisor/qemu/guest'), join(lib, 'src/hypervisor/qemu/guest'), {
    recursive: true,
  });
  writeFileSync(
    join(lib, 'package.json'),
    `${JSON.stringify({ name: pkg.name, version: pkg.version, type: 'module', private: true }, null, 2)}\n`,
  );

  mkdirSync(join(stage, 'usr/bin'), { recursive: true });
  cpSync(join(REPO, 'packaging/offlink'), join(stage, 'usr/bin/offlink'));
  chmodSync(join(stage, 'usr/bin/offlink'), 0o755);
  for (const unit of ['offlink-ha.service', 'offlink-agent.service']) {
    cpSync(join(REPO, 'packaging', unit), join(stage, 'lib/systemd/system', unit));
  }
  const doc = join(stage, 'usr/share/doc/offlink');
  for (const f of ['README.md', 'docs/deploy.md', 'docs/architecture.md', 'docs/security.md']) {
    cpSync(join(REPO, f), join(doc, f.replace('docs/', '')));
  }
  for (const f of ['ha.yaml', 'agent.yaml']) cpSync(join(REPO, 'examples', f), join(doc, 'examples', f));
  writeFileSync(join(doc, 'copyright'), `offlink\nLicense: ${pkg.license}\n`);
  mkdirSync(join(stage, 'etc/offlink'), { recursive: true });

  const control = [
    'Package: offlink',
    `Version: ${pkg.version}`,
    'Architecture: amd64',
    'Maintainer: offlink developers <offlink@localhost>',
    // better-sqlite3 and the bpf(2) addon are built for this Node's ABI.
    `Depends: nodejs (>= ${nodeMajor}), nodejs (<< ${nodeMajor + 1}), iproute2, nftables`,
    'Recommends: radvd',
    // dnsmasq-base: DHCPv4 on guest links (networks[].dhcp4), only when configured
    'Suggests: qemu-system-x86, dnsmasq-base',
    'Section: net',
    'Priority: optional',
    `Description: ${pkg.description}`,
    ' Home agent (offlink ha) and host agent (offlink agent) daemons with systemd units,',
    ' the offlink command (migrate, status, doctor, check-config). The lab is not included.',
    '',
  ].join('\n');
  mkdirSync(join(stage, 'DEBIAN'));
  writeFileSync(join(stage, 'DEBIAN/control'), control);

  mkdirSync(outDir, { recursive: true });
  const deb = join(outDir, `offlink_${pkg.version}_amd64.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  say(`wrote ${deb}`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
