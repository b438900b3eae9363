import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from 'pino';
import type { Services } from '../services/index.js';
import type { VerifiedToken } from '../domain/token.js';
import { isHandoffError } from '../domain/errors.js';
import { parseXmlBody } from './body-codec.js';
import { errorBody, negotiate, send, sendError } from './reply.js';
import { bindOrg } from './request-log.js';
import voiceCallRoutes from './routes/voice-calls.js';
import reservationRoutes from './routes/reservations.js';
import opsRoutes from './routes/ops.js';
import operatorRoutes from './routes/operator.js';
import webhookAdminRoutes from './routes/webhooks-admin.js';
import escalationRoutes from './routes/escalation.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified partner token; set by the /telephony/v1 auth hook. */
    auth: VerifiedToken;
  }
}

export interface AppOptions {
  services: Services;
  logger: Logger | false;
  bodyLimit: number;
  /** Answers /readyz; false while starting or draining. */
  isReady: () => boolean;
}

/**
 * The Fastify application: content types, auth, errors, routes. It opens no port and no database;
 * the composition root (server.ts) does, so tests can drive the same app with inject().
 */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { services } = opts;
  const { metrics } = services;
  const app = Fastify({
    loggerInstance: opts.logger === false ? undefined : (opts.logger as FastifyServerOptions['loggerInstance']),
    logger: opts.logger === false ? false : undefined,
    bodyLimit: opts.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    requestIdHeader: false,
    // The router's own refusals (a malformed percent-encoding, an over-long path parameter) in the API's error shape
    frameworkErrors: (error: Error, request: FastifyRequest, reply: FastifyReply) => {
      negotiate(request); // no hook has run
      return sendError(request, reply, error);
    },
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, useDefaults: true, allErrors: false } },
  } as FastifyServerOptions);

  app.decorateRequest('responseFormat', 'json');
  app.decorateRequest('auth', null as unknown as VerifiedToken);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Handoff telephony integration API',
        version: '1.0.0',
        description: 'Wire-compatible /telephony/v1 API: VoiceCalls, routable-number reservations, hand-off.',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Partner JWT (RS256/ES256) signed with a key registered for the org' },
          agentAuth: { type: 'http', scheme: 'bearer', description: "An agent runtime's secret (agents[].token in the provisioning file)" },
          operatorAuth: { type: 'http', scheme: 'bearer', description: 'The operator secret (HANDOFF_OPERATOR_TOKEN or <dataDir>/operator-token)' },
        },
      },
      security: [{ bearerAuth: [] }],
    },
  });

  // Only the API's two formats: Fastify's built-in text/plain parser would let any text reach validation.
  app.removeContentTypeParser('text/plain');
  // XML bodies: no DOCTYPE, no entities, bounded depth (see body-codec.ts).
  const xmlParser = (_req: unknown, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => {
    try {
      done(null, parseXmlBody(body.toString()));
    } catch (e) {
      done(e as Error, undefined);
    }
  };
  app.addContentTypeParser(['application/xml', 'text/xml'], { parseAs: 'string' }, xmlParser);
  app.addContentTypeParser(/^application\/[\w.+-]+\+xml$/, { parseAs: 'string' }, xmlParser);
  app.addContentTypeParser(/^application\/[\w.+-]+\+json$/, { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));

  app.addHook('onRequest', async (request) => {
    negotiate(request);
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: Error, request, reply) => {
    if (isHandoffError(err) && err.code === 'INVALID_TOKEN') metrics.authFailures.inc({ reason: String(err.details?.['reason'] ?? 'unknown') });
    return sendError(request, reply, err);
  });

  app.setNotFoundHandler((request, reply) => send(request, reply, 404, errorBody('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`)));

  await app.register(opsRoutes, { services, isReady: opts.isReady });

  await app.register(
    async (api) => {
      // Authentication runs before the body is read: a bad token costs no parsing.
      api.addHook('onRequest', async (request) => {
        request.auth = await services.auth.authenticate(request.headers.authorization);
        bindOrg(request, request.auth.orgId);
        await services.auth.checkRate(request.auth.orgId);
      });
      await api.register(voiceCallRoutes, { services });
      await api.register(reservationRoutes, { services });
    },
    { prefix: '/telephony/v1' },
  );

  // Agent runtimes: their own bearer secret, outside the partner JWT scope.
  await app.register(escalationRoutes, { services });

  const operator = services.operator;
  if (operator) {
    await app.register(operatorRoutes, { services, operator });
    await app.register(webhookAdminRoutes, { services, operator });
  }

  return app;
}
