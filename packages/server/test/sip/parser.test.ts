import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  KEEPALIVE_PING,
  SipHeaders,
  SipParseError,
  SipRequest,
  SipResponse,
  SipStreamParser,
  createRequest,
  createResponse,
  formatNameAddr,
  formatSipUri,
  formatVia,
  newBranch,
  parseCSeq,
  parseDatagram,
  parseNameAddr,
  parseUri,
  parseVia,
  serialize,
  splitList,
  unescapeUri,
  withoutUriHeaders,
  type SipUri,
} from '../../src/sip/index.js';

const CRLF = '\r\n';
function msg(lines: string[], body = ''): Buffer {
  return Buffer.from(lines.join(CRLF) + CRLF + CRLF + body, 'utf8');
}

const OPTIONS = [
  'OPTIONS sip:user@example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc',
  'Max-Forwards: 70',
  'To: <sip:user@example.com>',
  'From: <sip:caller@example.net>;tag=1',
  'Call-ID: opt1@example.net',
  'CSeq: 1 OPTIONS',
  'Content-Length: 0',
];

function request(buf: Buffer): SipRequest {
  const r = parseDatagram(buf);
  assert.ok(r instanceof SipRequest, r instanceof SipParseError ? `refused: ${r.status} ${r.reason}` : 'not a request');
  return r;
}

function refusal(buf: Buffer): SipParseError {
  const r = parseDatagram(buf);
  assert.ok(r instanceof SipParseError, 'expected a refusal');
  return r;
}

describe('header names', () => {
  test('compact forms and any case map to canonical names', () => {
    const r = request(
      msg([
        'INVITE sip:a@example.com SIP/2.0',
        'v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1',
        'MAX-FORWARDS: 70',
        't: <sip:a@example.com>',
        'f: <sip:b@example.com>;tag=x',
        'i: cid',
        'cSeQ: 1 INVITE',
        'm: <sip:b@10.0.0.1>',
        'k: timer, 100rel',
        'c: application/sdp',
        'u: talk',
        'o: refer',
        'l: 3',
      ], 'v=0'),
    );
    assert.equal(r.headers.get('Via'), 'SIP/2.0/UDP h.example.com;branch=z9hG4bK1');
    assert.equal(r.headers.get('call-id'), 'cid');
    assert.equal(r.callId, 'cid');
    assert.deepEqual(r.optionTags('Supported'), ['timer', '100rel']);
    assert.equal(r.headers.get('Allow-Events'), 'talk');
    assert.equal(r.headers.get('Event'), 'refer');
    assert.equal(r.body.toString(), 'v=0');
    const out = serialize(r).toString();
    assert.match(out, /\r\nVia: SIP\/2.0\/UDP/);
    assert.match(out, /\r\nMax-Forwards: 70\r\n/);
    assert.match(out, /\r\nContent-Type: application\/sdp\r\n/);
    assert.match(out, /\r\nAllow-Events: talk\r\n/);
    assert.match(out, /\r\nContent-Length: 3\r\n\r\nv=0$/);
  });

  test('folded lines are unfolded into one value', () => {
    const r = request(
      msg([
        'OPTIONS sip:user@example.com SIP/2.0',
        'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc',
        'Max-Forwards: 70',
        'To:',
        '  <sip:user@example.com>',
        'From: <sip:caller@example.net>',
        '\t;tag=1',
        'Subject: one',
        ' two',
        '\t three',
        'Call-ID: f@x',
        'CSeq: 1',
        '  OPTIONS',
        'Content-Length: 0',
      ]),
    );
    assert.equal(r.headers.get('subject'), 'one two three');
    assert.equal(r.from.tag, '1');
    assert.equal(r.cseq.seq, 1);
    assert.equal(r.to.uri.raw, 'sip:user@example.com');
  });
});

describe('list splitting', () => {
  test('splits only on commas outside quotes and angle brackets', () => {
    assert.deepEqual(splitList('"Doe, John" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>'), ['"Doe, John" <sip:a@b;x=1,2>;q=0.5', '<sip:c@d>']);
    assert.deepEqual(splitList('"a \\" , b" <sip:x@y>, sip:z@w'), ['"a \\" , b" <sip:x@y>', 'sip:z@w']);
    assert.deepEqual(splitList('x'), ['x']);
  });

  test('list headers are split; single-value headers are not', () => {
    const h = new SipHeaders();
    h.append('Contact', '"A, B" <sip:a@b>, <sip:c@d>');
    h.append('Date', 'Sat, 13 Nov 2010 23:29:00 GMT');
    h.append('WWW-Authenticate', 'Digest realm="x", nonce="y"');
    h.append('Allow', 'INVITE, ACK');
    h.append('Allow', 'BYE');
    assert.equal(h.getAll('contact').length, 2);
    assert.deepEqual(h.getAll('date'), ['Sat, 13 Nov 2010 23:29:00 GMT']);
    assert.deepEqual(h.getAll('www-authenticate'), ['Digest realm="x", nonce="y"']);
    assert.deepEqual(h.getAll('allow'), ['INVITE', 'ACK', 'BYE']);
  });

  test('removeFirst pops the topmost value of a multi-value line; prepend makes a new top', () => {
    const h = new SipHeaders();
    h.append('Via', 'SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2');
    h.prepend('v', 'SIP/2.0/TCP c;branch=z9hG4bK3');
    assert.equal(h.get('via'), 'SIP/2.0/TCP c;branch=z9hG4bK3');
    assert.equal(h.removeFirst('via'), 'SIP/2.0/TCP c;branch=z9hG4bK3');
    assert.equal(h.removeFirst('via'), 'SIP/2.0/UDP a;branch=z9hG4bK1');
    assert.deepEqual(h.getAll('via'), ['SIP/2.0/UDP b;branch=z9hG4bK2']);
  });

  test('values set by the application lose CR, LF and NUL', () => {
    const h = new SipHeaders();
    h.append('Warning', '399 host "bad\r\nInjected: yes\0"');
    assert.equal(h.get('warning'), '399 host "badInjected: yes"');
    assert.throws(() => h.append('Bad Name', 'x'), TypeError);
  });
});

describe('URIs', () => {
  test('SIP URI with user, password, IPv6 host, port, params and headers', () => {
    const u = parseUri('sip:alice:secret@[2001:db8::1]:5070;transport=tcp;lr?Subject=hi%20there&User-to-User=00ab%3Bencoding%3Dhex') as SipUri;
    assert.equal(u.kind, 'sip');
    assert.equal(u.user, 'alice');
    assert.equal(u.password, 'secret');
    assert.equal(u.host, '[2001:db8::1]');
    assert.equal(u.port, 5070);
    assert.equal(u.params.get('transport'), 'tcp');
    assert.equal(u.params.get('lr'), null);
    assert.deepEqual(u.headers, [['Subject', 'hi there'], ['User-to-User', '00ab;encoding=hex']]);
    assert.equal(withoutUriHeaders(u).raw, 'sip:alice:secret@[2001:db8::1]:5070;transport=tcp;lr');
  });

  test('host-only, IPv4, sips and tel URIs', () => {
    assert.equal((parseUri('sip:example.com') as SipUri).user, undefined);
    assert.equal((parseUri('SIPS:b@192.0.2.4:5061') as SipUri).scheme, 'sips');
    const tel = parseUri('tel:+1-201-555-0123;phone-context=example.com');
    assert.equal(tel?.kind, 'tel');
    assert.equal(tel?.kind === 'tel' && tel.number, '+1-201-555-0123');
    assert.equal(parseUri('isbn:2983792873')?.kind, 'other');
  });

  test('escapes are undone exactly once, NULs kept', () => {
    assert.equal(unescapeUri('v%61lue%25%34%31'), 'value%41');
    assert.equal(unescapeUri('null-%00-null'), 'null-\u0000-null');
    assert.equal(unescapeUri('%E2%82%AC'), '\u20ac');
    assert.equal(unescapeUri('100%'), '100%');
    assert.equal((parseUri('sip:user;par=u%40example.net@example.com') as SipUri).user, 'user;par=u@example.net');
  });

  test('malformed URIs are refused', () => {
    for (const bad of ['sip:', 'sip:@host', 'sip:a@[::1', 'sip:a@host:99999', 'sip:a@host;=x', 'sip:a b@host', 'nocolon', '1sip:x', 'sip:a@host?noequals']) {
      assert.equal(parseUri(bad), null, bad);
    }
  });

  test('formatSipUri escapes and round-trips', () => {
    const u = formatSipUri({ user: 'agent 1', host: '10.0.0.5', port: 5080, params: [['transport', 'tcp'], ['lr', null]], headers: [['X-A', 'a&b']] });
    assert.equal(u.raw, 'sip:agent%201@10.0.0.5:5080;transport=tcp;lr?X-A=a%26b');
    const back = parseUri(u.raw) as SipUri;
    assert.equal(back.user, 'agent 1');
    assert.deepEqual(back.headers, [['X-A', 'a&b']]);
  });
});

describe('name-addr, Via, CSeq', () => {
  test('display names: quoted with escapes, token sequences, none', () => {
    assert.equal(parseNameAddr('"J Rosenberg \\\\\\"" <sip:j@example.com>;tag=98')?.displayName, 'J Rosenberg \\"');
    assert.equal(parseNameAddr('token1 token2 <sip:j@example.com>')?.displayName, 'token1 token2');
    assert.equal(parseNameAddr('caller<sip:c@example.com>;tag=3')?.tag, '3');
    const bare = parseNameAddr('sip:+19725552222@gw1.example.net;unknownparam');
    assert.equal(bare?.params.has('unknownparam'), true, 'a bare addr-spec param belongs to the header');
    assert.equal(bare?.uri.kind === 'sip' && bare.uri.params.size, 0);
    const inner = parseNameAddr('<sip:+19725552222@gw1.example.net;unknownparam>');
    assert.equal(inner?.uri.kind === 'sip' && inner.uri.params.has('unknownparam'), true);
  });

  test('refuses unterminated quotes, spaces inside <>, unquoted commas, bare addr-spec with ?', () => {
    for (const bad of ['"Mr. J. User <sip:j@example.com>', '< sip:t@example.org >', 'Bell, Alexander <sip:a@b>', 'sip:u@e.com?Route=x', '<sip:a@b>;;']) {
      assert.equal(parseNameAddr(bad), null, bad);
    }
  });

  test('Via with LWS everywhere, IPv6 sent-by, params', () => {
    const v = parseVia('SIP  /   2.0 /UDP 192.0.2.2 ; branch = z9hG4bK1 ; rport ; received=10.0.0.1');
    assert.equal(v?.transport, 'UDP');
    assert.equal(v?.branch, 'z9hG4bK1');
    assert.equal(v?.rport, null);
    assert.equal(v?.received, '10.0.0.1');
    const v6 = parseVia('SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKx;rport=1234;ttl=16;maddr=[ff02::1]');
    assert.equal(v6?.host, '[2001:db8::9]');
    assert.equal(v6?.port, 5070);
    assert.equal(v6?.rport, 1234);
    assert.equal(v6?.ttl, 16);
    for (const bad of ['SIP/2.0/UDP', 'SIP/2.0 UDP host', 'SIP/2.0/UDP host;;', 'SIP/2.0/UDP host;ttl=256', 'SIP/2.0/UDP host:70000']) {
      assert.equal(parseVia(bad), null, bad);
    }
    assert.equal(formatVia({ transport: 'udp', host: 'h', port: 1, branch: 'z9hG4bKq', params: [['rport', null]] }), 'SIP/2.0/UDP h:1;branch=z9hG4bKq;rport');
  });

  test('CSeq is a 32-bit unsigned number and a method', () => {
    assert.deepEqual(parseCSeq('0009 INVITE'), { seq: 9, method: 'INVITE' });
    assert.deepEqual(parseCSeq('4294967295 BYE'), { seq: 4294967295, method: 'BYE' });
    for (const bad of ['4294967296 BYE', '36893488147419103232 REGISTER', '-1 BYE', 'INVITE', '1', '1 INVITE x']) {
      assert.equal(parseCSeq(bad), null, bad);
    }
  });
});

describe('validation', () => {
  test('Max-Forwards 0..255, CSeq method must match', () => {
    assert.equal(refusal(msg(OPTIONS.map((l) => (l.startsWith('Max-') ? 'Max-Forwards: 256' : l)))).status, 400);
    assert.equal(request(msg(OPTIONS.map((l) => (l.startsWith('Max-') ? 'Max-Forwards: 0' : l)))).maxForwards, 0);
    assert.equal(refusal(msg(OPTIONS.map((l) => (l.startsWith('CSeq') ? 'CSeq: 1 INVITE' : l)))).status, 400);
  });

  test('header count and line length limits give 513 with what is needed to answer', () => {
    const many = [...OPTIONS.slice(0, -1), ...Array.from({ length: 20 }, (_, i) => `X-H${i}: v`), 'Content-Length: 0'];
    const e = parseDatagram(msg(many), { maxHeaders: 10, maxLineLength: 8192, maxMessageSize: 65536 });
    assert.ok(e instanceof SipParseError);
    assert.equal(e.status, 513);
    assert.equal(e.request?.headers.has('via'), true);
    const long = [...OPTIONS.slice(0, -1), `X-Long: ${'a'.repeat(200)}`, 'Content-Length: 0'];
    const e2 = parseDatagram(msg(long), { maxHeaders: 128, maxLineLength: 100, maxMessageSize: 65536 });
    assert.ok(e2 instanceof SipParseError);
    assert.equal(e2.status, 513);
    const e3 = parseDatagram(msg(OPTIONS.slice(0, -1), 'x'.repeat(600)), { maxHeaders: 128, maxLineLength: 8192, maxMessageSize: 512 });
    assert.ok(e3 instanceof SipParseError);
    assert.equal(e3.status, 513);
  });

  test('a header section that is not UTF-8 is kept byte-exact', () => {
    const head = Buffer.from(OPTIONS.slice(0, -1).join(CRLF) + CRLF + 'Subject: caf', 'latin1');
    const buf = Buffer.concat([head, Buffer.from([0xe9]), Buffer.from(CRLF + 'Content-Length: 0' + CRLF + CRLF)]);
    const r = request(buf);
    assert.equal(r.headerEncoding, 'latin1');
    assert.ok(serialize(r).includes(Buffer.from([0x63, 0x61, 0x66, 0xe9])));
  });

  test('CRLF keep-alives are nothing; garbage is refused without an answer', () => {
    assert.equal(parseDatagram(Buffer.from('\r\n\r\n')), null);
    for (const g of ['hello world', '\u0000\u0001\u0002', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n']) {
      const e = refusal(Buffer.from(g));
      assert.equal(e.status, 0);
      assert.equal(e.kind, 'garbage');
    }
  });
});

describe('serializer', () => {
  test('round-trips a request with a binary body and fixes Content-Length', () => {
    const body = Buffer.from([0, 13, 10, 255, 1, 2, 3]);
    const req = createRequest({
      method: 'MESSAGE',
      uri: 'sip:a@example.com',
      from: '<sip:b@example.com>;tag=1',
      to: '<sip:a@example.com>',
      callId: 'c1',
      cseq: 7,
      via: formatVia({ transport: 'UDP', host: '127.0.0.1', port: 5060, branch: newBranch() }),
      body,
      contentType: 'application/octet-stream',
      headers: [['Content-Length', '999']],
    });
    const wire = serialize(req);
    assert.equal(wire.toString('latin1').match(/Content-Length/g)?.length, 1);
    const back = request(wire);
    assert.deepEqual(back.body, body);
    assert.equal(back.cseq.seq, 7);
    assert.deepEqual(serialize(back), wire);
  });

  test('createResponse copies Via/From/To/Call-ID/CSeq and adds a To tag', () => {
    const req = request(msg(['INVITE sip:a@b SIP/2.0', 'Via: SIP/2.0/UDP x;branch=z9hG4bK1', 'Via: SIP/2.0/UDP y;branch=z9hG4bK2', 'To: <sip:a@b>', 'From: <sip:c@d>;tag=f', 'Call-ID: k', 'CSeq: 2 INVITE', 'Timestamp: 54', 'Max-Forwards: 70', 'Content-Length: 0']));
    const trying = createResponse(req, 100);
    assert.equal(trying.headers.get('timestamp'), '54');
    assert.equal(trying.to.tag, undefined);
    const res = createResponse(req, 486, { toTag: 'tt', reason: 'Busy\r\nX: y' });
    assert.equal(res.reason, 'BusyX: y');
    assert.deepEqual(res.headers.getAll('via').length, 2);
    assert.equal(res.to.tag, 'tt');
    const parsed = parseDatagram(serialize(res));
    assert.ok(parsed instanceof SipResponse);
    assert.equal(parsed.status, 486);
    assert.equal(parsed.cseq.method, 'INVITE');
  });

  test('identity() keeps exactly the identifying lines, byte for byte, in wire order', () => {
    const req = request(
      msg([
        'INVITE sip:+14155550100@example.com;user=phone SIP/2.0',
        'v: SIP/2.0/UDP x:5060;branch=z9hG4bK1, SIP/2.0/UDP y;branch=z9hG4bK2',
        'Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK3;received=192.0.2.9',
        'Max-Forwards: 70',
        'To: "Zoë \\"Z\\" Ünal" <sip:z@b>',
        "f: <sip:c@d>;tag=f.!%*_+`'~-1",
        'Call-ID: k@host',
        'CSeq: 2 INVITE',
        'Contact: <sip:c@10.0.0.1:5060;transport=udp>',
        'Record-Route: <sip:p1;lr>, <sip:p2;lr>',
        'Route: <sip:r1;lr>',
        'User-to-User: 7B7D;encoding=hex',
        'Subject: ' + 'x'.repeat(300),
        'Content-Type: application/sdp',
        'Content-Length: 3',
      ], 'v=0'),
    );
    const id = req.identity();
    const kept = ['via', 'to', 'from', 'call-id', 'cseq', 'contact', 'record-route', 'route'];
    const lines = [...req.headers.entries()].filter(([n]) => kept.includes(n.toLowerCase()));
    assert.deepEqual([...id.headers.entries()], lines);
    assert.equal(id.headers.size, 9);
    assert.equal(id.method, 'INVITE');
    assert.equal(serialize(id).toString().split("\r\n")[0], "INVITE sip:+14155550100@example.com;user=phone SIP/2.0");
    assert.equal(id.body.length, 0);
    assert.equal(id.headers.get('user-to-user'), undefined);
    assert.deepEqual(id.vias.map((v) => v.branch), ['z9hG4bK1', 'z9hG4bK2', 'z9hG4bK3']);
    assert.equal(id.from.tag, "f.!%*_+`'~-1");
    assert.equal(id.to.displayName, 'Zoë "Z" Ünal');
    assert.deepEqual(id.cseq, req.cseq);
    // usable as any headers: changed, cloned, serialized
    id.headers.prepend('Via', 'SIP/2.0/UDP z;branch=z9hG4bK0');
    assert.equal(id.via.branch, 'z9hG4bK0');
    const back = request(serialize(id));
    assert.equal(back.vias.length, 4);
    assert.equal(back.callId, 'k@host');
    // an identity of an identity is the same lines
    assert.deepEqual([...id.identity().headers.entries()], [...id.headers.entries()]);
    assert.equal(new SipRequest('OPTIONS', 'sip:a@b', new SipHeaders()).identity().headers.size, 0);
  });

  test('formatNameAddr quotes what needs quoting', () => {
    assert.equal(formatNameAddr({ displayName: 'Doe, "J"', uri: 'sip:j@e.com', params: [['tag', 'a']] }), '"Doe, \\"J\\"" <sip:j@e.com>;tag=a');
    assert.equal(formatNameAddr({ displayName: 'Alice', uri: 'sip:a@e.com' }), 'Alice <sip:a@e.com>');
  });
});

describe('stream framing', () => {
  const one = msg(OPTIONS);
  const withBody = msg(
    [
      'MESSAGE sip:a@b SIP/2.0',
      'Via: SIP/2.0/TCP x;branch=z9hG4bK9',
      'To: <sip:a@b>',
      'From: <sip:c@d>;tag=1',
      'Call-ID: m1',
      'CSeq: 1 MESSAGE',
      'Max-Forwards: 70',
      'Content-Type: text/plain',
      'Content-Length: 11',
    ],
    'hello\r\n\r\nyo',
  );

  function drain(p: SipStreamParser): Array<ReturnType<SipStreamParser['next']>> {
    const out: Array<ReturnType<SipStreamParser['next']>> = [];
    for (let i = 0; i < 100; i++) {
      const m = p.next();
      if (m === null) break;
      out.push(m);
    }
    return out;
  }

  test('one byte at a time, and at every split point', () => {
    const all = Buffer.concat([one, withBody]);
    const p = new SipStreamParser();
    const got: unknown[] = [];
    for (const b of all) {
      p.push(Buffer.from([b]));
      got.push(...drain(p));
    }
    assert.equal(got.length, 2);
    assert.ok(got[1] instanceof SipRequest);
    assert.equal((got[1] as SipRequest).body.toString(), 'hello\r\n\r\nyo');
    for (let cut = 1; cut < all.length; cut += 7) {
      const q = new SipStreamParser();
      q.push(all.subarray(0, cut));
      const a = drain(q);
      q.push(all.subarray(cut));
      const b = drain(q);
      assert.equal(a.length + b.length, 2, `cut at ${cut}`);
      assert.equal(q.buffered, 0);
    }
  });

  test('two messages in one chunk, with keep-alives around', () => {
    const p = new SipStreamParser();
    p.push(Buffer.concat([Buffer.from('\r\n\r\n'), one, Buffer.from('\r\n'), withBody]));
    const got = drain(p);
    assert.equal(got[0], KEEPALIVE_PING);
    assert.equal(got.length, 3);
    assert.ok(got[2] instanceof SipRequest);
  });

  test('a malformed but framed message is refused and the stream goes on', () => {
    const bad = msg(OPTIONS.map((l) => (l.startsWith('CSeq') ? 'CSeq: 1 INVITE' : l)));
    const p = new SipStreamParser();
    p.push(Buffer.concat([bad, one]));
    const got = drain(p);
    assert.ok(got[0] instanceof SipParseError && !got[0].fatal && got[0].status === 400);
    assert.ok(got[1] instanceof SipRequest);
    assert.equal(p.failed, false);
  });

  test('garbage, bad Content-Length and oversize lose the framing', () => {
    const cases: Array<[Buffer, number]> = [
      [Buffer.from('\u0016\u0003\u0001garbage\r\n\r\n'), 0],
      [msg(OPTIONS.map((l) => (l.startsWith('Content-Length') ? 'Content-Length: -5' : l))), 400],
      [msg(OPTIONS.map((l) => (l.startsWith('Content-Length') ? 'Content-Length: 99999999' : l))), 513],
    ];
    for (const [input, status] of cases) {
      const p = new SipStreamParser();
      p.push(input);
      const got = drain(p);
      assert.equal(got.length, 1);
      assert.ok(got[0] instanceof SipParseError && got[0].fatal, 'fatal');
      assert.equal((got[0] as SipParseError).status, status);
      assert.equal(p.failed, true);
    }
    const p = new SipStreamParser({ maxHeaders: 128, maxLineLength: 100, maxMessageSize: 1000 });
    p.push(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nX: ' + 'a'.repeat(200)));
    assert.ok(drain(p)[0] instanceof SipParseError);
    const q = new SipStreamParser({ maxHeaders: 128, maxLineLength: 10_000, maxMessageSize: 1000 });
    for (let i = 0; i < 30 && !q.failed; i++) {
      q.push(Buffer.from('X-Filler: ' + 'b'.repeat(60) + '\r\n'));
      drain(q);
    }
    assert.equal(q.failed, true);
  });
});
