import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseBackend, NoBackendError, type ProbeResult } from './probe.ts';

const result = (bpf: boolean, seg6: boolean, options?: Record<string, string>): ProbeResult => ({
  kernelRelease: '6.18.0',
  backends: [
    {
      backend: 'bpf',
      usable: bpf,
      ...(bpf ? {} : { reason: 'tc filter with the decapsulation program: …' }),
    },
    { backend: 'seg6', usable: seg6, ...(seg6 ? {} : { reason: 'lwt encapsulation type not supported' }) },
  ],
  ...(options ? { kernelOptions: options } : {}),
});

test('auto takes bpf where it works, seg6 where only seg6 does', () => {
  assert.equal(chooseBackend('auto', result(true, true)).backend, 'bpf');
  assert.equal(chooseBackend('auto', result(true, false)).backend, 'bpf');
  const only = chooseBackend('auto', result(false, true));
  assert.equal(only.backend, 'seg6');
  assert.match(only.why, /only usable backend.*bpf: tc filter/);
});

test('a configured backend that does not work here is an error that says why', () => {
  assert.equal(chooseBackend('seg6', result(true, true)).backend, 'seg6');
  assert.throws(() => chooseBackend('seg6', result(true, false)), /seg6 does not work.*lwt encapsulation/);
});

test('none usable: one error naming the missing kernel options', () => {
  const options = {
    CONFIG_BPF_SYSCALL: 'y',
    CONFIG_LWTUNNEL_BPF: 'n',
    CONFIG_NET_CLS_BPF: 'm',
    CONFIG_NET_SCH_INGRESS: 'y',
    CONFIG_IPV6_MULTIPLE_TABLES: 'y',
    CONFIG_IPV6_SEG6_LWTUNNEL: 'n',
    CONFIG_NF_TABLES: 'y',
  };
  assert.throws(
    () => chooseBackend('auto', result(false, false, options)),
    (err: Error) =>
      err instanceof NoBackendError &&
      /bpf: kernel lacks CONFIG_LWTUNNEL_BPF;/.test(err.message) &&
      /seg6: kernel lacks CONFIG_IPV6_SEG6_LWTUNNEL/.test(err.message),
  );
  // without /proc/config.gz: the failing step instead
  assert.throws(() => chooseBackend('auto', result(false, false)), /bpf: tc filter/);
});
