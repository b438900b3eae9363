import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { HandoffError, type ErrorCode } from '../../src/domain/errors.js';
import { negotiateResponseFormat, parseXmlBody, requestFormat, toXml } from '../../src/http/body-codec.js';

/** Asserts `fn` throws a HandoffError with `code` and a message matching `message`. */
function assertHandoffError(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HandoffError, `expected a HandoffError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const invalidXml = (text: string, message?: RegExp, opts?: Parameters<typeof parseXmlBody>[1]): void =>
  assertHandoffError(() => parseXmlBody(text, opts), 'INVALID_REQUEST', message);

const nested = (depth: number): string => '<a>'.repeat(depth) + 'x' + '</a>'.repeat(depth);

describe('parseXmlBody: mapping', () => {
  test('a flat reserveRoutableNumber request keeps every leaf a string', () => {
    const body = parseXmlBody(`<?xml version="1.0" encoding="UTF-8"?>
      <reserveRoutableNumber>
        <countryCode>US</countryCode>
        <fromNumber>+14155551234</fromNumber>
        <toNumber>+14155550100</toNumber>
        <callId>0001</callId>
        <transactionId>1e5</transactionId>
        <retry>true</retry>
      </reserveRoutableNumber>`);
    assert.deepEqual(body, {
      countryCode: 'US',
      fromNumber: '+14155551234',
      toNumber: '+14155550100',
      callId: '0001',
      transactionId: '1e5',
      retry: 'true',
    });
  });

  test('nested context becomes an object, whatever the root is called', () => {
    const body = parseXmlBody(
      '<request><country>GB</country><fromNumber>+442071234567</fromNumber>' +
        '<context><scrt2Domain>acme.my.example.com</scrt2Domain><toNumber>+14155550100</toNumber>' +
        '<callId>0LQxx0000004ABcGAM</callId><transactionId>t-1</transactionId></context></request>',
    );
    assert.deepEqual(body, {
      country: 'GB',
      fromNumber: '+442071234567',
      context: {
        scrt2Domain: 'acme.my.example.com',
        toNumber: '+14155550100',
        callId: '0LQxx0000004ABcGAM',
        transactionId: 't-1',
      },
    });
  });

  test('repeated participants become an array; a single one is still an array', () => {
    const two = parseXmlBody(
      '<VoiceCall><participants><type>Caller</type><number>+1415</number></participants>' +
        '<participants><type>Agent</type></participants></VoiceCall>',
    );
    assert.deepEqual(two, { participants: [{ type: 'Caller', number: '+1415' }, { type: 'Agent' }] });
    const one = parseXmlBody('<VoiceCall><participants><type>Caller</type></participants></VoiceCall>');
    assert.deepEqual(one, { participants: [{ type: 'Caller' }] });
  });

  test('an empty array field is an empty array', () => {
    assert.deepEqual(parseXmlBody('<r><errors/><participants>  </participants></r>'), { errors: [], participants: [] });
  });

  test('repeated siblings of any other name become an array', () => {
    assert.deepEqual(parseXmlBody('<r><tag>a</tag><x>1</x><tag>b</tag><tag>c</tag></r>'), {
      tag: ['a', 'b', 'c'],
      x: '1',
    });
  });

  test('custom arrayFields replace the default list', () => {
    assert.deepEqual(parseXmlBody('<r><item>a</item><errors>e</errors></r>', { arrayFields: ['item'] }), {
      item: ['a'],
      errors: 'e',
    });
  });

  test('empty elements are empty strings; an empty root is an empty object', () => {
    assert.deepEqual(parseXmlBody('<r><a/><b></b><c>   </c></r>'), { a: '', b: '', c: '' });
    assert.deepEqual(parseXmlBody('<r/>'), {});
  });

  test('values are trimmed, inner whitespace kept', () => {
    assert.deepEqual(parseXmlBody('<r><a>\n  two  words\n</a></r>'), { a: 'two  words' });
  });

  test('attributes, comments, processing instructions and a BOM are ignored', () => {
    const body = parseXmlBody(
      '\uFEFF<?xml version="1.0"?><r xmlns="urn:x" id="1"><!-- note --><?pi data?><a type="t">v</a></r><!-- end -->',
    );
    assert.deepEqual(body, { a: 'v' });
  });
});

describe('parseXmlBody: text decoding', () => {
  test('the five predefined entities and numeric references are decoded', () => {
    assert.deepEqual(
      parseXmlBody('<r><a>&lt;b&gt; &amp; &quot;q&quot; &apos;s&apos;</a><n>&#65;&#x42;&#x1F600;&#233;</n></r>'),
      { a: '<b> & "q" \'s\'', n: 'AB😀é' },
    );
  });

  test('a reference is decoded once, never twice', () => {
    assert.deepEqual(parseXmlBody('<r><a>&amp;lt;</a></r>'), { a: '&lt;' });
  });

  test('character references survive trimming', () => {
    assert.deepEqual(parseXmlBody('<r><a>&#32;x&#9;</a></r>'), { a: ' x\t' });
  });

  test('undefined entities and invalid references are refused', () => {
    invalidXml('<r><a>&nbsp;</a></r>', /&nbsp;/);
    invalidXml('<r><a>&x;</a></r>');
    invalidXml('<r><a>&#0;</a></r>');
    invalidXml('<r><a>&#x1;</a></r>');
    invalidXml('<r><a>&#xD800;</a></r>');
    invalidXml('<r><a>&#x110000;</a></r>');
    invalidXml('<r><a>&#X41;</a></r>');
    invalidXml('<r><a>&#x;</a></r>');
    invalidXml('<r><a>a & b</a></r>');
  });

  test('CDATA is taken verbatim, entities and markup included', () => {
    assert.deepEqual(parseXmlBody('<r><a><![CDATA[ <x>&amp;</x> ]]></a></r>'), { a: ' <x>&amp;</x> ' });
    assert.deepEqual(parseXmlBody('<r><a>x &amp;<![CDATA[&amp;]]>y</a></r>'), { a: 'x &&amp;y' });
    assert.deepEqual(parseXmlBody('<r><a><![CDATA[a]]]]><![CDATA[>b]]></a></r>'), { a: 'a]]>b' });
  });

  test('chars invalid in XML 1.0 are refused', () => {
    invalidXml('<r><a>\u0001</a></r>', /character/);
    invalidXml('<r><a>\uFFFF</a></r>', /character/);
    invalidXml('<r><a>\uD800</a></r>', /character/);
  });
});

describe('parseXmlBody: attacks and malformed input', () => {
  test('billion laughs is refused before parsing', () => {
    const lol = `<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>`;
    invalidXml(lol, /^XML DOCTYPE and entities are not allowed$/);
  });

  test('an external entity is refused', () => {
    invalidXml(
      '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r><a>&xxe;</a></r>',
      /DOCTYPE/,
    );
    invalidXml('<!doctype r SYSTEM "http://evil.example/x.dtd"><r/>', /DOCTYPE/);
    invalidXml('<r><!ENTITY x "y"></r>', /DOCTYPE/);
  });

  test('malformed XML names the line', () => {
    invalidXml('<r>\n<a>1</a>\n<b>2</a>\n</r>', /^Malformed XML at line 3/);
    invalidXml('<r><a>1</a>', /Malformed XML at line 1/);
    invalidXml('<r a="1></r>', /Malformed XML/);
    invalidXml('', /Malformed XML/);
    invalidXml('not xml', /Malformed XML/);
    invalidXml('{"a":1}', /Malformed XML/);
    invalidXml('<?xml version="1.0"?>', /Malformed XML/);
    invalidXml('<r>x</r>trailing', /Malformed XML/);
  });

  test('the line and column are in the error details', () => {
    try {
      parseXmlBody('<r>\n<a></b>\n</r>');
      assert.fail('expected an error');
    } catch (e) {
      assert.ok(e instanceof HandoffError);
      assert.equal(e.details?.['line'], 2);
      assert.equal(typeof e.details?.['column'], 'number');
    }
  });

  test('two roots, or text beside the root, are refused', () => {
    invalidXml('<a/><b/>', /exactly one root/);
    invalidXml('<a/>\n<a/>', /exactly one root/);
    invalidXml('<a/>trailing', /one root/);
    invalidXml('<a/>\ntrailing<!-- c -->\n', /one root/);
    invalidXml('<a x="1"/>trailing', /one root/);
    assert.deepEqual(parseXmlBody('<?xml version="1.0"?>\n<!-- c --><a/><!-- d -->\n<?pi x?>\n'), {});
    invalidXml('<a/><![CDATA[x]]>', /root/);
    invalidXml('<a>1</a><a>2</a>', /root/);
  });

  test('text directly in the root is refused', () => {
    invalidXml('<r>hello</r>', /root/);
  });

  test('mixed text and elements are refused', () => {
    invalidXml('<r><a>x<b>y</b></a></r>', /mixes text/);
    invalidXml('<r><a>1</a>stray</r>', /mixes text/);
  });

  test('nesting is limited to 16 levels by default', () => {
    let expected: unknown = 'x';
    for (let level = 2; level <= 16; level++) expected = { a: expected };
    assert.deepEqual(parseXmlBody(nested(16)), expected);
    invalidXml(nested(17), /deeper than 16/);
    invalidXml(nested(3), /deeper than 2/, { maxDepth: 2 });
  });

  test('a depth bomb is refused without exhausting the stack', () => {
    invalidXml(nested(100_000), /nest/i, { maxElements: 1_000_000 });
    invalidXml(nested(100_000), /more than 2000 elements/); // the cheaper check runs first
  });

  test('the element count is limited to 2000 by default', () => {
    const doc = (n: number): string => `<r>${'<a>1</a>'.repeat(n)}</r>`;
    assert.equal((parseXmlBody(doc(1999))['a'] as unknown[]).length, 1999);
    invalidXml(doc(2000), /more than 2000 elements/);
    invalidXml(doc(10), /more than 5 elements/, { maxElements: 5 });
    // Markup-like text inside comments, CDATA and PIs is not counted.
    const decoys = '<!-- <a><a> --><?pi <a><a>?>';
    const doc2 = `<r>${decoys}<a><![CDATA[<a><a><a>]]></a></r>`;
    assert.deepEqual(parseXmlBody(doc2, { maxElements: 2 }), { a: '<a><a><a>' });
  });

  test('an element-count bomb is refused quickly', () => {
    const started = Date.now();
    invalidXml(`<r>${'<a/>'.repeat(200_000)}</r>`, /elements/);
    assert.ok(Date.now() - started < 5000);
  });

  test('prototype-polluting names are refused', () => {
    invalidXml('<r><__proto__><polluted>yes</polluted></__proto__></r>');
    invalidXml('<r><constructor>1</constructor></r>');
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });
});

describe('toXml', () => {
  test('serializes objects, arrays and scalars', () => {
    assert.equal(
      toXml('response', {
        status: 'success',
        handle: { routableNumber: '+14155550100', uid: 'lease:did:+14155550100:1' },
        errors: [],
        participants: [{ type: 'Caller' }, { type: 'Agent' }],
        count: 2,
        live: false,
        big: 10n,
        at: new Date(Date.UTC(2026, 0, 1)),
        skipped: undefined,
        gone: null,
      }),
      '<?xml version="1.0" encoding="UTF-8"?><response><status>success</status>' +
        '<handle><routableNumber>+14155550100</routableNumber><uid>lease:did:+14155550100:1</uid></handle>' +
        '<participants><type>Caller</type></participants><participants><type>Agent</type></participants>' +
        '<count>2</count><live>false</live><big>10</big><at>2026-01-01T00:00:00.000Z</at></response>',
    );
  });

  test('the error envelope', () => {
    assert.equal(
      toXml('response', { errors: [{ errorCode: 'INVALID_FIELD', message: 'toNumber must be E.164' }] }),
      '<?xml version="1.0" encoding="UTF-8"?><response><errors><errorCode>INVALID_FIELD</errorCode>' +
        '<message>toNumber must be E.164</message></errors></response>',
    );
  });

  test('escapes markup and strips chars invalid in XML', () => {
    assert.equal(
      toXml('r', { a: `<b attr="x">&'y'</b>]]>`, c: 'a\u0000b\u001Fc\uFFFEd\uD800e' }),
      '<?xml version="1.0" encoding="UTF-8"?><r><a>&lt;b attr=&quot;x&quot;&gt;&amp;&apos;y&apos;&lt;/b&gt;]]&gt;</a>' +
        '<c>abcde</c></r>',
    );
  });

  test('writes edge whitespace and CR as character references', () => {
    assert.equal(
      toXml('r', { a: ' x\r\ny\t', b: '  ' }),
      '<?xml version="1.0" encoding="UTF-8"?><r><a>&#32;x&#13;\ny&#9;</a><b>&#32;&#32;</b></r>',
    );
  });

  test('refuses names that are not XML names, and nested arrays', () => {
    assert.throws(() => toXml('r', { 'a b': '1' }), TypeError);
    assert.throws(() => toXml('r', { '1a': '1' }), TypeError);
    assert.throws(() => toXml('r', { '<x>': '1' }), TypeError);
    assert.throws(() => toXml('bad root', {}), TypeError);
    assert.throws(() => toXml('r', { a: [['x']] }), TypeError);
    assert.throws(() => toXml('r', { f: () => 1 }), TypeError);
  });

  test('round trip: parseXmlBody(toXml(r, obj)) equals obj for string leaves', () => {
    // Deterministic pseudo-random generator, so a failure is reproducible.
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 48271) % 2147483647;
      return seed % n;
    };
    const alphabet = ['a', 'Z', '0', '+', ' ', '\t', '\n', '\r', '&', '<', '>', '"', "'", ';', '#', ']]>'];
    alphabet.push('é', '😀', '\u00A0', '&amp;');
    const randomString = (): string => Array.from({ length: rand(8) }, () => alphabet[rand(alphabet.length)]).join('');
    const randomValue = (depth: number): unknown => {
      const kind = depth > 2 ? 0 : rand(4);
      if (kind === 0) return randomString();
      if (kind === 1) {
        // Arrays of two or more: a single item would come back as a scalar (XML cannot tell them apart).
        return Array.from({ length: 2 + rand(3) }, () => (rand(2) === 0 ? randomString() : randomObject(depth + 1)));
      }
      if (kind === 2) return { participants: Array.from({ length: 1 + rand(2) }, () => randomObject(depth + 1)) };
      return randomObject(depth + 1);
    };
    const randomObject = (depth: number): Record<string, unknown> => {
      const obj: Record<string, unknown> = {};
      for (let i = 1 + rand(4); i > 0; i--) obj[`k${rand(6)}`] = randomValue(depth);
      return obj;
    };
    for (let i = 0; i < 500; i++) {
      const obj = randomObject(0);
      assert.deepEqual(parseXmlBody(toXml('r', obj)), obj, JSON.stringify(obj));
    }
  });
});

describe('requestFormat', () => {
  const cases: Array<[string | undefined, 'json' | 'xml' | null]> = [
    ['application/json', 'json'],
    ['application/json; charset=utf-8', 'json'],
    ['APPLICATION/JSON;CHARSET=UTF-8', 'json'],
    ['application/vnd.api+json', 'json'],
    ['application/problem+json', 'json'],
    ['application/xml', 'xml'],
    ['Application/XML; charset=ISO-8859-1', 'xml'],
    ['text/xml', 'xml'],
    ['text/xml;charset=utf-8', 'xml'],
    ['application/soap+xml', 'xml'],
    ['text/plain', null],
    ['text/html', null],
    ['application/x-www-form-urlencoded', null],
    ['text/json', null],
    ['application/jsonx', null],
    ['application/+json', null],
    ['json', null],
    ['', null],
    [undefined, null],
  ];
  for (const [contentType, expected] of cases) {
    test(`${JSON.stringify(contentType)} -> ${String(expected)}`, () => {
      assert.equal(requestFormat(contentType), expected);
    });
  }
});

describe('negotiateResponseFormat', () => {
  const JSON_CT = 'application/json';
  const XML_CT = 'application/xml; charset=utf-8';
  const cases: Array<[string | undefined, string | undefined, 'json' | 'xml']> = [
    // No Accept: the request's format, else JSON.
    [JSON_CT, undefined, 'json'],
    [XML_CT, undefined, 'xml'],
    ['text/xml', '', 'xml'],
    [undefined, undefined, 'json'],
    ['text/plain', undefined, 'json'],
    // Wildcards alone express no preference.
    [XML_CT, '*/*', 'xml'],
    [JSON_CT, '*/*', 'json'],
    [XML_CT, 'application/*', 'xml'],
    [undefined, '*/*', 'json'],
    [XML_CT, 'text/html,application/xhtml+xml,*/*;q=0.8', 'xml'],
    // An explicit type wins over the request's format.
    [XML_CT, 'application/json', 'json'],
    [JSON_CT, 'application/xml', 'xml'],
    [JSON_CT, 'text/xml', 'xml'],
    [JSON_CT, 'text/*', 'xml'],
    [JSON_CT, 'application/xml, */*;q=0.1', 'xml'],
    [XML_CT, 'APPLICATION/JSON; charset=utf-8', 'json'],
    // q-values decide between the two.
    [JSON_CT, 'application/json;q=0.5, application/xml;q=0.9', 'xml'],
    [XML_CT, 'application/xml;q=0.2, application/json', 'json'],
    [XML_CT, 'application/json; q=0.8, */*', 'xml'], // application/json is rated 0.8, xml 1 via */*
    [XML_CT, 'application/json, application/xml', 'xml'], // a tie: the request's format
    [JSON_CT, 'application/json, application/xml', 'json'],
    [XML_CT, 'application/json;q=0.9, application/xml;q=0.9', 'xml'],
    [JSON_CT, '*/*, application/json;q=0', 'xml'], // json explicitly refused
    // Malformed ranges and q-values are skipped.
    [XML_CT, 'garbage', 'xml'],
    [XML_CT, 'application/json;q=2', 'xml'],
    [JSON_CT, 'application/json;q=abc, application/xml;q=0.5', 'xml'],
    // Only the types Handoff sends count: application/xhtml+xml is not XML here.
    [JSON_CT, 'text/html,application/xhtml+xml,*/*;q=0.8', 'json'],
    [undefined, 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'xml'],
  ];
  for (const [contentType, accept, expected] of cases) {
    test(`Content-Type ${JSON.stringify(contentType)}, Accept ${JSON.stringify(accept)} -> ${expected}`, () => {
      assert.equal(negotiateResponseFormat(contentType, accept), expected);
    });
  }

  const refused: Array<[string | undefined, string]> = [
    [JSON_CT, 'text/html'],
    [XML_CT, 'text/html, image/png;q=0.5'],
    [JSON_CT, 'application/json;q=0, application/xml;q=0'],
    [JSON_CT, '*/*;q=0'],
    [JSON_CT, 'text/plain, application/octet-stream'],
    [XML_CT, 'application/problem+json'],
  ];
  for (const [contentType, accept] of refused) {
    test(`Accept ${JSON.stringify(accept)} -> NOT_ACCEPTABLE`, () => {
      assertHandoffError(() => negotiateResponseFormat(contentType, accept), 'NOT_ACCEPTABLE');
    });
  }
});
