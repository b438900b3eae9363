/**
 * Normalises an scrt2Domain as partners send it: scheme, case, a trailing slash and a
 * `/telephony/v1` suffix are tolerated, so all of these are `acme.my.example.com`:
 *
 * @example
 * normalizeDomain('https://Acme.my.example.com/telephony/v1/') // 'acme.my.example.com'
 * normalizeDomain('acme.my.example.com')                      // 'acme.my.example.com'
 *
 * Returns null when what remains is not a plausible host name.
 */
export function normalizeDomain(input: unknown): string | null {
  if (typeof input !== 'string' || input.length === 0 || input.length > 256) return null;
  let s = input.trim().toLowerCase();
  s = s.replace(/^[a-z][a-z0-9+.-]*:\/\//, '');
  s = s.replace(/\/+$/, '');
  s = s.replace(/\/telephony\/v1$/, '');
  s = s.replace(/\/+$/, '');
  if (s.length === 0 || s.length > 253) return null;
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?$/.test(s)) return null;
  return s;
}
