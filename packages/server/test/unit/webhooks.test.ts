import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadSettings } from '../../src/config.js';
import { parseSignatureHeader, signWebhook, verifyWebhookSignature, webhookUrlProblem } from '../../src/domain/webhook-signature.js';
import { DEFAULT_WEBHOOK_POLICY, retryDelayMs } from '../../src/services/webhooks.js';
import { verifySignature } from '../support/webhook-receiver.js';

const SECRET = 'whsec-0123456789abcdef';
const BODY = '{"id":"evt-1","type":"voiceCall.created"}';
const T = Date.UTC(2026, 0, 1);

describe('webhook signature', () => {
  test('matches an independent HMAC-SHA256 of "<t>.<body>" (openssl dgst -sha256 -hmac)', () => {
    assert.equal(signWebhook(SECRET, BODY, T + 999), 't=1767225600,v1=c0c018131fc9f2ffd3e200d4a6e828eacfa62839d158c2619f4c2cb229dbd5f2');
  });

  test('verifies the signed body within the tolerance, and nothing else', () => {
    const header = signWebhook(SECRET, BODY, T);
    assert.equal(verifyWebhookSignature(header, BODY, SECRET, { nowMs: T + 299_000 }), true);
    assert.equal(verifyWebhookSignature(header, BODY, SECRET, { nowMs: T - 299_000 }), true);
    assert.equal(verifyWebhookSignature(header, BODY, SECRET, { nowMs: T + 301_000 }), false, 'too old: a replay');
    assert.equal(verifyWebhookSignature(header, BODY, SECRET, { nowMs: T + 1_000_000, toleranceSeconds: 1000 }), true);
    assert.equal(verifyWebhookSignature(header, BODY + ' ', SECRET, { nowMs: T }), false, 'body changed');
    assert.equal(verifyWebhookSignature(header, BODY, SECRET + 'x', { nowMs: T }), false, 'other secret');
    assert.equal(verifyWebhookSignature(header.replace('t=1767225600', 't=1767225601'), BODY, SECRET, { nowMs: T }), false, 'timestamp changed');
    assert.equal(verifyWebhookSignature(undefined, BODY, SECRET, { nowMs: T }), false);
  });

  test('any of several v1 entries may match (secret rotation); malformed headers are refused', () => {
    const good = signWebhook(SECRET, BODY, T);
    const other = signWebhook('another-secret-0123', BODY, T).split(',')[1];
    assert.equal(verifyWebhookSignature(`${good},${other}`, BODY, SECRET, { nowMs: T }), true);
    assert.equal(verifyWebhookSignature(`t=1767225600,${other}`, BODY, SECRET, { nowMs: T }), false);
    for (const bad of ['', 't=1767225600', 'v1=' + 'a'.repeat(64), 't=abc,v1=' + 'a'.repeat(64), 't=1767225600,v1=xyz', 'garbage']) {
      assert.equal(parseSignatureHeader(bad), null, bad);
      assert.equal(verifyWebhookSignature(bad, BODY, SECRET, { nowMs: T }), false, bad);
    }
  });

  test("the README's verification snippet accepts what the service signs", () => {
    assert.equal(verifySignature(signWebhook(SECRET, BODY, Date.now()), BODY, SECRET), true);
    assert.equal(verifySignature(signWebhook(SECRET, BODY, Date.now()), BODY.toUpperCase(), SECRET), false);
  });
});

describe('webhook policy and URLs', () => {
  test('back-off doubles from the base and is capped', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 10, 11, 12, 100].map((n) => retryDelayMs(n, DEFAULT_WEBHOOK_POLICY)),
      [1000, 2000, 4000, 8000, 512_000, 600_000, 600_000, 600_000],
    );
    assert.deepEqual([1, 2, 3].map((n) => retryDelayMs(n, { retryBaseMs: 50, retryMaxMs: 120 })), [50, 100, 120]);
  });

  test('only absolute http and https URLs', () => {
    assert.equal(webhookUrlProblem('https://hooks.example.com/handoff?x=1'), null);
    assert.equal(webhookUrlProblem('http://10.0.0.5:8080/h'), null);
    assert.match(webhookUrlProblem('ftp://example.com/')!, /http or https/);
    assert.match(webhookUrlProblem('file:///etc/passwd')!, /http or https/);
    assert.match(webhookUrlProblem('/relative')!, /absolute/);
    assert.match(webhookUrlProblem('https://example.com/' + 'a'.repeat(2048))!, /2048/);
  });
});

describe('webhook settings', () => {
  test('defaults, overrides and refusals', () => {
    assert.deepEqual(loadSettings({}).webhooks, DEFAULT_WEBHOOK_POLICY, 'the environment defaults are the service defaults');
    assert.deepEqual(DEFAULT_WEBHOOK_POLICY, { maxAttempts: 15, attemptTimeoutMs: 10_000, retryBaseMs: 1000, retryMaxMs: 600_000 });
    assert.deepEqual(
      loadSettings({ HANDOFF_WEBHOOK_MAX_ATTEMPTS: '3', HANDOFF_WEBHOOK_TIMEOUT_MS: '500', HANDOFF_WEBHOOK_RETRY_BASE_MS: '50', HANDOFF_WEBHOOK_RETRY_MAX_MS: '200' }).webhooks,
      { maxAttempts: 3, attemptTimeoutMs: 500, retryBaseMs: 50, retryMaxMs: 200 },
    );
    for (const [name, value] of [['HANDOFF_WEBHOOK_MAX_ATTEMPTS', '0'], ['HANDOFF_WEBHOOK_TIMEOUT_MS', '1.5'], ['HANDOFF_WEBHOOK_RETRY_BASE_MS', 'soon']] as const) {
      assert.throws(() => loadSettings({ [name]: value }), (e: unknown) => e instanceof ConfigError && e.message.includes(name));
    }
  });
});
