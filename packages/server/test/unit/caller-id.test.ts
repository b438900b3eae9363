import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { callerNumber, normalizePhoneNumber, numberFromUri } from '../../src/domain/caller-id.js';

describe('numberFromUri: SIP and tel URIs to E.164', () => {
  const table: Array<[uri: string, country: 'US' | 'GB' | 'FR', expected: string | null]> = [
    ['tel:+14155551234', 'US', '+14155551234'],
    ['tel:+1-415-555-1234', 'US', '+14155551234'],
    ['tel:+1.415.555.1234;ext=7', 'US', '+14155551234'],
    ['tel:5551234;phone-context=+1-415', 'US', '+14155551234'],
    ['tel:2125550100;phone-context=example.com', 'US', '+12125550100'],
    ['sip:+14155551234@carrier.example;user=phone', 'US', '+14155551234'],
    ['sip:+14155551234@carrier.example', 'US', '+14155551234'],
    ['sips:+442079460001@10.0.0.1:5061', 'US', '+442079460001'],
    ['sip:+1-(415)-555-1234@carrier.example;user=phone', 'US', '+14155551234'],
    ['sip:+1%20415%20555%201234@carrier.example', 'US', '+14155551234'],
    ['sip:+14155551234;isub=12@carrier.example;user=phone', 'US', '+14155551234'],
    ['sip:5551234;phone-context=+1415@carrier.example;user=phone', 'US', '+14155551234'],
    // 00 international prefix, whatever the default country
    ['sip:00442079460001@trunk.example', 'US', '+442079460001'],
    ['sip:0044-20-7946-0001@trunk.example', 'GB', '+442079460001'],
    ['sip:0014155551234@trunk.example', 'FR', '+14155551234'],
    // national forms in the default country's plan (and its own international prefix)
    ['sip:4155551234@trunk.example', 'US', '+14155551234'],
    ['sip:14155551234@trunk.example', 'US', '+14155551234'],
    ['sip:(415) 555-1234@trunk.example', 'US', null], // a space is not allowed unescaped in a URI
    ['sip:415.555.1234@trunk.example', 'US', '+14155551234'],
    ['sip:02079460001@trunk.example', 'GB', '+442079460001'],
    ['sip:0145678901@trunk.example', 'FR', '+33145678901'],
    ['sip:011442079460001@trunk.example', 'US', '+442079460001'],
    // not numbers
    ['sip:anonymous@anonymous.invalid', 'US', null],
    ['sip:Anonymous@trunk.example', 'US', null],
    ['sip:restricted@trunk.example', 'US', null],
    ['sip:trunk.example', 'US', null],
    ['sip:555@trunk.example', 'US', null],
    ['sip:+0123456@trunk.example', 'US', null],
    ['sip:+1234567890123456@trunk.example', 'US', null],
    ['sip:00@trunk.example', 'US', null],
    ['tel:+', 'US', null],
    ['mailto:bob@example.com', 'US', null],
    ['not a uri', 'US', null],
  ];
  for (const [uri, country, expected] of table) {
    test(`${uri} (${country}) → ${expected}`, () => {
      assert.equal(numberFromUri(uri, country), expected);
    });
  }
});

describe('normalizePhoneNumber', () => {
  test('visual separators are removed; letters make it no number', () => {
    assert.equal(normalizePhoneNumber('+1-212-555-0100', 'US'), '+12125550100');
    assert.equal(normalizePhoneNumber('(212) 555-0100', 'US'), '+12125550100');
    assert.equal(normalizePhoneNumber('212-555-CALL', 'US'), null);
    assert.equal(normalizePhoneNumber('', 'US'), null);
  });
  test('a global phone-context prefixes a local number', () => {
    assert.equal(normalizePhoneNumber('7946-0001', 'US', '+44-20'), '+442079460001');
  });
});

describe('callerNumber: P-Asserted-Identity, else From', () => {
  const from = '"Caller" <sip:+14155550001@partner.example>;tag=abc';
  test('the first tel/sip identity of P-Asserted-Identity wins over From', () => {
    assert.equal(callerNumber({ pAssertedIdentity: ['<sip:+14155559999@trunk.example;user=phone>', '<tel:+14155558888>'], from }, 'US'), '+14155559999');
    assert.equal(callerNumber({ pAssertedIdentity: ['<tel:+1-415-555-8888>'], from }, 'US'), '+14155558888');
  });
  test('without P-Asserted-Identity, From', () => {
    assert.equal(callerNumber({ pAssertedIdentity: [], from }, 'US'), '+14155550001');
    assert.equal(callerNumber({ pAssertedIdentity: [], from: '<sip:4155550001@trunk.example>;tag=1' }, 'US'), '+14155550001');
  });
  test('an anonymous or unparseable identity falls back to From', () => {
    assert.equal(callerNumber({ pAssertedIdentity: ['<sip:anonymous@anonymous.invalid>'], from }, 'US'), '+14155550001');
    assert.equal(callerNumber({ pAssertedIdentity: ['garbage <'], from }, 'US'), '+14155550001');
  });
  test('anonymous everywhere → null', () => {
    assert.equal(callerNumber({ pAssertedIdentity: [], from: '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=1' }, 'US'), null);
    assert.equal(callerNumber({ pAssertedIdentity: [], from: undefined }, 'US'), null);
  });
});
