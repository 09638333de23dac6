// Interface names go into command lines and nft scripts: Linux's rules (≤ 15 bytes) and no odd characters.
import { OfflinkError } from '../errors.ts';

export function checkInterfaceName(name: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(name))
    throw new OfflinkError('ERR_INVALID_INTERFACE', `bad interface name: ${JSON.stringify(name)}`);
  return name;
}
