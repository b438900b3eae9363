import { Type, type Static } from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { toId18 } from '../../domain/ids.js';
import type { Services } from '../../services/index.js';
import { send } from '../reply.js';
import { ErrorResponse } from '../schemas.js';

const EscalateBody = Type.Object({
  reason: Type.String({ minLength: 1, maxLength: 255, description: 'Why the agent gives the call back' }),
  summary: Type.Optional(Type.String({ maxLength: 4000, description: 'What the human should know' })),
  targetQueue: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
});

/** `POST /telephony/v1/voiceCalls/{id}/escalate`, for agent runtimes with their own bearer secret. */
export default async function escalationRoutes(app: FastifyInstance, opts: { services: Services }): Promise<void> {
  const { escalation } = opts.services;
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.post(
    '/telephony/v1/voiceCalls/:id/escalate',
    {
      schema: {
        summary: 'Escalate: the AI agent gives the call back to a human',
        description:
          'Authenticated with the agent runtime\'s bearer secret (agents[].token). The outcome is stored on the AI leg and on the partner\'s VoiceCall; ' +
          'the AI leg is ended by BYE through the proxy, so the partner\'s post-flow takes the caller back.',
        security: [{ agentAuth: [] }],
        params: Type.Object({ id: Type.String({ maxLength: 18, description: 'The AI leg (X-Handoff-Voice-Call-Id) or the partner call' }) }),
        body: EscalateBody,
        response: {
          200: Type.Object({}, { additionalProperties: true }),
          400: ErrorResponse,
          401: ErrorResponse,
          404: ErrorResponse,
          409: ErrorResponse,
        },
      },
    },
    async (request, reply) => {
      const agent = await escalation.authenticate(request.headers.authorization);
      const result = await escalation.escalate(agent, request.params.id, request.body as Static<typeof EscalateBody>);
      request.log = request.log.child({ voiceCallId: toId18(result.aiLeg.id), agent: agent.name });
      reply.log = request.log;
      request.log.info({ aiLegEnded: result.aiLegEnded }, 'call escalated');
      return send(request, reply, 200, {
        status: 'escalated',
        voiceCallId: toId18(result.aiLeg.id),
        partnerVoiceCallId: result.partnerCall ? toId18(result.partnerCall.id) : null,
        aiLegEnded: result.aiLegEnded,
        escalation: result.aiLeg.escalation,
      });
    },
  );
}
