/**
 * sipp (Debian package `sip-tester`) as the partner (UAC) and as the AI agent (UAS): scenario
 * builders, a bounded runner, and readers of sipp's message trace.
 */
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const LOCAL = '127.0.0.1';

function which(cmd: string): string | undefined {
  try {
    return execFileSync('which', [cmd], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export const SIPP = which('sipp');
/** `skip` option of the suites that need sipp. */
export const SKIP_SIPP: string | false = SIPP ? false : 'sipp not installed (apt-get install -y sip-tester): skipped';

/** A port free on 127.0.0.1 for `kind` right now. */
export async function freePort(kind: 'udp' | 'tcp' = 'udp'): Promise<number> {
  if (kind === 'udp') {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, LOCAL, () => r()));
    const port = s.address().port;
    await new Promise<void>((r) => s.close(() => r()));
    return port;
  }
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, LOCAL, () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export interface SippResult {
  code: number | null;
  out: string;
  /** Every message sipp sent or received, in order (from -trace_msg). */
  messages: string[];
}

export interface SippProcess {
  done: Promise<SippResult>;
  stop(): void;
}

let runs = 0;

/**
 * Runs sipp with a scenario (written to `dir`), bounded by `timeoutMs` (then killed). `inject`
 * rows become the `-inf` file: `[field0]`, `[field1]`... of call N are row N's values.
 */
export function runSipp(opts: {
  dir: string;
  scenario: string;
  /** UAC: the service's address `127.0.0.1:port`; UAS: omitted. */
  remote?: string;
  localPort: number;
  transport?: 'udp' | 'tcp';
  calls?: number;
  inject?: string[][];
  timeoutMs?: number;
  extra?: string[];
}): SippProcess {
  const id = `run${++runs}`;
  const sf = path.join(opts.dir, `${id}.xml`);
  writeFileSync(sf, opts.scenario);
  const msgFile = path.join(opts.dir, `${id}.msg`);
  const args = [
    ...(opts.remote ? [opts.remote] : []),
    '-sf', sf,
    '-i', LOCAL,
    '-p', String(opts.localPort),
    '-t', opts.transport === 'tcp' ? 't1' : 'u1',
    '-m', String(opts.calls ?? 1),
    '-nostdin',
    '-timeout', `${Math.ceil((opts.timeoutMs ?? 20_000) / 1000)}s`,
    '-timeout_error',
    '-max_retrans', '5',
    '-trace_msg', '-message_file', msgFile,
    '-trace_err', '-error_file', path.join(opts.dir, `${id}.err`),
    ...(opts.extra ?? []),
  ];
  if (opts.inject) {
    const inf = path.join(opts.dir, `${id}.csv`);
    writeFileSync(inf, ['SEQUENTIAL', ...opts.inject.map((row) => row.join(';'))].join('\n') + '\n');
    args.push('-inf', inf);
  }
  const child = spawn(SIPP!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const kill = setTimeout(() => child.kill('SIGKILL'), (opts.timeoutMs ?? 20_000) + 5000);
  const done = new Promise<SippResult>((resolve) => {
    child.on('close', (code) => {
      clearTimeout(kill);
      const err = path.join(opts.dir, `${id}.err`);
      if (existsSync(err)) out += '\n--- sipp errors ---\n' + readFileSync(err, 'utf8').slice(-4000);
      resolve({ code, out, messages: readMessages(msgFile) });
    });
  });
  return { done, stop: () => child.kill('SIGKILL') };
}

/** The messages of a sipp -message_file, each as its text (start line first). */
export function readMessages(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split(/^-{10,} .*$/m)
    .map((block) => block.replace(/^\s*(UDP|TCP) message (sent|received)[^\n]*\n\s*\n?/, '').trim())
    .filter((m) => /^(SIP\/2\.0 \d{3}|[A-Z]+ \S+ SIP\/2\.0)/.test(m));
}

/** Messages whose start line starts with `start` ("INVITE", "SIP/2.0 404"...). */
export function messagesStarting(result: SippResult, start: string): string[] {
  return result.messages.filter((m) => m.startsWith(start));
}

/** The value of header `name` in one message text (first occurrence), or undefined. */
export function headerOf(message: string, name: string): string | undefined {
  const re = new RegExp(`^${name.replace(/[-]/g, '\\-')}:[ \\t]*(.*)$`, 'im');
  return re.exec(message)?.[1]?.trim();
}

const SDP = `
      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
`;

/**
 * The partner's INVITE, as sipp sends it: Request-URI user `[field0]` (the called number), From
 * user `[field1]` (the caller), `[field2]` and `[field3]` whole header lines (a UUI, a P-Asserted-
 * Identity, or a filler such as `X-Filler: 1`).
 */
function invite(extraLines: string[]): string {
  return `
  <send retrans="500">
    <![CDATA[
      INVITE sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]P[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:partner@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      [field2]
      [field3]
${extraLines.map((l) => `      ${l}\n`).join('')}      Content-Type: application/sdp
      Content-Length: [len]
${SDP}
    ]]>
  </send>`;
}

const ACK_2XX = `
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]P[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>`;

/** Answers a BYE (or any in-dialog request) with 200, from the last message's headers. */
const OK_TO_LAST = `
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>`;

/** What the partner does after its INVITE. */
export type UacPlan =
  | { kind: 'reject'; status: number }
  | { kind: 'answer'; then: 'bye'; afterMs?: number }
  | { kind: 'answer'; then: 'wait-bye' }
  | { kind: 'cancel'; afterMs?: number };

/**
 * A partner (UAC) scenario: INVITE, then the plan: expect a final status (and ACK it), or be
 * answered (ACK through the Record-Route set, then send a BYE or wait for one), or CANCEL after
 * the 180 (expect 200 to the CANCEL, then 487, and ACK it).
 */
export function uacScenario(plan: UacPlan, extraLines: string[] = []): string {
  let body = invite(extraLines);
  if (plan.kind === 'reject') {
    body += `
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="${plan.status}"/>
  <send>
    <![CDATA[
      ACK sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]P[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>`;
  } else if (plan.kind === 'cancel') {
    body += `
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <pause milliseconds="${plan.afterMs ?? 200}"/>
  <send>
    <![CDATA[
      CANCEL sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]P[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[
      ACK sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]P[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>`;
  } else {
    body += `
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
${ACK_2XX}`;
    if (plan.then === 'bye') {
      body += `
  <pause milliseconds="${plan.afterMs ?? 200}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]P[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>`;
    } else {
      body += `
  <recv request="BYE"/>
${OK_TO_LAST}`;
    }
  }
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="partner">${body}\n</scenario>\n`;
}

/** What the agent does with the INVITE it receives. */
export type UasPlan = { kind: 'answer'; then: 'wait-bye' } | { kind: 'answer'; then: 'bye'; afterMs?: number } | { kind: 'ring'; then: 'wait-cancel' };

/**
 * An AI agent (UAS) scenario: 180 then 200 with SDP (Record-Route copied, §12.1.1), ACK, then
 * wait for the BYE or send one through the route set; or ring until the CANCEL and answer 487.
 */
export function uasScenario(plan: UasPlan): string {
  // sipp refuses variables that are set but never used, so the agent's own BYE alone captures them
  const capture =
    plan.kind === 'answer' && plan.then === 'bye'
      ? `
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="local_to"/>
    </action>`
      : '';
  const head = `
  <recv request="INVITE" rrs="true">${capture}
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]A[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Content-Length: 0

    ]]>
  </send>`;
  let body = head;
  if (plan.kind === 'ring') {
    body += `
  <recv request="CANCEL"/>
${OK_TO_LAST}
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]A[call_number]
      [last_Call-ID:]
      CSeq: 1 INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>`;
  } else {
    body += `
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]A[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:agent@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]
${SDP}
    ]]>
  </send>
  <recv request="ACK"/>`;
    if (plan.then === 'wait-bye') {
      body += `
  <recv request="BYE"/>
${OK_TO_LAST}`;
    } else {
      body += `
  <pause milliseconds="${plan.afterMs ?? 200}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$local_to];tag=[pid]A[call_number]
      To: [$remote_from]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>`;
    }
  }
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="agent">${body}\n</scenario>\n`;
}
