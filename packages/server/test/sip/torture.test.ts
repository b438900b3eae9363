/**
 * RFC 4475 torture messages (../shared/conformance/sip-torture), byte-exact, against the parser,
 * and over real UDP and TCP sockets to a running SipServer acting as an endpoint (UAS).
 */
import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  SipParseError,
  SipRequest,
  SipResponse,
  SipStreamParser,
  parseDatagram,
  withoutUriHeaders,
  mediaType,
  type SipServer,
  type SipUri,
  type NameAddr,
} from '../../src/sip/index.js';
import { TcpClient, answersOptions, hasFinal, optionsRequest, startServer, statuses, tortureDir, udpExchange } from './helpers.js';

const dir = tortureDir();
const SKIP = dir ? false : 'RFC 4475 corpus not found at ../shared/conformance/sip-torture: skipped';

interface ManifestEntry {
  file: string;
  syntax: 'valid' | 'invalid';
  expect: string;
}

/**
 * The decision per file.
 * - parse: 'accept', or the refusal status (0 = dropped without answer).
 * - udp: statuses expected back over UDP (first final response; [] = nothing comes back).
 * - tcp: statuses over a fresh TCP connection, then 'open' (still usable) or 'close'.
 * The endpoint under test serves INVITE (answers 486, or 406 when Accept excludes SDP) and
 * OPTIONS; it is not a registrar, so REGISTER gets 405.
 */
const TABLE: Record<string, { parse: 'accept' | number; udp: number[]; tcp: [number[], 'open' | 'close'] }> = {
  'wsinv.dat': { parse: 'accept', udp: [486], tcp: [[486], 'open'] },
  'intmeth.dat': { parse: 'accept', udp: [501], tcp: [[501], 'open'] }, // endpoint: unknown method, 501 + Allow
  'esc01.dat': { parse: 'accept', udp: [486], tcp: [[486], 'open'] },
  'escnull.dat': { parse: 'accept', udp: [405], tcp: [[405], 'open'] }, // not a registrar
  'esc02.dat': { parse: 'accept', udp: [501], tcp: [[501], 'open'] }, // RE%47IST%45R is not REGISTER
  'lwsdisp.dat': { parse: 'accept', udp: [200], tcp: [[200], 'open'] },
  'longreq.dat': { parse: 'accept', udp: [486], tcp: [[486], 'open'] },
  // UDP: trailing octets ignored. TCP: they are an INVITE (cut 3 octets short), then garbage → close
  'dblreq.dat': { parse: 'accept', udp: [405], tcp: [[405, 486], 'close'] },
  'semiuri.dat': { parse: 'accept', udp: [200], tcp: [[200], 'open'] },
  'transports.dat': { parse: 'accept', udp: [200], tcp: [[200], 'open'] },
  'mpart01.dat': { parse: 'accept', udp: [405], tcp: [[405], 'open'] }, // MESSAGE not served here
  'unreason.dat': { parse: 'accept', udp: [], tcp: [[], 'open'] }, // responses match no transaction
  'noreason.dat': { parse: 'accept', udp: [], tcp: [[], 'open'] },
  'badinv01.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] },
  // TCP: waits for 9,999 octets, closed by the slow-sender timeout
  'clerr.dat': { parse: 400, udp: [400], tcp: [[], 'close'] },
  'ncl.dat': { parse: 400, udp: [400], tcp: [[400], 'close'] },
  'scalar02.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] },
  'scalarlg.dat': { parse: 0, udp: [], tcp: [[], 'open'] },
  'quotbal.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] }, // choice: no inference of the quote
  'ltgtruri.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] }, // choice: refused
  'lwsruri.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] }, // choice: refused
  'lwsstart.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] }, // choice: refused
  'trws.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] }, // choice: refused
  // choice: accepted; the URI headers are exposed (UUI may come that way) and stripped when forwarding
  'escruri.dat': { parse: 'accept', udp: [486], tcp: [[486], 'open'] },
  'baddate.dat': { parse: 'accept', udp: [486], tcp: [[486], 'open'] }, // choice: Date is never interpreted
  'regbadct.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] }, // choice: refused, no <> inference
  'badaspec.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] }, // choice: refused
  // choice: refused over UDP; on a stream the file never ends its header section → timeout close
  'baddn.dat': { parse: 400, udp: [400], tcp: [[], 'close'] },
  'badvers.dat': { parse: 505, udp: [505], tcp: [[505], 'open'] },
  'mismatch01.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] },
  'mismatch02.dat': { parse: 501, udp: [501], tcp: [[501], 'open'] }, // 501 preferred by the RFC
  'bigcode.dat': { parse: 0, udp: [], tcp: [[], 'open'] },
  'badbranch.dat': { parse: 'accept', udp: [200], tcp: [[200], 'open'] }, // choice: RFC 2543 matching
  'insuf.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] },
  'unkscm.dat': { parse: 'accept', udp: [416], tcp: [[416], 'open'] },
  'novelsc.dat': { parse: 'accept', udp: [416], tcp: [[416], 'open'] }, // choice: 416, not 404
  'unksm2.dat': { parse: 'accept', udp: [405], tcp: [[405], 'open'] },
  'bext01.dat': { parse: 'accept', udp: [420], tcp: [[420], 'open'] },
  'invut.dat': { parse: 'accept', udp: [415], tcp: [[415], 'open'] },
  'regaut01.dat': { parse: 'accept', udp: [405], tcp: [[405], 'open'] },
  'multi01.dat': { parse: 400, udp: [400], tcp: [[400], 'open'] },
  'mcl01.dat': { parse: 400, udp: [400], tcp: [[400], 'close'] },
  'bcast.dat': { parse: 'accept', udp: [], tcp: [[], 'open'] },
  'zeromf.dat': { parse: 'accept', udp: [200], tcp: [[200], 'open'] }, // endpoint: processed normally
  'cparam01.dat': { parse: 'accept', udp: [405], tcp: [[405], 'open'] },
  'cparam02.dat': { parse: 'accept', udp: [405], tcp: [[405], 'open'] },
  'regescrt.dat': { parse: 'accept', udp: [405], tcp: [[405], 'open'] },
  'sdp01.dat': { parse: 'accept', udp: [406], tcp: [[406], 'open'] }, // choice: 406 with Warning 399
  // UDP: body = rest of the datagram. TCP: no Content-Length → empty body, then the SDP is an
  // incomplete header section → slow-sender close
  'inv2543.dat': { parse: 'accept', udp: [486], tcp: [[486], 'close'] },
};

function manifest(): ManifestEntry[] {
  return (JSON.parse(readFileSync(path.join(dir!, 'manifest.json'), 'utf8')) as { messages: ManifestEntry[] }).messages;
}

function load(file: string): Buffer {
  return readFileSync(path.join(dir!, file));
}

/** Field checks of the valid messages: what each one exists to exercise. */
const FIELDS: Record<string, (m: SipRequest | SipResponse) => void> = {
  'wsinv.dat': (m) => {
    const r = m as SipRequest;
    assert.equal(r.maxForwards, 68);
    assert.equal(r.cseq.seq, 9);
    assert.equal(r.cseq.method, 'INVITE');
    assert.equal(r.to.tag, '1918181833n');
    assert.equal(r.from.displayName, 'J Rosenberg \\"');
    assert.equal(r.from.tag, '98asjd8');
    assert.equal(r.headers.get('subject'), '');
    assert.equal(r.headers.get('newfangledheader'), 'newfangled value continued newfangled value');
    assert.equal(r.vias.length, 3);
    assert.equal(r.via.branch, '390skdjuw');
    assert.equal(r.vias[1]!.transport, 'TCP');
    const c = r.contacts[0] as NameAddr;
    assert.equal(c.displayName, 'Quoted string ""');
    assert.equal(c.params.get('newparam'), 'newvalue');
    assert.equal(c.params.get('q'), '0.33');
    assert.equal(r.body.length, 150);
  },
  'intmeth.dat': (m) => {
    const r = m as SipRequest;
    assert.equal(r.method, "!interesting-Method0123456789_*+`.%indeed'~");
    assert.equal(r.to.displayName, 'BEL:\u0007 NUL:\u0000 DEL:\u007f');
    const u = r.requestUri as SipUri;
    assert.equal(u.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert.equal(u.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    assert.equal(r.from.tag, "_token~1'+`*%!-.");
  },
  'esc01.dat': (m) => {
    const r = m as SipRequest;
    assert.equal((r.requestUri as SipUri).user, 'sips:user@example.com');
    assert.equal((r.to.uri as SipUri).user, 'user');
    assert.equal((r.from.uri as SipUri).user, 'I have spaces');
    const contact = (r.contacts[0] as NameAddr).uri as SipUri;
    assert.equal(contact.user, 'caller');
    assert.equal(contact.params.has('lr'), true);
    assert.equal(contact.params.get('name'), 'value%41', 'unescaped exactly once');
  },
  'escnull.dat': (m) => {
    const users = (m as SipRequest).contacts.map((c) => ((c as NameAddr).uri as SipUri).user);
    assert.deepEqual(users, ['\u0000', '\u0000\u0000']);
    assert.equal(((m as SipRequest).to.uri as SipUri).user, 'null-\u0000-null');
  },
  'esc02.dat': (m) => {
    const r = m as SipRequest;
    assert.equal(r.method, 'RE%47IST%45R');
    assert.notEqual(r.method, 'REGISTER');
    assert.equal(r.contacts.length, 2);
    assert.equal(r.headers.get('C%6Fntact'), '<sip:alias2@host2.example.com>');
    assert.equal(r.from.displayName, '%Z%45');
  },
  'lwsdisp.dat': (m) => assert.equal((m as SipRequest).from.displayName, 'caller'),
  'longreq.dat': (m) => {
    const r = m as SipRequest;
    assert.equal(r.vias.length, 34);
    assert.equal(r.headers.count('via'), 34);
    assert.ok(r.to.displayName!.length > 50);
  },
  'dblreq.dat': (m) => {
    assert.equal((m as SipRequest).method, 'REGISTER');
    assert.equal(m.body.length, 0);
  },
  'semiuri.dat': (m) => {
    assert.equal(((m as SipRequest).requestUri as SipUri).user, 'user;par=u@example.net');
    assert.equal(m.headers.getAll('accept').length, 6);
  },
  'transports.dat': (m) => assert.deepEqual(m.vias.map((v) => v.transport), ['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP']),
  'mpart01.dat': (m) => {
    assert.equal(m.body.length, 553);
    assert.ok(m.body.includes(0));
  },
  'unreason.dat': (m) => {
    assert.equal((m as SipResponse).status, 200);
    assert.ok((m as SipResponse).reason.startsWith('= 2**3 * 5**2 '));
    assert.ok(/[\u0400-\u04ff]/.test((m as SipResponse).reason), 'UTF-8 reason decoded');
  },
  'noreason.dat': (m) => {
    assert.equal((m as SipResponse).status, 100);
    assert.equal((m as SipResponse).reason, '');
  },
  'escruri.dat': (m) => {
    const u = (m as SipRequest).requestUri as SipUri;
    assert.deepEqual(u.headers, [['Route', '<sip:example.com>']]);
    assert.equal(withoutUriHeaders(u).raw.includes('?'), false, 'never forwarded');
  },
  'baddate.dat': (m) => assert.match(m.headers.get('date')!, /EST$/),
  'badbranch.dat': (m) => assert.equal(m.via.branch, 'z9hG4bK'),
  'unkscm.dat': (m) => assert.equal((m as SipRequest).requestUri.scheme, 'nobodyknowsthisscheme'),
  'novelsc.dat': (m) => assert.equal((m as SipRequest).requestUri.scheme, 'soap.beep'),
  'unksm2.dat': (m) => {
    assert.equal(m.to.uri.scheme, 'isbn');
    assert.equal(m.from.uri.scheme, 'http');
  },
  'bext01.dat': (m) => {
    assert.deepEqual(m.optionTags('Require'), ['nothingSupportsThis', 'nothingSupportsThisEither']);
    assert.equal(m.optionTags('Proxy-Require').length, 2);
  },
  'invut.dat': (m) => assert.equal(mediaType(m.headers.get('content-type')!), 'application/unknownformat'),
  'regaut01.dat': (m) => assert.equal(m.headers.get('authorization'), 'NoOneKnowsThisScheme opaque-data=here'),
  'bcast.dat': (m) => assert.equal(m.vias[1]!.host, '255.255.255.255'),
  'zeromf.dat': (m) => assert.equal(m.maxForwards, 0),
  'cparam01.dat': (m) => {
    const c = m.contacts[0] as NameAddr;
    assert.equal(c.params.has('unknownparam'), true);
    assert.equal((c.uri as SipUri).params.has('unknownparam'), false);
  },
  'cparam02.dat': (m) => {
    const c = m.contacts[0] as NameAddr;
    assert.equal(c.params.has('unknownparam'), false);
    assert.equal((c.uri as SipUri).params.has('unknownparam'), true);
  },
  'regescrt.dat': (m) => assert.deepEqual(((m.contacts[0] as NameAddr).uri as SipUri).headers, [['Route', '<sip:sip.example.com>']]),
  'sdp01.dat': (m) => assert.equal(m.headers.get('accept'), 'text/nobodyKnowsThis'),
  'inv2543.dat': (m) => {
    const r = m as SipRequest;
    assert.equal(r.via.branch, undefined);
    assert.equal(r.from.tag, undefined);
    assert.equal(r.maxForwards, undefined);
    assert.ok(r.body.toString('latin1').startsWith('v=0'));
    assert.ok(r.body.length > 100, 'the body is the rest of the datagram');
  },
};

describe('RFC 4475 torture messages', { skip: SKIP }, () => {
  test('the table covers exactly the manifest', () => {
    assert.deepEqual(manifest().map((m) => m.file).sort(), Object.keys(TABLE).sort());
    for (const m of manifest()) {
      const d = TABLE[m.file]!;
      if (m.syntax === 'valid') assert.equal(d.parse, 'accept', `${m.file} is valid`);
      else if (!m.expect.includes('liberal')) assert.notEqual(d.parse, 'accept', `${m.file} must be refused`);
    }
  });

  describe('parser (datagram)', () => {
    for (const file of Object.keys(TABLE)) {
      test(file, () => {
        const d = TABLE[file]!;
        const out = parseDatagram(load(file));
        if (d.parse === 'accept') {
          assert.ok(out instanceof SipRequest || out instanceof SipResponse, out instanceof SipParseError ? `${out.status} ${out.reason}` : 'null');
          FIELDS[file]?.(out);
        } else {
          assert.ok(out instanceof SipParseError, 'refused');
          assert.equal(out.status, d.parse, out.reason);
        }
      });
    }

    test('every file byte by byte through the stream framer: no crash, bounded', () => {
      for (const file of [...Object.keys(TABLE), 'unlisted/test.dat']) {
        const p = new SipStreamParser();
        const data = load(file);
        let outputs = 0;
        for (const b of data) {
          p.push(Buffer.from([b]));
          for (let m = p.next(); m !== null && outputs < 10; m = p.next()) outputs++;
        }
        assert.ok(outputs <= 4, file);
        assert.ok(p.buffered <= data.length, file);
      }
    });

    test('unlisted/test.dat does not crash the parser', () => {
      const out = parseDatagram(load('unlisted/test.dat'));
      assert.ok(out === null || out instanceof SipParseError || out instanceof SipRequest || out instanceof SipResponse);
    });
  });

  describe('over sockets to a SipServer', () => {
    let server: SipServer;
    let udpPort = 0;
    let tcpPort = 0;

    /** A fresh endpoint per test: a file sent twice would rightly be a retransmission. */
    beforeEach(async () => {
      server = await startServer({ messageTimeoutMs: 300, idleTimeoutMs: 5000 });
      server.onRequest('INVITE', (tx) => {
        const accept = tx.request.headers.getAll('accept').map(mediaType);
        // RFC 4475 sdp01: an endpoint that can only answer in SDP cannot satisfy this Accept
        if (accept.length > 0 && !accept.includes('application/sdp')) tx.reply(406, { headers: [['Warning', '399 127.0.0.1 "Accept excludes application/sdp"']] });
        else tx.reply(486);
      });
      udpPort = server.addresses().udp!.port;
      tcpPort = server.addresses().tcp!.port;
    });

    afterEach(async () => {
      await server.close();
    });

    test('UDP: each file gets the expected answer, or nothing', async () => {
      for (const [file, d] of Object.entries(TABLE)) {
        const got = d.udp.length === 0 ? await udpExchange(udpPort, load(file), 150) : await udpExchange(udpPort, load(file), 2000, hasFinal);
        const finals = got.flatMap((b) => statuses(b.toString('latin1'))).filter((s) => s >= 200);
        if (d.udp.length === 0) assert.deepEqual(finals, [], `${file}: nothing back`);
        else assert.equal(finals[0], d.udp[0], `${file}: got ${finals.join(',')}`);
        if (file === 'intmeth.dat' || file === 'esc02.dat') assert.match(got[0]!.toString('latin1'), /\r\nAllow: /, `${file}: Allow`);
        if (file === 'bext01.dat') assert.match(got[0]!.toString('latin1'), /\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither\r\n/);
        if (file === 'invut.dat') assert.match(got.at(-1)!.toString('latin1'), /\r\nAccept: application\/sdp\r\n/);
        if (file === 'dblreq.dat') assert.equal(got.length, 1, 'the trailing INVITE octets are ignored');
      }
      await udpExchange(udpPort, load('unlisted/test.dat'), 50);
      assert.equal(await answersOptions(udpPort), true, 'still answers OPTIONS');
    });

    test('TCP: each file on a fresh connection', async () => {
      const results = await Promise.all(
        Object.entries(TABLE).map(async ([file, d]) => {
          const c = await TcpClient.connect(tcpPort);
          c.socket.write(load(file));
          const [want, fate] = d.tcp;
          if (fate === 'close') {
            const closed = await c.waitClosed(2000);
            return { file, want, got: statuses(c.text).filter((s) => s >= 200), ok: closed, what: 'closed' };
          }
          await c.waitFor(() => statuses(c.text).filter((s) => s >= 200).length >= want.length, 1000);
          await new Promise((r) => setTimeout(r, 50));
          const got = statuses(c.text).filter((s) => s >= 200);
          // the connection is still usable: an OPTIONS on it gets 200
          c.socket.write(optionsRequest('TCP'));
          const usable = await c.waitFor(() => statuses(c.text).filter((s) => s === 200).length > want.filter((s) => s === 200).length, 1000);
          c.close();
          return { file, want, got, ok: usable, what: 'usable' };
        }),
      );
      for (const r of results) {
        assert.deepEqual(r.got, r.want, `${r.file}: statuses`);
        assert.ok(r.ok, `${r.file}: connection ${r.what}`);
      }
      const c = await TcpClient.connect(tcpPort);
      c.socket.write(load('unlisted/test.dat'));
      assert.equal(await c.waitClosed(2000), true, 'unlisted/test.dat: closed');
      assert.equal(await answersOptions(udpPort), true, 'still answers OPTIONS');
    });

    test('TCP: all files written one after another on one connection, split at random points', async () => {
      const c = await TcpClient.connect(tcpPort);
      // only files that keep the framing: the rest would (rightly) close the connection
      const files = Object.entries(TABLE).filter(([, d]) => d.tcp[1] === 'open').map(([f]) => f);
      const all = Buffer.concat(files.map(load));
      let pos = 0;
      let seed = 7;
      while (pos < all.length) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        const n = 1 + (seed % 97);
        c.socket.write(all.subarray(pos, pos + n));
        pos += n;
      }
      const want = files.flatMap((f) => TABLE[f]!.tcp[0]);
      await c.waitFor(() => statuses(c.text).filter((s) => s >= 200).length >= want.length, 3000);
      assert.deepEqual(statuses(c.text).filter((s) => s >= 200), want);
      assert.equal(c.closed, false);
      c.close();
    });
  });
});
