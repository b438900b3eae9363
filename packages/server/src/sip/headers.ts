/**
 * Header names (canonical spelling, compact forms, which headers are comma lists) and the
 * ordered, case-insensitive header collection of a SIP message.
 */

const CANONICAL = [
  'Accept', 'Accept-Contact', 'Accept-Encoding', 'Accept-Language', 'Alert-Info', 'Allow',
  'Allow-Events', 'Authentication-Info', 'Authorization', 'Call-ID', 'Call-Info', 'Contact',
  'Content-Disposition', 'Content-Encoding', 'Content-Language', 'Content-Length', 'Content-Type',
  'CSeq', 'Date', 'Diversion', 'Error-Info', 'Event', 'Expires', 'From', 'History-Info', 'Identity',
  'Identity-Info', 'In-Reply-To', 'Max-Forwards', 'MIME-Version', 'Min-Expires', 'Min-SE',
  'Organization', 'P-Asserted-Identity', 'P-Preferred-Identity', 'Path', 'Priority', 'Privacy',
  'Proxy-Authenticate', 'Proxy-Authorization', 'Proxy-Require', 'RAck', 'Reason', 'Record-Route',
  'Refer-To', 'Referred-By', 'Reject-Contact', 'Reply-To', 'Request-Disposition', 'Require',
  'Retry-After', 'Route', 'RSeq', 'Server', 'Service-Route', 'Session-Expires', 'SIP-ETag',
  'SIP-If-Match', 'Subject', 'Subscription-State', 'Supported', 'Timestamp', 'To', 'Unsupported',
  'User-Agent', 'User-to-User', 'Via', 'Warning', 'WWW-Authenticate',
] as const;

/** RFC 3261 §7.3.3 and the IANA SIP parameters registry: compact form → full name. */
const COMPACT: Record<string, string> = {
  a: 'Accept-Contact', b: 'Referred-By', c: 'Content-Type', d: 'Request-Disposition',
  e: 'Content-Encoding', f: 'From', i: 'Call-ID', j: 'Reject-Contact', k: 'Supported',
  l: 'Content-Length', m: 'Contact', n: 'Identity-Info', o: 'Event', r: 'Refer-To', s: 'Subject',
  t: 'To', u: 'Allow-Events', v: 'Via', x: 'Session-Expires', y: 'Identity',
};

/**
 * Headers whose grammar is `value *(COMMA value)` (RFC 3261 §7.3.1): only these may be split on
 * commas. Date, Authorization-like, Call-ID, From/To, etc. contain commas of their own.
 */
const LIST_HEADERS = new Set([
  'accept', 'accept-contact', 'accept-encoding', 'accept-language', 'alert-info', 'allow',
  'allow-events', 'call-info', 'contact', 'content-encoding', 'content-language', 'diversion',
  'error-info', 'history-info', 'in-reply-to', 'p-asserted-identity', 'p-preferred-identity',
  'path', 'proxy-require', 'reason', 'record-route', 'reject-contact', 'request-disposition',
  'require', 'route', 'service-route', 'supported', 'unsupported', 'user-to-user', 'via', 'warning',
]);

/** lower-case name or compact form → [key, canonical display name] */
const NAMES = new Map<string, readonly [string, string]>();
for (const name of CANONICAL) NAMES.set(name.toLowerCase(), [name.toLowerCase(), name]);
for (const [short, full] of Object.entries(COMPACT)) NAMES.set(short, [full.toLowerCase(), full]);

/**
 * The lookup key of a header name: lower-case, compact forms expanded.
 *
 * @example
 * headerKey('v'); // 'via'
 * headerKey('MaX-fOrWaRdS'); // 'max-forwards'
 */
export function headerKey(name: string): string {
  const lower = name.toLowerCase();
  const known = NAMES.get(lower);
  return known ? known[0] : lower;
}

/** The name to write on the wire: the canonical spelling of known headers, else as given. */
export function canonicalHeaderName(name: string): string {
  const known = NAMES.get(name.toLowerCase());
  return known ? known[1] : name;
}

/** Lookup key and wire name of a header name in one pass (the parser's hot path). */
export function headerNames(name: string): readonly [key: string, display: string] {
  const lower = name.toLowerCase();
  return NAMES.get(lower) ?? [lower, name];
}

/** True for headers whose values form a comma-separated list (see LIST_HEADERS). */
export function isListHeader(key: string): boolean {
  return LIST_HEADERS.has(key);
}

const TOKEN_CHARS = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~") {
  TOKEN_CHARS[c.charCodeAt(0)] = 1;
}

/** RFC 3261 §25.1 `token` character test. */
export function isTokenChar(code: number): boolean {
  return code < 128 && TOKEN_CHARS[code] === 1;
}

/** True if `s` is a non-empty RFC 3261 token. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTokenChar(s.charCodeAt(i))) return false;
  return true;
}

const UNSAFE_TEXT = /[\r\n\0]/g;

/**
 * Removes CR, LF and NUL: applied to every value an application puts into a header, so no
 * caller-supplied text can inject a header or end the header section.
 */
export function sanitizeHeaderText(s: string): string {
  return s.replace(UNSAFE_TEXT, '');
}

/**
 * A copy of `s` that shares no memory with the string it may be a slice of (V8 copies strings
 * shorter than 13 characters instead of slicing them). Lossless: header text never holds a lone
 * surrogate.
 */
export function detached(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

/**
 * Splits a header value on the commas that separate list elements: commas inside quoted strings
 * (with `\` escapes) and inside `<...>` do not count. Elements are trimmed; empty ones are kept
 * so that validators can reject `a,,b` (RFC 4475 badinv01).
 *
 * @example
 * splitList('"Doe, J" <sip:a@b>;x=1, <sip:c@d>'); // ['"Doe, J" <sip:a@b>;x=1', '<sip:c@d>']
 */
export function splitList(value: string): string[] {
  if (value.indexOf(',') < 0) return [value.trim()];
  const out: string[] = [];
  let start = 0;
  let inQuote = false;
  let inAngle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c) i++; // quoted-pair
      else if (c === 0x22) inQuote = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === 0x3c) inAngle = true;
    else if (c === 0x3e) inAngle = false;
    else if (c === 0x2c && !inAngle) {
      out.push(value.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(value.slice(start).trim());
  return out;
}

/** The arrays of a packed SipHeaders (see pick): shared and never written, as every method unpacks first. */
const NOT_UNPACKED: string[] = [];

/**
 * The ordered header fields of one message. Names are case-insensitive and compact forms are
 * the same header (`v` is `Via`); each entry is one header line as received (unfolded), written
 * back with its canonical name. Values are parsed lazily by the message accessors.
 *
 * @example
 * const h = new SipHeaders();
 * h.append('v', 'SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com');
 * h.getAll('Via').length; // 2
 * h.get('VIA'); // 'SIP/2.0/UDP a.example.com;branch=z9hG4bK1'
 */
export class SipHeaders {
  /** Canonical display names, lookup keys and values, in wire order (parallel arrays). */
  private names: string[];
  private keys: string[];
  private values: string[];
  private cache: Map<string, unknown> | undefined;
  /** The lines of a {@link SipHeaders.pick} copy, packed until first used (see unpack). */
  private packed: string | undefined;

  constructor() {
    this.names = [];
    this.keys = [];
    this.values = [];
  }

  /** Builds from parsed lines without sanitising (the parser has already split on CRLF). */
  static fromParsed(names: string[], keys: string[], values: string[]): SipHeaders {
    const h = new SipHeaders();
    h.names = names;
    h.keys = keys;
    h.values = values;
    return h;
  }

  /** Number of header lines. */
  get size(): number {
    if (this.packed !== undefined) this.unpack();
    return this.keys.length;
  }

  /** The first value: the first list element for list headers, else the first line's value. */
  get(name: string): string | undefined {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    const i = this.keys.indexOf(key);
    if (i < 0) return undefined;
    const v = this.values[i]!;
    return LIST_HEADERS.has(key) ? splitList(v)[0] : v;
  }

  /** Every value: list headers split on their separating commas (empty elements dropped). */
  getAll(name: string): string[] {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    const list = LIST_HEADERS.has(key);
    const out: string[] = [];
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] !== key) continue;
      if (!list) out.push(this.values[i]!);
      else for (const e of splitList(this.values[i]!)) if (e !== '') out.push(e);
    }
    return out;
  }

  /** The value of each header line of this name, unsplit. */
  getLines(name: string): string[] {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    const out: string[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] === key) out.push(this.values[i]!);
    return out;
  }

  has(name: string): boolean {
    if (this.packed !== undefined) this.unpack();
    return this.keys.indexOf(headerKey(name)) >= 0;
  }

  /** Number of header lines of this name. */
  count(name: string): number {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    let n = 0;
    for (const k of this.keys) if (k === key) n++;
    return n;
  }

  /** Replaces every line of this name by one line per value (appended at the end if absent). */
  set(name: string, value: string | readonly string[]): this {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    const first = this.keys.indexOf(key);
    this.deleteKey(key);
    const vals = typeof value === 'string' ? [value] : value;
    const at = first < 0 ? this.keys.length : first;
    for (let j = 0; j < vals.length; j++) this.insertAt(at + j, name, key, vals[j]!);
    return this;
  }

  /** Adds a line after all others. */
  append(name: string, value: string): this {
    if (this.packed !== undefined) this.unpack();
    this.insertAt(this.keys.length, name, headerKey(name), value);
    return this;
  }

  /**
   * Adds a line that becomes the topmost value of this header (before its first line, or first in
   * the message if absent): how Via and Record-Route are inserted (RFC 3261 §16.6 steps 4 and 8).
   */
  prepend(name: string, value: string): this {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    const i = this.keys.indexOf(key);
    this.insertAt(i < 0 ? 0 : i, name, key, value);
    return this;
  }

  /** Removes every line of this name; returns how many were removed. */
  delete(name: string): number {
    if (this.packed !== undefined) this.unpack();
    return this.deleteKey(headerKey(name));
  }

  /**
   * Removes the topmost value (splitting the first line when it holds several): how a proxy
   * removes its own Via from a response (§16.7 step 3). Returns the removed value.
   */
  removeFirst(name: string): string | undefined {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    const i = this.keys.indexOf(key);
    if (i < 0) return undefined;
    this.invalidate(key);
    const parts = LIST_HEADERS.has(key) ? splitList(this.values[i]!) : [this.values[i]!];
    const first = parts.shift();
    if (parts.length === 0) this.removeAt(i);
    else this.values[i] = parts.join(', ');
    return first;
  }

  /** Replaces the topmost value (keeping any further values of the same line). */
  replaceFirst(name: string, value: string): this {
    if (this.packed !== undefined) this.unpack();
    const key = headerKey(name);
    const i = this.keys.indexOf(key);
    if (i < 0) return this.append(name, value);
    this.invalidate(key);
    const clean = sanitizeHeaderText(value);
    if (!LIST_HEADERS.has(key) || this.values[i]!.indexOf(',') < 0) this.values[i] = clean;
    else {
      const parts = splitList(this.values[i]!);
      parts[0] = clean;
      this.values[i] = parts.join(', ');
    }
    return this;
  }

  /** Header lines in wire order as `[canonical name, value]`. */
  *entries(): IterableIterator<[string, string]> {
    if (this.packed !== undefined) this.unpack();
    for (let i = 0; i < this.keys.length; i++) yield [this.names[i]!, this.values[i]!];
  }

  /** A deep copy (parsed-value caches are not copied). */
  clone(): SipHeaders {
    if (this.packed !== undefined) this.unpack();
    return SipHeaders.fromParsed(this.names.slice(), this.keys.slice(), this.values.slice());
  }

  /**
   * The lines of the headers with these lookup keys only, in wire order, in one fresh string that is
   * unpacked on first use: what a transaction keeps for up to 64*T1 (SipRequest.identity), mostly
   * never read again. Fresh, because a parsed value is a slice of its datagram's text, which V8 keeps
   * whole while any slice of it lives; one string, because the collector traces and copies objects,
   * and three arrays (with their backing stores) and a string per name and value made about twenty of
   * them per kept request, three or four requests per finished call.
   */
  pick(keys: ReadonlySet<string>): SipHeaders {
    if (this.packed !== undefined) this.unpack();
    let text = '';
    for (let i = 0; i < this.keys.length; i++) {
      if (!keys.has(this.keys[i]!)) continue;
      const v = this.values[i]!;
      // name NUL length NUL value: a parsed value may hold any octet but CR and LF
      text += `${this.names[i]}\0${v.length}\0${v}`;
    }
    const h = new SipHeaders();
    if (text !== '') {
      h.packed = Buffer.from(text, 'utf8').toString('utf8');
      // no arrays of its own until unpacked: three objects fewer for each kept request
      h.names = h.keys = h.values = NOT_UNPACKED;
    }
    return h;
  }

  /**
   * Memoises a value parsed from the header `key` (lower-case canonical); any change to that
   * header drops the memo. Used by the message accessors; parsed values must be treated as
   * read-only.
   */
  memo<T>(key: string, parse: () => T): T {
    if (this.cache?.has(key)) return this.cache.get(key) as T;
    const v = parse();
    (this.cache ??= new Map()).set(key, v);
    return v;
  }

  /** Index-based access for the serializer. */
  keyAt(i: number): string {
    if (this.packed !== undefined) this.unpack();
    return this.keys[i]!;
  }
  nameAt(i: number): string {
    if (this.packed !== undefined) this.unpack();
    return this.names[i]!;
  }
  valueAt(i: number): string {
    if (this.packed !== undefined) this.unpack();
    return this.values[i]!;
  }

  /** Restores the parallel arrays from `packed` (see pick); names and keys of known headers are the shared constants. */
  private unpack(): void {
    const text = this.packed!;
    this.packed = undefined;
    this.names = [];
    this.keys = [];
    this.values = [];
    let at = 0;
    while (at < text.length) {
      const nameEnd = text.indexOf('\0', at);
      const lenEnd = text.indexOf('\0', nameEnd + 1);
      const len = Number(text.slice(nameEnd + 1, lenEnd));
      const [key, display] = headerNames(text.slice(at, nameEnd));
      this.names.push(display);
      this.keys.push(key);
      this.values.push(text.slice(lenEnd + 1, lenEnd + 1 + len));
      at = lenEnd + 1 + len;
    }
  }

  /** Drops the memos of a header: its first value (`key`) and all its values (`key*`). */
  private invalidate(key: string): void {
    if (!this.cache) return;
    this.cache.delete(key);
    this.cache.delete(key + '*');
  }

  private insertAt(i: number, name: string, key: string, value: string): void {
    if (!isToken(name)) throw new TypeError(`invalid SIP header name: ${JSON.stringify(name)}`);
    this.invalidate(key);
    this.names.splice(i, 0, canonicalHeaderName(name));
    this.keys.splice(i, 0, key);
    this.values.splice(i, 0, sanitizeHeaderText(value).trim());
  }

  private removeAt(i: number): void {
    this.names.splice(i, 1);
    this.keys.splice(i, 1);
    this.values.splice(i, 1);
  }

  private deleteKey(key: string): number {
    this.invalidate(key);
    let n = 0;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (this.keys[i] === key) {
        this.removeAt(i);
        n++;
      }
    }
    return n;
  }
}
