import { isE164 } from './e164.js';
import { HandoffError } from './errors.js';

/** The most numbers one range or one CSV may add at once. */
export const MAX_NUMBERS_PER_ADD = 1_000_000;

/**
 * The E.164 numbers from `from` to `to` inclusive, same length, leading digits kept.
 *
 * @example
 * expandRange('+12125550198', '+12125550201'); // ['+12125550198', '+12125550199', '+12125550200', '+12125550201']
 */
export function expandRange(from: string, to: string): string[] {
  if (!isE164(from) || !isE164(to)) throw new HandoffError('INVALID_FIELD', 'range: from and to must be E.164 numbers', { details: { field: 'ranges' } });
  const a = BigInt(from.slice(1));
  const b = BigInt(to.slice(1));
  if (from.length !== to.length || a > b) throw new HandoffError('INVALID_FIELD', 'range: from and to must have the same length and from <= to', { details: { field: 'ranges' } });
  if (b - a >= BigInt(MAX_NUMBERS_PER_ADD)) throw new HandoffError('INVALID_FIELD', `range: at most ${MAX_NUMBERS_PER_ADD} numbers at once`, { details: { field: 'ranges' } });
  const width = from.length - 1;
  const out: string[] = [];
  for (let n = a; n <= b; n++) out.push('+' + n.toString().padStart(width, '0'));
  return out;
}

/**
 * Numbers from CSV text: the first column of each line; blank lines, `#` comments and a header line
 * (a first line whose first cell is not a number) are skipped. A bad number names its line.
 *
 * @example
 * parseNumberCsv('number,label\n+12125550100,desk\n'); // ['+12125550100']
 */
export function parseNumberCsv(text: string): string[] {
  const out: string[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    const cell = (line.split(',')[0] ?? '').trim().replace(/^"(.*)"$/, '$1');
    if (cell === '' || cell.startsWith('#')) return;
    const shown = cell.slice(0, 32);
    if (!isE164(cell)) {
      if (i === 0 && !/^\+?\d/.test(shown)) return; // header
      throw new HandoffError('INVALID_FIELD', `csv line ${i + 1}: "${shown}" is not an E.164 number`, { details: { field: 'csv' } });
    }
    out.push(cell);
  });
  if (out.length > MAX_NUMBERS_PER_ADD) throw new HandoffError('INVALID_FIELD', `csv: at most ${MAX_NUMBERS_PER_ADD} numbers at once`, { details: { field: 'csv' } });
  return out;
}
