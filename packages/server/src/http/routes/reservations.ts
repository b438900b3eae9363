import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Services } from '../../services/index.js';
import { leaseHandle } from '../../services/lease-service.js';
import type { ReservationBody } from '../../services/reservations.js';
import { send } from '../reply.js';
import { logs } from '../request-log.js';
import { ErrorResponse } from '../schemas.js';

const Str = (max: number, description?: string) => Type.Optional(Type.String({ maxLength: max, ...(description ? { description } : {}) }));

const ContextFields = {
  scrt2Domain: Str(256, "The org's scrt2Domain, e.g. https://acme.my.example.com"),
  toNumber: Str(16, 'The channel (virtual number) in E.164'),
  callId: Str(18, 'VC1: the VoiceCall created for the inbound call (15 or 18 chars)'),
  transactionId: Str(255, 'Idempotency key of this request (the Idempotency-Key header is an alias)'),
  originalFromNumber: Str(16),
};

export const ReserveBody = Type.Object({
  countryCode: Str(2, 'ISO 3166-1 alpha-2 pool country'),
  country: Str(2, 'Alias of countryCode'),
  fromNumber: Str(16, "The caller's number in E.164"),
  ...ContextFields,
  context: Type.Optional(Type.Object(ContextFields)),
});

const ReserveResponse = Type.Object({
  status: Type.Literal('success'),
  mode: Type.Literal('number'),
  handle: Type.Object({ routableNumber: Type.String(), uid: Type.String(), expiresAt: Type.String({ format: 'date-time' }) }),
});

export default async function reservationRoutes(app: FastifyInstance, opts: { services: Services }): Promise<void> {
  const { reservations, metrics } = opts.services;
  app.withTypeProvider<TypeBoxTypeProvider>().post(
    '/voiceCalls/reserveRoutableNumber',
    {
      schema: {
        summary: 'Reserve a routable number',
        description:
          'Leases a number of the country pool for (routableNumber, fromNumber) for at most 180 s. Idempotent by transactionId ' +
          '(or Idempotency-Key): the same body returns the same handle while the lease is live (422 for another body, 409 once consumed or expired).',
        body: ReserveBody,
        response: {
          200: ReserveResponse,
          400: ErrorResponse,
          401: ErrorResponse,
          403: ErrorResponse,
          404: ErrorResponse,
          409: ErrorResponse,
          422: ErrorResponse,
          429: ErrorResponse,
          503: ErrorResponse,
        },
      },
    },
    async (request, reply) => {
      const header = request.headers['idempotency-key'];
      const provider = request.headers['telephony-provider-name'];
      const started = performance.now();
      try {
        const { lease, replayed } = await reservations.reserve(request.auth.orgId, request.body as ReservationBody, {
          idempotencyKey: typeof header === 'string' && header.length > 0 ? header.slice(0, 255) : null,
          provider: typeof provider === 'string' && provider.length > 0 ? provider.slice(0, 255) : null,
        });
        metrics.reservations.inc({ outcome: replayed ? 'replayed' : 'reserved', country: lease.country });
        if (logs(request, 'info')) request.log.info({ leaseUid: lease.uid, transactionId: lease.transactionId, voiceCallId: lease.callId, replayed }, 'routable number reserved');
        return send(request, reply, 200, { status: 'success', mode: 'number', handle: leaseHandle(lease) });
      } catch (err) {
        metrics.reservations.inc({ outcome: (err as { code?: string }).code ?? 'error', country: '' });
        throw err;
      } finally {
        metrics.reservationSeconds.observe((performance.now() - started) / 1000);
      }
    },
  );
}
