import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../src/domain/clock.js';
import { newVoiceCallId, toId18 } from '../../src/domain/ids.js';
import { Metrics } from '../../src/metrics.js';
import { createServices, type Services } from '../../src/services/index.js';
import type { WebhookOptions } from '../../src/services/webhooks.js';
import type { KyselyStore } from '../../src/store/kysely-store.js';
import { BACKENDS } from '../support/backends.js';
import { CC_A, CHANNEL_A, makeHarness, OPERATOR_TOKEN, ORG_A, ORG_A18, type Harness } from '../support/harness.js';
import { WebhookReceiver, type Hit } from '../support/webhook-receiver.js';

/** Short delays so retries take milliseconds: 100 ms, 200 ms, then at most 400 ms between attempts. */
const POLICY: WebhookOptions = { maxAttempts: 3, retryBaseMs: 100, retryMaxMs: 400, attemptTimeoutMs: 2000, pollMs: 50, maintenanceMs: 60_000 };
const SECRET = 'test-webhook-secret-0123456789';

for (const backend of BACKENDS) {
  describe(`webhook delivery [${backend}]`, () => {
    let h: Harness;
    let receiver: WebhookReceiver;
    let token: string;
    let n = 0;

    before(async () => {
      h = await makeHarness(backend, { services: { leaseTtlSeconds: 1, leaseCooldownSeconds: 0, webhooks: POLICY } });
      receiver = await new WebhookReceiver().start();
      token = await h.token('a', { ttlSeconds: 3600 });
      h.services.webhooks.start();
    });
    after(async () => {
      await h.services.webhooks.stop();
      await receiver.close();
      await h.close();
    });

    const op = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) =>
      h.app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${OPERATOR_TOKEN}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
        ...(payload ? { payload: JSON.stringify(payload) } : {}),
      });

    /** A subscription of org A on its own receiver path; removed after the test. */
    async function subscribe(t: { after: (fn: () => Promise<void>) => void }, respond?: Parameters<WebhookReceiver['route']>[2], events?: string[]) {
      const id = `sub-${++n}`;
      const path = `/${id}`;
      const url = receiver.route(path, SECRET, respond);
      const res = await op('POST', `/admin/v1/orgs/${ORG_A}/webhooks`, { id, url, secret: SECRET, ...(events ? { events } : {}) });
      assert.equal(res.statusCode, 201, res.body);
      t.after(async () => void (await op('DELETE', `/admin/v1/orgs/${ORG_A}/webhooks/${id}`)));
      return { id, path };
    }

    async function createCall(vendorCallKey: string) {
      const res = await h.app.inject({
        method: 'POST',
        url: '/telephony/v1/voiceCalls',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        payload: { vendorCallKey, to: CHANNEL_A, from: '+14155551234', callCenterApiName: CC_A },
      });
      assert.ok(res.statusCode === 201 || res.statusCode === 200, res.body);
      return { status: res.statusCode, id: res.json().voiceCallId as string };
    }

    const deliveries = async (query: string) => {
      const res = await op('GET', `/admin/v1/webhook-deliveries?${query}`);
      assert.equal(res.statusCode, 200, res.body);
      return res.json().deliveries as Record<string, unknown>[];
    };
    /** The deliveries of `query` once none is pending (the receiver answers before the outcome is recorded). */
    const settled = async (query: string) => {
      for (let i = 0; i < 100; i++) {
        const rows = await deliveries(query);
        if (rows.length > 0 && rows.every((d) => d.status !== 'pending')) return rows;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`deliveries of ${query} still pending`);
    };

    test('a created VoiceCall is delivered signed, once, with the documented headers and body', async (t) => {
      const { path } = await subscribe(t);
      const { id } = await createCall(`create-${backend}`);
      await receiver.waitFor(() => receiver.on(path, true).length === 1);
      const [hit] = receiver.on(path) as [Hit];
      assert.equal(hit.status, 200, 'the receiver verified the signature');
      assert.equal(hit.type, 'voiceCall.created');
      assert.equal(hit.headers['handoff-event-id'], hit.eventId);
      assert.equal(hit.headers['handoff-event-type'], 'voiceCall.created');
      assert.match(String(hit.headers['handoff-signature']), /^t=\d+,v1=[0-9a-f]{64}$/);
      assert.equal(hit.headers['content-type'], 'application/json');
      assert.match(hit.eventId, /^[0-9a-f-]{36}$/);
      assert.equal(hit.body.orgId, ORG_A18);
      assert.equal(hit.voiceCallId, id);
      assert.ok(!Number.isNaN(Date.parse(String(hit.body.createdAt))));
      const data = hit.body.data as Record<string, unknown>;
      assert.equal(data.voiceCallId, id);
      assert.equal(data.vendorCallKey, `create-${backend}`);
      assert.equal(data.to, CHANNEL_A);

      // The same vendorCallKey again returns the existing call and emits nothing.
      assert.equal((await createCall(`create-${backend}`)).status, 200);
      const [row] = await settled(`orgId=${ORG_A18}&voiceCallId=${id}`);
      assert.equal(row?.status, 'delivered');
      assert.equal(row?.attempts, 1);
      assert.equal(row?.lastStatusCode, 200);
      assert.equal(row?.nextAttemptAt, null);
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(receiver.on(path).length, 1);
    });

    test('only the subscribed event types are delivered', async (t) => {
      const { path } = await subscribe(t, undefined, ['lease.reserved']);
      await createCall(`filtered-${backend}`);
      const vc = toId18(newVoiceCallId());
      await h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type: 'lease.reserved', voiceCallId: vc, data: {} });
      await receiver.waitFor(() => receiver.on(path, true).length === 1);
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(receiver.on(path).map((x) => x.type), ['lease.reserved']);
    });

    test('an event emitted in a transaction that rolls back does not exist', async (t) => {
      const { path } = await subscribe(t);
      let eventId = '';
      await assert.rejects(
        h.store.transaction(async (tx) => {
          eventId = (await h.services.webhooks.emit(tx, { orgId: ORG_A, type: 'call.routed', data: {} })).id;
          throw new Error('rolled back');
        }),
        /rolled back/,
      );
      const committed = await h.store.transaction((tx) => h.services.webhooks.emit(tx, { orgId: ORG_A, type: 'call.routed', data: {} }));
      await receiver.waitFor(() => receiver.on(path, true).length === 1);
      assert.deepEqual(receiver.on(path).map((x) => x.eventId), [committed.id]);
      assert.equal((await deliveries(`orgId=${ORG_A}`)).filter((d) => d.eventId === eventId).length, 0);
    });

    test('lease.reserved and lease.consumed follow the call; lease.expired is emitted once per lease', async (t) => {
      const { path } = await subscribe(t);
      const { id } = await createCall(`lease-${backend}`);
      const reserve = (fromNumber: string, callId?: string) =>
        h.app.inject({
          method: 'POST',
          url: '/telephony/v1/voiceCalls/reserveRoutableNumber',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          payload: { countryCode: 'US', fromNumber, scrt2Domain: 'acme.my.example.com', toNumber: CHANNEL_A, ...(callId ? { callId } : {}) },
        });
      const r1 = await reserve('+14155557001', id);
      assert.equal(r1.statusCode, 200, r1.body);
      const handle = r1.json().handle as { routableNumber: string; uid: string };
      const resolved = await op('POST', '/telephony/v1/routableNumbers/resolve', { calledNumber: handle.routableNumber, callerNumber: '+14155557001' });
      assert.equal(resolved.statusCode, 200, resolved.body);
      const r2 = await reserve('+14155557002');
      assert.equal(r2.statusCode, 200, r2.body);
      const unconsumed = r2.json().handle as { uid: string };

      await receiver.waitFor(() => receiver.on(path, true).length === 4);
      const ofCall = receiver.on(path, true).filter((x) => x.voiceCallId === id);
      assert.deepEqual(ofCall.map((x) => x.type), ['voiceCall.created', 'lease.reserved', 'lease.consumed']);
      const consumed = ofCall[2]!.body.data as Record<string, unknown>;
      assert.equal(consumed.uid, handle.uid);
      assert.equal(consumed.routableNumber, handle.routableNumber);
      assert.equal(consumed.fromNumber, '+14155557001');
      assert.ok(consumed.consumedAt);
      const callless = receiver.on(path, true).find((x) => x.voiceCallId === null)!;
      assert.equal(callless.type, 'lease.reserved');

      await new Promise((r) => setTimeout(r, 1100)); // the 1 s leases expire
      const [first, second] = [await h.services.webhooks.emitExpiredLeases(), await h.services.webhooks.emitExpiredLeases()];
      assert.equal(first, 1, 'the unconsumed lease is reported');
      assert.equal(second, 0, 'never twice');
      await receiver.waitFor(() => receiver.on(path, true).some((x) => x.type === 'lease.expired'));
      const expired = receiver.on(path, true).filter((x) => x.type === 'lease.expired');
      assert.deepEqual(expired.map((x) => (x.body.data as { uid: string }).uid), [unconsumed.uid], 'the consumed lease is not reported as expired');
    });

    test('a failing receiver (500, 500, then 200) is retried with exponential back-off', async (t) => {
      const { id: subId, path } = await subscribe(t, (_hit, attempt) => (attempt < 3 ? 500 : 200));
      const event = await h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type: 'call.answered', data: { agent: 'bot' } });
      await receiver.waitFor(() => receiver.on(path, true).length === 1);
      const hits = receiver.on(path);
      assert.deepEqual(hits.map((x) => x.status), [500, 500, 200]);
      assert.ok(hits.every((x) => x.eventId === event!.id && x.raw === hits[0]!.raw), 'the same body every time');
      const gaps = [hits[1]!.at - hits[0]!.at, hits[2]!.at - hits[1]!.at];
      assert.ok(gaps[0]! >= 90 && gaps[1]! >= 190, `waits of about 100 then 200 ms, got ${gaps.join(', ')}`);
      assert.ok(gaps[1]! < 1500, `no long stall, got ${gaps.join(', ')}`);
      const [row] = (await settled(`subscriptionId=${subId}`)).filter((d) => d.eventId === event!.id);
      assert.deepEqual([row?.status, row?.attempts, row?.lastStatusCode, row?.lastError], ['delivered', 3, 200, null]);
    });

    test("a call's later events wait while an earlier one fails; other calls' events flow", async (t) => {
      const slow = toId18(newVoiceCallId());
      const other = toId18(newVoiceCallId());
      const { path } = await subscribe(t, (hit, attempt) => (hit.voiceCallId === slow && hit.type === 'call.routed' && attempt < 3 ? 503 : 200));
      const emit = (voiceCallId: string | null, type: 'call.routed' | 'call.answered' | 'call.ended') =>
        h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type, voiceCallId, data: {} });
      await emit(slow, 'call.routed');
      await emit(slow, 'call.answered');
      await emit(other, 'call.routed');
      await emit(slow, 'call.ended');
      await emit(other, 'call.answered');
      await emit(null, 'call.routed');
      await receiver.waitFor(() => receiver.on(path, true).length === 6);

      const hits = receiver.on(path);
      const ofSlow = hits.filter((x) => x.voiceCallId === slow);
      assert.deepEqual(
        ofSlow.map((x) => `${x.type} ${x.status}`),
        ['call.routed 503', 'call.routed 503', 'call.routed 200', 'call.answered 200', 'call.ended 200'],
        'nothing of the call is attempted before its first event is delivered, and the rest follow in order',
      );
      const slowDelivered = ofSlow[2]!.at;
      const ofOther = hits.filter((x) => x.voiceCallId === other);
      assert.deepEqual(ofOther.map((x) => x.type), ['call.routed', 'call.answered']);
      assert.ok(ofOther.every((x) => x.at < slowDelivered), 'the other call is not held up');
      assert.ok(hits.find((x) => x.voiceCallId === null)!.at < slowDelivered, 'events without a call are not held up');
    });

    test('a delivery is given up after maxAttempts, visible in the admin API; the call moves on', async (t) => {
      const vc = toId18(newVoiceCallId());
      const { id, path } = await subscribe(t, (hit) => (hit.type === 'call.escalated' ? 500 : 200));
      const doomed = await h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type: 'call.escalated', voiceCallId: vc, data: { reason: 'human' } });
      await h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type: 'call.ended', voiceCallId: vc, data: {} });
      await receiver.waitFor(() => receiver.on(path, true).length === 1);
      assert.deepEqual(receiver.on(path).map((x) => `${x.type} ${x.status}`), ['call.escalated 500', 'call.escalated 500', 'call.escalated 500', 'call.ended 200']);

      await settled(`subscriptionId=${id}`);
      const failed = await deliveries(`orgId=${ORG_A18}&status=failed&subscriptionId=${id}`);
      assert.equal(failed.length, 1);
      assert.deepEqual(
        { eventId: failed[0]!.eventId, status: failed[0]!.status, attempts: failed[0]!.attempts, code: failed[0]!.lastStatusCode, error: failed[0]!.lastError, next: failed[0]!.nextAttemptAt },
        { eventId: doomed!.id, status: 'failed', attempts: 3, code: 500, error: 'HTTP 500', next: null },
      );
      assert.equal(failed[0]!.voiceCallId, vc);
      assert.ok(failed[0]!.completedAt);
      assert.equal((await deliveries(`orgId=${ORG_A}&status=delivered&subscriptionId=${id}`)).length, 1);
      const outcomes = (await h.metrics.webhookDeliveries.get()).values;
      assert.ok(outcomes.some((v) => v.labels.outcome === 'failed' && v.value >= 1), 'counted in handoff_webhook_deliveries_total');
    });

    test('an unreachable receiver is an error, retried like a 5xx', async (t) => {
      const id = `down-${++n}`;
      const closed = await new WebhookReceiver().start();
      await closed.close();
      const res = await op('POST', `/admin/v1/orgs/${ORG_A}/webhooks`, { id, url: `${closed.url}/nothing`, secret: SECRET, events: ['call.ended'] });
      assert.equal(res.statusCode, 201);
      t.after(async () => void (await op('DELETE', `/admin/v1/orgs/${ORG_A}/webhooks/${id}`)));
      await h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type: 'call.ended', data: {} });
      const [row] = await settled(`subscriptionId=${id}`);
      assert.equal(row?.status, 'failed');
      assert.equal(row?.attempts, 3);
      assert.equal(row?.lastStatusCode, null);
      assert.equal(row?.lastError, 'ECONNREFUSED');
    });

    test('stopping aborts an attempt in flight without counting it; the next start delivers it at once', async (t) => {
      const { id, path } = await subscribe(t, () => 0);
      const event = await h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type: 'call.ended', data: {} });
      await receiver.waitFor(() => receiver.on(path).length === 1);
      const stopping = Date.now();
      await h.services.webhooks.stop();
      assert.ok(Date.now() - stopping < 1000, 'the stop did not wait for the 2 s attempt timeout');
      const [row] = await deliveries(`subscriptionId=${id}`);
      assert.deepEqual([row?.eventId, row?.status, row?.attempts], [event!.id, 'pending', 0]);

      receiver.respond(path, () => 200);
      h.services.webhooks.start();
      await receiver.waitFor(() => receiver.on(path, true).length === 1, 1500);
      assert.deepEqual((await settled(`subscriptionId=${id}`)).map((d) => [d.status, d.attempts]), [['delivered', 1]]);
    });

    test('two instances on one database deliver every event once, in order per call', async (t) => {
      const { path } = await subscribe(t);
      const store2: KyselyStore = await h.backend.open();
      const second: Services = createServices(store2, systemClock, { metrics: new Metrics({ defaultMetrics: false }), webhooks: POLICY });
      second.webhooks.start();
      t.after(async () => {
        await second.webhooks.stop();
        await store2.close();
      });
      const calls = Array.from({ length: 6 }, () => toId18(newVoiceCallId()));
      const types = ['call.routed', 'call.answered', 'call.escalated', 'call.ended'] as const;
      const emitted: string[] = [];
      for (const type of types) {
        await Promise.all(
          calls.map(async (vc, i) => {
            const via = i % 2 ? h.services : second;
            emitted.push((await via.webhooks.emitAfterCommit({ orgId: ORG_A, type, voiceCallId: vc, data: {} }))!.id);
          }),
        );
      }
      await receiver.waitFor(() => receiver.on(path, true).length >= emitted.length);
      await new Promise((r) => setTimeout(r, 200));
      const hits = receiver.on(path);
      assert.equal(hits.length, emitted.length, 'no event delivered twice');
      assert.deepEqual(new Set(hits.map((x) => x.eventId)), new Set(emitted));
      for (const vc of calls) assert.deepEqual(hits.filter((x) => x.voiceCallId === vc).map((x) => x.type), [...types], vc);
    });
  });
}
