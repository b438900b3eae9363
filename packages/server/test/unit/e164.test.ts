import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { assertE164, countryOfE164, E164_RE, isE164 } from '../../src/domain/e164.js';
import { HandoffError } from '../../src/domain/errors.js';

describe('isE164', () => {
  test('accepts E.164 numbers from 2 to 15 digits', () => {
    for (const ok of ['+14155551234', '+442071234567', '+12', '+123456789012345']) {
      assert.equal(isE164(ok), true, ok);
      assert.match(ok, E164_RE);
    }
  });

  test('rejects malformed numbers', () => {
    const bad = [
      '+04155551234', // leading zero
      '+1234567890123456', // 16 digits
      '+1', // one digit
      '+1 415 555 1234', // spaces
      ' +14155551234',
      '+14155551234 ',
      '+1-415-555-1234',
      '14155551234', // no plus
      '++14155551234',
      '+',
      '',
      '+1415555123a',
      '+14155551234\n',
      '+١٤١٥٥٥٥١٢٣٤', // non-ASCII digits
    ];
    for (const s of bad) assert.equal(isE164(s), false, JSON.stringify(s));
  });

  test('rejects non-strings', () => {
    for (const v of [14155551234, undefined, null, {}, ['+14155551234']]) assert.equal(isE164(v), false);
  });
});

describe('assertE164', () => {
  test('returns a valid number unchanged', () => {
    assert.equal(assertE164('toNumber', '+14155551234'), '+14155551234');
  });

  test('MISSING_FIELD for undefined, null and empty', () => {
    for (const v of [undefined, null, '']) {
      assert.throws(
        () => assertE164('fromNumber', v),
        (e: unknown) =>
          e instanceof HandoffError &&
          e.code === 'MISSING_FIELD' &&
          e.message.includes('fromNumber') &&
          e.details?.['field'] === 'fromNumber',
      );
    }
  });

  test('INVALID_FIELD with the documented message for anything else', () => {
    for (const v of ['4155551234', '+0123', '+1 415 555 1234', 14155551234, {}]) {
      assert.throws(
        () => assertE164('toNumber', v),
        (e: unknown) =>
          e instanceof HandoffError &&
          e.code === 'INVALID_FIELD' &&
          e.httpStatus === 400 &&
          e.message === 'toNumber must be an E.164 number such as +14155551234' &&
          e.details?.['field'] === 'toNumber',
      );
    }
  });
});

describe('countryOfE164', () => {
  test('finds the country of geographic numbers', () => {
    assert.equal(countryOfE164('+14155551234'), 'US');
    assert.equal(countryOfE164('+442071234567'), 'GB');
    assert.equal(countryOfE164('+33142685300'), 'FR');
    assert.equal(countryOfE164('+61293744000'), 'AU');
  });

  test('undefined for non-E.164 input and unknown countries', () => {
    assert.equal(countryOfE164('4155551234'), undefined);
    assert.equal(countryOfE164('+1 415 555 1234'), undefined);
    assert.equal(countryOfE164('+99912345678'), undefined); // unassigned country code
  });
});
