import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequest, newCallId, newTag, type SipResponse, type SipServer } from '../../src/sip/index.js';
import { LOCAL, TcpClient, answersOptions, optionsRequest, startServer, statuses } from './helpers.js';

describe('TCP transport', () => {
  let server: SipServer;
  let port = 0;

  before(async () => {
    server = await startServer({ idleTimeoutMs: 400, messageTimeoutMs: 300, maxConnections: 20, limits: { maxMessageSize: 4096 } });
    port = server.addresses().tcp!.port;
  });

  after(async () => {
    await server.close();
  });

  test('a message split into many chunks', async () => {
    const c = await TcpClient.connect(port);
    const data = optionsRequest('TCP');
    for (let i = 0; i < data.length; i += 3) {
      c.socket.write(data.subarray(i, i + 3));
      if (i % 60 === 0) await new Promise((r) => setImmediate(r));
    }
    assert.ok(await c.waitFor(() => statuses(c.text).includes(200), 1000));
    c.close();
  });

  test('two messages in one chunk, and a CRLFCRLF ping answered with CRLF', async () => {
    const c = await TcpClient.connect(port);
    c.socket.write(Buffer.concat([optionsRequest('TCP'), optionsRequest('TCP')]));
    assert.ok(await c.waitFor(() => statuses(c.text).length === 2, 1000));
    const before = c.data.length;
    c.socket.write('\r\n\r\n');
    assert.ok(await c.waitFor(() => c.data.length === before + 2, 1000));
    assert.equal(c.data.subarray(before).toString(), '\r\n');
    c.close();
  });

  test('idle connections are closed', async () => {
    const c = await TcpClient.connect(port);
    c.socket.write(optionsRequest('TCP'));
    assert.equal(await c.waitClosed(2000), true);
    assert.deepEqual(statuses(c.text), [200]);
  });

  test('a slow sender is cut off', async () => {
    const c = await TcpClient.connect(port);
    const data = optionsRequest('TCP');
    c.socket.write(data.subarray(0, 40));
    const keepTrickling = setInterval(() => c.socket.write(' '), 50); // activity, but the message never completes
    const closed = await c.waitClosed(2000);
    clearInterval(keepTrickling);
    assert.equal(closed, true);
    assert.ok((server.counters.snapshot().dropped['slow-sender'] ?? 0) >= 1);
  });

  test('oversize and garbage close the connection; the listener keeps serving', async () => {
    const big = await TcpClient.connect(port);
    big.socket.write(`OPTIONS sip:a@b SIP/2.0\r\nX-Pad: ${'x'.repeat(6000)}\r\n`);
    assert.equal(await big.waitClosed(1000), true);
    const garbage = await TcpClient.connect(port);
    garbage.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x0d, 0x0a, 0x0d, 0x0a]));
    assert.equal(await garbage.waitClosed(1000), true);
    assert.equal(garbage.data.length, 0, 'no answer to garbage');
    const bigBody = await TcpClient.connect(port);
    bigBody.socket.write(optionsRequest('TCP').toString().replace('Content-Length: 0', 'Content-Length: 100000'));
    assert.equal(await bigBody.waitClosed(1000), true);
    assert.deepEqual(statuses(bigBody.text), [513], 'answered 513 before closing');
    const ok = await TcpClient.connect(port);
    ok.socket.write(optionsRequest('TCP'));
    assert.ok(await ok.waitFor(() => statuses(ok.text).includes(200), 1000));
    ok.close();
  });

  test('connections beyond the maximum are refused', async () => {
    const clients = await Promise.all(Array.from({ length: 25 }, () => TcpClient.connect(port)));
    await new Promise((r) => setTimeout(r, 100));
    const open = clients.filter((c) => !c.closed).length;
    assert.ok(open <= 20, `open ${open}`);
    assert.ok((server.counters.snapshot().dropped['max-connections'] ?? 0) >= 5);
    for (const c of clients) c.close();
  });
});

describe('TLS transport', () => {
  let dir = '';
  let cert = '';
  let key = '';
  let server: SipServer | undefined;
  let skip: string | false = false;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sip-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore', timeout: 20_000 });
      cert = readFileSync(path.join(dir, 'cert.pem'), 'utf8');
      key = readFileSync(path.join(dir, 'key.pem'), 'utf8');
      server = await startServer({ tls: { host: LOCAL, port: 0, cert, key } });
    } catch (e) {
      skip = `openssl unavailable: ${(e as Error).message}`;
    }
  });

  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('an OPTIONS over TLS with a self-signed certificate gets 200', async (t) => {
    if (skip || !server) return t.skip(String(skip));
    const port = server.addresses().tls!.port;
    const socket = tls.connect({ host: LOCAL, port, ca: cert });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    socket.write(optionsRequest('TLS'));
    const end = Date.now() + 2000;
    while (!statuses(text).includes(200) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    assert.deepEqual(statuses(text), [200]);
  });

  test('a SipServer sends OPTIONS to another over TLS, verifying the certificate', async (t) => {
    if (skip || !server) return t.skip(String(skip));
    const client = await startServer({ tls: { host: LOCAL, port: 0, cert, key }, tlsClient: { ca: cert } });
    try {
      const port = server.addresses().tls!.port;
      const status = await new Promise<number>((resolve) => {
        const r = createRequest({ method: 'OPTIONS', uri: `sips:svc@${LOCAL}:${port}`, from: `<sips:c@${LOCAL}>;tag=${newTag()}`, to: `<sips:svc@${LOCAL}>`, callId: newCallId(), cseq: 1 });
        client.sendRequest(r, { transport: 'tls', host: LOCAL, port }, {
          onResponse: (_tx, res: SipResponse) => resolve(res.status),
          onTransportError: () => resolve(-1),
          onTimeout: () => resolve(-2),
        });
      });
      assert.equal(status, 200);
    } finally {
      await client.close();
    }
  });

  test('garbage instead of a TLS handshake does not disturb the listener', async (t) => {
    if (skip || !server) return t.skip(String(skip));
    const c = await TcpClient.connect(server.addresses().tls!.port);
    c.socket.write('OPTIONS sip:plain@text SIP/2.0\r\n\r\n');
    assert.equal(await c.waitClosed(2000), true);
    assert.equal(await answersOptions(server.addresses().udp!.port), true);
  });
});

describe('UDP flood', () => {
  test('20,000 datagrams of garbage and valid OPTIONS: every OPTIONS answered, counters match', { timeout: 60_000 }, async () => {
    const server = await startServer();
    const port = server.addresses().udp!.port;
    const sock = dgram.createSocket('udp4');
    let answered = 0;
    sock.on('message', () => answered++);
    await new Promise<void>((r) => sock.bind(0, LOCAL, () => r()));
    const garbage = [Buffer.from('\u0000\u00ff garbage \r\n\r\n'), Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from('INVITE\r\n\r\n'), Buffer.from('SIP/2.0 99999 x\r\n\r\n')];
    const BATCH = 100;
    const ROUNDS = 100; // 100 × (100 OPTIONS + 100 garbage) = 20,000 datagrams
    const started = Date.now();
    try {
      for (let round = 0; round < ROUNDS && Date.now() - started < 45_000; round++) {
        for (let i = 0; i < BATCH; i++) {
          sock.send(garbage[i % garbage.length]!, port, LOCAL);
          sock.send(optionsRequest(), port, LOCAL);
        }
        // window: wait for this batch's answers (bounded) so the kernel buffer never overflows
        const want = (round + 1) * BATCH;
        const end = Date.now() + 3000;
        while (answered < want && Date.now() < end) await new Promise((r) => setTimeout(r, 1));
      }
      const c = server.counters.snapshot();
      assert.equal(answered, BATCH * ROUNDS);
      assert.equal(c.receivedRequests.OPTIONS, BATCH * ROUNDS);
      assert.equal(c.sentResponses['200'], BATCH * ROUNDS);
      assert.equal(c.parseErrors, BATCH * ROUNDS);
      assert.equal((c.dropped.garbage ?? 0) + (c.dropped.malformed ?? 0), BATCH * ROUNDS);
      assert.equal(await answersOptions(port), true);
    } finally {
      sock.close();
      await server.close();
    }
  });
});

describe('UDP front (SIP workers)', () => {
  test('an injected datagram is answered through the front, from the address it was sent to; others are not', async () => {
    const sent: Array<{ text: string; port: number; host: string }> = [];
    const server = await startServer({
      front: { address: LOCAL, port: 5999, send: (data, port, host) => sent.push({ text: data.toString('latin1'), port, host }) },
    });
    const direct = dgram.createSocket('udp4');
    const got: string[] = [];
    direct.on('message', (m) => got.push(m.toString('latin1')));
    await new Promise<void>((r) => direct.bind(0, LOCAL, () => r()));
    try {
      // handed in by the front: answered through it, to the source the front saw
      server.transport.inject(optionsRequest('UDP'), '192.0.2.7', 40000);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sent.length, 1);
      assert.match(sent[0]!.text, /^SIP\/2\.0 200 /);
      assert.deepEqual([sent[0]!.host, sent[0]!.port], ['192.0.2.7', 40000]);
      assert.match(sent[0]!.text, /received=192\.0\.2\.7/, 'Via stamped with the real source');
      // garbage handed in is dropped like garbage read from a socket
      server.transport.inject(Buffer.from('\x00\x01 not SIP'), '192.0.2.7', 40000);
      // sent to the worker's own port: answered from it, not through the front
      direct.send(optionsRequest('UDP'), server.addresses().udp!.port, LOCAL);
      const until = Date.now() + 1000;
      while (got.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      assert.equal(got.length, 1);
      assert.match(got[0]!, /^SIP\/2\.0 200 /);
      assert.equal(sent.length, 1, 'nothing more went through the front');
      // the front's address is one of this element's own (a Request-URI naming it is not forwarded)
      assert.ok(server.transport.localAddresses().some((a) => a.port === 5999));
    } finally {
      direct.close();
      await server.close();
    }
  });
});
