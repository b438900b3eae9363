import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeUuiValue, encodeUui, parseStrictJson, parseUuiContext } from '../../src/domain/uui.js';
import { HandoffError } from '../../src/domain/errors.js';

const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex');
const ctx = { orgId: '00Dxx0000004CFG', scrt2Domain: 'acme.my.example.com', token: 'eyJ.abc.def', callId: '0LQxx0000004ABcGAM', transactionId: 'order-2026-0122-5489' };
const isUui = (re: RegExp) => (e: unknown) => e instanceof HandoffError && e.code === 'INVALID_UUI' && e.sipStatus === 400 && re.test(e.message);

describe('decodeUuiValue', () => {
  test('hex with encoding=hex, upper or lower case, with other RFC 7433 parameters', () => {
    assert.equal(decodeUuiValue(`${hex('{"a":1}').toUpperCase()};encoding=hex`), '{"a":1}');
    assert.equal(decodeUuiValue(`${hex('{"a":1}')};purpose=isdn-uui;encoding=HEX;content=isdn-uui`), '{"a":1}');
  });
  test('absent encoding means hex', () => {
    assert.equal(decodeUuiValue(hex('{"a":1}')), '{"a":1}');
  });
  test('a leading protocol discriminator 00 or 04 before { is stripped; not with a pd parameter', () => {
    assert.equal(decodeUuiValue(`04${hex('{"a":1}')};encoding=hex`), '{"a":1}');
    assert.equal(decodeUuiValue(`00${hex('{"a":1}')}`), '{"a":1}');
    assert.throws(() => parseUuiContext(decodeUuiValue(`04${hex('{"a":1}')};encoding=hex;pd=4`)), isUui(/JSON/));
    assert.equal(decodeUuiValue(`05${hex('{}')}`), '\u0005{}', 'only 00 and 04 are discriminators');
  });
  test('raw JSON is taken as it is', () => {
    assert.equal(decodeUuiValue(' {"a":"b;c"};purpose=x '), '{"a":"b;c"}');
  });
  const refused: [string, string, RegExp][] = [
    ['odd-length hex', 'ABC', /odd length/],
    ['non-hex character', '7B7G', /non-hex/],
    ['unknown encoding', `${hex('{}')};encoding=base64`, /unsupported encoding/],
    ['JSON with an encoding', '{"a":1};encoding=hex', /cannot carry an encoding/],
    ['duplicate parameter', `${hex('{}')};encoding=hex;encoding=hex`, /given twice/],
    ['empty value', '', /empty/],
    ['unclosed JSON', '{"a":1', /not closed/],
    ['bad UTF-8', 'C328;encoding=hex', /not valid UTF-8/],
    ['overlong UTF-8', 'C0AF', /not valid UTF-8/],
    ['text after the data', '{"a":1} junk', /unexpected text/],
  ];
  for (const [name, value, re] of refused) {
    test(`refused: ${name}`, () => assert.throws(() => decodeUuiValue(value), isUui(re)));
  }
  test('the limit applies to the decoded text: exactly 1,024 characters pass, 1,025 do not', () => {
    const at = '{"t":"' + 'x'.repeat(1024 - 8) + '"}';
    assert.equal(at.length, 1024);
    assert.equal(decodeUuiValue(hex(at) + ';encoding=hex').length, 1024, 'a 2,048+ character header value is fine');
    assert.throws(() => decodeUuiValue(hex(at.replace('{', '{ ')) + ';encoding=hex'), isUui(/longer than 1024/));
    assert.throws(() => decodeUuiValue('{' + ' '.repeat(1024) + '}'), isUui(/longer than 1024/));
    assert.throws(() => decodeUuiValue('AB'.repeat(100_000)), isUui(/longer than 1024/), 'refused before decoding');
  });
  test('characters, not bytes, are counted; the limit is configurable', () => {
    const euro = '{"t":"' + '€'.repeat(1000) + '"}';
    assert.equal(decodeUuiValue(hex(euro)), euro);
    assert.throws(() => decodeUuiValue(hex('{"t":"xxxx"}'), 8), isUui(/longer than 8/));
  });
});

describe('parseStrictJson', () => {
  test('accepts what JSON.parse accepts for objects', () => {
    assert.deepEqual(parseStrictJson(' {"a":"\\u00e9\\"","b":[1,2.5e3,true,null],"c":{"d":-0.5}} '), { a: 'é"', b: [1, 2500, true, null], c: { d: -0.5 } });
  });
  for (const [name, text, re] of [
    ['duplicate keys', '{"token":"a","token":"b"}', /appears twice/],
    ['nested duplicate keys', '{"x":{"a":1,"a":2}}', /appears twice/],
    ['__proto__', '{"__proto__":{"admin":true}}', /__proto__/],
    ['escaped __proto__', '{"\\u005f_proto__":1}', /__proto__/],
    ['trailing comma', '{"a":1,}', /expects a key/],
    ['trailing text', '{"a":1}x', /trailing/],
    ['single quotes', "{'a':'b'}", /expects a key/],
    ['deep nesting', '{"a":'.repeat(20) + '1' + '}'.repeat(20), /too deeply/],
    ['bare word', '{"a":undefined}', /unexpected character/],
  ] as const) {
    test(`refused: ${name}`, () => assert.throws(() => parseStrictJson(text), isUui(re)));
  }
});

describe('parseUuiContext', () => {
  test('the documented fields, IDs normalised to 15 characters, extras kept', () => {
    const c = parseUuiContext(JSON.stringify({ ...ctx, Department__c: 'Billing' }));
    assert.deepEqual(c, { orgId: '00Dxx0000004CFG', scrt2Domain: 'acme.my.example.com', token: 'eyJ.abc.def', callId: '0LQxx0000004ABc', transactionId: 'order-2026-0122-5489', extra: { Department__c: 'Billing' } });
  });
  test('orgId, callId and transactionId are optional; a numeric transactionId becomes text', () => {
    const c = parseUuiContext(JSON.stringify({ scrt2Domain: 'a.example.com', token: 't', transactionId: 42 }));
    assert.equal(c.orgId, null);
    assert.equal(c.callId, null);
    assert.equal(c.transactionId, '42');
  });
  for (const [name, fields, re] of [
    ['no token', { ...ctx, token: undefined }, /token is required/],
    ['empty token', { ...ctx, token: '' }, /token is required/],
    ['no scrt2Domain', { ...ctx, scrt2Domain: undefined }, /scrt2Domain is required/],
    ['scrt2Domain over 128 bytes', { ...ctx, scrt2Domain: 'a'.repeat(125) + '.com' }, /longer than 128 bytes/],
    ['orgId of the wrong shape', { ...ctx, orgId: '00D123' }, /orgId is not/],
    ['orgId that is not an org', { ...ctx, orgId: '0LQxx0000004ABc' }, /orgId is not/],
    ['orgId with a wrong suffix', { ...ctx, orgId: '00Dxx0000004CFGAAA' }, /orgId is not/],
    ['callId of the wrong shape', { ...ctx, callId: '0LQ-bad' }, /callId is not/],
    ['non-string orgId', { ...ctx, orgId: 42 }, /orgId must be a string/],
    ['an array', [ctx], /not a JSON object/],
  ] as const) {
    test(`refused: ${name}`, () => assert.throws(() => parseUuiContext(JSON.stringify(fields)), isUui(re)));
  }
});

describe('encodeUui', () => {
  test('round-trips through decode and parse, in hex and as JSON', () => {
    for (const enc of ['hex', 'json'] as const) {
      const v = encodeUui(ctx, enc);
      if (enc === 'hex') assert.match(v, /^[0-9A-F]+;encoding=hex$/);
      assert.equal(parseUuiContext(decodeUuiValue(v)).token, ctx.token);
    }
  });
});
