import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { buildUui, isHandoffApiError, mintToken, type UuiInput } from '../src/index.js';
import { decodeUuiValue, parseUuiContext } from '@handoff/server/dist/src/domain/uui.js';
import { caseSafeSuffix } from '../src/ids.js';

const BASE: UuiInput = { orgId: '00Dxx0000004CFG', scrt2Domain: 'acme.my.example.com', token: 'x', callId: '0LQxx0000004ABcGAM', transactionId: 'order-1' };

/** Asserts INVALID_UUI naming `field`. */
function refused(build: () => unknown, field: string): void {
  assert.throws(build, (err: unknown) => {
    assert.ok(isHandoffApiError(err), `a HandoffApiError, got ${String(err)}`);
    assert.equal(err.errorCode, 'INVALID_UUI');
    assert.equal(err.status, 0);
    assert.equal(err.details.field, field);
    return true;
  });
}

/** `input` with its token padded so the decoded text is exactly `length` characters. */
function ofDecodedLength(length: number, input: UuiInput = BASE): UuiInput {
  const overhead = buildUui({ ...input, token: 'x' }, { maxDecodedLength: 100_000 }).decodedLength - 1;
  return { ...input, token: 'x'.repeat(length - overhead) };
}

describe('case-safe suffix', () => {
  test('matches the reference vectors', () => {
    assert.equal(caseSafeSuffix('0LQxx0000004ABc'), 'GAM');
    assert.equal(caseSafeSuffix('00Dxx0000004CFG'), 'EA2');
    assert.equal(caseSafeSuffix('000000000000000'), 'AAA');
    assert.equal(caseSafeSuffix('ZZZZZZZZZZZZZZZ'), '555');
  });
});

describe('buildUui', () => {
  test('writes the JSON keys in order, omits absent ones, and hex-encodes the UTF-8 bytes in upper case', () => {
    const uui = buildUui(BASE);
    assert.deepEqual(Object.keys(JSON.parse(uui.decoded)), ['orgId', 'scrt2Domain', 'token', 'callId', 'transactionId']);
    assert.equal(uui.decoded, '{"orgId":"00Dxx0000004CFG","scrt2Domain":"acme.my.example.com","token":"x","callId":"0LQxx0000004ABcGAM","transactionId":"order-1"}');
    assert.match(uui.headerValue, /^[0-9A-F]+;encoding=hex$/);
    assert.equal(Buffer.from(uui.headerValue.split(';')[0]!, 'hex').toString('utf8'), uui.decoded);
    assert.equal(uui.decodedLength, uui.decoded.length);
    assert.equal(uui.encodedLength, 2 * uui.decodedLength + ';encoding=hex'.length);

    const minimal = buildUui({ scrt2Domain: 'acme.my.example.com', token: 't' });
    assert.deepEqual(JSON.parse(minimal.decoded), { scrt2Domain: 'acme.my.example.com', token: 't' });
  });

  test('json encoding sends the JSON text itself', () => {
    const uui = buildUui(BASE, { encoding: 'json' });
    assert.equal(uui.headerValue, uui.decoded);
    assert.equal(uui.encodedLength, uui.decodedLength);
    assert.throws(() => buildUui(BASE, { encoding: 'JSON' as 'json' }), RangeError);
  });

  test('accepts exactly 1,024 decoded characters and refuses 1,025', () => {
    const atLimit = buildUui(ofDecodedLength(1024));
    assert.equal(atLimit.decodedLength, 1024);
    assert.equal(atLimit.encodedLength, 2 * 1024 + ';encoding=hex'.length);
    assert.equal(atLimit.headerValue.length, 2061);
    assert.equal(buildUui(ofDecodedLength(1024), { encoding: 'json' }).encodedLength, 1024);
    refused(() => buildUui(ofDecodedLength(1025)), 'uui');
    refused(() => buildUui(ofDecodedLength(1025), { encoding: 'json' }), 'uui');
    assert.equal(buildUui(ofDecodedLength(1025), { maxDecodedLength: 1025 }).decodedLength, 1025);
    assert.throws(() => buildUui(BASE, { maxDecodedLength: 0 }), RangeError);
  });

  test('counts characters, not bytes, against the limit; the hex header carries every byte', () => {
    // 'é' is 2 bytes in UTF-8, '☎' 3 and '😀' 4 (and two UTF-16 units): 1,024 characters, 1,324 bytes.
    const wide = { ...BASE, transactionId: 'é☎😀'.repeat(50) };
    const uui = buildUui(ofDecodedLength(1024, wide));
    assert.equal(uui.decodedLength, 1024);
    assert.equal([...uui.decoded].length, 1024);
    const bytes = Buffer.byteLength(uui.decoded);
    assert.equal(bytes, 1024 + 50 * (1 + 2 + 3));
    assert.equal(uui.encodedLength, 2 * bytes + ';encoding=hex'.length);
    assert.equal(Buffer.from(uui.headerValue.split(';')[0]!, 'hex').toString('utf8'), uui.decoded);
    assert.equal(JSON.parse(uui.decoded).transactionId, wide.transactionId);
    assert.equal(buildUui(ofDecodedLength(1024, wide), { encoding: 'json' }).encodedLength, bytes);
    refused(() => buildUui(ofDecodedLength(1025, wide)), 'uui');
  });

  test('fits a real RS256 token: the limit is on the decoded text, not the hex header', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const token = mintToken({ privateKeyPem: privateKey, orgId: '00Dxx0000004CFG', subject: 'AcmeCallCenter', ttlSeconds: 86_400 });
    const uui = buildUui({ ...BASE, token });
    assert.ok(uui.decodedLength <= 1024);
    assert.ok(uui.encodedLength > 1024, 'hex of an RS256 token alone exceeds 1,024 characters');
    assert.equal(JSON.parse(uui.decoded).token, token);
  });

  test('shortens an 18-char orgId after checking its suffix, and refuses other org IDs', () => {
    assert.equal(JSON.parse(buildUui({ ...BASE, orgId: '00Dxx0000004CFGEA2' }).decoded).orgId, '00Dxx0000004CFG');
    // The suffix alphabet has no lower-case letters, so the service compares it case-insensitively.
    assert.equal(JSON.parse(buildUui({ ...BASE, orgId: '00Dxx0000004CFGea2' }).decoded).orgId, '00Dxx0000004CFG');
    refused(() => buildUui({ ...BASE, orgId: '00Dxx0000004CFGEA3' }), 'orgId');
    refused(() => buildUui({ ...BASE, orgId: '00Dxx0000004CF' }), 'orgId');
    refused(() => buildUui({ ...BASE, orgId: '00Dxx0000004CFGE' }), 'orgId');
    refused(() => buildUui({ ...BASE, orgId: '0LQxx0000004ABc' }), 'orgId');
    refused(() => buildUui({ ...BASE, orgId: '00Dxx000-004CFG' }), 'orgId');
  });

  test('extends a 15-char callId with its suffix, and refuses what is not a VoiceCall ID', () => {
    assert.equal(JSON.parse(buildUui({ ...BASE, callId: '0LQxx0000004ABc' }).decoded).callId, '0LQxx0000004ABcGAM');
    assert.equal(JSON.parse(buildUui({ ...BASE, callId: '0LQxx0000004ABcGAM' }).decoded).callId, '0LQxx0000004ABcGAM');
    refused(() => buildUui({ ...BASE, callId: '0LQxx0000004ABcGAN' }), 'callId');
    refused(() => buildUui({ ...BASE, callId: '50130000009xYZ1AAM' }), 'callId');
    refused(() => buildUui({ ...BASE, callId: '0LQxx0000004AB' }), 'callId');
  });

  test('accepts a scrt2Domain of 128 bytes and refuses 129, counting bytes', () => {
    assert.equal(JSON.parse(buildUui({ ...BASE, scrt2Domain: 'a'.repeat(128) }).decoded).scrt2Domain, 'a'.repeat(128));
    refused(() => buildUui({ ...BASE, scrt2Domain: 'a'.repeat(129) }), 'scrt2Domain');
    assert.ok(buildUui({ ...BASE, scrt2Domain: 'ü'.repeat(64) }));
    refused(() => buildUui({ ...BASE, scrt2Domain: 'ü'.repeat(64) + 'a' }), 'scrt2Domain');
    refused(() => buildUui({ ...BASE, scrt2Domain: '' }), 'scrt2Domain');
  });

  test('refuses a missing token', () => {
    refused(() => buildUui({ ...BASE, token: '' }), 'token');
    refused(() => buildUui({ scrt2Domain: 'acme.my.example.com' } as UuiInput), 'token');
  });

  test('writes extra flow parameters after the standard keys, never over them', () => {
    const uui = buildUui({ ...BASE, extra: { Department__c: 'Billing', priority: 2 } });
    assert.deepEqual(Object.keys(JSON.parse(uui.decoded)), ['orgId', 'scrt2Domain', 'token', 'callId', 'transactionId', 'Department__c', 'priority']);
    refused(() => buildUui({ ...BASE, extra: { token: 'other' } }), 'extra.token');
    refused(() => buildUui({ ...BASE, extra: JSON.parse('{"__proto__":"x"}') as Record<string, string> }), 'extra.__proto__');
  });
});

describe("buildUui against the service's own UUI decoder", () => {
  /** The service's verdict on a header value: the decoded context, or its error code. */
  function serviceReads(headerValue: string): { ok: true; context: ReturnType<typeof parseUuiContext> } | { ok: false; code: string } {
    try {
      return { ok: true, context: parseUuiContext(decodeUuiValue(headerValue)) };
    } catch (err) {
      return { ok: false, code: (err as { code?: string }).code ?? String(err) };
    }
  }

  test('decodes what buildUui builds, at the limit and with multi-byte text, to the same fields', () => {
    const inputs: UuiInput[] = [
      BASE,
      { scrt2Domain: 'acme.my.example.com', token: 't' },
      { ...BASE, orgId: '00Dxx0000004CFGEA2', callId: '0LQxx0000004ABc', transactionId: 'a;b=c', extra: { Department__c: 'Billing' } },
      ofDecodedLength(1024),
      ofDecodedLength(1024, { ...BASE, transactionId: 'é☎'.repeat(100), scrt2Domain: 'ü'.repeat(64) }),
    ];
    for (const encoding of ['hex', 'json'] as const) {
      for (const input of inputs) {
        const uui = buildUui(input, { encoding });
        const read = serviceReads(uui.headerValue);
        assert.ok(read.ok, `${encoding}: the service refused ${uui.decoded.slice(0, 80)}: ${read.ok ? '' : read.code}`);
        const sent = JSON.parse(uui.decoded) as Record<string, unknown>;
        assert.equal(read.context.token, sent.token);
        assert.equal(read.context.scrt2Domain, sent.scrt2Domain);
        assert.equal(read.context.orgId, sent.orgId ?? null);
        assert.equal(read.context.callId, typeof sent.callId === 'string' ? sent.callId.slice(0, 15) : null);
        assert.equal(read.context.transactionId, sent.transactionId ?? null);
      }
    }
    // Four-byte characters: the hex path counts them once, as buildUui does.
    assert.ok(serviceReads(buildUui(ofDecodedLength(1024, { ...BASE, transactionId: '😀'.repeat(100) })).headerValue).ok);
  });

  test('refuses what buildUui refuses', () => {
    for (const encoding of ['hex', 'json'] as const) {
      const over = buildUui(ofDecodedLength(1025), { encoding, maxDecodedLength: 1025 });
      assert.deepEqual(serviceReads(over.headerValue), { ok: false, code: 'INVALID_UUI' }, `${encoding}: 1,025 characters`);
    }
    const wideOver = buildUui(ofDecodedLength(1025, { ...BASE, transactionId: 'é☎'.repeat(100) }), { maxDecodedLength: 1025 });
    assert.deepEqual(serviceReads(wideOver.headerValue), { ok: false, code: 'INVALID_UUI' });
    // Fields buildUui refuses, written by hand: the service refuses them too.
    const raw = (fields: Record<string, unknown>) => JSON.stringify({ scrt2Domain: 'acme.my.example.com', token: 't', ...fields });
    for (const fields of [{ orgId: '00Dxx0000004CFGEA3' }, { orgId: '00Dxx0000004CF' }, { scrt2Domain: 'a'.repeat(129) }, { scrt2Domain: 'ü'.repeat(64) + 'a' }, { token: '' }]) {
      assert.deepEqual(serviceReads(raw(fields)), { ok: false, code: 'INVALID_UUI' }, JSON.stringify(fields).slice(0, 60));
    }
  });
});
