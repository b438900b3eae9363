/**
 * Telephone numbers as SIP carries them, normalised to E.164: the caller (P-Asserted-Identity,
 * else From) and the called number (the Request-URI user part). Pure: no I/O, no clock.
 *
 * Accepted forms: `tel:+1-212-555-0100`, `tel:2125550100;phone-context=+1`,
 * `sip:+12125550100@host;user=phone`, `sip:00442079460000@host` (00 international prefix),
 * national numbers in the default country's plan (`sip:2125550100@host` with US,
 * `sip:02079460000@host` with GB, `sip:01144...@host` with US). Visual separators `-.()` and
 * spaces are removed (RFC 3966 §5.1.1). Anything else (anonymous, letters, impossible lengths) is null.
 */
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import { parseNameAddr } from '../sip/header-values.js';
import { parseUri, type Uri } from '../sip/uri.js';
import { isE164 } from './e164.js';

export type { CountryCode } from 'libphonenumber-js';

/** RFC 3966 visual separators, plus the space some trunks leave in (escaped as %20). */
const VISUAL_SEPARATORS = /[-.() ]/g;

/**
 * Normalises a dialable number (a tel: number or a SIP user part without its parameters) to
 * E.164, or null when it is not a telephone number.
 *
 * @example
 * normalizePhoneNumber('+1-212-555-0100', 'US'); // '+12125550100'
 * normalizePhoneNumber('00442079460000', 'US');  // '+442079460000'
 * normalizePhoneNumber('(212) 555-0100', 'US');  // '+12125550100'
 * normalizePhoneNumber('anonymous', 'US');       // null
 */
export function normalizePhoneNumber(text: string, defaultCountry: CountryCode, phoneContext?: string): string | null {
  const digits = text.replace(VISUAL_SEPARATORS, '');
  if (!/^\+?\d{1,20}$/.test(digits)) return null;
  if (digits.startsWith('+')) return isE164(digits) ? digits : null;
  // RFC 3966 §5.1.5: a local number with a global phone-context is that prefix plus the digits
  const context = phoneContext?.replace(VISUAL_SEPARATORS, '');
  if (context !== undefined && /^\+\d+$/.test(context)) {
    const n = context + digits;
    return isE164(n) ? n : null;
  }
  // 00 is the international prefix of most numbering plans; trunks send it whatever their country
  if (digits.startsWith('00')) {
    const n = '+' + digits.slice(2);
    return isE164(n) ? n : null;
  }
  const parsed = parsePhoneNumberFromString(digits, defaultCountry);
  if (!parsed || !parsed.isPossible()) return null;
  return isE164(parsed.number) ? parsed.number : null;
}

/**
 * The E.164 number a SIP or tel URI names, or null. For SIP URIs the user part is read (with or
 * without `;user=phone`), its own parameters (`;isub=`, `;phone-context=`) split off first.
 *
 * @example
 * numberFromUri('sip:+14155551234@carrier.example;user=phone', 'US'); // '+14155551234'
 * numberFromUri('tel:5550100;phone-context=+1-212', 'US');           // '+12125550100'
 * numberFromUri('sip:anonymous@anonymous.invalid', 'US');           // null
 */
export function numberFromUri(uri: string | Uri, defaultCountry: CountryCode): string | null {
  const u = typeof uri === 'string' ? parseUri(uri) : uri;
  if (!u) return null;
  if (u.kind === 'tel') {
    const context = u.params.get('phone-context');
    return normalizePhoneNumber(u.number, defaultCountry, context ?? undefined);
  }
  if (u.kind !== 'sip' || u.user === undefined) return null;
  // RFC 3261 §19.1.6: a telephone-subscriber in the user part may carry its own parameters
  const [number = '', ...params] = u.user.split(';');
  let context: string | undefined;
  for (const p of params) {
    const [k, v] = p.split('=', 2);
    if (k?.trim().toLowerCase() === 'phone-context' && v !== undefined) context = v.trim();
  }
  return normalizePhoneNumber(number, defaultCountry, context);
}

/** The URI of a name-addr header value (From, P-Asserted-Identity...), or null. */
function uriOf(value: string): Uri | null {
  return parseNameAddr(value)?.uri ?? null;
}

/**
 * The caller's E.164 number: the first `tel:` or `sip:`/`sips:` entry of P-Asserted-Identity
 * (RFC 3325, the identity a trusted trunk asserts), else From; null when neither names a number.
 *
 * @example
 * callerNumber({ pAssertedIdentity: ['"Jo" <sip:+14155551234@trunk.example>', '<tel:+14155551234>'],
 *   from: '<sip:anonymous@anonymous.invalid>;tag=1' }, 'US'); // '+14155551234'
 */
export function callerNumber(headers: { pAssertedIdentity: readonly string[]; from: string | undefined }, defaultCountry: CountryCode): string | null {
  for (const value of headers.pAssertedIdentity) {
    const uri = uriOf(value);
    if (!uri || (uri.kind !== 'tel' && uri.kind !== 'sip')) continue;
    const n = numberFromUri(uri, defaultCountry);
    if (n !== null) return n;
    break; // only the first tel/sip identity counts; an anonymous one falls back to From
  }
  if (headers.from === undefined) return null;
  const from = uriOf(headers.from);
  return from ? numberFromUri(from, defaultCountry) : null;
}
