/**
 * SIP message parsing (RFC 3261 §7, §18.3, §25) from raw octets: one datagram at a time, or a
 * byte stream framed by Content-Length with arbitrary chunk boundaries. Bytes are never decoded
 * as a whole: only the header section becomes text, the body stays a Buffer.
 */
import { isUtf8 } from 'node:buffer';
import { SipHeaders, headerNames, isToken, isTokenChar } from './headers.js';
import { parseBoundedInt, parseCSeq, parseContact, parseNameAddr, parseVia } from './header-values.js';
import { KNOWN_METHODS, SipRequest, SipResponse, type SipMessage } from './message.js';

/** Size limits applied while parsing. */
export interface ParserLimits {
  /** Whole message, headers and body (default 64 KiB). Over it: 513 on UDP, close on a stream. */
  maxMessageSize: number;
  /** Header lines (default 128). */
  maxHeaders: number;
  /** One physical line (default 8 KiB). */
  maxLineLength: number;
}

export const DEFAULT_PARSER_LIMITS: Readonly<ParserLimits> = {
  maxMessageSize: 64 * 1024,
  maxHeaders: 128,
  maxLineLength: 8 * 1024,
};

/**
 * Why a message was refused. `status` is what a request deserves (400, 505, 501, 513), or 0 when
 * nothing may be answered (malformed responses are dropped, RFC 4475 bigcode/scalarlg; garbage
 * that is not SIP). `request` is what could be read of a malformed request, enough to build the
 * stateless error response. `fatal`: on a stream transport the framing is lost, so the
 * connection must be closed (after answering, when `status` is not 0).
 */
export class SipParseError {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly request: SipRequest | undefined,
    readonly fatal: boolean,
    /** What the input looked like: a request, a response, or not SIP at all. */
    readonly kind: 'request' | 'response' | 'garbage',
  ) {}
}

/** The result of parsing one unit: a message, a refusal, or nothing (a CRLF keep-alive). */
export type ParseOutcome = SipMessage | SipParseError | null;

const ABSENT = -1;
const INVALID = -2;
const SIP_VERSION_RE = /^SIP\/[0-9]+\.[0-9]+$/i;
const LOOKS_LIKE_REQUEST_RE = /SIP\/[0-9]+\.[0-9]+[ \t]*$/i;

/** The header section of a message, split into lines but not yet validated. */
interface Head {
  response: boolean;
  method: string;
  uri: string;
  status: number;
  reason: string;
  names: string[];
  keys: string[];
  values: string[];
  encoding: 'utf8' | 'latin1';
  /** ABSENT, INVALID (negative, non-numeric, several values) or the octet count. */
  contentLength: number;
  /** First syntax error: [status, reason]; status 0 = drop. */
  error: [number, string] | undefined;
  /** The start line is not SIP at all: on a stream, framing is lost. */
  garbage: boolean;
  /** A size limit was exceeded. */
  oversize: boolean;
}

/**
 * Index just past the empty line ending the header section in buf[from, to), -1 if there is none
 * yet, -2 if a line is longer than `maxLine`. Lines end in CRLF; a bare LF is tolerated.
 */
function findHeaderEnd(buf: Buffer, from: number, to: number, maxLine: number): number {
  let lineStart = from;
  for (;;) {
    const lf = buf.indexOf(10, lineStart);
    if (lf < 0 || lf >= to) return to - lineStart > maxLine ? -2 : -1;
    if (lf - lineStart > maxLine) return -2;
    const next = lf + 1;
    if (next < to && buf[next] === 10) return next + 1;
    if (next + 1 < to && buf[next] === 13 && buf[next + 1] === 10) return next + 2;
    lineStart = next;
  }
}

function decodeHead(buf: Buffer, start: number, end: number): [string, 'utf8' | 'latin1'] {
  // isUtf8 is native and ASCII decodes on a fast path: the common case costs two quick passes
  return isUtf8(buf.subarray(start, end)) ? [buf.toString('utf8', start, end), 'utf8'] : [buf.toString('latin1', start, end), 'latin1'];
}

function parseStartLine(line: string, head: Head): void {
  if (line.length >= 4 && line.slice(0, 4).toUpperCase() === 'SIP/') {
    head.response = true;
    const sp = line.indexOf(' ');
    const version = sp < 0 ? line : line.slice(0, sp);
    const codeEnd = sp < 0 ? -1 : line.indexOf(' ', sp + 1);
    const code = sp < 0 ? '' : line.slice(sp + 1, codeEnd < 0 ? line.length : codeEnd);
    if (!SIP_VERSION_RE.test(version) || version.toUpperCase() !== 'SIP/2.0') head.error = [0, 'unsupported SIP version in response'];
    else if (!/^[1-6][0-9][0-9]$/.test(code)) head.error = [0, 'invalid status code']; // RFC 4475 bigcode
    else {
      head.status = Number(code);
      head.reason = codeEnd < 0 ? '' : line.slice(codeEnd + 1);
    }
    return;
  }
  const parts = line.split(' ');
  if (parts.length === 3 && isToken(parts[0]!) && parts[1]!.length > 0 && SIP_VERSION_RE.test(parts[2]!)) {
    head.method = parts[0]!;
    head.uri = parts[1]!;
    // RFC 3261 §8.2.5 / RFC 4475 badvers: 505 for any other version
    if (parts[2]!.toUpperCase() !== 'SIP/2.0') head.error = [505, 'SIP version not supported'];
    return;
  }
  if (LOOKS_LIKE_REQUEST_RE.test(line)) {
    // RFC 4475 lwsstart, trws, lwsruri: extra SP in the Request-Line. Refused (400), not inferred.
    const sp = line.indexOf(' ');
    head.method = sp > 0 && isToken(line.slice(0, sp)) ? line.slice(0, sp) : '';
    head.uri = '';
    head.error = [400, 'malformed Request-Line'];
    return;
  }
  head.garbage = true;
  head.error = [0, 'not a SIP start line'];
}

/** Splits the header section s (lines ending in LF) into the start line and header fields. */
function parseHead(buf: Buffer, start: number, end: number, limits: ParserLimits): Head {
  const [text, encoding] = decodeHead(buf, start, end);
  const head: Head = {
    response: false, method: '', uri: '', status: 0, reason: '', names: [], keys: [], values: [],
    encoding, contentLength: ABSENT, error: undefined, garbage: false, oversize: false,
  };
  let pos = 0;
  let first = true;
  const n = text.length;
  while (pos < n) {
    let lf = text.indexOf('\n', pos);
    if (lf < 0) lf = n;
    let lineEnd = lf;
    if (lineEnd > pos && text.charCodeAt(lineEnd - 1) === 13) lineEnd--;
    const line = text.slice(pos, lineEnd);
    pos = lf + 1;
    if (line.length > limits.maxLineLength) {
      head.oversize = true;
      head.error ??= [513, 'header line too long'];
      break;
    }
    if (first) {
      first = false;
      parseStartLine(line, head);
      if (head.garbage) return head;
      continue;
    }
    if (line.length === 0) continue;
    if (line.indexOf('\r') >= 0) {
      head.error ??= [400, 'bare CR in a header line'];
      continue;
    }
    const c0 = line.charCodeAt(0);
    if (c0 === 0x20 || c0 === 0x09) {
      // RFC 3261 §7.3.1: a line starting with whitespace continues the previous header
      const last = head.values.length - 1;
      if (last < 0) {
        head.error ??= [400, 'continuation line before any header'];
        continue;
      }
      const cont = line.trim();
      const prev = head.values[last]!;
      head.values[last] = prev.length === 0 ? cont : cont.length === 0 ? prev : prev + ' ' + cont;
      continue;
    }
    const colon = line.indexOf(':');
    let nameEnd = colon;
    while (nameEnd > 0 && (line.charCodeAt(nameEnd - 1) === 0x20 || line.charCodeAt(nameEnd - 1) === 0x09)) nameEnd--;
    let validName = nameEnd > 0;
    for (let i = 0; validName && i < nameEnd; i++) validName = isTokenChar(line.charCodeAt(i));
    if (colon < 0 || !validName) {
      head.error ??= [400, 'malformed header line'];
      continue;
    }
    if (head.keys.length >= limits.maxHeaders) {
      head.oversize = true;
      head.error ??= [513, 'too many header fields'];
      break;
    }
    const [key, display] = headerNames(line.slice(0, nameEnd));
    head.names.push(display);
    head.keys.push(key);
    head.values.push(line.slice(colon + 1).trim());
  }
  for (let i = 0; i < head.keys.length; i++) {
    if (head.keys[i] !== 'content-length') continue;
    // RFC 4475 mcl01: several Content-Length values are a framing error; ncl: negative is one too
    if (head.contentLength !== ABSENT) head.contentLength = INVALID;
    else head.contentLength = parseBoundedInt(head.values[i]!, 0x7fffffff) ?? INVALID;
  }
  return head;
}

function partialRequest(head: Head): SipRequest | undefined {
  if (head.response || head.garbage) return undefined;
  const r = new SipRequest(head.method || 'UNKNOWN', head.uri, SipHeaders.fromParsed(head.names, head.keys, head.values));
  r.headerEncoding = head.encoding;
  return r;
}

function fail(head: Head, status: number, reason: string, fatal: boolean): SipParseError {
  const kind = head.garbage ? 'garbage' : head.response ? 'response' : 'request';
  return new SipParseError(head.response ? 0 : status, reason, partialRequest(head), fatal, kind);
}

/** Header fields that must appear exactly once (RFC 3261 §8.1.1, §20; RFC 4475 multi01, insuf). */
const SINGLE_REQUIRED = ['call-id', 'from', 'to', 'cseq'] as const;

/**
 * Checks the headers the transaction layer relies on, and builds the message. Other headers stay
 * unparsed until read.
 */
function finish(head: Head, body: Buffer): SipMessage | SipParseError {
  if (head.error) return fail(head, head.error[0], head.error[1], head.oversize || head.garbage);
  const { keys, values } = head;
  let via = -1;
  const seen = [-1, -1, -1, -1];
  let maxForwards = -1;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (k === 'via') {
      if (via < 0) via = i;
      continue;
    }
    for (let j = 0; j < 4; j++) {
      if (k === SINGLE_REQUIRED[j]) {
        if (seen[j] !== -1) return fail(head, 400, `more than one ${SINGLE_REQUIRED[j]} header`, false);
        seen[j] = i;
      }
    }
    if (k === 'max-forwards') {
      if (maxForwards >= 0) return fail(head, 400, 'more than one max-forwards header', false);
      maxForwards = i;
    }
  }
  if (via < 0) return fail(head, 400, 'missing Via', false);
  for (let j = 0; j < 4; j++) if (seen[j] === -1) return fail(head, 400, `missing ${SINGLE_REQUIRED[j]} header`, false);
  const headers = SipHeaders.fromParsed(head.names, head.keys, head.values);
  const topVia = headers.memo('via', () => parseVia(headers.get('via')!));
  if (!topVia) return fail(head, 400, 'malformed Via', false);
  const cseq = headers.memo('cseq', () => parseCSeq(values[seen[3]!]!));
  if (!cseq) return fail(head, 400, 'malformed CSeq', false);
  if (!headers.memo('from', () => parseNameAddr(values[seen[1]!]!))) return fail(head, 400, 'malformed From', false);
  if (!headers.memo('to', () => parseNameAddr(values[seen[2]!]!))) return fail(head, 400, 'malformed To', false);
  if (values[seen[0]!]!.length === 0) return fail(head, 400, 'empty Call-ID', false);
  if (head.response) {
    const res = new SipResponse(head.status, head.reason, headers, body);
    res.headerEncoding = head.encoding;
    return res;
  }
  if (cseq.method !== head.method) {
    // RFC 4475 mismatch02: 501 preferred when the method is unknown anyway
    return fail(head, KNOWN_METHODS.has(head.method) ? 400 : 501, 'CSeq method does not match the Request-Line', false);
  }
  if (maxForwards >= 0 && parseBoundedInt(values[maxForwards]!, 255) === null) return fail(head, 400, 'invalid Max-Forwards', false);
  const req = new SipRequest(head.method, head.uri, headers, body);
  req.headerEncoding = head.encoding;
  try {
    req.requestUri;
  } catch {
    return fail(head, 400, 'malformed Request-URI', false); // RFC 4475 ltgtruri
  }
  for (const c of headers.getAll('contact')) if (!parseContact(c)) return fail(head, 400, 'malformed Contact', false);
  return req;
}

function skipCrlf(buf: Buffer, i: number, end: number): number {
  while (i < end && (buf[i] === 13 || buf[i] === 10)) i++;
  return i;
}

/**
 * Parses one UDP datagram (RFC 3261 §18.3): the body is framed by Content-Length, octets past it
 * are ignored (RFC 4475 dblreq), a Content-Length larger than the datagram is a 400 (clerr), and
 * without Content-Length the body is the rest of the datagram (inv2543). Returns null for a
 * keep-alive made only of CR/LF.
 *
 * @example
 * const out = parseDatagram(datagram);
 * if (out instanceof SipParseError) { ... answer out.status if non-zero ... }
 * else if (out) { ... out.kind === 'request' ... }
 */
export function parseDatagram(buf: Buffer, limits: ParserLimits = DEFAULT_PARSER_LIMITS): ParseOutcome {
  const start = skipCrlf(buf, 0, buf.length);
  if (start === buf.length) return null;
  let bodyStart = findHeaderEnd(buf, start, buf.length, limits.maxLineLength);
  // RFC 4475 baddn: the end of the datagram also ends a header section lacking its empty line
  if (bodyStart === -1) bodyStart = buf.length;
  const headEnd = bodyStart === -2 ? buf.length : bodyStart;
  const head = parseHead(buf, start, headEnd, limits);
  if (bodyStart === -2 && !head.error) head.error = [513, 'header line too long'];
  if (buf.length - start > limits.maxMessageSize && !head.garbage) return fail(head, 513, 'message too large', true);
  if (head.garbage || head.error) return finish(head, Buffer.alloc(0));
  const cl = head.contentLength;
  if (cl === INVALID) return fail(head, 400, 'invalid Content-Length', true);
  let body: Buffer;
  if (cl === ABSENT) body = buf.subarray(bodyStart);
  else if (bodyStart + cl > buf.length) return fail(head, 400, 'Content-Length larger than the message', true);
  else body = buf.subarray(bodyStart, bodyStart + cl);
  return finish(head, body);
}

/** RFC 5626 §4.4.1 keep-alive ping (CRLF CRLF) seen between messages on a stream. */
export const KEEPALIVE_PING = 'ping';

const EMPTY = Buffer.alloc(0);

/**
 * Content-Length framing for TCP and TLS (RFC 3261 §18.3): push chunks as they arrive, then call
 * {@link SipStreamParser.next} until it returns null. CRLFs between messages are skipped (a
 * CRLF CRLF is reported as a keep-alive ping). After a fatal error the stream is unusable and the
 * connection must be closed.
 *
 * @example
 * const p = new SipStreamParser();
 * socket.on('data', (chunk) => {
 *   p.push(chunk);
 *   for (let m = p.next(); m !== null; m = p.next()) handle(m);
 *   if (p.failed) socket.destroy();
 * });
 */
export class SipStreamParser {
  private buf: Buffer = EMPTY;
  private start = 0;
  private end = 0;
  /** buf is ours (allocated here), so it can be appended into. */
  private owned = false;
  /** Where the header-end search resumes. */
  private scan = 0;
  private head: Head | null = null;
  private bodyStart = 0;
  private bodyLength = 0;
  private dead = false;

  constructor(private readonly limits: ParserLimits = DEFAULT_PARSER_LIMITS) {}

  /** Octets of an incomplete message held (0 between messages). */
  get buffered(): number {
    return this.end - this.start;
  }

  /** True once framing is lost. */
  get failed(): boolean {
    return this.dead;
  }

  push(chunk: Buffer): void {
    if (this.dead || chunk.length === 0) return;
    if (this.start === this.end && this.head === null) {
      this.buf = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.scan = 0;
      this.owned = false;
      return;
    }
    const len = this.end - this.start;
    if (this.owned && this.end + chunk.length <= this.buf.length) {
      chunk.copy(this.buf, this.end);
      this.end += chunk.length;
      return;
    }
    // grow (always into a new buffer: bodies already handed out may point into the old one)
    const next = Buffer.allocUnsafe(Math.max(4096, 2 * (len + chunk.length)));
    this.buf.copy(next, 0, this.start, this.end);
    chunk.copy(next, len);
    const shift = this.start;
    this.scan -= shift;
    this.bodyStart -= shift;
    this.buf = next;
    this.start = 0;
    this.end = len + chunk.length;
    this.owned = true;
  }

  /** The next complete message, refusal or ping; null when more bytes are needed (or after a fatal error). */
  next(): ParseOutcome | typeof KEEPALIVE_PING {
    if (this.dead) return null;
    const { buf, limits } = this;
    if (this.head === null) {
      while (this.start < this.end && (buf[this.start] === 13 || buf[this.start] === 10)) {
        if (this.end - this.start >= 4 && buf[this.start] === 13 && buf[this.start + 1] === 10 && buf[this.start + 2] === 13 && buf[this.start + 3] === 10) {
          this.start += 4;
          this.release();
          return KEEPALIVE_PING;
        }
        this.start++;
      }
      if (this.start === this.end) {
        this.release();
        return null;
      }
      const from = Math.max(this.start, this.scan);
      const bodyStart = findHeaderEnd(buf, from, this.end, limits.maxLineLength);
      if (bodyStart === -2) return this.die(new SipParseError(513, 'header line too long', undefined, true, 'garbage'));
      if (bodyStart === -1) {
        if (this.end - this.start > limits.maxMessageSize) return this.die(new SipParseError(513, 'message too large', undefined, true, 'garbage'));
        // resume at the last LF: the empty line that ends the section may follow it
        const lastLf = buf.lastIndexOf(10, this.end - 1);
        this.scan = lastLf >= this.start ? lastLf : this.start;
        return null;
      }
      const headEnd = bodyStart;
      const head = parseHead(buf, this.start, headEnd, limits);
      if (head.garbage) return this.die(fail(head, 0, 'not a SIP start line', true));
      if (head.oversize) return this.die(fail(head, 513, head.error?.[1] ?? 'message too large', true));
      if (head.contentLength === INVALID) return this.die(fail(head, 400, 'invalid Content-Length', true));
      // RFC 3261 §18.3: Content-Length is mandatory on streams; without it the body is empty
      const cl = head.contentLength === ABSENT ? 0 : head.contentLength;
      if (bodyStart - this.start + cl > limits.maxMessageSize) return this.die(fail(head, 513, 'message too large', true));
      this.head = head;
      this.bodyStart = bodyStart;
      this.bodyLength = cl;
    }
    if (this.end - this.bodyStart < this.bodyLength) return null;
    const head = this.head;
    const body = this.bodyLength === 0 ? EMPTY : buf.subarray(this.bodyStart, this.bodyStart + this.bodyLength);
    this.start = this.bodyStart + this.bodyLength;
    this.scan = this.start;
    this.head = null;
    this.release();
    return finish(head, body);
  }

  private release(): void {
    if (this.start === this.end && this.head === null) {
      this.buf = EMPTY;
      this.start = this.end = this.scan = 0;
      this.owned = false;
    }
  }

  private die(err: SipParseError): SipParseError {
    this.dead = true;
    this.buf = EMPTY;
    this.start = this.end = 0;
    this.head = null;
    return err;
  }
}
