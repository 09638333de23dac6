// A zod issue becomes one ConfigError naming the key path (`mobileRouters[1].prefixes[0]: …`), so a wrong
// config stops a daemon with a single line that says where to look.
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';

/** `['prefixes', 0]` under `networks[1]` → `networks[1].prefixes[0]`. */
export function formatPath(path: readonly PropertyKey[], at = ''): string {
  let out = at;
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/**
 * The first problem zod found, as a ConfigError; `at` prefixes its path (e.g. `networks[2]`). A list
 * validated a slice at a time numbers its items from 0: `first` is the slice's first item's index.
 */
export function configError(error: z.ZodError, at = '', first = 0): ConfigError {
  const issue = error.issues[0]!;
  const [index, ...rest] = issue.path;
  if (first === 0 || typeof index !== 'number') return issueError(issue, at);
  return issueError({ ...issue, path: [first + index, ...rest] }, at);
}

function issueError(issue: z.core.$ZodIssue, at: string): ConfigError {
  if (issue.code === 'unrecognized_keys')
    return new ConfigError(formatPath([...issue.path, issue.keys[0]!], at), 'unknown key');
  const path = formatPath(issue.path, at);
  if (issue.code === 'invalid_type') {
    // zod does not report the input; its message ends in "received <type>".
    const received = /received (\w+)/.exec(issue.message)?.[1];
    // A schema that words its own type error (`must be { listen: … }`) is quoted as it is.
    if (received === undefined) return new ConfigError(path, issue.message);
    if (received === 'undefined') return new ConfigError(path, 'required');
    const hint =
      issue.expected === 'string' && received === 'number'
        ? ' (quote it: YAML reads digits as a number)'
        : '';
    const an = (word: string) => (/^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`);
    return new ConfigError(path, `must be ${an(issue.expected)}, not ${an(received)}${hint}`);
  }
  if (issue.code === 'invalid_union') {
    // A branch that got past the type check says more than "no branch matched".
    const deeper = issue.errors.flat().find((i) => i.path.length > 0);
    if (deeper) return issueError({ ...deeper, path: [...issue.path, ...deeper.path] }, at);
    // A discriminated union whose discriminator matched no branch lists the ones it knows.
    const options = (issue as { options?: unknown[] }).options;
    if (options) return new ConfigError(path, `must be one of: ${options.join(', ')}`);
  }
  return new ConfigError(path, issue.message);
}
