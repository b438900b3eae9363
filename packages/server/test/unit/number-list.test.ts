import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isHandoffError } from '../../src/domain/errors.js';
import { expandRange, MAX_NUMBERS_PER_ADD, parseNumberCsv, rangeSize } from '../../src/domain/number-list.js';

const refused = (field: string, message: RegExp) => (e: unknown) => isHandoffError(e) && e.code === 'INVALID_FIELD' && e.details?.['field'] === field && message.test(e.message);

test('rangeSize counts without expanding, and refuses what expandRange refuses', () => {
  assert.equal(rangeSize('+12125550198', '+12125550201'), 4);
  assert.equal(rangeSize('+12125550198', '+12125550198'), 1);
  assert.equal(rangeSize('+12000000000', '+12000999999'), MAX_NUMBERS_PER_ADD);
  assert.throws(() => rangeSize('+12000000000', '+12001000000'), refused('ranges', /at most 1000000/));
  assert.throws(() => rangeSize('+12125550201', '+12125550198'), refused('ranges', /from <= to/));
  assert.throws(() => rangeSize('+1212555019', '+12125550198'), refused('ranges', /same length/));
  assert.throws(() => rangeSize('12125550198', '+12125550198'), refused('ranges', /E\.164/));
  assert.throws(() => expandRange('+12125550201', '+12125550198'), refused('ranges', /from <= to/));
});

test('expandRange keeps leading zeros and appends to the list it is given, however long', () => {
  assert.deepEqual(expandRange('+4420794609098', '+4420794609101'), ['+4420794609098', '+4420794609099', '+4420794609100', '+4420794609101']);
  assert.deepEqual(expandRange('+3300099', '+3300101'), ['+3300099', '+3300100', '+3300101']);
  const out = ['+15550000000'];
  // More than a spread into push() can take (about 120,000 on Node 20).
  assert.equal(expandRange('+16135550000', '+16135799999', out), out);
  assert.equal(out.length, 250_001);
  assert.equal(out[1], '+16135550000');
  assert.equal(out[250_000], '+16135799999');
});

test('parseNumberCsv: first column, header, comments, blanks, quotes, CRLF; a bad number names its line', () => {
  assert.deepEqual(parseNumberCsv('number,label\r\n+12125550100,desk\r\n\r\n# spare\n"+12125550101"\n  +12125550102 ,x,y\n'), ['+12125550100', '+12125550101', '+12125550102']);
  assert.deepEqual(parseNumberCsv('+12125550100'), ['+12125550100'], 'no final newline');
  assert.deepEqual(parseNumberCsv(''), []);
  assert.throws(() => parseNumberCsv('+12125550100\nnot-a-number\n'), refused('csv', /^csv line 2: "not-a-number"/));
  assert.throws(() => parseNumberCsv('+12125550100\n12125550101\n'), refused('csv', /^csv line 2/), 'only the first line may be a header');
});

test('parseNumberCsv appends and stops at the limit it is given', () => {
  const out = ['+12125550100'];
  assert.equal(parseNumberCsv('+12125550101\n+12125550102\n', out, 3), out);
  assert.deepEqual(out, ['+12125550100', '+12125550101', '+12125550102']);
  assert.throws(() => parseNumberCsv('+12125550103\n', out, 3), refused('csv', /at most 1000000 numbers/));
  assert.equal(out.length, 3);
});
