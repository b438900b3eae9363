import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createPublicKey } from 'node:crypto';
import { BACKENDS } from '../support/backends.js';
import { CC_A, CC_A2, CHANNEL_A, makeHarness, ORG_A, ORG_A18, ORG_B, type Harness } from '../support/harness.js';
import { parseXmlBody } from '../../src/http/body-codec.js';

const JSON_CT = { 'content-type': 'application/json' };
const XML_CT = { 'content-type': 'application/xml' };

function b64url(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

async function countCalls(h: Harness): Promise<number> {
  const db = (h.store as unknown as { db: { selectFrom(t: string): any } }).db;
  const r = await db.selectFrom('voice_calls').select((eb: any) => eb.fn.countAll().as('n')).executeTakeFirst();
  return Number(r.n);
}

for (const backend of BACKENDS) {
  describe(`VoiceCall API [${backend}]`, () => {
    let h: Harness;
    let tokA: string;
    let tokB: string;
    let seq = 0;
    const key = () => `conv-${backend}-${++seq}`;
    const body = (o: Record<string, unknown> = {}) => ({ vendorCallKey: key(), to: CHANNEL_A, from: '+14155551234', callCenterApiName: CC_A, ...o });

    before(async () => {
      h = await makeHarness(backend, { bodyLimit: 4096 });
      tokA = await h.token('a');
      tokB = await h.token('b');
    });
    after(() => h.close());

    const post = (payload: unknown, headers: Record<string, string> = {}, token = tokA) =>
      h.app.inject({
        method: 'POST',
        url: '/telephony/v1/voiceCalls',
        headers: { authorization: `Bearer ${token}`, ...JSON_CT, ...headers },
        payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      });
    const get = (id: string, token = tokA, headers: Record<string, string> = {}) =>
      h.app.inject({ method: 'GET', url: `/telephony/v1/voiceCalls/${encodeURIComponent(id)}`, headers: { authorization: `Bearer ${token}`, ...headers } });
    const patch = (id: string, payload: unknown, token = tokA, headers: Record<string, string> = JSON_CT) =>
      h.app.inject({
        method: 'PATCH',
        url: `/telephony/v1/voiceCalls/${encodeURIComponent(id)}`,
        headers: { authorization: `Bearer ${token}`, ...headers },
        payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      });

    describe('POST /voiceCalls', () => {
      test('creates a call and returns an 18-char 0LQ ID with a valid suffix', async () => {
        const res = await post(body({ callAttributes: '{"Department__c":"Support"}' }), { 'telephony-provider-name': 'Genesys Cloud' });
        assert.equal(res.statusCode, 201);
        const out = res.json();
        assert.match(out.voiceCallId, /^0LQ[A-Za-z0-9]{12}[A-Z0-5]{3}$/);
        assert.deepEqual(out.errors, []);
        const rec = (await get(out.voiceCallId)).json();
        assert.equal(rec.voiceCallId, out.voiceCallId);
        assert.equal(rec.callAttributes, '{"Department__c":"Support"}');
        assert.equal(rec.telephonyProviderName, 'Genesys Cloud');
        assert.equal(rec.initiationMethod, 'Inbound');
        assert.equal(rec.isActiveCall, true);
        assert.equal(rec.callCenterApiName, CC_A);
      });

      test('a repeated vendorCallKey returns the existing record (200), also when raced', async () => {
        const b = body();
        const first = await post(b);
        assert.equal(first.statusCode, 201);
        const again = await Promise.all(Array.from({ length: 8 }, () => post(b)));
        for (const r of again) {
          assert.equal(r.statusCode, 200);
          assert.equal(r.json().voiceCallId, first.json().voiceCallId);
        }
      });

      test('the same vendorCallKey in another org is a different call', async () => {
        const b = body();
        const a = await post(b);
        const other = await post({ ...b, callCenterApiName: 'BravoCC' }, {}, tokB);
        assert.equal(other.statusCode, 201);
        assert.notEqual(other.json().voiceCallId, a.json().voiceCallId);
      });

      test('callAttributes as an object is accepted and stored as a JSON string', async () => {
        const res = await post(body({ callAttributes: { Department__c: 'Billing', Priority__c: 2 } }));
        assert.equal(res.statusCode, 201);
        assert.equal((await get(res.json().voiceCallId)).json().callAttributes, '{"Department__c":"Billing","Priority__c":2}');
      });

      test('tel: URIs are normalised to E.164', async () => {
        const res = await post(body({ from: 'tel:+442079460123' }));
        assert.equal(res.statusCode, 201);
        assert.equal((await get(res.json().voiceCallId)).json().from, '+442079460123');
      });

      test('a Transfer links to its parent, which lists it as a leg', async () => {
        const parent = (await post(body())).json().voiceCallId;
        const child = await post(body({ initiationMethod: 'Transfer', parentVoiceCallId: parent.slice(0, 15) }));
        assert.equal(child.statusCode, 201);
        const rec = (await get(parent)).json();
        assert.equal(rec.legs.length, 1);
        assert.equal(rec.legs[0].voiceCallId, child.json().voiceCallId);
        assert.equal(rec.legs[0].parentVoiceCallId, parent);
        assert.equal(rec.legsTotal, 1);
      });

      test('legs are bounded: legsLimit shows the newest, oldest first, with legsTotal; bad limits are 400', async () => {
        const parent = (await post(body())).json().voiceCallId;
        const kids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const r = await post(body({ initiationMethod: 'Transfer', parentVoiceCallId: parent }));
          assert.equal(r.statusCode, 201);
          kids.push(r.json().voiceCallId);
        }
        const page = (q: string) => h.app.inject({ method: 'GET', url: `/telephony/v1/voiceCalls/${parent}${q}`, headers: { authorization: `Bearer ${tokA}` } });
        const all = (await page('')).json();
        assert.deepEqual(all.legs.map((l: { voiceCallId: string }) => l.voiceCallId), kids);
        assert.equal(all.legsTotal, 5);
        const two = (await page('?legsLimit=2')).json();
        assert.deepEqual(two.legs.map((l: { voiceCallId: string }) => l.voiceCallId), kids.slice(3));
        assert.equal(two.legsTotal, 5);
        const none = (await page('?legsLimit=0')).json();
        assert.deepEqual(none.legs, []);
        assert.equal(none.legsTotal, 5);
        for (const bad of ['-1', '1001', 'many', '2.5']) {
          const r = await page(`?legsLimit=${bad}`);
          assert.equal(r.statusCode, 400, bad);
          assert.ok(r.json().errors?.[0]?.errorCode, `${bad}: an error code`);
        }
        // another org sees neither the call nor its legs
        assert.equal((await get(parent, tokB)).statusCode, 404);
      });

      test('XML in, XML out (numbers stay strings)', async () => {
        const xml = `<?xml version="1.0"?><VoiceCall><vendorCallKey>${key()}</vendorCallKey><to>${CHANNEL_A}</to><from>+14155551234</from>` +
          `<callCenterApiName>${CC_A}</callCenterApiName><callAttributes>{"Zip__c":"02134"}</callAttributes>` +
          `<participants><participantKey>+14155551234</participantKey><type>END_USER</type></participants></VoiceCall>`;
        const res = await post(xml, XML_CT);
        assert.equal(res.statusCode, 201);
        assert.match(res.headers['content-type'] as string, /application\/xml/);
        const out = parseXmlBody(res.body);
        assert.match(out.voiceCallId as string, /^0LQ/);
        const rec = (await get(out.voiceCallId as string, tokA, { accept: 'application/xml' }));
        const parsed = parseXmlBody(rec.body);
        assert.equal(parsed.from, '+14155551234');
        assert.equal(parsed.callAttributes, '{"Zip__c":"02134"}');
        assert.deepEqual(parsed.participants, [{ participantKey: '+14155551234', type: 'END_USER' }]);
      });

      test('Accept overrides the request format', async () => {
        const xml = `<r><vendorCallKey>${key()}</vendorCallKey><to>${CHANNEL_A}</to><from>+14155551234</from></r>`;
        const res = await post(xml, { ...XML_CT, accept: 'application/json' });
        assert.equal(res.statusCode, 201);
        assert.match(res.headers['content-type'] as string, /application\/json/);
      });

      test('tokens: ES256, a rotated key chosen by kid, and an 18-char iss are accepted', async () => {
        for (const t of [await h.token('aEc'), await h.token('a2'), await h.token('a', { iss: ORG_A18 })]) {
          assert.equal((await post(body(), {}, t)).statusCode, 201);
        }
      });

      describe('rejections change nothing', () => {
        const cases: [string, () => Promise<{ statusCode: number; body: string; headers: Record<string, unknown> }>, number, string][] = [
          ['missing vendorCallKey', () => post({ to: CHANNEL_A, from: '+14155551234' }), 400, 'MISSING_FIELD'],
          ['missing from', () => post({ vendorCallKey: key(), to: CHANNEL_A }), 400, 'MISSING_FIELD'],
          ['non-E.164 from', () => post(body({ from: '4155551234' })), 400, 'INVALID_FIELD'],
          ['non-E.164 to', () => post(body({ to: '+0123' })), 400, 'INVALID_FIELD'],
          ['callAttributes not JSON', () => post(body({ callAttributes: "{'Department__c':'Support'}" })), 400, 'INVALID_FIELD'],
          ['callAttributes an array string', () => post(body({ callAttributes: '[1,2]' })), 400, 'INVALID_FIELD'],
          ['callAttributes a number', () => post(body({ callAttributes: 7 })), 400, 'INVALID_FIELD'],
          ['unknown initiationMethod', () => post(body({ initiationMethod: 'Teleport' })), 400, 'INVALID_FIELD'],
          ['Transfer without parent', () => post(body({ initiationMethod: 'Transfer' })), 400, 'MISSING_FIELD'],
          ['parent with Inbound', () => post(body({ parentVoiceCallId: '0LQxx0000004ABcGAM' })), 400, 'INVALID_FIELD'],
          ['malformed parent ID', () => post(body({ initiationMethod: 'Transfer', parentVoiceCallId: '0LQxx0000004ABcXXX' })), 400, 'INVALID_FIELD'],
          ['unknown parent', () => post(body({ initiationMethod: 'Transfer', parentVoiceCallId: '0LQxx0000004ABcGAM' })), 404, 'VOICE_CALL_NOT_FOUND'],
          ['unknown call center', () => post(body({ callCenterApiName: 'Nope' })), 400, 'INVALID_FIELD'],
          ['bad startTime', () => post(body({ startTime: 'yesterday' })), 400, 'INVALID_FIELD'],
          ['startTime without zone', () => post(body({ startTime: '2026-01-01T10:00:00' })), 400, 'INVALID_FIELD'],
          ['too many participants', () => post(body({ participants: Array.from({ length: 21 }, () => ({})) })), 400, 'INVALID_FIELD'],
          ['vendorCallKey too long', () => post(body({ vendorCallKey: 'k'.repeat(256) })), 400, 'INVALID_FIELD'],
          ['malformed JSON', () => post('{"vendorCallKey":'), 400, 'INVALID_REQUEST'],
          ['JSON with __proto__', () => post('{"vendorCallKey":"x","to":"+14155550100","from":"+14155551234","__proto__":{"a":1}}'), 400, 'INVALID_REQUEST'],
          ['empty body', () => post(''), 400, 'INVALID_REQUEST'],
          ['XML with a DOCTYPE', () => post('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r><vendorCallKey>&x;</vendorCallKey></r>', XML_CT), 400, 'INVALID_REQUEST'],
          ['malformed XML', () => post('<r><vendorCallKey>x</r>', XML_CT), 400, 'INVALID_REQUEST'],
          ['text/plain body', () => post('hello', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
          ['body over the limit', () => post(body({ callOrigin: 'x'.repeat(5000) })), 413, 'PAYLOAD_TOO_LARGE'],
          ['Accept that allows neither format', () => post(body(), { accept: 'text/html' }), 406, 'NOT_ACCEPTABLE'],
          ['sub names another call center', async () => post(body({ callCenterApiName: CC_A2 }), {}, await h.token('a', { sub: CC_A })), 403, 'FORBIDDEN'],
          ['no Authorization', () => h.app.inject({ method: 'POST', url: '/telephony/v1/voiceCalls', headers: JSON_CT, payload: JSON.stringify(body()) }), 401, 'INVALID_TOKEN'],
          ['Basic auth', () => h.app.inject({ method: 'POST', url: '/telephony/v1/voiceCalls', headers: { ...JSON_CT, authorization: 'Basic dXNlcjpwYXNz' }, payload: JSON.stringify(body()) }), 401, 'INVALID_TOKEN'],
          ['garbage token', () => post(body(), {}, 'not-a-jwt'), 401, 'INVALID_TOKEN'],
          ['expired token', async () => post(body(), {}, await h.token('a', { now: Date.now() - 7200_000, ttlSeconds: 3600 })), 401, 'INVALID_TOKEN'],
          ['token from the future', async () => post(body(), {}, await h.token('a', { now: Date.now() + 600_000 })), 401, 'INVALID_TOKEN'],
          ['token of an unknown org', async () => post(body(), {}, await h.token('a', { iss: '00Dxx0000000UNK' })), 401, 'INVALID_TOKEN'],
          ['iss of org A signed with org B key', async () => post(body(), {}, await h.token('b', { iss: ORG_A })), 401, 'INVALID_TOKEN'],
          ['sub that is no call center or channel', async () => post(body(), {}, await h.token('a', { sub: 'Nobody' })), 401, 'INVALID_TOKEN'],
          ['aud not accepted', async () => post(body(), {}, await h.token('a', { aud: 'https://elsewhere' })), 401, 'INVALID_TOKEN'],
          [
            'HS256 signed with the public key',
            async () => {
              const pem = createPublicKey(h.keys.a).export({ type: 'spki', format: 'pem' }).toString();
              const now = Math.floor(Date.now() / 1000);
              const signing = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ iss: ORG_A, iat: now, exp: now + 600 })}`;
              return post(body(), {}, `${signing}.${createHmac('sha256', pem).update(signing).digest('base64url')}`);
            },
            401,
            'INVALID_TOKEN',
          ],
          [
            'alg none',
            async () => {
              const now = Math.floor(Date.now() / 1000);
              return post(body(), {}, `${b64url({ alg: 'none' })}.${b64url({ iss: ORG_A, iat: now, exp: now + 600 })}.`);
            },
            401,
            'INVALID_TOKEN',
          ],
        ];
        for (const [name, run, status, code] of cases) {
          test(`${name} -> ${status} ${code}`, async () => {
            const before = await countCalls(h);
            const res = await run();
            assert.equal(res.statusCode, status, res.body);
            const parsed = res.headers['content-type']?.toString().includes('xml') ? parseXmlBody(res.body) : JSON.parse(res.body);
            const errs = parsed.errors as { errorCode: string; message: string }[];
            assert.equal(errs[0]!.errorCode, code);
            assert.ok(errs[0]!.message.length > 0);
            if (status === 401) assert.match(String(res.headers['www-authenticate']), /^Bearer realm="handoff"/);
            assert.equal(await countCalls(h), before, 'nothing was written');
          });
        }
      });

      test('a jti token is accepted once; the replay is 401 and writes nothing', async () => {
        const t = await h.token('a', { jti: true });
        assert.equal((await post(body(), {}, t)).statusCode, 201);
        const before = await countCalls(h);
        const res = await post(body(), {}, t);
        assert.equal(res.statusCode, 401);
        assert.match(res.headers['www-authenticate'] as string, /invalid_token/);
        assert.equal(await countCalls(h), before);
      });

      test('a token without jti is reusable', async () => {
        const t = await h.token('a');
        for (let i = 0; i < 3; i++) assert.equal((await post(body(), {}, t)).statusCode, 201);
      });

      test('a 401 for an XML request is in XML', async () => {
        const res = await post('<r/>', XML_CT, 'bad');
        assert.equal(res.statusCode, 401);
        assert.equal((parseXmlBody(res.body).errors as { errorCode: string }[])[0]!.errorCode, 'INVALID_TOKEN');
      });
    });

    describe('PATCH /voiceCalls/{id}', () => {
      test('updates by 18-char ID, 15-char ID and vendorCallKey; answers {"status":"pending"}', async () => {
        const b = body({ callAttributes: '{"a":"1","b":"2"}' });
        const id = (await post(b)).json().voiceCallId as string;
        const r1 = await patch(id, { endTime: '2026-11-22T10:00:00Z', isActiveCall: false, disconnectReason: 'CustomerHangup' });
        assert.equal(r1.statusCode, 200);
        assert.deepEqual(r1.json(), { status: 'pending' });
        assert.equal((await patch(id.slice(0, 15), { queue: 'Tier2' })).statusCode, 200);
        assert.equal((await patch(b.vendorCallKey as string, { callAttributes: { b: '3', c: '4' } })).statusCode, 200);
        const rec = (await get(id)).json();
        assert.equal(rec.endTime, '2026-11-22T10:00:00Z');
        assert.equal(rec.isActiveCall, false);
        assert.equal(rec.disconnectReason, 'CustomerHangup');
        assert.equal(rec.queue, 'Tier2');
        assert.deepEqual(JSON.parse(rec.callAttributes), { a: '1', b: '3', c: '4' }, 'attributes merged field by field');
      });

      test('XML patch with a boolean as text', async () => {
        const id = (await post(body())).json().voiceCallId as string;
        const res = await patch(id, '<VoiceCall><isActiveCall>false</isActiveCall></VoiceCall>', tokA, XML_CT);
        assert.equal(res.statusCode, 200);
        assert.equal(parseXmlBody(res.body).status, 'pending');
        assert.equal((await get(id)).json().isActiveCall, false);
      });

      test('bad patches are refused and change nothing', async () => {
        const id = (await post(body())).json().voiceCallId as string;
        const before = (await get(id)).json();
        const cases: [unknown, number, string, string][] = [
          [{}, 400, 'INVALID_REQUEST', tokA],
          [{ isActiveCall: 'maybe' }, 400, 'INVALID_FIELD', tokA],
          [{ endTime: 'later' }, 400, 'INVALID_FIELD', tokA],
          [{ callAttributes: 'nope' }, 400, 'INVALID_FIELD', tokA],
          [{ queue: 'stolen' }, 404, 'VOICE_CALL_NOT_FOUND', tokB],
          [{ queue: 'x' }, 401, 'INVALID_TOKEN', 'bad'],
        ];
        for (const [payload, status, code, token] of cases) {
          const res = await patch(id, payload, token);
          assert.equal(res.statusCode, status, JSON.stringify(payload));
          assert.equal(res.json().errors[0].errorCode, code);
        }
        assert.deepEqual((await get(id)).json(), before);
      });

      test('unknown ID or key -> 404', async () => {
        const res = await patch('0LQxx0000004ABcGAM', { queue: 'x' });
        assert.equal(res.statusCode, 404);
        assert.equal(res.json().errors[0].errorCode, 'VOICE_CALL_NOT_FOUND');
      });
    });

    describe('GET /voiceCalls/{id}', () => {
      test('another org gets 404 for a call that exists', async () => {
        const id = (await post(body())).json().voiceCallId as string;
        const res = await get(id, tokB);
        assert.equal(res.statusCode, 404);
        assert.equal(res.json().errors[0].errorCode, 'VOICE_CALL_NOT_FOUND');
      });

      test('unknown, wrong-suffix and case-changed IDs are 404', async () => {
        const id = (await post(body())).json().voiceCallId as string;
        const swapped = id.slice(0, 3) + [...id.slice(3, 15)].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join('');
        for (const bad of ['0LQxx0000004ABcGAM', id.slice(0, 15) + 'ZZZ', swapped]) {
          assert.equal((await get(bad)).statusCode, 404, bad);
        }
      });

      test('the record of another org leaks nothing through vendorCallKey lookup', async () => {
        const b = body();
        await post(b);
        assert.equal((await get(b.vendorCallKey as string, tokB)).statusCode, 404);
      });
    });

    describe('operations', () => {
      test('healthz, readyz, metrics with route labels, openapi 3.1 built from the schemas', async () => {
        assert.equal((await h.app.inject('/healthz')).statusCode, 200);
        assert.deepEqual((await h.app.inject('/readyz')).json(), { status: 'ready' });
        await get('0LQxx0000004ABcGAM');
        const metrics = (await h.app.inject('/metrics')).body;
        assert.match(metrics, /handoff_http_requests_total\{method="GET",route="\/telephony\/v1\/voiceCalls\/:id",status="404"\} \d+/);
        assert.match(metrics, /handoff_http_request_duration_seconds_bucket/);
        assert.match(metrics, /handoff_auth_failures_total\{reason="/);
        const doc = (await h.app.inject('/openapi.json')).json();
        assert.equal(doc.openapi, '3.1.0');
        const create = doc.paths['/telephony/v1/voiceCalls'].post;
        assert.ok(create.requestBody.content['application/json'].schema.properties.vendorCallKey);
        assert.deepEqual(create.requestBody.content['application/json'].schema.required.sort(), ['from', 'to', 'vendorCallKey']);
        assert.ok(doc.paths['/telephony/v1/voiceCalls/{id}'].patch);
        assert.ok(doc.components.securitySchemes.bearerAuth);
      });

      test('unknown route -> 404 in the error shape', async () => {
        const res = await h.app.inject('/telephony/v2/nothing');
        assert.equal(res.statusCode, 404);
        assert.equal(res.json().errors[0].errorCode, 'NOT_FOUND');
      });

      test("the router's refusals are 400 in the error shape: malformed percent-encoding, over-long path parameter", async () => {
        for (const url of ['/telephony/v1/voiceCalls/%E0%A4%A', `/telephony/v1/voiceCalls/${'x'.repeat(5000)}`]) {
          const res = await h.app.inject({ url, headers: { authorization: `Bearer ${tokA}` } });
          assert.equal(res.statusCode, 400, url.slice(0, 40));
          assert.equal(res.json().errors[0].errorCode, 'INVALID_REQUEST');
          assert.doesNotMatch(res.body, /xxxxx|%E0/, 'the URL is not echoed');
        }
        const xml = await h.app.inject({ url: '/telephony/v1/voiceCalls/%E0%A4%A', headers: { authorization: `Bearer ${tokA}`, accept: 'application/xml' } });
        assert.equal(xml.statusCode, 400);
        assert.match(xml.body, /<errorCode>INVALID_REQUEST<\/errorCode>/);
      });

      test('per-org request rate limit -> 429 with Retry-After', async () => {
        const org = (await h.store.getOrg(ORG_B))!;
        await h.store.upsertOrg({ ...org, quotas: { ...org.quotas, requestsPerSecond: 2 } }, Date.now());
        const codes: number[] = [];
        let retryAfter: unknown;
        for (let i = 0; i < 4; i++) {
          const r = await get('0LQxx0000004ABcGAM', tokB);
          codes.push(r.statusCode);
          if (r.statusCode === 429) retryAfter = r.headers['retry-after'];
        }
        assert.deepEqual(codes.slice(0, 2), [404, 404]);
        assert.ok(codes.includes(429));
        assert.ok(Number(retryAfter) >= 1);
        await h.store.upsertOrg(org, Date.now());
      });
    });
  });
}
