import { Type } from 'typebox';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { WEBHOOK_EVENT_TYPES } from '../../domain/webhook-signature.js';
import type { Services } from '../../services/index.js';
import type { OperatorAuth } from '../../services/operator-auth.js';
import { deliveryView, subscriptionView } from '../../services/webhooks.js';
import { send } from '../reply.js';
import { ErrorResponse } from '../schemas.js';

const operatorSecurity = [{ operatorAuth: [] }];
const OrgParams = Type.Object({ orgId: Type.String({ maxLength: 18, description: 'Org ID, 15 or 18 characters' }) });
const SubscriptionId = Type.String({ pattern: '^[A-Za-z0-9_.:-]+$', maxLength: 128 });
const EventFilter = Type.Union(['*', ...WEBHOOK_EVENT_TYPES].map((t) => Type.Literal(t)));
const errors = { 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse };

/**
 * Operator endpoints for webhooks: an org's subscriptions (list, create, delete) and the delivery
 * status of the outbox. Secrets are write-only: no response shows one, except a generated secret in
 * the response that created it.
 */
export default async function webhookAdminRoutes(app: FastifyInstance, opts: { services: Services; operator: OperatorAuth }): Promise<void> {
  const { webhooks } = opts.services;
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  r.addHook('onRequest', async (request) => opts.operator.check(request.headers.authorization));

  r.get(
    '/admin/v1/orgs/:orgId/webhooks',
    { schema: { summary: "An org's webhook subscriptions", security: operatorSecurity, params: OrgParams, response: errors } },
    async (request, reply) => send(request, reply, 200, { webhooks: (await webhooks.listSubscriptions(request.params.orgId)).map(subscriptionView) }),
  );

  r.post(
    '/admin/v1/orgs/:orgId/webhooks',
    {
      schema: {
        summary: 'Subscribe a URL to events of the org',
        description: 'Without `secret`, one is generated and returned in this response only. Without `events`, every event type is delivered.',
        security: operatorSecurity,
        params: OrgParams,
        body: Type.Object(
          {
            id: Type.Optional(SubscriptionId),
            url: Type.String({ minLength: 8, maxLength: 2048 }),
            secret: Type.Optional(Type.String({ minLength: 16, maxLength: 512 })),
            events: Type.Optional(Type.Array(EventFilter, { minItems: 1 })),
          },
          { additionalProperties: false },
        ),
        response: { ...errors, 409: ErrorResponse },
      },
    },
    async (request, reply) => {
      const { subscription, generatedSecret } = await webhooks.createSubscription(request.params.orgId, request.body);
      return send(request, reply, 201, { webhook: { ...subscriptionView(subscription), ...(generatedSecret ? { secret: generatedSecret } : {}) } });
    },
  );

  r.delete(
    '/admin/v1/orgs/:orgId/webhooks/:id',
    {
      schema: {
        summary: 'Delete a subscription; its pending deliveries are given up',
        security: operatorSecurity,
        params: Type.Object({ orgId: OrgParams.properties.orgId, id: SubscriptionId }),
        response: errors,
      },
    },
    async (request, reply) => {
      const { cancelledDeliveries } = await webhooks.deleteSubscription(request.params.orgId, request.params.id);
      return send(request, reply, 200, { deleted: request.params.id, cancelledDeliveries });
    },
  );

  r.get(
    '/admin/v1/webhook-deliveries',
    {
      schema: {
        summary: 'Webhook deliveries, newest first, with their status',
        description: 'pending (with the next attempt time), delivered, or failed (given up after the last attempt); attempts and the last status code or error.',
        security: operatorSecurity,
        querystring: Type.Object({
          orgId: Type.Optional(Type.String({ maxLength: 18 })),
          status: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')])),
          subscriptionId: Type.Optional(SubscriptionId),
          voiceCallId: Type.Optional(Type.String({ maxLength: 18 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
        }),
        response: errors,
      },
    },
    async (request, reply) => send(request, reply, 200, { deliveries: (await webhooks.listDeliveries(request.query)).map(deliveryView) }),
  );
}
