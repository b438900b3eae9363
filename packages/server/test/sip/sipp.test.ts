/** Interop with a real SIP peer: sipp (Debian package `sip-tester`) as the UAC. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOCAL, startServer } from './helpers.js';

function sippPath(): string | undefined {
  try {
    return execFileSync('which', ['sipp'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const SIPP = sippPath();
const SKIP = SIPP ? false : 'sipp not installed (apt-get install -y sip-tester): skipped';

const SCENARIO = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS then INVITE / ACK / BYE">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
`;

const SDP = 'v=0\r\no=handoff 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, LOCAL, () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function runSipp(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(SIPP!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, out });
    });
  });
}

describe('sipp interop', { skip: SKIP }, () => {
  for (const transport of ['udp', 'tcp'] as const) {
    test(`sipp UAC: OPTIONS, INVITE/ACK/BYE over ${transport.toUpperCase()}`, { timeout: 45_000 }, async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'sipp-'));
      const server = await startServer();
      server.onRequest('INVITE', (tx) => {
        tx.reply(180);
        tx.reply(200, { body: SDP, contentType: 'application/sdp', headers: [['Contact', `<sip:svc@${LOCAL}:${server.addresses()[transport]!.port};transport=${transport}>`]] });
      });
      server.onRequest('BYE', (tx) => void tx.reply(200));
      const acks: string[] = [];
      server.onAck((ack) => acks.push(ack.callId));
      try {
        writeFileSync(path.join(dir, 'uac.xml'), SCENARIO);
        const port = server.addresses()[transport]!.port;
        const { code, out } = await runSipp([
          `${LOCAL}:${port}`,
          '-sf', path.join(dir, 'uac.xml'),
          '-s', 'svc',
          '-i', LOCAL,
          '-p', String(await freeUdpPort()),
          '-t', transport === 'udp' ? 'u1' : 't1',
          '-m', '3',
          '-r', '10',
          '-timeout', '20s',
          '-timeout_error',
          '-max_retrans', '3',
          '-nostdin',
          '-trace_err',
          '-error_file', path.join(dir, 'errors.log'),
        ]);
        assert.equal(code, 0, out.slice(-2000));
        const c = server.counters.snapshot();
        assert.equal(c.receivedRequests.OPTIONS, 3);
        assert.equal(c.receivedRequests.INVITE, 3);
        assert.equal(c.receivedRequests.BYE, 3);
        assert.equal(acks.length, 3, 'the ACKs of the 2xx reached the core');
        assert.equal(c.parseErrors, 0);
      } finally {
        await server.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
