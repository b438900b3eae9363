import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  caseSafeSuffix,
  newSfId,
  newVoiceCallId,
  normalizeSfId,
  ORG_PREFIX,
  toId18,
  VOICE_CALL_PREFIX,
} from '../../src/domain/ids.js';

describe('caseSafeSuffix', () => {
  test('matches the known vectors', () => {
    assert.equal(caseSafeSuffix('0LQxx0000004ABc'), 'GAM');
    assert.equal(caseSafeSuffix('00Dxx0000004CFG'), 'EA2');
  });

  test('all lower-case is AAA, all upper-case is 555', () => {
    assert.equal(caseSafeSuffix('abcdeabcdeabcde'), 'AAA');
    assert.equal(caseSafeSuffix('ABCDEABCDEABCDE'), '555');
  });

  test('bit i of each block is char i of that block', () => {
    assert.equal(caseSafeSuffix('Aaaaa' + 'aAaaa' + 'aaaaA'), 'BCQ'); // 1, 2, 16
  });

  test('rejects anything but 15 base-62 chars', () => {
    assert.throws(() => caseSafeSuffix('0LQxx0000004AB'), TypeError);
    assert.throws(() => caseSafeSuffix('0LQxx0000004AB-'), TypeError);
  });
});

describe('toId18', () => {
  test('appends the suffix', () => {
    assert.equal(toId18('0LQxx0000004ABc'), '0LQxx0000004ABcGAM');
    assert.equal(toId18('00Dxx0000004CFG'), '00Dxx0000004CFGEA2');
  });
});

describe('normalizeSfId', () => {
  test('accepts the 15-char form as is', () => {
    assert.equal(normalizeSfId('0LQxx0000004ABc'), '0LQxx0000004ABc');
  });

  test('accepts the 18-char form with the right suffix and returns 15 chars', () => {
    assert.equal(normalizeSfId('0LQxx0000004ABcGAM'), '0LQxx0000004ABc');
    assert.equal(normalizeSfId('00Dxx0000004CFGEA2', ORG_PREFIX), '00Dxx0000004CFG');
  });

  test('accepts a lower-cased suffix', () => {
    assert.equal(normalizeSfId('0LQxx0000004ABcgam'), '0LQxx0000004ABc');
    assert.equal(normalizeSfId('00Dxx0000004CFGea2'), '00Dxx0000004CFG');
  });

  test('rejects a wrong suffix', () => {
    assert.equal(normalizeSfId('0LQxx0000004ABcGAN'), null);
    assert.equal(normalizeSfId('0LQxx0000004ABCGAM'), null); // case of the body changed, suffix not
    assert.equal(normalizeSfId('0LQxx0000004abcGAM'), null);
  });

  test('rejects wrong lengths', () => {
    for (const bad of ['', '0LQ', '0LQxx0000004AB', '0LQxx0000004ABcG', '0LQxx0000004ABcGA', '0LQxx0000004ABcGAMA']) {
      assert.equal(normalizeSfId(bad), null, bad);
    }
  });

  test('rejects chars outside base 62', () => {
    const bad15 = ['0LQxx0000004AB-', '0LQxx0000004AB ', ' 0LQxx0000004AB', '0LQxx0000004ABé'];
    for (const bad of [...bad15, '0LQxx0000004ABcGA_', '0LQxx0000004ABcGA\n']) {
      assert.equal(normalizeSfId(bad), null, bad);
    }
  });

  test('enforces the key prefix, case-sensitively', () => {
    assert.equal(normalizeSfId('0LQxx0000004ABc', VOICE_CALL_PREFIX), '0LQxx0000004ABc');
    assert.equal(normalizeSfId('0LQxx0000004ABc', ORG_PREFIX), null);
    assert.equal(normalizeSfId('0LQxx0000004ABcGAM', '00D'), null);
    assert.equal(normalizeSfId('0lqxx0000004ABc', '0LQ'), null);
  });

  test('rejects non-strings', () => {
    for (const bad of [undefined, null, 123456789012345, {}, ['0LQxx0000004ABc']]) {
      assert.equal(normalizeSfId(bad), null);
    }
  });
});

describe('newSfId / newVoiceCallId', () => {
  test('10k VoiceCall IDs are unique, well-formed and valid in both forms', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const id = newVoiceCallId();
      assert.match(id, /^0LQ[A-Za-z0-9]{12}$/);
      assert.equal(normalizeSfId(id, VOICE_CALL_PREFIX), id);
      assert.equal(normalizeSfId(toId18(id), VOICE_CALL_PREFIX), id);
      ids.add(id);
    }
    assert.equal(ids.size, 10_000);
  });

  test('random chars cover all of base 62 roughly uniformly', () => {
    const counts = new Map<string, number>();
    const n = 10_000;
    for (let i = 0; i < n; i++) {
      for (const c of newVoiceCallId().slice(3)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    assert.equal(counts.size, 62);
    const expected = (n * 12) / 62; // ~1935 per char
    for (const [c, k] of counts) {
      // sd is ~44: 250 never fails by chance, while `byte % 62` bias would put A-H ~409 above.
      assert.ok(Math.abs(k - expected) < 250, `char ${c} seen ${k} times, expected ~${Math.round(expected)}`);
    }
  });

  test('newSfId uses the given prefix and rejects a bad one', () => {
    assert.match(newSfId('00D'), /^00D[A-Za-z0-9]{12}$/);
    assert.throws(() => newSfId('0L'), TypeError);
    assert.throws(() => newSfId('0L-'), TypeError);
  });
});
