import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services/index.js';

/** Health, readiness, metrics and the OpenAPI document; unauthenticated, JSON or text only. */
export default async function opsRoutes(app: FastifyInstance, opts: { services: Services; isReady: () => boolean }): Promise<void> {
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

  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    try {
      opts.services.metrics.setPoolStats(await opts.services.leases.stats());
    } catch (err) {
      request.log.warn({ err }, 'pool statistics unavailable');
    }
    reply.type(opts.services.metrics.registry.contentType);
    return opts.services.metrics.render();
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
