import type { Clock } from '../domain/clock.js';
import { isE164 } from '../domain/e164.js';
import { HandoffError } from '../domain/errors.js';
import { newVoiceCallId, normalizeSfId, toId18, VOICE_CALL_PREFIX } from '../domain/ids.js';
import type { Store, VoiceCallInput } from '../store/store.js';
import type { VoiceCall, VoiceCallPatch } from '../store/types.js';
import type { WebhookService } from './webhooks.js';

export const INITIATION_METHODS = ['Inbound', 'Outbound', 'Transfer', 'Callback'] as const;
const MAX_CALL_ATTRIBUTES = 32 * 1024;
/** Legs GET /voiceCalls/{id} shows by default (the newest); a partner's call rarely has more than a few. */
export const DEFAULT_LEGS = 100;
export const MAX_LEGS = 1000;

/** What a partner sends to create a VoiceCall (already schema-checked for types and lengths). */
export interface CreateVoiceCallInput {
  callCenterApiName?: string | undefined;
  vendorCallKey: string;
  to: string;
  from: string;
  initiationMethod?: string | undefined;
  parentVoiceCallId?: string | undefined;
  startTime?: string | undefined;
  participants?: unknown[] | undefined;
  callAttributes?: string | Record<string, unknown> | undefined;
  callOrigin?: string | undefined;
  queue?: string | undefined;
  callSubtype?: string | undefined;
}

export interface UpdateVoiceCallInput {
  to?: string;
  from?: string;
  startTime?: string;
  endTime?: string;
  isActiveCall?: boolean;
  disconnectReason?: string;
  callAttributes?: string | Record<string, unknown>;
  callOrigin?: string;
  queue?: string;
  callSubtype?: string;
  participants?: unknown[];
}

function invalid(field: string, message: string): never {
  throw new HandoffError('INVALID_FIELD', `${field}: ${message}`, { details: { field } });
}

/** A phone number as partners send it: E.164, optionally as a `tel:` URI. */
function phone(field: string, value: string): string {
  const n = value.startsWith('tel:') ? value.slice(4) : value;
  if (!isE164(n)) invalid(field, 'must be an E.164 number such as +14155551234');
  return n;
}

function timestamp(field: string, value: string | undefined): string | null {
  if (value === undefined) return null;
  // ISO 8601 with a date, a time and a zone; Date.parse alone accepts too much.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/.test(value) || Number.isNaN(Date.parse(value))) {
    invalid(field, 'must be an ISO 8601 date-time with a zone, such as 2026-05-22T18:45:11Z');
  }
  return value;
}

/** callAttributes arrive as a JSON string (documented) or an object (accepted); both must be a JSON object. */
export function parseCallAttributes(value: string | Record<string, unknown>): Record<string, unknown> {
  let obj: unknown = value;
  if (typeof value === 'string') {
    if (value.length > MAX_CALL_ATTRIBUTES) invalid('callAttributes', `must be at most ${MAX_CALL_ATTRIBUTES} characters`);
    try {
      obj = JSON.parse(value);
    } catch {
      invalid('callAttributes', 'must be a JSON object string, such as {"Department__c":"Support"}');
    }
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) invalid('callAttributes', 'must be a JSON object');
  const text = JSON.stringify(obj);
  if (text.length > MAX_CALL_ATTRIBUTES) invalid('callAttributes', `must be at most ${MAX_CALL_ATTRIBUTES} characters`);
  return obj as Record<string, unknown>;
}

function attributesText(value: string | Record<string, unknown>): string {
  // A valid string is kept verbatim (partners compare what they sent); an object is serialised.
  const obj = parseCallAttributes(value);
  return typeof value === 'string' ? value : JSON.stringify(obj);
}

/** VoiceCall records: create (idempotent by vendorCallKey), update, read. Used by HTTP, SIP and the CLI. */
export class VoiceCallService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    /** Where voiceCall.created goes (none when absent). */
    private readonly webhooks: Pick<WebhookService, 'emit'> | null = null,
  ) {}

  /**
   * `subject` is the token's `sub`: when it names a call center, the partner acts as that call
   * center, so a body naming another one is refused and an absent one defaults to it.
   */
  async create(orgId: string, input: CreateVoiceCallInput, provider: string | null, subject: string | null = null): Promise<{ created: boolean; call: VoiceCall }> {
    const subjectCallCenter = subject === null ? null : await this.store.getCallCenter(orgId, subject);
    if (subjectCallCenter && input.callCenterApiName !== undefined && input.callCenterApiName !== subjectCallCenter.apiName) {
      throw new HandoffError('FORBIDDEN', `callCenterApiName: the token is issued for call center ${subjectCallCenter.apiName}`, { details: { field: 'callCenterApiName' } });
    }
    const callCenterApiName = input.callCenterApiName ?? subjectCallCenter?.apiName;
    const initiationMethod = input.initiationMethod ?? 'Inbound';
    if (!(INITIATION_METHODS as readonly string[]).includes(initiationMethod)) {
      invalid('initiationMethod', `must be one of ${INITIATION_METHODS.join(', ')}`);
    }
    const to = phone('to', input.to);
    const from = phone('from', input.from);
    const startTime = timestamp('startTime', input.startTime);
    const callAttributes = input.callAttributes === undefined ? null : attributesText(input.callAttributes);
    let parent: string | null = null;
    if (initiationMethod === 'Transfer') {
      if (input.parentVoiceCallId === undefined) {
        throw new HandoffError('MISSING_FIELD', 'parentVoiceCallId: is required when initiationMethod is Transfer', { details: { field: 'parentVoiceCallId' } });
      }
    } else if (input.parentVoiceCallId !== undefined) {
      invalid('parentVoiceCallId', 'is only allowed when initiationMethod is Transfer');
    }
    if (input.parentVoiceCallId !== undefined) {
      parent = normalizeSfId(input.parentVoiceCallId, VOICE_CALL_PREFIX);
      if (parent === null) invalid('parentVoiceCallId', 'must be a 15- or 18-character VoiceCall ID');
      if (!(await this.store.getVoiceCall(orgId, parent))) {
        throw new HandoffError('VOICE_CALL_NOT_FOUND', `parentVoiceCallId: no VoiceCall ${input.parentVoiceCallId} in this org`, { details: { field: 'parentVoiceCallId' } });
      }
    }
    if (callCenterApiName !== undefined && !subjectCallCenter && !(await this.store.getCallCenter(orgId, callCenterApiName))) {
      invalid('callCenterApiName', `no call center ${callCenterApiName} in this org`);
    }
    const now = this.clock.now();
    const record: VoiceCallInput = {
      id: newVoiceCallId(),
      orgId,
      vendorCallKey: input.vendorCallKey,
      callCenterApiName: callCenterApiName ?? null,
      toNumber: to,
      fromNumber: from,
      initiationMethod,
      parentVoiceCallId: parent,
      startTime: startTime ?? new Date(now).toISOString(),
      endTime: null,
      isActiveCall: true,
      disconnectReason: null,
      callAttributes,
      callOrigin: input.callOrigin ?? null,
      queue: input.queue ?? null,
      callSubtype: input.callSubtype ?? null,
      participants: input.participants ?? null,
      telephonyProviderName: provider,
      status: 'New',
      handoff: null,
      escalation: null,
    };
    // The event is written in the record's transaction: it exists iff the call was created.
    return this.store.transaction(async (tx) => {
      const result = await tx.insertVoiceCall(record, now);
      if (result.created && this.webhooks) {
        await this.webhooks.emit(tx, { orgId, type: 'voiceCall.created', voiceCallId: result.call.id, data: voiceCallView(result.call) });
      }
      return result;
    });
  }

  /** Finds a call by its 15/18-char ID, else by vendorCallKey; 404 when neither matches in this org. */
  async find(orgId: string, idOrKey: string): Promise<VoiceCall> {
    const id = normalizeSfId(idOrKey, VOICE_CALL_PREFIX);
    const call = (id && (await this.store.getVoiceCall(orgId, id))) || (await this.store.getVoiceCallByVendorKey(orgId, idOrKey));
    if (!call) throw new HandoffError('VOICE_CALL_NOT_FOUND', 'No VoiceCall with that ID or vendorCallKey in this org');
    return call;
  }

  async update(orgId: string, idOrKey: string, input: UpdateVoiceCallInput, provider: string | null): Promise<VoiceCall> {
    const patch: VoiceCallPatch = {};
    if (input.to !== undefined) patch.toNumber = phone('to', input.to);
    if (input.from !== undefined) patch.fromNumber = phone('from', input.from);
    if (input.startTime !== undefined) patch.startTime = timestamp('startTime', input.startTime);
    if (input.endTime !== undefined) patch.endTime = timestamp('endTime', input.endTime);
    if (input.isActiveCall !== undefined) patch.isActiveCall = input.isActiveCall;
    for (const f of ['disconnectReason', 'callOrigin', 'queue', 'callSubtype'] as const) {
      if (input[f] !== undefined) patch[f] = input[f];
    }
    if (input.participants !== undefined) patch.participants = input.participants;
    const attrs = input.callAttributes === undefined ? undefined : parseCallAttributes(input.callAttributes);
    if (Object.keys(patch).length === 0 && attrs === undefined) {
      throw new HandoffError('INVALID_REQUEST', 'The request names no field to update');
    }
    return this.store.transaction(async (tx) => {
      const call = await new VoiceCallService(tx, this.clock).find(orgId, idOrKey);
      // callAttributes are merged field by field, the way a partner sets fields on the record.
      if (attrs !== undefined) patch.callAttributes = JSON.stringify({ ...(call.callAttributes ? JSON.parse(call.callAttributes) : {}), ...attrs });
      if (provider !== null && call.telephonyProviderName === null) patch.telephonyProviderName = provider;
      const updated = await tx.updateVoiceCall(orgId, call.id, patch, this.clock.now());
      if (!updated) throw new HandoffError('VOICE_CALL_NOT_FOUND', 'No VoiceCall with that ID or vendorCallKey in this org');
      return updated;
    });
  }

  /** The call with its newest `legsLimit` legs (oldest first) and how many legs it has in all. */
  async get(orgId: string, idOrKey: string, legsLimit = DEFAULT_LEGS): Promise<{ call: VoiceCall; legs: VoiceCall[]; legsTotal: number }> {
    const call = await this.find(orgId, idOrKey);
    const legs = legsLimit === 0 ? [] : await this.store.listChildCalls(orgId, call.id, legsLimit);
    // Counted only when the page may be partial: a call's legs are usually a handful
    const legsTotal = legs.length < legsLimit ? legs.length : await this.store.countChildCalls(orgId, call.id);
    return { call, legs, legsTotal };
  }
}

/** The API view of a record: 18-char IDs, ISO times, partner field names. */
export function voiceCallView(call: VoiceCall, legs?: VoiceCall[], legsTotal?: number): Record<string, unknown> {
  const view: Record<string, unknown> = {
    voiceCallId: toId18(call.id),
    vendorCallKey: call.vendorCallKey,
    callCenterApiName: call.callCenterApiName,
    to: call.toNumber,
    from: call.fromNumber,
    initiationMethod: call.initiationMethod,
    parentVoiceCallId: call.parentVoiceCallId ? toId18(call.parentVoiceCallId) : null,
    startTime: call.startTime,
    endTime: call.endTime,
    isActiveCall: call.isActiveCall,
    disconnectReason: call.disconnectReason,
    callAttributes: call.callAttributes,
    callOrigin: call.callOrigin,
    queue: call.queue,
    callSubtype: call.callSubtype,
    participants: call.participants ?? [],
    telephonyProviderName: call.telephonyProviderName,
    status: call.status,
    handoff: call.handoff,
    escalation: call.escalation,
    createdAt: new Date(call.createdAt).toISOString(),
    updatedAt: new Date(call.updatedAt).toISOString(),
  };
  if (legs) {
    view.legs = legs.map((l) => voiceCallView(l));
    view.legsTotal = legsTotal ?? legs.length;
  }
  return view;
}
