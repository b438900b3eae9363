/**
 * The SIP message model: requests and responses with ordered headers, a binary body, and lazily
 * parsed, memoised accessors for the headers the stack interprets.
 */
import { SipHeaders, detached, headerKey, isToken, sanitizeHeaderText } from './headers.js';
import {
  parseBoundedInt,
  parseCSeq,
  parseContact,
  parseNameAddr,
  parseVia,
  type CSeq,
  type ContactValue,
  type NameAddr,
  type Via,
} from './header-values.js';
import { newTag } from './ids.js';
import { parseUri, type Uri } from './uri.js';

/** RFC 3261 transports this stack listens on. */
export type TransportName = 'udp' | 'tcp' | 'tls';

/** Methods of RFC 3261 and its common extensions; anything else is an extension method (501). */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'INVITE', 'ACK', 'OPTIONS', 'BYE', 'CANCEL', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY',
  'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE',
]);

const EMPTY = Buffer.alloc(0);

abstract class SipMessageBase {
  /** Header fields in wire order. */
  headers: SipHeaders;
  /** Body octets, exactly as framed by Content-Length (binary-safe). */
  body: Buffer;
  /**
   * How the header text maps to octets: 'utf8' (RFC 3261 TEXT-UTF8), or 'latin1' when a peer sent
   * a header section that is not valid UTF-8, so that relaying it stays byte-exact.
   */
  headerEncoding: 'utf8' | 'latin1' = 'utf8';

  constructor(headers: SipHeaders, body: Buffer) {
    this.headers = headers;
    this.body = body;
  }

  /** Call-ID ('' when absent, which only unvalidated messages can be). */
  get callId(): string {
    return this.headers.get('call-id') ?? '';
  }

  /** Parsed CSeq; throws on a message without a valid one (the parser never delivers such). */
  get cseq(): CSeq {
    return this.required('cseq', parseCSeq);
  }

  /** Parsed From. */
  get from(): NameAddr {
    return this.required('from', parseNameAddr);
  }

  /** Parsed To. */
  get to(): NameAddr {
    return this.required('to', parseNameAddr);
  }

  /** The topmost Via. */
  get via(): Via {
    return this.required('via', parseVia);
  }

  /** Every Via value, topmost first (values that do not parse are skipped). */
  get vias(): readonly Via[] {
    return this.headers.memo('via*', () => {
      const out: Via[] = [];
      for (const v of this.headers.getAll('via')) {
        const p = parseVia(v);
        if (p) out.push(p);
      }
      return out;
    });
  }

  /** Max-Forwards, or undefined when absent (RFC 2543 peers) or out of range. */
  get maxForwards(): number | undefined {
    return this.headers.memo('max-forwards', () => {
      const v = this.headers.get('max-forwards');
      return v === undefined ? undefined : (parseBoundedInt(v, 255) ?? undefined);
    });
  }

  /** Contact values (empty when absent; malformed values skipped). */
  get contacts(): readonly ContactValue[] {
    return this.headers.memo('contact*', () => {
      const out: ContactValue[] = [];
      for (const v of this.headers.getAll('contact')) {
        const c = parseContact(v);
        if (c) out.push(c);
      }
      return out;
    });
  }

  /** Option tags of a list header such as Require, Proxy-Require or Supported. */
  optionTags(name: 'Require' | 'Proxy-Require' | 'Supported' | 'Unsupported'): string[] {
    return this.headers.getAll(name).map((t) => t.trim()).filter((t) => t.length > 0);
  }

  private required<T>(key: string, parse: (s: string) => T | null): T {
    const v = this.headers.memo(key, () => {
      const raw = this.headers.get(key);
      return raw === undefined ? null : parse(raw);
    });
    if (v === null) throw new TypeError(`SIP message has no valid ${key} header`);
    return v;
  }
}

/**
 * A SIP request.
 *
 * @example
 * const req = createRequest({ method: 'OPTIONS', uri: 'sip:agent@10.0.0.5', from: '<sip:handoff@example.com>',
 *   to: '<sip:agent@10.0.0.5>', via: formatVia({ transport: 'UDP', host: '10.0.0.1', port: 5060, branch: newBranch() }) });
 * req.requestUri.kind; // 'sip'
 */
export class SipRequest extends SipMessageBase {
  readonly kind = 'request' as const;
  method: string;
  private uriText: string;
  private uriParsed: Uri | null | undefined;

  constructor(method: string, uri: string, headers = new SipHeaders(), body: Buffer = EMPTY) {
    super(headers, body);
    this.method = method;
    this.uriText = uri;
  }

  /** The Request-URI as written. Setting it (e.g. a proxy retargeting) resets the parsed form. */
  get uri(): string {
    return this.uriText;
  }
  set uri(v: string) {
    this.uriText = sanitizeHeaderText(v);
    this.uriParsed = undefined;
  }

  /** The parsed Request-URI; throws if it does not parse (the parser never delivers such). */
  get requestUri(): Uri {
    if (this.uriParsed === undefined) this.uriParsed = parseUri(this.uriText);
    if (this.uriParsed === null) throw new TypeError('SIP request has an invalid Request-URI');
    return this.uriParsed;
  }

  /** A deep copy of the headers sharing the (immutable) body, e.g. to forward. */
  clone(): SipRequest {
    const r = new SipRequest(this.method, this.uriText, this.headers.clone(), this.body);
    r.headerEncoding = this.headerEncoding;
    return r;
  }

  /**
   * What identifies the request and its dialog (method, Request-URI, Via, From, To, Call-ID, CSeq,
   * Contact, Route, Record-Route) in strings of its own, without body: what a transaction that only
   * absorbs retransmissions keeps, so that the rest of the message and the datagram text its values
   * were sliced from can be collected.
   */
  identity(): SipRequest {
    const r = new SipRequest(this.method, detached(this.uriText), this.headers.pick(IDENTITY_KEYS));
    r.headerEncoding = this.headerEncoding;
    return r;
  }
}

const IDENTITY_KEYS: ReadonlySet<string> = new Set(['Via', 'From', 'To', 'Call-ID', 'CSeq', 'Contact', 'Route', 'Record-Route'].map(headerKey));

/** A SIP response. */
export class SipResponse extends SipMessageBase {
  readonly kind = 'response' as const;
  status: number;
  reason: string;

  constructor(status: number, reason: string, headers = new SipHeaders(), body: Buffer = EMPTY) {
    super(headers, body);
    this.status = status;
    this.reason = reason;
  }

  clone(): SipResponse {
    const r = new SipResponse(this.status, this.reason, this.headers.clone(), this.body);
    r.headerEncoding = this.headerEncoding;
    return r;
  }
}

export type SipMessage = SipRequest | SipResponse;

const REASONS: Record<number, string> = {
  100: 'Trying', 180: 'Ringing', 181: 'Call Is Being Forwarded', 182: 'Queued', 183: 'Session Progress',
  200: 'OK', 202: 'Accepted', 300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Moved Temporarily',
  305: 'Use Proxy', 380: 'Alternative Service', 400: 'Bad Request', 401: 'Unauthorized',
  403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable',
  407: 'Proxy Authentication Required', 408: 'Request Timeout', 410: 'Gone', 413: 'Request Entity Too Large',
  414: 'Request-URI Too Long', 415: 'Unsupported Media Type', 416: 'Unsupported URI Scheme',
  420: 'Bad Extension', 421: 'Extension Required', 423: 'Interval Too Brief', 480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected', 483: 'Too Many Hops', 484: 'Address Incomplete',
  485: 'Ambiguous', 486: 'Busy Here', 487: 'Request Terminated', 488: 'Not Acceptable Here',
  491: 'Request Pending', 493: 'Undecipherable', 500: 'Server Internal Error', 501: 'Not Implemented',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Server Time-out', 505: 'Version Not Supported',
  513: 'Message Too Large', 600: 'Busy Everywhere', 603: 'Decline', 604: 'Does Not Exist Anywhere',
  606: 'Not Acceptable',
};

/** The RFC 3261 §21 reason phrase of a status code (a generic one for unlisted codes). */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? REASONS[Math.floor(status / 100) * 100] ?? 'Unknown';
}

/** Extra content of a response or request being built. */
export interface MessageExtras {
  /** Additional header lines, in order (values are sanitised: CR/LF/NUL removed). */
  headers?: Iterable<readonly [string, string]>;
  body?: Buffer | string;
  /** Content-Type of the body (required with a body). */
  contentType?: string;
}

function addExtras(h: SipHeaders, extras: MessageExtras | undefined): Buffer {
  if (!extras) return EMPTY;
  for (const [name, value] of extras.headers ?? []) h.append(name, value);
  if (extras.body === undefined || extras.body.length === 0) return EMPTY;
  if (extras.contentType) h.set('Content-Type', extras.contentType);
  return typeof extras.body === 'string' ? Buffer.from(extras.body, 'utf8') : extras.body;
}

export interface ResponseOptions extends MessageExtras {
  /** Reason phrase (sanitised); defaults to the RFC 3261 phrase. */
  reason?: string;
  /**
   * To tag to add when the request's To has none (§8.2.6.2). Omitted: a new tag for any status
   * other than 100; `null`: add none.
   */
  toTag?: string | null;
}

/**
 * Builds a response to `req` per RFC 3261 §8.2.6: Via (all values, in order), From, To (plus a
 * tag), Call-ID and CSeq copied; Timestamp echoed in a 100 (§8.2.6.1). Works on partially valid
 * requests too (copies what exists), so it can answer a malformed request with a 400.
 *
 * @example
 * const res = createResponse(req, 486, { reason: 'Busy Here', toTag: tx.toTag });
 */
export function createResponse(req: SipRequest, status: number, opts: ResponseOptions = {}): SipResponse {
  const src = req.headers;
  const h = new SipHeaders();
  for (const v of src.getLines('via')) h.append('Via', v);
  const to = src.get('to');
  const from = src.get('from');
  const callId = src.get('call-id');
  const cseq = src.get('cseq');
  if (from !== undefined) h.append('From', from);
  if (to !== undefined) {
    let toValue = to;
    if (status > 100 && opts.toTag !== null) {
      const parsed = src.memo('to', () => parseNameAddr(to));
      if (parsed && parsed.tag === undefined) toValue = `${to};tag=${opts.toTag ?? newTag()}`;
    }
    h.append('To', toValue);
  }
  if (callId !== undefined) h.append('Call-ID', callId);
  if (cseq !== undefined) h.append('CSeq', cseq);
  if (status === 100) {
    const ts = src.get('timestamp');
    if (ts !== undefined) h.append('Timestamp', ts);
  }
  const body = addExtras(h, opts);
  return new SipResponse(status, sanitizeHeaderText(opts.reason ?? reasonPhrase(status)), h, body);
}

export interface RequestInit extends MessageExtras {
  method: string;
  uri: string;
  /** From value (name-addr), with its tag. */
  from: string;
  to: string;
  callId: string;
  cseq: number;
  /** Topmost Via value; omit to let the transaction layer add one when sending. */
  via?: string;
  maxForwards?: number;
  contact?: string;
}

/**
 * Builds a request with the mandatory headers of RFC 3261 §8.1.1.
 *
 * @example
 * const invite = createRequest({ method: 'INVITE', uri: 'sip:agent@10.0.0.5:5080', from: `<sip:handoff@example.com>;tag=${newTag()}`,
 *   to: '<sip:agent@10.0.0.5>', callId: newCallId('example.com'), cseq: 1, contact: '<sip:handoff@10.0.0.1:5060>',
 *   body: sdp, contentType: 'application/sdp' });
 */
export function createRequest(init: RequestInit): SipRequest {
  if (!isToken(init.method)) throw new TypeError(`invalid SIP method ${JSON.stringify(init.method)}`);
  const h = new SipHeaders();
  if (init.via !== undefined) h.append('Via', init.via);
  h.append('Max-Forwards', String(init.maxForwards ?? 70));
  h.append('From', init.from);
  h.append('To', init.to);
  h.append('Call-ID', init.callId);
  h.append('CSeq', `${init.cseq} ${init.method}`);
  if (init.contact !== undefined) h.append('Contact', init.contact);
  const body = addExtras(h, init);
  return new SipRequest(init.method, init.uri, h, body);
}

/**
 * The ACK of a non-2xx final response to `invite` (RFC 3261 §17.1.1.3): same Request-URI,
 * Call-ID, From, topmost Via and Route set; To from the response; CSeq method ACK.
 */
export function createAckForFailure(invite: SipRequest, response: SipResponse): SipRequest {
  const h = new SipHeaders();
  const topVia = invite.headers.get('via');
  if (topVia !== undefined) h.append('Via', topVia);
  h.append('Max-Forwards', '70');
  h.append('From', invite.headers.get('from') ?? '');
  h.append('To', response.headers.get('to') ?? invite.headers.get('to') ?? '');
  h.append('Call-ID', invite.callId);
  h.append('CSeq', `${invite.cseq.seq} ACK`);
  for (const r of invite.headers.getLines('route')) h.append('Route', r);
  return new SipRequest('ACK', invite.uri, h);
}

/**
 * The CANCEL of a pending `invite` (RFC 3261 §9.1): same Request-URI, Call-ID, To, From, CSeq
 * number, topmost Via (so it matches the same server transaction) and Route set.
 */
export function createCancel(invite: SipRequest, extras?: MessageExtras): SipRequest {
  const h = new SipHeaders();
  const topVia = invite.headers.get('via');
  if (topVia !== undefined) h.append('Via', topVia);
  h.append('Max-Forwards', '70');
  h.append('From', invite.headers.get('from') ?? '');
  h.append('To', invite.headers.get('to') ?? '');
  h.append('Call-ID', invite.callId);
  h.append('CSeq', `${invite.cseq.seq} CANCEL`);
  for (const r of invite.headers.getLines('route')) h.append('Route', r);
  const body = addExtras(h, extras);
  return new SipRequest('CANCEL', invite.uri, h, body);
}
