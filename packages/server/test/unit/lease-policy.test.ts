import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  canonicalJson,
  cooldownMs,
  isLeaseUid,
  leaseTtlMs,
  LEASE_UID_PREFIX,
  MAX_TTL_SECONDS,
  newLeaseUid,
  requestHash,
  retryAfterSeconds,
} from '../../src/domain/lease-policy.js';

describe('leaseTtlMs', () => {
  test('converts seconds to ms up to the 180 s ceiling', () => {
    assert.equal(leaseTtlMs(30), 30_000);
    assert.equal(leaseTtlMs(MAX_TTL_SECONDS), 180_000);
  });

  test('raises anything below 1 s to 1 s', () => {
    assert.equal(leaseTtlMs(0), 1000);
    assert.equal(leaseTtlMs(-5), 1000);
    assert.equal(leaseTtlMs(0.5), 1000);
  });

  test('rejects more than 180 s and non-numbers', () => {
    assert.throws(() => leaseTtlMs(180.001), RangeError);
    assert.throws(() => leaseTtlMs(3600), RangeError);
    assert.throws(() => leaseTtlMs(Number.NaN), RangeError);
    assert.throws(() => leaseTtlMs(Number.POSITIVE_INFINITY), RangeError);
  });
});

describe('cooldownMs', () => {
  test('accepts zero and positive seconds', () => {
    assert.equal(cooldownMs(0), 0);
    assert.equal(cooldownMs(10), 10_000);
  });

  test('rejects negative and non-numbers', () => {
    assert.throws(() => cooldownMs(-1), RangeError);
    assert.throws(() => cooldownMs(Number.NaN), RangeError);
  });
});

describe('newLeaseUid', () => {
  test('has the documented prefix, the number and the epoch seconds', () => {
    const uid = newLeaseUid('+14155559876', 1_716_234_311_999);
    assert.ok(uid.startsWith(`${LEASE_UID_PREFIX}+14155559876:1716234311:`), uid);
    assert.match(uid, /^lease:did:\+14155559876:1716234311:[0-9a-f]{16}$/);
    assert.ok(isLeaseUid(uid));
  });

  test('is unique across many calls at the same instant', () => {
    const uids = new Set(Array.from({ length: 5000 }, () => newLeaseUid('+14155559876', 0)));
    assert.equal(uids.size, 5000);
  });

  test('isLeaseUid rejects other shapes', () => {
    assert.equal(isLeaseUid('lease:did:+14155559876:1716234311'), false);
    assert.equal(isLeaseUid('lease:did:14155559876:1716234311:0123456789abcdef'), false);
    assert.equal(isLeaseUid('x' + newLeaseUid('+14155559876', 0)), false);
  });
});

describe('retryAfterSeconds', () => {
  test('rounds up to whole seconds', () => {
    assert.equal(retryAfterSeconds(10_000, 0), 10);
    assert.equal(retryAfterSeconds(10_001, 0), 11);
    assert.equal(retryAfterSeconds(1_500, 1_000), 1);
  });

  test('is at least 1, also when the moment has passed', () => {
    assert.equal(retryAfterSeconds(1_000, 1_000), 1);
    assert.equal(retryAfterSeconds(0, 5_000), 1);
  });
});

describe('requestHash', () => {
  const body = { country: 'US', fromNumber: '+14155551234', toNumber: '+14155550100', scrt2Domain: 'acme.my.example.com', callId: '0LQxx0000001AAA', transactionId: 't-1' };

  test('ignores key order', () => {
    const reordered = { transactionId: 't-1', callId: '0LQxx0000001AAA', scrt2Domain: 'acme.my.example.com', toNumber: '+14155550100', fromNumber: '+14155551234', country: 'US' };
    assert.equal(requestHash(body), requestHash(reordered));
  });

  test('treats null and absent alike', () => {
    const { callId: _omit, ...withoutCallId } = body;
    assert.equal(requestHash({ ...withoutCallId, callId: null }), requestHash(withoutCallId));
    assert.equal(requestHash({ ...withoutCallId, callId: undefined }), requestHash(withoutCallId));
  });

  test('differs when any semantic field differs', () => {
    const h = requestHash(body);
    for (const change of [{ toNumber: '+14155550101' }, { fromNumber: '+14155551235' }, { country: 'GB' }, { callId: null }, { originalFromNumber: '+14155550000' }]) {
      assert.notEqual(requestHash({ ...body, ...change }), h, JSON.stringify(change));
    }
  });

  test('is a sha-256 hex digest', () => {
    assert.match(requestHash(body), /^[0-9a-f]{64}$/);
  });
});

describe('canonicalJson', () => {
  test('sorts keys at every level and keeps array order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [2, 1], c: 'x' } }), '{"a":{"c":"x","d":[2,1]},"b":1}');
  });

  test('drops null and undefined members but keeps them in arrays', () => {
    assert.equal(canonicalJson({ a: null, b: undefined, c: [null] }), '{"c":[null]}');
  });

  test('does not confuse a string with a number', () => {
    assert.notEqual(canonicalJson({ a: '1' }), canonicalJson({ a: 1 }));
  });
});
