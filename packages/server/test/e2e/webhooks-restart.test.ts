import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mintToken } from '../../src/domain/token-mint.js';
import type { DemoInfo } from '../../src/services/demo.js';
import { BACKENDS, makeBackend, type Backend } from '../support/backends.js';
import { readJson, startService, waitReady, type ServiceProcess } from '../support/process.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const OPERATOR = 'operator-secret-webhook-restart-0123456789';
const SECRET = 'restart-test-secret-0123456789';
/** Fast retries so the test takes seconds: 100 ms, 200 ms, then every 300 ms; never given up. */
const WEBHOOK_ENV = {
  HANDOFF_OPERATOR_TOKEN: OPERATOR,
  HANDOFF_WEBHOOK_RETRY_BASE_MS: '100',
  HANDOFF_WEBHOOK_RETRY_MAX_MS: '300',
  HANDOFF_WEBHOOK_MAX_ATTEMPTS: '100',
  HANDOFF_WEBHOOK_TIMEOUT_MS: '2000',
  HANDOFF_LOG_LEVEL: 'info',
};
const ORDER = ['voiceCall.created', 'lease.reserved', 'lease.consumed'];

for (const name of BACKENDS) {
  describe(`webhooks survive a restart of the service in the middle of retries [${name}]`, () => {
    let backend: Backend;
    let dataDir: string;
    let receiver: WebhookReceiver;
    const procs: ServiceProcess[] = [];

    before(async () => {
      backend = await makeBackend(name);
      // The demo key and demo.json live in the data dir; on SQLite so does the database.
      dataDir = backend.env.HANDOFF_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'handoff-wh-'));
      receiver = await new WebhookReceiver().start();
    });
    after(async () => {
      await Promise.all(procs.map((p) => p.stop()));
      await receiver.close();
      await backend.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    });

    test('events pending while the receiver fails are delivered after the restart: none lost, none reordered per call', async () => {
      const env = { ...backend.env, HANDOFF_DATA_DIR: dataDir, ...WEBHOOK_ENV };
      procs.push(startService(env));
      const url = await waitReady(procs[0]!);
      const demo = readJson<DemoInfo>(join(dataDir, 'demo.json'))!;
      const token = await mintToken({ privateKeyPem: readFileSync(demo.privateKeyPath, 'utf8'), iss: demo.orgId, sub: demo.callCenterApiName });
      const call = async (path: string, body: unknown, bearer = token) => {
        const res = await fetch(url + path, { method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const json = (await res.json()) as Record<string, any>;
        assert.ok(res.status < 300, `${path}: ${res.status} ${JSON.stringify(json)}`);
        return json;
      };

      // The receiver is down (503) from the start.
      const hookUrl = receiver.route('/hooks', SECRET, () => 503);
      await call(`/admin/v1/orgs/${demo.orgId}/webhooks`, { id: 'partner', url: hookUrl, secret: SECRET }, OPERATOR);

      // Three calls, each: created, a number reserved for it, the number's call arriving.
      const calls: string[] = [];
      for (let i = 0; i < 3; i++) {
        const { voiceCallId } = await call('/telephony/v1/voiceCalls', { vendorCallKey: `restart-${i}`, to: demo.channelNumber, from: '+14155551234' });
        const caller = `+4477009001${i}0`;
        const { handle } = await call('/telephony/v1/voiceCalls/reserveRoutableNumber', {
          countryCode: 'GB',
          fromNumber: caller,
          scrt2Domain: demo.domain,
          toNumber: demo.channelNumber,
          callId: voiceCallId,
        });
        await call('/telephony/v1/routableNumbers/resolve', { calledNumber: handle.routableNumber, callerNumber: caller }, OPERATOR);
        calls.push(voiceCallId);
      }

      // Mid-retries: every call's first event has failed more than once; nothing later was tried.
      await receiver.waitFor(() => calls.every((vc) => receiver.on('/hooks').filter((h) => h.voiceCallId === vc).length >= 2), 15_000, 'retries');
      const before = await fetch(`${url}/admin/v1/webhook-deliveries?orgId=${demo.orgId}`, { headers: { authorization: `Bearer ${OPERATOR}` } });
      const rows = ((await before.json()) as { deliveries: { status: string; eventType: string; attempts: number; lastStatusCode: number | null }[] }).deliveries;
      assert.equal(rows.length, 9);
      assert.ok(rows.every((d) => d.status === 'pending'));
      assert.ok(rows.filter((d) => d.eventType === 'voiceCall.created').every((d) => d.attempts >= 1 && d.lastStatusCode === 503));
      assert.ok(rows.filter((d) => d.eventType !== 'voiceCall.created').every((d) => d.attempts === 0), 'later events of a call wait');

      assert.equal(await procs[0]!.stop(), 0, 'graceful stop');
      const attemptsBeforeRestart = receiver.on('/hooks').length;
      receiver.respond('/hooks', () => 200);

      procs.push(startService(env));
      const url2 = await waitReady(procs[1]!);
      await receiver.waitFor(() => receiver.on('/hooks', true).length >= 9, 20_000, 'delivery after the restart');
      assert.equal(receiver.on('/hooks').length, attemptsBeforeRestart + 9, 'the new process delivered each event once');

      const hits = receiver.on('/hooks');
      assert.ok(hits.every((h) => h.status !== 400), 'every request was signed with the secret');
      const delivered = receiver.on('/hooks', true);
      assert.equal(new Set(delivered.map((h) => h.eventId)).size, 9, 'no event lost, none twice');
      for (const vc of calls) {
        assert.deepEqual(delivered.filter((h) => h.voiceCallId === vc).map((h) => h.type), ORDER, `in order for ${vc}`);
        // No attempt of a later event ever came before its predecessor was accepted.
        const ofCall = hits.filter((h) => h.voiceCallId === vc);
        for (const [i, type] of ORDER.entries()) {
          if (i === 0) continue;
          const firstTry = ofCall.findIndex((h) => h.type === type);
          const previousAccepted = ofCall.findIndex((h) => h.type === ORDER[i - 1] && h.status === 200);
          assert.ok(previousAccepted >= 0 && previousAccepted < firstTry, `${type} of ${vc} waited for ${ORDER[i - 1]}`);
        }
      }

      let status: { deliveries: { status: string; attempts: number }[] } = { deliveries: [] };
      for (let i = 0; i < 50; i++) {
        status = (await (await fetch(`${url2}/admin/v1/webhook-deliveries?orgId=${demo.orgId}&status=delivered`, { headers: { authorization: `Bearer ${OPERATOR}` } })).json()) as typeof status;
        if (status.deliveries.length === 9) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(status.deliveries.length, 9, 'the admin API shows all nine delivered');
      assert.equal(await procs[1]!.stop(), 0);
    });

    test('a crash with an attempt in flight: the claim lapses and the next process delivers it', async () => {
      // The subscription of the previous test is in the database already. The receiver now hangs.
      receiver.respond('/hooks', () => 0);
      const env = { ...backend.env, HANDOFF_DATA_DIR: dataDir, ...WEBHOOK_ENV, HANDOFF_WEBHOOK_TIMEOUT_MS: '500' };
      procs.push(startService(env));
      const url = await waitReady(procs[2]!);
      const demo = readJson<DemoInfo>(join(dataDir, 'demo.json'))!;
      const token = await mintToken({ privateKeyPem: readFileSync(demo.privateKeyPath, 'utf8'), iss: demo.orgId, sub: demo.callCenterApiName });
      const res = await fetch(`${url}/telephony/v1/voiceCalls`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ vendorCallKey: 'crash-1', to: demo.channelNumber, from: '+14155551234' }),
      });
      assert.equal(res.status, 201);
      const { voiceCallId } = (await res.json()) as { voiceCallId: string };
      await receiver.waitFor(() => receiver.on('/hooks').some((h) => h.voiceCallId === voiceCallId), 10_000, 'the attempt');
      procs[2]!.child.kill('SIGKILL');
      await procs[2]!.exited;

      receiver.respond('/hooks', () => 200);
      const restartedAt = Date.now();
      procs.push(startService(env));
      const url2 = await waitReady(procs[3]!);
      await receiver.waitFor(() => receiver.on('/hooks', true).some((h) => h.voiceCallId === voiceCallId), 20_000, 'delivery after the crash');
      const waited = Date.now() - restartedAt;
      assert.ok(waited < 12_000, `delivered once the dead process's claim lapsed (${waited} ms)`);
      const ofCall = receiver.on('/hooks').filter((h) => h.voiceCallId === voiceCallId);
      assert.deepEqual(ofCall.map((h) => h.status), [0, 200], 'the interrupted attempt, then one delivery');
      assert.equal(ofCall[0]!.eventId, ofCall[1]!.eventId);
      let row: { status: string; attempts: number } | undefined;
      for (let i = 0; i < 50 && row?.status !== 'delivered'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const list = await fetch(`${url2}/admin/v1/webhook-deliveries?voiceCallId=${voiceCallId}`, { headers: { authorization: `Bearer ${OPERATOR}` } });
        [row] = ((await list.json()) as { deliveries: { status: string; attempts: number }[] }).deliveries;
      }
      assert.deepEqual([row?.status, row?.attempts], ['delivered', 1], 'the crashed attempt was never recorded');
    });
  });
}
