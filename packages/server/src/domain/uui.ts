import { HandoffError } from './errors.js';
import { normalizeSfId, ORG_PREFIX } from './ids.js';

/** Default bound of the decoded UUI text (SPEC §6); the header value itself is bounded by the header-size limit. */
export const DEFAULT_MAX_UUI_DECODED = 1024;
/** scrt2Domain is at most 128 bytes (source document). */
export const MAX_SCRT2_DOMAIN_BYTES = 128;
const MAX_JSON_DEPTH = 8;

/** The hand-off context a partner put in the UUI. IDs are canonical 15-char forms. */
export interface UuiContext {
  orgId: string | null;
  scrt2Domain: string;
  token: string;
  callId: string | null;
  transactionId: string | null;
  /** Any other fields, passed to the flow as they came. */
  extra: Record<string, unknown>;
}

function bad(message: string): never {
  throw new HandoffError('INVALID_UUI', `User-to-User: ${message}`);
}

/** Splits `data;param=value;...` into the data and lower-cased parameters. */
function splitParams(value: string): { data: string; params: Map<string, string> } {
  const v = value.trim();
  // Raw JSON may itself hold ';', so its parameters start after the closing brace.
  const end = v.startsWith('{') ? v.lastIndexOf('}') + 1 : v.indexOf(';') === -1 ? v.length : v.indexOf(';');
  if (end <= 0) bad('the value is empty or its JSON is not closed');
  const data = v.slice(0, end).trim();
  const params = new Map<string, string>();
  const rest = v.slice(end).trim();
  if (rest.length > 0) {
    if (!rest.startsWith(';')) bad('unexpected text after the data');
    for (const part of rest.slice(1).split(';')) {
      const [k, val = ''] = part.split('=', 2).map((s) => s.trim());
      if (!k) bad('empty parameter');
      const key = k.toLowerCase();
      if (params.has(key)) bad(`parameter ${key} given twice`);
      params.set(key, val.replace(/^"(.*)"$/, '$1'));
    }
  }
  return { data, params };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes one UUI header value (RFC 7433) to its text: `encoding=hex` (also when `encoding` is
 * absent) must be even-length hex; a leading protocol-discriminator octet 00 or 04 before `{` is
 * stripped unless a `pd` parameter is given; raw JSON (a value starting with `{`) is taken as it is.
 * The text must be strict UTF-8 and at most `maxDecoded` characters.
 *
 * @example
 * decodeUuiValue('7B7D;encoding=hex'); // '{}'
 */
export function decodeUuiValue(value: string, maxDecoded = DEFAULT_MAX_UUI_DECODED): string {
  const { data, params } = splitParams(value);
  const encoding = params.get('encoding')?.toLowerCase();
  if (data.startsWith('{')) {
    if (encoding !== undefined) bad('JSON data cannot carry an encoding parameter');
    if ([...data].length > maxDecoded) bad(`the decoded text is longer than ${maxDecoded} characters`);
    return data;
  }
  if (encoding !== undefined && encoding !== 'hex') bad(`unsupported encoding ${encoding}`);
  if (data.length % 2 !== 0) bad('hex data has an odd length');
  if (!/^[0-9A-Fa-f]*$/.test(data)) bad('hex data holds a non-hex character');
  // Checked before decoding: a hex text twice the limit (plus a PD octet) cannot fit.
  if (data.length > (maxDecoded + 1) * 2 * 4) bad(`the decoded text is longer than ${maxDecoded} characters`);
  let bytes = Buffer.from(data, 'hex');
  if (!params.has('pd') && bytes.length >= 2 && (bytes[0] === 0x00 || bytes[0] === 0x04) && bytes[1] === 0x7b) bytes = bytes.subarray(1);
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    bad('the decoded data is not valid UTF-8');
  }
  if ([...text].length > maxDecoded) bad(`the decoded text is longer than ${maxDecoded} characters`);
  return text;
}

/**
 * Strict JSON parsing for UUI: JSON.parse semantics, plus duplicate keys, `__proto__`, and depth
 * over 8 refused (a duplicate `token` could otherwise smuggle a second credential past a check).
 */
export function parseStrictJson(text: string): unknown {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const fail = (what: string): never => bad(`JSON ${what} at offset ${i}`);
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('string is not closed');
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail('string is malformed');
    }
  };
  const value = (depth: number): unknown => {
    if (depth > MAX_JSON_DEPTH) fail('is nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      const keys = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expects a key');
        const key = str();
        if (key === '__proto__') fail('key __proto__ is not allowed');
        if (keys.has(key)) fail(`key "${key.slice(0, 32)}" appears twice`);
        keys.add(key);
        ws();
        if (text[i] !== ':') fail('expects ":"');
        i++;
        obj[key] = value(depth + 1);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail('expects "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail('expects "," or "]"');
      }
    }
    if (c === '"') return str();
    const m = /^(-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 64));
    if (!m) return fail('has an unexpected character');
    i += m[0].length;
    return JSON.parse(m[0]);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('has trailing text');
  return v;
}

/**
 * The SPEC §6 field rules over a decoded UUI text.
 *
 * @example
 * parseUuiContext('{"scrt2Domain":"acme.my.example.com","token":"eyJ..."}');
 */
export function parseUuiContext(text: string): UuiContext {
  const doc = parseStrictJson(text);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) bad('the data is not a JSON object');
  const { orgId, scrt2Domain, token, callId, transactionId, ...extra } = doc as Record<string, unknown>;
  const optionalString = (name: string, v: unknown): string | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string') bad(`${name} must be a string`);
    return v;
  };
  if (typeof token !== 'string' || token.length === 0) bad('token is required');
  if (typeof scrt2Domain !== 'string' || scrt2Domain.length === 0) bad('scrt2Domain is required');
  if (Buffer.byteLength(scrt2Domain) > MAX_SCRT2_DOMAIN_BYTES) bad(`scrt2Domain is longer than ${MAX_SCRT2_DOMAIN_BYTES} bytes`);
  const org = optionalString('orgId', orgId);
  const org15 = org === null ? null : normalizeSfId(org, ORG_PREFIX);
  if (org !== null && org15 === null) bad('orgId is not a valid org ID');
  const call = optionalString('callId', callId);
  const call15 = call === null ? null : normalizeSfId(call);
  if (call !== null && call15 === null) bad('callId is not a valid 15- or 18-character record ID');
  const tx = transactionId === undefined || transactionId === null ? null : typeof transactionId === 'number' ? String(transactionId) : optionalString('transactionId', transactionId);
  return { orgId: org15, scrt2Domain, token, callId: call15, transactionId: tx, extra };
}

/**
 * Encodes a context as a User-to-User header value: hex of the UTF-8 JSON with `;encoding=hex`
 * (RFC 7433), or the JSON itself.
 *
 * @example
 * encodeUui({ scrt2Domain: 'a.example.com', token: 't' }); // '7B22...7D;encoding=hex'
 */
export function encodeUui(fields: Record<string, unknown>, encoding: 'hex' | 'json' = 'hex'): string {
  const json = JSON.stringify(fields);
  return encoding === 'json' ? json : `${Buffer.from(json, 'utf8').toString('hex').toUpperCase()};encoding=hex`;
}
