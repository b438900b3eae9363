import { Type, type Static } from 'typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { toId18 } from '../../domain/ids.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Services } from '../../services/index.js';
import { DEFAULT_LEGS, MAX_LEGS, parseCallAttributes, voiceCallView } from '../../services/voice-calls.js';
import { HandoffError, isHandoffError } from '../../domain/errors.js';
import { send } from '../reply.js';
import { ErrorResponse } from '../schemas.js';

const Phone = Type.String({ minLength: 1, maxLength: 64, description: 'E.164, optionally as a tel: URI' });
const Text255 = Type.String({ maxLength: 255 });
const DateTime = Type.String({ maxLength: 40, description: 'ISO 8601 date-time with a zone' });
const Participant = Type.Object(
  { participantKey: Type.Optional(Type.String({ maxLength: 255 })), type: Type.Optional(Type.String({ maxLength: 64 })) },
  { additionalProperties: true },
);
const CallAttributes = Type.Union([Type.String({ maxLength: 32768 }), Type.Record(Type.String(), Type.Unknown())], {
  description: 'A JSON object as a string (documented), or the object itself',
});

export const CreateVoiceCallBody = Type.Object({
  callCenterApiName: Type.Optional(Type.String({ minLength: 1, maxLength: 80 })),
  vendorCallKey: Type.String({ minLength: 1, maxLength: 255 }),
  to: Phone,
  from: Phone,
  initiationMethod: Type.Optional(Type.String({ description: 'Inbound (default), Outbound, Transfer or Callback' })),
  parentVoiceCallId: Type.Optional(Type.String({ maxLength: 18, description: 'Required with initiationMethod Transfer' })),
  startTime: Type.Optional(DateTime),
  participants: Type.Optional(Type.Array(Participant, { maxItems: 20 })),
  callAttributes: Type.Optional(CallAttributes),
  callOrigin: Type.Optional(Text255),
  queue: Type.Optional(Text255),
  callSubtype: Type.Optional(Text255),
});

export const UpdateVoiceCallBody = Type.Object({
  to: Type.Optional(Phone),
  from: Type.Optional(Phone),
  startTime: Type.Optional(DateTime),
  endTime: Type.Optional(DateTime),
  isActiveCall: Type.Optional(Type.Boolean()),
  disconnectReason: Type.Optional(Text255),
  callAttributes: Type.Optional(CallAttributes),
  callOrigin: Type.Optional(Text255),
  queue: Type.Optional(Text255),
  callSubtype: Type.Optional(Text255),
  participants: Type.Optional(Type.Array(Participant, { maxItems: 20 })),
});

const OmniFlowBody = Type.Object({
  dialedNumber: Type.Optional(Type.String({ maxLength: 16, description: 'The channel number whose flow runs' })),
  flowDevName: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_]+$', maxLength: 80, description: 'Run this flow instead' })),
  fallbackQueue: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  flowInputParameters: Type.Optional(CallAttributes),
});

const OmniFlowResponse = Type.Object({
  agent: Type.Union([Type.String(), Type.Null()]),
  queue: Type.Union([Type.String(), Type.Null()]),
  reject: Type.Optional(Type.Object({ status: Type.Integer(), reason: Type.Union([Type.String(), Type.Null()]) })),
});

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 255, description: 'VoiceCall ID (15 or 18 chars) or vendorCallKey' }) });

const CreatedResponse = Type.Object({ voiceCallId: Type.String(), errors: Type.Array(Type.Unknown()) });
const PendingResponse = Type.Object({ status: Type.Literal('pending') });
const VoiceCallResponse = Type.Object({}, { additionalProperties: true, description: 'The VoiceCall record, its legs, hand-off context and escalation outcome' });

const errors = { 400: ErrorResponse, 403: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 413: ErrorResponse, 415: ErrorResponse, 429: ErrorResponse };

function provider(request: FastifyRequest): string | null {
  const v = request.headers['telephony-provider-name'];
  return typeof v === 'string' && v.length > 0 ? v.slice(0, 255) : null;
}

/** Binds the call's ID to every later log line of this request. */
function logCall(request: FastifyRequest, reply: FastifyReply, id15: string): void {
  request.log = request.log.child({ voiceCallId: toId18(id15) });
  reply.log = request.log;
}

export default async function voiceCallRoutes(app: FastifyInstance, opts: { services: Services }): Promise<void> {
  const { voiceCalls } = opts.services;
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post(
    '/voiceCalls',
    {
      schema: {
        summary: 'Create a VoiceCall',
        description: 'A repeated vendorCallKey for the same org returns the existing record.',
        body: CreateVoiceCallBody,
        response: { 200: CreatedResponse, 201: CreatedResponse, ...errors },
      },
    },
    async (request, reply) => {
      const { created, call } = await voiceCalls.create(request.auth.orgId, request.body as Static<typeof CreateVoiceCallBody>, provider(request), request.auth.sub);
      logCall(request, reply, call.id);
      request.log.info({ created, vendorCallKey: call.vendorCallKey }, created ? 'voice call created' : 'voice call exists for vendorCallKey');
      return send(request, reply, created ? 201 : 200, { voiceCallId: voiceCallView(call).voiceCallId, errors: [] });
    },
  );

  r.patch(
    '/voiceCalls/:id',
    {
      schema: {
        summary: 'Update a VoiceCall',
        description: 'By VoiceCall ID or vendorCallKey. callAttributes are merged field by field. Applied durably before the answer.',
        params: IdParams,
        body: UpdateVoiceCallBody,
        response: { 200: PendingResponse, ...errors },
      },
    },
    async (request, reply) => {
      const call = await voiceCalls.update(request.auth.orgId, request.params.id, request.body as Static<typeof UpdateVoiceCallBody>, provider(request));
      logCall(request, reply, call.id);
      request.log.info('voice call updated');
      return send(request, reply, 200, { status: 'pending' });
    },
  );

  r.patch(
    '/voiceCalls/:id/omniFlow',
    {
      schema: {
        summary: "Run a channel's flow for a call",
        description:
          'The flow of the channel at dialedNumber (or the flow named flowDevName, else the channel the call was made to) picks an agent or a queue; ' +
          'fields the flow sets are stored on the call. With no decision and a fallbackQueue, that queue is the answer.',
        params: IdParams,
        body: OmniFlowBody,
        response: { 200: OmniFlowResponse, ...errors },
      },
    },
    async (request, reply) => {
      const { orgId } = request.auth;
      const body = request.body as Static<typeof OmniFlowBody>;
      const call = await voiceCalls.find(orgId, request.params.id);
      logCall(request, reply, call.id);
      const dialed = body.dialedNumber ?? call.toNumber;
      const channel = dialed ? await opts.services.store.getChannelByNumber(dialed) : null;
      if (body.dialedNumber !== undefined && (!channel || channel.orgId !== orgId)) {
        throw new HandoffError('CHANNEL_NOT_FOUND', 'dialedNumber: no channel of this org has that number', { details: { field: 'dialedNumber' } });
      }
      const inputs = body.flowInputParameters === undefined ? {} : parseCallAttributes(body.flowInputParameters);
      let result;
      try {
        result = await opts.services.routing.route({
          orgId,
          channel: channel && channel.orgId === orgId ? channel : null,
          flowName: body.flowDevName ?? null,
          call,
          path: null,
          inputs,
        });
      } catch (err) {
        // No flow at all: a fallbackQueue still answers, as the platform's own fallback would.
        if (body.fallbackQueue && isHandoffError(err) && err.code === 'NOT_FOUND') return send(request, reply, 200, { agent: null, queue: body.fallbackQueue });
        throw err;
      }
      const { decision } = result;
      const queue = decision.queue ?? (decision.agent === null ? (body.fallbackQueue ?? null) : null);
      request.log.info({ agent: decision.agent, queue, rule: decision.ruleName }, 'flow evaluated');
      return send(request, reply, 200, {
        agent: decision.agent,
        queue,
        ...(decision.reject && queue === null ? { reject: decision.reject } : {}),
      });
    },
  );

  r.get(
    '/voiceCalls/:id',
    {
      schema: {
        summary: 'Read a VoiceCall',
        description: 'The record, its hand-off legs, its hand-off context and its escalation outcome.',
        params: IdParams,
        querystring: Type.Object({
          legsLimit: Type.Optional(
            Type.Integer({ minimum: 0, maximum: MAX_LEGS, default: DEFAULT_LEGS, description: 'How many legs to show, the newest (their total is `legsTotal`)' }),
          ),
        }),
        response: { 200: VoiceCallResponse, ...errors },
      },
    },
    async (request, reply) => {
      const { call, legs, legsTotal } = await voiceCalls.get(request.auth.orgId, request.params.id, request.query.legsLimit);
      logCall(request, reply, call.id);
      return send(request, reply, 200, voiceCallView(call, legs, legsTotal));
    },
  );
}
