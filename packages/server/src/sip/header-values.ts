/**
 * Parsers and formatters of the structured header values the stack itself needs: name-addr /
 * addr-spec (From, To, Contact, Route, Record-Route, P-Asserted-Identity...), Via, CSeq, the
 * numeric headers and media types (RFC 3261 §20, §25.1). Parsers return `null` on malformed
 * input instead of throwing, so garbage costs no exception.
 */
import { isTokenChar, sanitizeHeaderText } from './headers.js';
import { parseUri, type SipParams, type Uri } from './uri.js';

function isWsp(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function skipWsp(s: string, i: number): number {
  while (i < s.length && isWsp(s.charCodeAt(i))) i++;
  return i;
}

function readToken(s: string, i: number): number {
  while (i < s.length && isTokenChar(s.charCodeAt(i))) i++;
  return i;
}

/** Reads a quoted-string starting at s[i] === '"'; returns [end index after the quote, unescaped text] or null. */
function readQuoted(s: string, i: number): [number, string] | null {
  let out = '';
  let j = i + 1;
  let from = j;
  for (; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === 0x5c) {
      if (j + 1 >= s.length) return null;
      out += s.slice(from, j) + s[j + 1];
      j++;
      from = j + 1;
    } else if (c === 0x22) {
      return [j + 1, out + s.slice(from, j)];
    }
  }
  return null; // unterminated (RFC 4475 quotbal)
}

/**
 * Parses generic-params `*( SEMI name [ EQUAL value ] )` starting at s[i], into `out`
 * (lower-case names; values as written: tokens, hosts, or quoted strings with their quotes).
 * Returns the index where the parameters end, or -1 on an empty name or value
 * (RFC 4475 badinv01 `;;`).
 */
export function parseHeaderParams(s: string, i: number, out: Map<string, string | null>): number {
  for (;;) {
    const j = skipWsp(s, i);
    if (s.charCodeAt(j) !== 0x3b) return i;
    let k = skipWsp(s, j + 1);
    const nameEnd = readToken(s, k);
    if (nameEnd === k) return -1;
    const name = s.slice(k, nameEnd).toLowerCase();
    k = skipWsp(s, nameEnd);
    if (s.charCodeAt(k) === 0x3d) {
      k = skipWsp(s, k + 1);
      let valueEnd: number;
      if (s.charCodeAt(k) === 0x22) {
        const q = readQuoted(s, k);
        if (!q) return -1;
        valueEnd = q[0];
      } else {
        valueEnd = k;
        while (valueEnd < s.length) {
          const c = s.charCodeAt(valueEnd);
          // token chars, plus ':' '[' ']' for IPv6 hosts in received/maddr
          if (!(isTokenChar(c) || c === 0x3a || c === 0x5b || c === 0x5d)) break;
          valueEnd++;
        }
        if (valueEnd === k) return -1;
      }
      out.set(name, s.slice(k, valueEnd));
      i = valueEnd;
    } else {
      out.set(name, null);
      i = nameEnd;
    }
  }
}

/** Removes the quotes and quoted-pair escapes of a quoted-string; other values unchanged. */
export function unquote(v: string): string {
  if (v.charCodeAt(0) !== 0x22) return v;
  const q = readQuoted(v, 0);
  return q ? q[1] : v;
}

/** A From/To/Contact/Route... value. */
export interface NameAddr {
  /** Display name, unquoted and unescaped; absent when none was given. */
  readonly displayName?: string;
  readonly uri: Uri;
  /** Header parameters (after the URI): `tag`, `expires`, `q`, `lr`... */
  readonly params: SipParams;
  /** The `tag` parameter, if any. */
  readonly tag?: string;
}

/**
 * Parses `[display-name] <URI> *(;param)` or `addr-spec *(;param)`; null when malformed.
 * Strict where RFC 4475 lets an element choose: no LWS inside `<>` (badaspec), display names are
 * tokens or quoted strings (baddn), a bare addr-spec must not contain `?` or `,` (regbadct). A
 * token display name directly followed by `<` is accepted (lwsdisp).
 *
 * @example
 * const na = parseNameAddr('"Doe, J" <sip:j@example.com>;tag=98asjd8');
 * // na.displayName === 'Doe, J', na.tag === '98asjd8', na.uri.kind === 'sip'
 */
export function parseNameAddr(s: string): NameAddr | null {
  let i = skipWsp(s, 0);
  let displayName: string | undefined;
  let uriText: string;
  let angle = false;
  if (s.charCodeAt(i) === 0x22) {
    const q = readQuoted(s, i);
    if (!q) return null;
    displayName = q[1];
    i = skipWsp(s, q[0]);
    if (s.charCodeAt(i) !== 0x3c) return null;
    angle = true;
  } else if (s.charCodeAt(i) === 0x3c) {
    angle = true;
  } else {
    let j = i;
    while (j < s.length && (isTokenChar(s.charCodeAt(j)) || isWsp(s.charCodeAt(j)))) j++;
    if (s.charCodeAt(j) === 0x3c) {
      displayName = s.slice(i, j).trim();
      i = j;
      angle = true;
    }
  }
  if (angle) {
    const close = s.indexOf('>', i + 1);
    if (close < 0) return null;
    uriText = s.slice(i + 1, close);
    if (uriText.length === 0 || isWsp(uriText.charCodeAt(0)) || isWsp(uriText.charCodeAt(uriText.length - 1))) return null;
    i = close + 1;
  } else {
    let j = i;
    while (j < s.length) {
      const c = s.charCodeAt(j);
      if (c === 0x3b || isWsp(c)) break;
      if (c === 0x3f || c === 0x2c) return null; // RFC 3261 §20: such a URI needs <>
      j++;
    }
    uriText = s.slice(i, j);
    i = j;
  }
  const uri = parseUri(uriText);
  if (!uri) return null;
  const params = new Map<string, string | null>();
  i = parseHeaderParams(s, i, params);
  if (i < 0 || skipWsp(s, i) !== s.length) return null;
  const tag = params.get('tag');
  return { displayName: displayName || undefined, uri, params, tag: tag ?? undefined };
}

/** Contact values: `*` (only in a REGISTER, RFC 3261 §10.2.2) or name-addrs. */
export type ContactValue = NameAddr | '*';

/** Parses one Contact value; null when malformed. */
export function parseContact(s: string): ContactValue | null {
  return s.trim() === '*' ? '*' : parseNameAddr(s);
}

/** One Via value (RFC 3261 §20.42). */
export interface Via {
  readonly protocol: string;
  readonly version: string;
  /** Upper-case transport (`UDP`, `TCP`, `TLS`, `SCTP`, or an unknown token). */
  readonly transport: string;
  readonly host: string;
  readonly port?: number;
  readonly params: SipParams;
  readonly branch?: string;
  readonly received?: string;
  /** `null`: `rport` present without a value (RFC 3581 asks to fill it); undefined: absent. */
  readonly rport?: number | null;
  readonly maddr?: string;
  readonly ttl?: number;
}

function parsePort(v: string): number | null {
  if (!/^[0-9]{1,5}$/.test(v)) return null;
  const n = Number(v);
  return n <= 65535 ? n : null;
}

/**
 * Parses one Via value (LWS allowed around `/` and `;`, as in RFC 4475 wsinv); null when
 * malformed, including an empty parameter (badinv01) or an out-of-range ttl/rport.
 *
 * @example
 * parseVia('SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport');
 * // { transport: 'UDP', host: '192.0.2.1', port: 5060, branch: 'z9hG4bK74bf9', rport: null, ... }
 */
export function parseVia(s: string): Via | null {
  let i = skipWsp(s, 0);
  const parts: string[] = [];
  for (let n = 0; n < 3; n++) {
    const end = readToken(s, i);
    if (end === i) return null;
    parts.push(s.slice(i, end));
    i = skipWsp(s, end);
    if (n < 2) {
      if (s.charCodeAt(i) !== 0x2f) return null;
      i = skipWsp(s, i + 1);
    }
  }
  if (i === s.length) return null;
  const hostStart = i;
  if (s.charCodeAt(i) === 0x5b) {
    const close = s.indexOf(']', i);
    if (close < 0) return null;
    i = close + 1;
  } else {
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (!((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e || c === 0x5f)) break;
      i++;
    }
  }
  if (i === hostStart) return null;
  const host = s.slice(hostStart, i);
  let port: number | undefined;
  let j = skipWsp(s, i);
  if (s.charCodeAt(j) === 0x3a) {
    j = skipWsp(s, j + 1);
    const ps = j;
    while (j < s.length && s.charCodeAt(j) >= 0x30 && s.charCodeAt(j) <= 0x39) j++;
    const p = parsePort(s.slice(ps, j));
    if (p === null) return null;
    port = p;
    i = j;
  }
  const params = new Map<string, string | null>();
  i = parseHeaderParams(s, i, params);
  if (i < 0 || skipWsp(s, i) !== s.length) return null;
  let rport: number | null | undefined;
  if (params.has('rport')) {
    const v = params.get('rport');
    if (v === null || v === undefined) rport = null;
    else {
      const p = parsePort(v);
      if (p === null) return null;
      rport = p;
    }
  }
  let ttl: number | undefined;
  const ttlText = params.get('ttl');
  if (ttlText !== undefined) {
    if (ttlText === null || !/^[0-9]{1,3}$/.test(ttlText) || Number(ttlText) > 255) return null;
    ttl = Number(ttlText);
  }
  const branch = params.get('branch');
  const received = params.get('received');
  const maddr = params.get('maddr');
  return {
    protocol: parts[0]!.toUpperCase(),
    version: parts[1]!,
    transport: parts[2]!.toUpperCase(),
    host,
    port,
    params,
    branch: branch ?? undefined,
    received: received ?? undefined,
    rport,
    maddr: maddr ?? undefined,
    ttl,
  };
}

/** The fields of a Via to write. */
export interface ViaInit {
  transport: string;
  host: string;
  port?: number;
  branch: string;
  /** Extra parameters after the branch; `null` value for a flag such as `rport`. */
  params?: Iterable<readonly [string, string | null]>;
}

/**
 * Formats a Via value.
 *
 * @example
 * formatVia({ transport: 'UDP', host: '10.0.0.1', port: 5060, branch: newBranch(), params: [['rport', null]] });
 * // 'SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK...;rport'
 */
export function formatVia(v: ViaInit): string {
  let s = `SIP/2.0/${v.transport.toUpperCase()} ${v.host}`;
  if (v.port !== undefined) s += ':' + v.port;
  s += ';branch=' + v.branch;
  for (const [k, val] of v.params ?? []) s += ';' + k + (val === null ? '' : '=' + val);
  return s;
}

/** CSeq (RFC 3261 §20.16). */
export interface CSeq {
  /** 0 .. 2^32-1 */
  readonly seq: number;
  readonly method: string;
}

const MAX_UINT32 = 4294967295;

/**
 * Parses `1*DIGIT LWS Method`; null when malformed or the number exceeds 2^32-1 (RFC 4475
 * scalar02/scalarlg). Leading zeros are allowed (wsinv `0009`).
 */
export function parseCSeq(s: string): CSeq | null {
  let i = skipWsp(s, 0);
  const start = i;
  let n = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
    if (n > MAX_UINT32) return null;
    i++;
  }
  if (i === start) return null;
  const j = skipWsp(s, i);
  if (j === i) return null;
  const end = readToken(s, j);
  if (end === j || skipWsp(s, end) !== s.length) return null;
  return { seq: n, method: s.slice(j, end) };
}

/** Parses a non-negative decimal no larger than `max`; null otherwise (signs, blanks, overflow). */
export function parseBoundedInt(s: string, max: number): number | null {
  const t = s.trim();
  if (t.length === 0 || t.length > 16) return null;
  let n = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return null;
    n = n * 10 + (c - 0x30);
  }
  return n <= max ? n : null;
}

/**
 * The `type/subtype` of a Content-Type or Accept element, lower-case, without parameters.
 *
 * @example
 * mediaType('Application/SDP ; charset=utf-8'); // 'application/sdp'
 */
export function mediaType(value: string): string {
  const semi = value.indexOf(';');
  return (semi < 0 ? value : value.slice(0, semi)).replace(/[ \t]+/g, '').toLowerCase();
}

/** Quotes a display name when it is not a plain token sequence. */
function formatDisplayName(name: string): string {
  if (/^[A-Za-z0-9\-.!%*_+`'~]+( [A-Za-z0-9\-.!%*_+`'~]+)*$/.test(name)) return name;
  return '"' + name.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

/**
 * Formats a name-addr, always with `<>` (safe whatever the URI holds).
 *
 * @example
 * formatNameAddr({ displayName: 'Doe, John', uri: 'sip:j@example.com', params: [['tag', 'a1']] });
 * // '"Doe, John" <sip:j@example.com>;tag=a1'
 */
export function formatNameAddr(na: {
  displayName?: string;
  uri: Uri | string;
  params?: Iterable<readonly [string, string | null]>;
}): string {
  let s = na.displayName ? formatDisplayName(sanitizeHeaderText(na.displayName)) + ' ' : '';
  s += '<' + (typeof na.uri === 'string' ? na.uri : na.uri.raw) + '>';
  for (const [k, v] of na.params ?? []) s += ';' + k + (v === null ? '' : '=' + v);
  return s;
}
