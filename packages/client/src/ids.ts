/** Alphabet the case-safe suffix indexes into with a 5-bit number. */
const SUFFIX_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';

/**
 * The 3-char case-safe suffix of a 15-char ID: for each block of five chars, a 5-bit number whose
 * bit i is set when char i of the block is A–Z, mapped through `A-Z0-5`.
 *
 * @example
 * caseSafeSuffix('0LQxx0000004ABc'); // 'GAM'
 */
export function caseSafeSuffix(id15: string): string {
  let suffix = '';
  for (let block = 0; block < 3; block++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) {
      const c = id15.charCodeAt(block * 5 + i);
      if (c >= 65 && c <= 90) bits |= 1 << i;
    }
    suffix += SUFFIX_ALPHABET[bits];
  }
  return suffix;
}

/**
 * The 15-char form of a 15- or 18-char ID with the given key prefix, or null when it is not one.
 * The suffix is compared case-insensitively, as the server does (its alphabet makes that lossless).
 *
 * @example
 * toId15('00Dxx0000004CFGEA2', '00D'); // '00Dxx0000004CFG'
 * toId15('00Dxx0000004CFGEA3', '00D'); // null
 */
export function toId15(input: string, prefix: string): string | null {
  if (!/^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$/.test(input) || !input.startsWith(prefix)) return null;
  const id15 = input.slice(0, 15);
  if (input.length === 18 && input.slice(15).toUpperCase() !== caseSafeSuffix(id15)) return null;
  return id15;
}
