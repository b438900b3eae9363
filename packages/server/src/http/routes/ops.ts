import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/index.js';
import type { Metrics } from '../metrics.js';

/** Health, readiness, metrics and the OpenAPI document; unauthenticated, JSON or text only. */
export default async function opsRoutes(app: FastifyInstance, opts: { services: Services; metrics: Metrics; isReady: () => boolean }): Promise<void> {
  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => reply.send({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true } }, async (request, reply) => {
    if (!opts.isReady()) return reply.code(503).send({ status: 'not ready' });
    try {
      await opts.services.store.ping();
    } catch (err) {
      request.log.warn({ err }, 'database ping failed');
      return reply.code(503).send({ status: 'database unavailable' });
    }
    return reply.send({ status: 'ready' });
  });

  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.type(opts.metrics.registry.contentType);
    return opts.metrics.registry.metrics();
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
