// docs/deploy.md as steps a test can follow. A fenced block whose info string names a host is a step:
//   ```sh host=ha            commands for that machine (host=all: every machine; host=hosts: both hosts)
//   ```yaml file=PATH host=… a file to write there, as it is
// Any other block (```text, or no host) is for the reader only.

export interface GuideStep {
  /** Line of the opening fence in the guide (1-based), for error messages. */
  line: number;
  kind: 'commands' | 'file';
  hosts: string[];
  /** The file's path (kind 'file'). */
  path?: string;
  body: string;
}

/** The machines each `host=` value stands for. */
export const HOST_GROUPS: Readonly<Record<string, readonly string[]>> = {
  all: ['ha', 'host-a', 'host-b'],
  hosts: ['host-a', 'host-b'],
};

export function guideSteps(markdown: string, known: readonly string[]): GuideStep[] {
  const steps: GuideStep[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*(.*)$/.exec(lines[i] ?? '');
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) body.push(lines[i] ?? '');
    if (i >= lines.length) throw new Error(`guide line ${start + 1}: the block is never closed`);
    const attrs = Object.fromEntries(
      (open[2] ?? '')
        .split(/\s+/)
        .filter(Boolean)
        .map((a) => a.split('=', 2) as [string, string]),
    );
    if (!attrs['host']) continue;
    const hosts = [...(HOST_GROUPS[attrs['host']] ?? [attrs['host']])];
    for (const h of hosts) {
      if (!known.includes(h)) throw new Error(`guide line ${start + 1}: unknown host ${h}`);
    }
    const lang = open[1];
    if (lang === 'sh') {
      steps.push({ line: start + 1, kind: 'commands', hosts, body: `${body.join('\n')}\n` });
    } else if (attrs['file']) {
      steps.push({ line: start + 1, kind: 'file', hosts, path: attrs['file'], body: `${body.join('\n')}\n` });
    } else {
      throw new Error(`guide line ${start + 1}: a \`${lang}\` block for a host needs file=PATH`);
    }
  }
  return steps;
}
