import { HandoffApiError } from './errors.js';
import { caseSafeSuffix, toId15 } from './ids.js';

/** The UUI's JSON fields (SPEC §6), plus flow parameters of your own in `extra`. */
export interface UuiInput {
  /** The org ID, 15 chars (an 18-char ID is shortened after its suffix is checked); optional when the token names the org. */
  orgId?: string | undefined;
  /** The org's scrt2Domain, at most 128 bytes. */
  scrt2Domain: string;
  /** A bearer token of the org (see {@link HandoffClient.getToken} or {@link mintToken}). */
  token: string;
  /** The partner's VoiceCall (VC1), 18 chars (a 15-char ID is extended with its suffix). */
  callId?: string | undefined;
  /** Passed to the channel's flow as `transactionId`. */
  transactionId?: string | undefined;
  /** More flow parameters, written after the standard keys; they may not reuse a standard key. */
  extra?: Readonly<Record<string, string | number | boolean | null>> | undefined;
}

export interface UuiOptions {
  /** `hex` (default): upper-case hex of the UTF-8 bytes plus `;encoding=hex`; `json`: the JSON text itself. */
  encoding?: 'hex' | 'json';
  /** Largest decoded text, in characters, the receiving service accepts; default 1024, the service's default. */
  maxDecodedLength?: number;
}

export interface Uui {
  /** The `User-to-User` header value to send. */
  headerValue: string;
  /** The JSON text the service decodes. */
  decoded: string;
  /** Characters (Unicode code points) of `decoded`: what the limit applies to. */
  decodedLength: number;
  /** Bytes of `headerValue` on the wire (hex: twice the UTF-8 bytes of `decoded`, plus `;encoding=hex`). */
  encodedLength: number;
}

const STANDARD_KEYS = ['orgId', 'scrt2Domain', 'token', 'callId', 'transactionId'] as const;
const MAX_DOMAIN_BYTES = 128;
const DEFAULT_MAX_DECODED = 1024;

/**
 * Builds the `User-to-User` header of a SIP transfer to a Handoff channel (path B). It refuses, with
 * a {@link HandoffApiError} of code `INVALID_UUI` (`details.field` names the field), whatever the
 * service would refuse: a decoded text over the limit, an org ID that is not a 15-char (or valid
 * 18-char) `00D` ID, a scrt2Domain over 128 bytes, a callId that is not a VoiceCall ID, no token.
 * The decoded text is limited in characters (a multi-byte character counts once), the
 * scrt2Domain in UTF-8 bytes, as the service counts them.
 *
 * @example
 * const uui = buildUui({
 *   orgId: '00Dxx0000001DMO',
 *   scrt2Domain: 'demo.my.example.com',
 *   token: await client.getToken(),
 *   callId: voiceCallId,
 *   transactionId: 'order-2026-0122-5489',
 * });
 * sipHeaders['User-to-User'] = uui.headerValue; // '7B226F72...;encoding=hex'
 */
export function buildUui(input: UuiInput, options: UuiOptions = {}): Uui {
  const maxDecoded = options.maxDecodedLength ?? DEFAULT_MAX_DECODED;
  if (!Number.isInteger(maxDecoded) || maxDecoded < 1) throw new RangeError('maxDecodedLength must be a positive integer');
  const encoding = options.encoding ?? 'hex';
  if (encoding !== 'hex' && encoding !== 'json') throw new RangeError("encoding must be 'hex' or 'json'");

  const fields: Record<string, unknown> = {};
  if (input.orgId !== undefined) {
    fields.orgId = toId15(input.orgId, '00D') ?? invalid('orgId', 'must be a 15-char org ID (00D...), or its 18-char form with a valid suffix');
  }
  if (typeof input.scrt2Domain !== 'string' || input.scrt2Domain.length === 0) invalid('scrt2Domain', 'is required');
  if (Buffer.byteLength(input.scrt2Domain) > MAX_DOMAIN_BYTES) invalid('scrt2Domain', `must be at most ${MAX_DOMAIN_BYTES} bytes`);
  fields.scrt2Domain = input.scrt2Domain;
  if (typeof input.token !== 'string' || input.token.length === 0) invalid('token', 'is required');
  fields.token = input.token;
  if (input.callId !== undefined) {
    const id15 = toId15(input.callId, '0LQ') ?? invalid('callId', 'must be an 18-char VoiceCall ID (0LQ...), or its 15-char form');
    fields.callId = id15 + caseSafeSuffix(id15);
  }
  if (input.transactionId !== undefined) fields.transactionId = input.transactionId;
  for (const [key, value] of Object.entries(input.extra ?? {})) {
    if ((STANDARD_KEYS as readonly string[]).includes(key)) invalid(`extra.${key}`, 'may not replace a standard UUI field');
    if (key === '__proto__') invalid(`extra.${key}`, 'is not allowed');
    fields[key] = value;
  }

  const decoded = JSON.stringify(fields);
  const decodedLength = [...decoded].length;
  if (decodedLength > maxDecoded) invalid('uui', `decoded text is ${decodedLength} characters, more than ${maxDecoded}`);
  const headerValue = encoding === 'json' ? decoded : `${Buffer.from(decoded).toString('hex').toUpperCase()};encoding=hex`;
  return { headerValue, decoded, decodedLength, encodedLength: Buffer.byteLength(headerValue) };
}

function invalid(field: string, message: string): never {
  throw new HandoffApiError({ status: 0, errorCode: 'INVALID_UUI', message: `${field}: ${message}`, details: { field } });
}
