import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { HandoffError } from './errors.js';

/** E.164: a '+', a non-zero leading digit, at most 15 digits in all. */
export const E164_RE = /^\+[1-9]\d{1,14}$/;

/**
 * True when `s` is a string in strict E.164 form (no spaces, no punctuation).
 *
 * @example
 * isE164('+14155551234'); // true
 * isE164('14155551234');  // false
 */
export function isE164(s: unknown): s is string {
  return typeof s === 'string' && E164_RE.test(s);
}

/**
 * Returns `value` when it is an E.164 number; otherwise throws MISSING_FIELD (absent or empty)
 * or INVALID_FIELD, naming `field` in the message and in `details.field`.
 *
 * @example
 * const to = assertE164('toNumber', body.toNumber);
 */
export function assertE164(field: string, value: unknown): string {
  if (value === undefined || value === null || value === '') {
    throw new HandoffError('MISSING_FIELD', `${field} is required`, { details: { field } });
  }
  if (!isE164(value)) {
    throw new HandoffError(
      'INVALID_FIELD',
      `${field} must be an E.164 number such as +14155551234`,
      { details: { field } },
    );
  }
  return value;
}

/**
 * The ISO 3166-1 alpha-2 country of an E.164 number, or undefined when it is not E.164 or its
 * country cannot be determined (e.g. a non-geographic or unassigned number).
 *
 * @example
 * countryOfE164('+442071234567'); // 'GB'
 */
export function countryOfE164(n: string): string | undefined {
  if (!isE164(n)) return undefined;
  // Memoised: every SIP hand-off's flow asks for its caller's country, and the parse is costly
  if (countries.has(n)) return countries.get(n);
  const country = parsePhoneNumberFromString(n)?.country;
  if (countries.size >= COUNTRY_MEMO_SIZE) countries.clear();
  countries.set(n, country);
  return country;
}

const COUNTRY_MEMO_SIZE = 10_000;
const countries = new Map<string, string | undefined>();
