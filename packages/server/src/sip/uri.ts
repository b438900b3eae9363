/**
 * SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966) and any other absolute URI (kept
 * opaque: RFC 4475 unkscm/novelsc/unksm2 must parse even though the element answers 416 or 400).
 */
import { isUtf8 } from 'node:buffer';

/** A parameter list: lower-case names in order, value `null` for a parameter without `=`. */
export type SipParams = ReadonlyMap<string, string | null>;

export interface SipUri {
  readonly kind: 'sip';
  readonly scheme: 'sip' | 'sips';
  /** User part, unescaped once (`null-%00-null` → `null-\0-null`); absent when the URI has none. */
  readonly user?: string;
  readonly password?: string;
  /** Host as written (`[2001:db8::1]` keeps its brackets). */
  readonly host: string;
  readonly port?: number;
  /** uri-parameters, values unescaped once. */
  readonly params: SipParams;
  /** URI headers (`?Route=...&User-to-User=...`), names and values unescaped once, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The URI exactly as received (or as formatted when built). */
  readonly raw: string;
}

export interface TelUri {
  readonly kind: 'tel';
  readonly scheme: 'tel';
  /** The telephone-subscriber number, e.g. `+1-201-555-0123` (visual separators kept). */
  readonly number: string;
  readonly params: SipParams;
  readonly raw: string;
}

/** Any other absolute URI (`isbn:...`, `http://...`): only the scheme is interpreted. */
export interface OtherUri {
  readonly kind: 'other';
  /** Lower-case scheme. */
  readonly scheme: string;
  readonly opaque: string;
  readonly raw: string;
}

export type Uri = SipUri | TelUri | OtherUri;

// Character classes of RFC 3261 §25.1, as bit flags per ASCII code.
const ALNUM = 1;
const MARK = 2; // - _ . ! ~ * ' ( )
const USER_UNRES = 4; // & = + $ , ; ? /
const PASS_EXTRA = 8; // & = + $ ,
const PARAM_UNRES = 16; // [ ] / : & + $
const HNV_UNRES = 32; // [ ] / ? : + $
const HOST = 64; // alnum - . _
const CLASS = new Uint8Array(128);
function mark(chars: string, flag: number): void {
  for (const c of chars) CLASS[c.charCodeAt(0)]! |= flag;
}
mark('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', ALNUM | HOST);
mark("-_.!~*'()", MARK);
mark('&=+$,;?/', USER_UNRES);
mark('&=+$,', PASS_EXTRA);
mark('[]/:&+$', PARAM_UNRES);
mark('[]/?:+$', HNV_UNRES);
mark('-._', HOST);

const UNRESERVED = ALNUM | MARK;

/** True when every char of s[from, to) is `%` (escapes are unescaped leniently) or in `flags`. */
function allIn(s: string, from: number, to: number, flags: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) continue;
    if (c >= 128 || (CLASS[c]! & flags) === 0) return false;
  }
  return true;
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Decodes `%HH` escapes exactly once (RFC 4475 esc01: `v%61lue%25%34%31` → `value%41`). A `%`
 * not followed by two hex digits is kept literally. Decoded octets form UTF-8 when valid, else
 * are taken one octet per char, so `%00` survives as a NUL and nothing is truncated (escnull).
 *
 * @example
 * unescapeUri('null-%00-null'); // 'null-\u0000-null'
 */
export function unescapeUri(s: string): string {
  if (s.indexOf('%') < 0) return s;
  const src = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(src.length);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x25 && i + 2 < src.length) {
      const h = hexVal(src[i + 1]!);
      const l = hexVal(src[i + 2]!);
      if (h >= 0 && l >= 0) {
        out[n++] = (h << 4) | l;
        i += 2;
        continue;
      }
    }
    out[n++] = c;
  }
  const bytes = out.subarray(0, n);
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes.toString('latin1');
}

const HEX = '0123456789ABCDEF';

/** Percent-encodes every octet of `s` (as UTF-8) whose char is not in `flags`. */
function escapeWith(s: string, flags: number): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || (CLASS[c]! & flags) === 0) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b < 128 && (CLASS[b]! & flags) !== 0) out += String.fromCharCode(b);
    else out += '%' + HEX[b >> 4]! + HEX[b & 15]!;
  }
  return out;
}

function isSchemeChar(c: number, first: boolean): boolean {
  const alpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  if (first) return alpha;
  return alpha || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e;
}

/** Parses `;name[=value]` uri-parameters of s[from, to); null on an empty name or a bad char. */
function parseUriParams(s: string, from: number, to: number): Map<string, string | null> | null {
  const params = new Map<string, string | null>();
  let i = from;
  while (i < to) {
    if (s.charCodeAt(i) !== 0x3b) return null;
    let end = s.indexOf(';', i + 1);
    if (end < 0 || end > to) end = to;
    const eq = s.indexOf('=', i + 1);
    const hasValue = eq >= 0 && eq < end;
    const nameEnd = hasValue ? eq : end;
    if (nameEnd === i + 1) return null;
    if (!allIn(s, i + 1, nameEnd, UNRESERVED | PARAM_UNRES)) return null;
    if (hasValue && !allIn(s, eq + 1, end, UNRESERVED | PARAM_UNRES)) return null;
    params.set(unescapeUri(s.slice(i + 1, nameEnd)).toLowerCase(), hasValue ? unescapeUri(s.slice(eq + 1, end)) : null);
    i = end;
  }
  return params;
}

function parseSipUri(raw: string, scheme: 'sip' | 'sips', start: number): SipUri | null {
  const len = raw.length;
  let user: string | undefined;
  let password: string | undefined;
  let i = start;
  const at = raw.indexOf('@', start);
  if (at >= 0) {
    const colon = raw.indexOf(':', start);
    const userEnd = colon >= 0 && colon < at ? colon : at;
    if (userEnd === start) return null;
    if (!allIn(raw, start, userEnd, UNRESERVED | USER_UNRES)) return null;
    user = unescapeUri(raw.slice(start, userEnd));
    if (userEnd < at) {
      if (!allIn(raw, userEnd + 1, at, UNRESERVED | PASS_EXTRA)) return null;
      password = unescapeUri(raw.slice(userEnd + 1, at));
    }
    i = at + 1;
  }
  // host: IPv6 reference, IPv4 address or hostname
  const hostStart = i;
  if (raw.charCodeAt(i) === 0x5b) {
    const close = raw.indexOf(']', i);
    if (close < 0) return null;
    for (let j = i + 1; j < close; j++) {
      const c = raw.charCodeAt(j);
      if (!(hexVal(c) >= 0 || c === 0x3a || c === 0x2e)) return null;
    }
    if (close === i + 1) return null;
    i = close + 1;
  } else {
    while (i < len) {
      const c = raw.charCodeAt(i);
      if (c >= 128 || (CLASS[c]! & HOST) === 0) break;
      i++;
    }
    if (i === hostStart) return null;
  }
  const host = raw.slice(hostStart, i);
  let port: number | undefined;
  if (raw.charCodeAt(i) === 0x3a) {
    const ps = ++i;
    let p = 0;
    while (i < len && raw.charCodeAt(i) >= 0x30 && raw.charCodeAt(i) <= 0x39 && i - ps < 6) p = p * 10 + raw.charCodeAt(i++) - 0x30;
    if (i === ps || p > 65535) return null;
    port = p;
  }
  let q = raw.indexOf('?', i);
  if (q < 0) q = len;
  const params = parseUriParams(raw, i, q);
  if (!params) return null;
  const headers: Array<readonly [string, string]> = [];
  if (q < len) {
    for (const part of raw.slice(q + 1).split('&')) {
      const eq = part.indexOf('=');
      if (eq <= 0) return null;
      if (!allInHeader(part, eq)) return null;
      headers.push([unescapeUri(part.slice(0, eq)), unescapeUri(part.slice(eq + 1))]);
    }
  }
  return { kind: 'sip', scheme, user, password, host, port, params, headers, raw };
}

/** hname "=" hvalue with hvalue possibly empty; `=` only as the separator. */
function allInHeader(part: string, eq: number): boolean {
  return allIn(part, 0, eq, UNRESERVED | HNV_UNRES) && allIn(part, eq + 1, part.length, UNRESERVED | HNV_UNRES);
}

function parseTelUri(raw: string, start: number): TelUri | null {
  let semi = raw.indexOf(';', start);
  if (semi < 0) semi = raw.length;
  const number = raw.slice(start, semi);
  if (number.length === 0 || !/^[+]?[0-9A-Fa-f*#().-]+$/.test(number)) return null;
  const params = parseUriParams(raw, semi, raw.length);
  if (!params) return null;
  return { kind: 'tel', scheme: 'tel', number, params, raw };
}

/**
 * Parses an absolute URI; null when it is malformed. SIP/SIPS and tel are structured; any other
 * well-formed `scheme:rest` is an {@link OtherUri}.
 *
 * @example
 * const u = parseUri('sip:alice:pw@[2001:db8::1]:5070;transport=tcp?User-to-User=00ab%3Bencoding%3Dhex');
 * // u.kind === 'sip', u.host === '[2001:db8::1]', u.port === 5070,
 * // u.params.get('transport') === 'tcp', u.headers[0] is ['User-to-User', '00ab;encoding=hex']
 */
export function parseUri(raw: string): Uri | null {
  const colon = raw.indexOf(':');
  if (colon <= 0) return null;
  for (let i = 0; i < colon; i++) if (!isSchemeChar(raw.charCodeAt(i), i === 0)) return null;
  const scheme = raw.slice(0, colon).toLowerCase();
  if (scheme === 'sip' || scheme === 'sips') return parseSipUri(raw, scheme, colon + 1);
  if (scheme === 'tel') return parseTelUri(raw, colon + 1);
  const opaque = raw.slice(colon + 1);
  if (opaque.length === 0 || /[\s<>"]/.test(opaque)) return null;
  return { kind: 'other', scheme, opaque, raw };
}

/** The fields of a SIP URI to build; unescaped values (they are escaped when formatted). */
export interface SipUriInit {
  scheme?: 'sip' | 'sips';
  user?: string;
  password?: string;
  host: string;
  port?: number;
  params?: Iterable<readonly [string, string | null]>;
  headers?: Iterable<readonly [string, string]>;
}

/**
 * Builds a SIP URI, escaping each part as its grammar requires.
 *
 * @example
 * formatSipUri({ user: 'agent 1', host: '10.0.0.5', port: 5080, params: [['transport', 'tcp'], ['lr', null]] }).raw;
 * // 'sip:agent%201@10.0.0.5:5080;transport=tcp;lr'
 */
export function formatSipUri(init: SipUriInit): SipUri {
  const scheme = init.scheme ?? 'sip';
  let raw = scheme + ':';
  if (init.user !== undefined) {
    raw += escapeWith(init.user, UNRESERVED | USER_UNRES);
    if (init.password !== undefined) raw += ':' + escapeWith(init.password, UNRESERVED | PASS_EXTRA);
    raw += '@';
  }
  raw += init.host;
  if (init.port !== undefined) raw += ':' + init.port;
  const params = new Map<string, string | null>();
  for (const [k, v] of init.params ?? []) {
    params.set(k.toLowerCase(), v);
    raw += ';' + escapeWith(k, UNRESERVED | PARAM_UNRES) + (v === null ? '' : '=' + escapeWith(v, UNRESERVED | PARAM_UNRES));
  }
  const headers: Array<readonly [string, string]> = [];
  let sep = '?';
  for (const [k, v] of init.headers ?? []) {
    headers.push([k, v]);
    raw += sep + escapeWith(k, UNRESERVED | HNV_UNRES) + '=' + escapeWith(v, UNRESERVED | HNV_UNRES);
    sep = '&';
  }
  return { kind: 'sip', scheme, user: init.user, password: init.password, host: init.host, port: init.port, params, headers, raw };
}

/**
 * The same SIP URI without its headers component: what a proxy must forward when a liberal
 * element accepted a Request-URI carrying headers (RFC 4475 §3.1.2.11, escruri).
 */
export function withoutUriHeaders(uri: SipUri): SipUri {
  if (uri.headers.length === 0) return uri;
  const q = uri.raw.indexOf('?');
  return { ...uri, headers: [], raw: uri.raw.slice(0, q) };
}

/** Host without IPv6 brackets, lower-cased: the form to compare or to hand to a socket. */
export function bareHost(host: string): string {
  const h = host.charCodeAt(0) === 0x5b ? host.slice(1, -1) : host;
  return h.toLowerCase();
}
