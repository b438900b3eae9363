import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { isE164 } from '../../domain/e164.js';
import { HandoffError } from '../../domain/errors.js';
import { toId18 } from '../../domain/ids.js';
import type { Services } from '../../services/index.js';
import type { OperatorAuth } from '../../services/operator-auth.js';
import { send } from '../reply.js';
import { logs } from '../request-log.js';
import { ErrorResponse } from '../schemas.js';

const E164Str = Type.String({ minLength: 2, maxLength: 64, description: 'E.164, optionally as a tel: URI' });
const operatorSecurity = [{ operatorAuth: [] }];

function phone(field: string, v: string): string {
  const n = v.startsWith('tel:') ? v.slice(4) : v;
  if (!isE164(n)) throw new HandoffError('INVALID_FIELD', `${field}: must be an E.164 number`, { details: { field } });
  return n;
}

/** A page of /admin/v1/leases: one listing of every live lease serialises for seconds on a busy pool, stalling the service. */
const DEFAULT_LEASES_PAGE = 1000;
const MAX_LEASES_PAGE = 10_000;

/**
 * Operator endpoints, authenticated with the operator bearer secret:
 * the lease resolver for external SIP engines, and pool and lease administration.
 */
export default async function operatorRoutes(app: FastifyInstance, opts: { services: Services; operator: OperatorAuth }): Promise<void> {
  const { leases, pools, metrics } = opts.services;
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.addHook('onRequest', async (request) => opts.operator.check(request.headers.authorization));

  r.post(
    '/telephony/v1/routableNumbers/resolve',
    {
      schema: {
        summary: 'Resolve (consume) the lease of an arriving call',
        description: 'For SIP engines (Kamailio, FreeSWITCH, Asterisk): the first call matching (calledNumber, callerNumber) consumes the live lease and gets its context; later ones get 404.',
        security: operatorSecurity,
        body: Type.Object({ calledNumber: E164Str, callerNumber: E164Str }),
        response: { 200: Type.Object({}, { additionalProperties: true }), 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse },
      },
    },
    async (request, reply) => {
      const called = phone('calledNumber', request.body.calledNumber);
      const caller = phone('callerNumber', request.body.callerNumber);
      const result = await leases.resolve(called, caller);
      metrics.resolutions.inc({ path: 'http', outcome: result.ok ? 'consumed' : result.reason });
      if (!result.ok) throw new HandoffError('LEASE_NOT_FOUND', 'No live lease for this called and caller number', { details: { resolution: result.reason } });
      const l = result.lease;
      if (logs(request, 'info')) request.log.info({ leaseUid: l.uid, voiceCallId: l.callId ? toId18(l.callId) : null, transactionId: l.transactionId }, 'lease resolved');
      return send(request, reply, 200, {
        status: 'resolved',
        lease: {
          uid: l.uid,
          routableNumber: l.routableNumber,
          fromNumber: l.fromNumber,
          toNumber: l.toNumber,
          orgId: toId18(l.orgId),
          voiceCallId: l.callId ? toId18(l.callId) : null,
          transactionId: l.transactionId,
          provider: l.provider,
          reservedAt: new Date(l.createdAt).toISOString(),
          expiresAt: new Date(l.expiresAt).toISOString(),
        },
      });
    },
  );

  r.get('/admin/v1/pools', { schema: { summary: 'Pools with utilisation', security: operatorSecurity } }, async (request, reply) =>
    send(request, reply, 200, { pools: await pools.list() }),
  );

  r.post(
    '/admin/v1/pools/:country/numbers',
    {
      schema: {
        summary: 'Add numbers to a pool (created when missing)',
        security: operatorSecurity,
        params: Type.Object({ country: Type.String({ pattern: '^[A-Za-z]{2}$' }) }),
        body: Type.Object({
          numbers: Type.Optional(Type.Array(Type.String({ maxLength: 16 }), { maxItems: 100_000 })),
          ranges: Type.Optional(Type.Array(Type.Object({ from: Type.String({ maxLength: 16 }), to: Type.String({ maxLength: 16 }) }), { maxItems: 100 })),
          csv: Type.Optional(Type.String({ maxLength: 20_000_000 })),
        }),
      },
      bodyLimit: 20 * 1024 * 1024,
    },
    async (request, reply) => send(request, reply, 200, await pools.add(request.params.country, request.body)),
  );

  const NumberParams = Type.Object({ number: Type.String({ maxLength: 16 }) });
  r.post('/admin/v1/pool-numbers/:number/drain', { schema: { summary: 'Drain a number: no new leases', security: operatorSecurity, params: NumberParams } }, async (request, reply) =>
    send(request, reply, 200, { number: await pools.drain(request.params.number) }),
  );
  r.post('/admin/v1/pool-numbers/:number/activate', { schema: { summary: 'Put a drained number back in service', security: operatorSecurity, params: NumberParams } }, async (request, reply) =>
    send(request, reply, 200, { number: await pools.activate(request.params.number) }),
  );
  r.delete('/admin/v1/pool-numbers/:number', { schema: { summary: 'Remove a drained number without live leases', security: operatorSecurity, params: NumberParams } }, async (request, reply) => {
    await pools.remove(request.params.number);
    return send(request, reply, 200, { removed: request.params.number });
  });

  r.get(
    '/admin/v1/leases',
    {
      schema: {
        summary: 'Live leases with time left, soonest expiry first, a page at a time',
        description: 'At most `limit` leases (default 1,000) and `total`, the number live; `next`, when not null, is the `after` of the next page.',
        security: operatorSecurity,
        querystring: Type.Object({
          orgId: Type.Optional(Type.String({ maxLength: 18 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LEASES_PAGE, default: DEFAULT_LEASES_PAGE })),
          after: Type.Optional(Type.String({ maxLength: 80 })),
        }),
      },
    },
    async (request, reply) => {
      const now = opts.services.clock.now();
      const { orgId, limit, after } = request.query;
      const page = await leases.listLive({
        ...(orgId !== undefined ? { orgId: orgId.slice(0, 15) } : {}),
        limit: limit ?? DEFAULT_LEASES_PAGE,
        ...(after !== undefined ? { after } : {}),
      });
      return send(request, reply, 200, {
        leases: page.leases.map((l) => ({
          uid: l.uid,
          orgId: toId18(l.orgId),
          country: l.country,
          routableNumber: l.routableNumber,
          fromNumber: l.fromNumber,
          toNumber: l.toNumber,
          voiceCallId: l.callId ? toId18(l.callId) : null,
          transactionId: l.transactionId,
          expiresAt: new Date(l.expiresAt).toISOString(),
          secondsLeft: Math.max(0, Math.ceil((l.expiresAt - now) / 1000)),
        })),
        total: page.total,
        next: page.next,
      });
    },
  );
}
