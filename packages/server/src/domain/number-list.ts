import { isE164 } from './e164.js';
import { HandoffError } from './errors.js';

/** The most numbers one range or one CSV may add at once. */
export const MAX_NUMBERS_PER_ADD = 1_000_000;

/**
 * How many numbers the range `from`..`to` (inclusive) holds, checked without expanding it, so a
 * request's total can be refused before any list is built.
 *
 * @example
 * rangeSize('+12125550198', '+12125550201'); // 4
 */
export function rangeSize(from: string, to: string): number {
  if (!isE164(from) || !isE164(to)) throw new HandoffError('INVALID_FIELD', 'range: from and to must be E.164 numbers', { details: { field: 'ranges' } });
  const a = BigInt(from.slice(1));
  const b = BigInt(to.slice(1));
  if (from.length !== to.length || a > b) throw new HandoffError('INVALID_FIELD', 'range: from and to must have the same length and from <= to', { details: { field: 'ranges' } });
  if (b - a >= BigInt(MAX_NUMBERS_PER_ADD)) throw new HandoffError('INVALID_FIELD', `range: at most ${MAX_NUMBERS_PER_ADD} numbers at once`, { details: { field: 'ranges' } });
  return Number(b - a) + 1;
}

/**
 * The E.164 numbers from `from` to `to` inclusive, same length, leading digits kept, appended to
 * `out` (one push each: spreading a list of more than ~100,000 into push() overflows the stack).
 *
 * @example
 * expandRange('+12125550198', '+12125550201'); // ['+12125550198', '+12125550199', '+12125550200', '+12125550201']
 */
export function expandRange(from: string, to: string, out: string[] = []): string[] {
  const size = rangeSize(from, to);
  const width = from.length - 1;
  const a = BigInt(from.slice(1));
  for (let i = 0n; i < BigInt(size); i++) out.push('+' + (a + i).toString().padStart(width, '0'));
  return out;
}

/**
 * Numbers from CSV text: the first column of each line; blank lines, `#` comments and a header line
 * (a first line whose first cell is not a number) are skipped. A bad number names its line. Appended
 * to `out`; refused as soon as `out` would hold more than `limit` numbers.
 *
 * @example
 * parseNumberCsv('number,label\n+12125550100,desk\n'); // ['+12125550100']
 */
export function parseNumberCsv(text: string, out: string[] = [], limit = MAX_NUMBERS_PER_ADD): string[] {
  let start = 0;
  for (let i = 0; start <= text.length; i++) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end);
    start = end + 1;
    const comma = line.indexOf(',');
    const cell = (comma < 0 ? line : line.slice(0, comma)).trim().replace(/^"(.*)"$/, '$1');
    if (cell === '' || cell.startsWith('#')) continue;
    const shown = cell.slice(0, 32);
    if (!isE164(cell)) {
      if (i === 0 && !/^\+?\d/.test(shown)) continue; // header
      throw new HandoffError('INVALID_FIELD', `csv line ${i + 1}: "${shown}" is not an E.164 number`, { details: { field: 'csv' } });
    }
    if (out.length >= limit) throw new HandoffError('INVALID_FIELD', `csv: at most ${MAX_NUMBERS_PER_ADD} numbers at once`, { details: { field: 'csv' } });
    out.push(cell);
  }
  return out;
}
