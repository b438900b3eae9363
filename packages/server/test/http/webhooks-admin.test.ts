import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadProvisioningFile, validateProvisioning } from '../../src/config.js';
import { newVoiceCallId } from '../../src/domain/ids.js';
import { applyProvisioning } from '../../src/services/provisioning.js';
import { WebhookStore } from '../../src/store/webhook-store.js';
import { BACKENDS } from '../support/backends.js';
import { makeHarness, OPERATOR_TOKEN, ORG_A, ORG_A18, ORG_B, type Harness } from '../support/harness.js';

const ORG = 'orgs:\n  - id: 00Dxx0000004CFG\n    name: Acme\n    domain: acme.my.example.com\n';

for (const backend of BACKENDS) {
  describe(`webhook administration [${backend}]`, () => {
    let h: Harness;
    before(async () => {
      h = await makeHarness(backend);
    });
    after(() => h.close());

    const op = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown, token: string | null = OPERATOR_TOKEN) =>
      h.app.inject({
        method,
        url,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(payload ? { 'content-type': 'application/json' } : {}) },
        ...(payload ? { payload: JSON.stringify(payload) } : {}),
      });

    test('only the operator token opens the webhook endpoints', async () => {
      const partner = await h.token('a');
      const calls: [string, string, unknown?][] = [
        ['GET', `/admin/v1/orgs/${ORG_A}/webhooks`],
        ['POST', `/admin/v1/orgs/${ORG_A}/webhooks`, { url: 'https://example.com/h', secret: 'x'.repeat(16) }],
        ['DELETE', `/admin/v1/orgs/${ORG_A}/webhooks/anything`],
        ['GET', '/admin/v1/webhook-deliveries'],
      ];
      for (const [method, url, body] of calls) {
        for (const token of [null, partner, 'wrong-operator-token-0123456789']) {
          const res = await op(method as 'GET', url, body, token);
          assert.equal(res.statusCode, 401, `${method} ${url} with ${token === partner ? 'a partner JWT' : String(token)}`);
          assert.equal(res.json().errors[0].errorCode, 'INVALID_TOKEN');
        }
      }
      assert.deepEqual((await WebhookStore.of(h.store).listSubscriptions(ORG_A)).length, 0, 'nothing was created');
    });

    test('create, list and delete; secrets are never shown except a generated one, once', async () => {
      const created = await op('POST', `/admin/v1/orgs/${ORG_A18}/webhooks`, {
        id: 'crm',
        url: 'https://crm.example.com/hooks?source=handoff',
        secret: 'crm-secret-0123456789',
        events: ['lease.consumed', 'voiceCall.created', 'lease.consumed'],
      });
      assert.equal(created.statusCode, 201, created.body);
      const webhook = created.json().webhook;
      assert.deepEqual(
        { id: webhook.id, orgId: webhook.orgId, url: webhook.url, events: webhook.events, secret: webhook.secret },
        { id: 'crm', orgId: ORG_A18, url: 'https://crm.example.com/hooks?source=handoff', events: ['lease.consumed', 'voiceCall.created'], secret: undefined },
      );

      const generated = await op('POST', `/admin/v1/orgs/${ORG_A}/webhooks`, { url: 'http://10.0.0.7:8080/all' });
      assert.equal(generated.statusCode, 201, generated.body);
      const g = generated.json().webhook;
      assert.match(g.id, /^wh_[0-9a-f]{12}$/);
      assert.match(g.secret, /^whsec_[\w-]{32}$/);
      assert.deepEqual(g.events, ['*']);
      assert.equal((await WebhookStore.of(h.store).getSubscription(ORG_A, g.id))?.secret, g.secret);

      const list = await op('GET', `/admin/v1/orgs/${ORG_A}/webhooks`);
      assert.equal(list.statusCode, 200);
      assert.deepEqual(list.json().webhooks.map((w: { id: string }) => w.id).sort(), ['crm', g.id].sort());
      assert.ok(!list.body.includes('secret'), 'no secret in the listing');
      assert.deepEqual((await op('GET', `/admin/v1/orgs/${ORG_B}/webhooks`)).json().webhooks, []);

      assert.equal((await op('POST', `/admin/v1/orgs/${ORG_A}/webhooks`, { id: 'crm', url: 'https://other.example.com/', secret: 'y'.repeat(16) })).statusCode, 409);

      // A pending delivery of a deleted subscription is given up, not sent.
      await h.services.webhooks.emitAfterCommit({ orgId: ORG_A, type: 'voiceCall.created', voiceCallId: newVoiceCallId(), data: {} });
      const del = await op('DELETE', `/admin/v1/orgs/${ORG_A}/webhooks/crm`);
      assert.equal(del.statusCode, 200);
      assert.deepEqual(del.json(), { deleted: 'crm', cancelledDeliveries: 1 });
      const [cancelled] = (await op('GET', '/admin/v1/webhook-deliveries?subscriptionId=crm')).json().deliveries;
      assert.deepEqual([cancelled.status, cancelled.lastError, cancelled.attempts], ['failed', 'subscription deleted', 0]);
      assert.equal((await op('DELETE', `/admin/v1/orgs/${ORG_A}/webhooks/crm`)).statusCode, 404);
      assert.equal((await op('DELETE', `/admin/v1/orgs/${ORG_A}/webhooks/${g.id}`)).statusCode, 200);
    });

    test('bad input is refused with the field named', async () => {
      const cases: [string, unknown, number, string, RegExp][] = [
        ['ftp URL', { url: 'ftp://example.com/x', secret: 'x'.repeat(16) }, 400, 'INVALID_FIELD', /url: must be an http or https URL/],
        ['relative URL', { url: '/just/a/path', secret: 'x'.repeat(16) }, 400, 'INVALID_FIELD', /url/],
        ['short secret', { url: 'https://example.com/', secret: 'short' }, 400, 'INVALID_FIELD', /secret/],
        ['unknown event', { url: 'https://example.com/', events: ['call.exploded'] }, 400, 'INVALID_FIELD', /events/],
        ['unknown field', { url: 'https://example.com/', colour: 'red' }, 400, 'INVALID_FIELD', /colour|additional/],
        ['bad id', { id: 'has space', url: 'https://example.com/' }, 400, 'INVALID_FIELD', /id/],
      ];
      for (const [name, body, status, code, re] of cases) {
        const res = await op('POST', `/admin/v1/orgs/${ORG_A}/webhooks`, body);
        assert.equal(res.statusCode, status, `${name}: ${res.body}`);
        assert.equal(res.json().errors[0].errorCode, code, name);
        assert.match(res.json().errors[0].message, re, name);
      }
      const unknownOrg = await op('POST', '/admin/v1/orgs/00Dxx0000009ZZZ/webhooks', { url: 'https://example.com/' });
      assert.equal(unknownOrg.statusCode, 404);
      assert.equal(unknownOrg.json().errors[0].errorCode, 'ORG_NOT_FOUND');
      assert.equal((await op('GET', '/admin/v1/orgs/not-an-org/webhooks')).statusCode, 400);
      assert.equal((await op('GET', '/admin/v1/webhook-deliveries?status=lost')).statusCode, 400);
      assert.equal((await op('GET', '/admin/v1/webhook-deliveries?orgId=nope')).statusCode, 400);
      assert.deepEqual(await WebhookStore.of(h.store).listSubscriptions(ORG_A), []);
    });

    test('provisioning applies subscriptions idempotently; a changed secret or URL is applied', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'handoff-wh-'));
      try {
        writeFileSync(join(dir, 'secret.txt'), 'file-secret-0123456789abcdef\n');
        const file = join(dir, 'handoff.yaml');
        const write = (url: string) =>
          writeFileSync(
            file,
            `${ORG}    webhooks:\n` +
              `      - { id: crm, url: "${url}", secretFile: secret.txt, events: [voiceCall.created, call.ended] }\n` +
              '      - { id: audit, url: "https://audit.example.com/in", secret: inline-secret-0123456789 }\n',
          );
        write('https://crm.example.com/hooks');
        const first = await applyProvisioning(h.store, loadProvisioningFile(file), 1000);
        assert.ok(first.changed >= 2);
        const again = await applyProvisioning(h.store, loadProvisioningFile(file), 2000);
        assert.equal(again.changed, 0, 'the same file changes nothing');
        const hooks = WebhookStore.of(h.store);
        const crm = await hooks.getSubscription(ORG_A, 'crm');
        assert.deepEqual([crm?.secret, crm?.events, crm?.updatedAt], ['file-secret-0123456789abcdef', ['call.ended', 'voiceCall.created'], 1000]);
        assert.deepEqual((await hooks.getSubscription(ORG_A, 'audit'))?.events, ['*']);

        write('https://crm.example.com/v2/hooks');
        const changed = await applyProvisioning(h.store, loadProvisioningFile(file), 3000);
        assert.equal(changed.changed, 1);
        assert.equal((await hooks.getSubscription(ORG_A, 'crm'))?.url, 'https://crm.example.com/v2/hooks');
        assert.equal((await hooks.getSubscription(ORG_A, 'audit'))?.updatedAt, 1000);
      } finally {
        rmSync(dir, { recursive: true, force: true });
        for (const id of ['crm', 'audit']) await h.services.webhooks.deleteSubscription(ORG_A, id);
      }
    });
  });
}

describe('webhooks in the provisioning file', () => {
  const doc = (webhooks: unknown[]) => ({ orgs: [{ id: ORG_A, name: 'Acme', domain: 'acme.my.example.com', webhooks }] });
  const bad: [string, unknown[], RegExp][] = [
    ['an ftp URL', [{ id: 'w', url: 'ftp://x.example.com/', secret: 'x'.repeat(16) }], /orgs\.0\.webhooks\.0\.url: /],
    ['a short secret', [{ id: 'w', url: 'https://x.example.com/', secret: 'short' }], /orgs\.0\.webhooks\.0\.secret: /],
    ['no secret', [{ id: 'w', url: 'https://x.example.com/' }], /orgs\.0\.webhooks\.0: give exactly one of secret, secretFile/],
    ['both secrets', [{ id: 'w', url: 'https://x.example.com/', secret: 'x'.repeat(16), secretFile: 's' }], /give exactly one of/],
    ['a missing secret file', [{ id: 'w', url: 'https://x.example.com/', secretFile: 'nope.txt' }], /orgs\.0\.webhooks\.0\.secretFile: cannot read/],
    ['an unknown event', [{ id: 'w', url: 'https://x.example.com/', secret: 'x'.repeat(16), events: ['call.exploded'] }], /orgs\.0\.webhooks\.0\.events\.0: /],
    ['no events', [{ id: 'w', url: 'https://x.example.com/', secret: 'x'.repeat(16), events: [] }], /orgs\.0\.webhooks\.0\.events: /],
    ['a duplicate id', [{ id: 'w', url: 'https://x.example.com/', secret: 'x'.repeat(16) }, { id: 'w', url: 'https://y.example.com/', secret: 'y'.repeat(16) }], /orgs\.0\.webhooks\.1\.id: duplicate webhook w/],
    ['an unknown field', [{ id: 'w', url: 'https://x.example.com/', secret: 'x'.repeat(16), retries: 3 }], /orgs\.0\.webhooks\.0: unknown field\(s\): retries/],
  ];
  for (const [name, webhooks, re] of bad) {
    test(`refused: ${name}`, () => {
      assert.throws(() => validateProvisioning(doc(webhooks), 'f.yaml', tmpdir()), (e: unknown) => e instanceof ConfigError && re.test(e.message));
    });
  }
});
