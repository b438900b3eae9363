/**
 * `handoff demo`: the whole journey against a running service, step by step with timings:
 * VC1 over HTTP → path A (a leased number, a real SIP INVITE from the caller's number) → path B
 * (a UUI carrying a signed token, a real SIP INVITE to the channel) → escalation by the demo
 * agent's credential → the records as they ended. Exit 0 only when every step did what it should.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { mintToken } from '../domain/token-mint.js';
import { encodeUui } from '../domain/uui.js';
import type { DemoInfo } from '../services/demo.js';
import { UserAgent, type SipDestination } from '../sip/index.js';

/** A failed step: its message is printed and the command exits 1. */
class DemoFailure extends Error {}

function check(ok: unknown, message: string): asserts ok {
  if (!ok) throw new DemoFailure(message);
}

interface StepRecord {
  step: string;
  ok: boolean;
  ms: number;
  details: Record<string, unknown>;
  error?: string;
}

interface Leg {
  voiceCallId: string;
  status: string | null;
  isActiveCall: boolean | null;
  disconnectReason: string | null;
  handoff: Record<string, unknown> | null;
  escalation: { reason: string } | null;
}

interface VoiceCallView extends Leg {
  legs?: Leg[];
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new DemoFailure(`${what} within ${ms} ms`)), ms))),
  ]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads `<dir>/demo.json` (the running service writes it at start). */
export function loadDemoInfo(dataDir: string): DemoInfo {
  const path = resolve(dataDir, 'demo.json');
  if (!existsSync(path)) throw new DemoFailure(`no ${path}: start the service first (npm start, or handoff serve) with this data directory, or pass --data-dir`);
  return JSON.parse(readFileSync(path, 'utf8')) as DemoInfo;
}

/** The SIP address to reach when the service listens on a wildcard one. */
function reachableHost(host: string): string {
  return host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
}

export async function runDemo(opts: { dataDir: string; json: boolean }): Promise<number> {
  const steps: StepRecord[] = [];
  const out = (line: string) => {
    if (!opts.json) process.stdout.write(line + '\n');
  };
  let ua: UserAgent | null = null;
  let records: VoiceCallView | null = null;

  async function step<T>(name: string, fn: (details: Record<string, unknown>) => Promise<T>): Promise<T> {
    const details: Record<string, unknown> = {};
    const started = performance.now();
    try {
      const result = await fn(details);
      const ms = Math.round(performance.now() - started);
      steps.push({ step: name, ok: true, ms, details });
      out(`✔ ${name} (${ms} ms)`);
      for (const [k, v] of Object.entries(details)) out(`    ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
      return result;
    } catch (err) {
      const ms = Math.round(performance.now() - started);
      const message = err instanceof Error ? err.message : String(err);
      steps.push({ step: name, ok: false, ms, details, error: message });
      out(`✘ ${name} (${ms} ms)`);
      for (const [k, v] of Object.entries(details)) out(`    ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
      out(`    FAILED: ${message}`);
      throw new DemoFailure(`${name}: ${message}`);
    }
  }

  try {
    const demo = loadDemoInfo(opts.dataDir);
    const base = demo.httpUrl.replace(/\/$/, '');
    const sipDest: SipDestination = { transport: 'udp', host: reachableHost(demo.sipHost), port: demo.sipPort };
    out(`Handoff demo against ${base} (SIP ${sipDest.host}:${sipDest.port}, org ${demo.orgId}, channel ${demo.channelNumber})`);
    out('');

    const privateKeyPem = readFileSync(demo.privateKeyPath, 'utf8');
    const partnerToken = await mintToken({ privateKeyPem, iss: demo.orgId, sub: demo.callCenterApiName, kid: demo.keyId, ttlSeconds: 600 });
    const operatorToken = demo.operatorTokenPath && existsSync(demo.operatorTokenPath)
      ? readFileSync(demo.operatorTokenPath, 'utf8').trim()
      : (process.env.HANDOFF_OPERATOR_TOKEN ?? null);

    async function api<T = Record<string, unknown>>(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: T; text: string }> {
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(10_000),
        });
      } catch (err) {
        throw new DemoFailure(`${method} ${base}${path} failed (${(err as Error).message}): is the service running?`);
      }
      const text = await res.text();
      let json: T;
      try {
        json = (text ? JSON.parse(text) : {}) as T;
      } catch {
        json = {} as T;
      }
      return { status: res.status, json, text };
    }
    const expect = (r: { status: number; text: string }, status: number, what: string) =>
      check(r.status === status, `${what}: expected HTTP ${status}, got ${r.status} ${r.text.slice(0, 300)}`);
    const getVc1 = async (id: string) => {
      const r = await api<VoiceCallView>('GET', `/telephony/v1/voiceCalls/${id}`, partnerToken);
      expect(r, 200, `GET /telephony/v1/voiceCalls/${id}`);
      return r.json;
    };

    // 1. the partner's call
    const vc1 = await step('1. create VC1 (POST /telephony/v1/voiceCalls)', async (d) => {
      const r = await api<{ voiceCallId: string }>('POST', '/telephony/v1/voiceCalls', partnerToken, {
        vendorCallKey: `handoff-demo-${randomUUID()}`,
        to: demo.channelNumber,
        from: '+14155551234',
        callCenterApiName: demo.callCenterApiName,
        callAttributes: JSON.stringify({ Department__c: 'Support', Source__c: 'handoff demo' }),
      });
      expect(r, 201, 'create VoiceCall');
      check(typeof r.json.voiceCallId === 'string', 'no voiceCallId in the response');
      d.voiceCallId = r.json.voiceCallId;
      return r.json.voiceCallId;
    });

    ua = await UserAgent.start();
    const uaRef = ua;

    // 2. path A: a leased number
    const caller = `+1415555${String(randomInt(0, 10_000)).padStart(4, '0')}`;
    const lease = await step('2a. path A: reserve a routable number (POST /telephony/v1/voiceCalls/reserveRoutableNumber)', async (d) => {
      const transactionId = randomUUID();
      const r = await api<{ status: string; handle?: { routableNumber: string; uid: string; expiresAt: string } }>(
        'POST',
        '/telephony/v1/voiceCalls/reserveRoutableNumber',
        partnerToken,
        { countryCode: 'US', fromNumber: caller, toNumber: demo.channelNumber, scrt2Domain: demo.domain, callId: vc1, transactionId },
      );
      expect(r, 200, 'reserveRoutableNumber');
      check(r.json.handle?.routableNumber, `no handle in the response: ${r.text.slice(0, 300)}`);
      Object.assign(d, { caller, routableNumber: r.json.handle.routableNumber, leaseUid: r.json.handle.uid, expiresAt: r.json.handle.expiresAt });
      return r.json.handle;
    });

    const callA = await step(`2b. path A: SIP INVITE sip:${lease.routableNumber}@${sipDest.host}:${sipDest.port} from ${caller}`, async (d) => {
      const call = uaRef.invite(sipDest, lease.routableNumber, caller);
      const res = await withTimeout(call.final, 15_000, 'no final response to the INVITE');
      d.response = `${res.status} ${res.reason}`;
      check(res.status === 200, `expected 200 from the demo agent, got ${res.status} ${res.reason}${res.headers.get('warning') ? ` (${res.headers.get('warning')})` : ''}`);
      d.sipCallId = call.invite.callId;
      d.ack = 'sent through the Record-Route set';
      return call;
    });

    await step('2c. path A: the lease is consumed and VC1 has a leg with handoff.path "number"', async (d) => {
      if (operatorToken) {
        const r = await api<{ leases: Array<{ uid: string }> }>('GET', `/admin/v1/leases?orgId=${demo.orgId}`, operatorToken);
        expect(r, 200, 'GET /admin/v1/leases');
        check(!r.json.leases.some((l) => l.uid === lease.uid), `lease ${lease.uid} is still live`);
        d.liveLease = 'gone (consumed)';
      } else {
        d.liveLease = 'not checked (no operator token readable); the leg names the lease instead';
      }
      const vc = await getVc1(vc1);
      const leg = (vc.legs ?? []).find((l) => l.handoff?.['path'] === 'number');
      check(leg, `VC1 has no leg with handoff.path "number" (legs: ${JSON.stringify((vc.legs ?? []).map((l) => l.handoff?.['path']))})`);
      check(leg.handoff?.['leaseUid'] === undefined || leg.handoff['leaseUid'] === lease.uid, `the leg consumed ${String(leg.handoff?.['leaseUid'])}, not ${lease.uid}`);
      Object.assign(d, { leg: leg.voiceCallId, agent: leg.handoff?.['agent'], status: leg.status });
    });

    await step('2d. path A: hang up (BYE through the route set)', async (d) => {
      if (callA.byeReceived) {
        d.note = 'the demo agent had already hung up (HANDOFF_DEMO_AGENT_HANGUP_SECONDS); nothing to end';
        return;
      }
      const res = await withTimeout(callA.bye(), 15_000, 'no final response to the BYE');
      d.response = `${res.status} ${res.reason}`;
      check(res.status === 200, `expected 200 to the BYE, got ${res.status} ${res.reason}`);
    });

    // 3. path B: a UUI with a signed token
    const transactionIdB = randomUUID();
    const uui = await step('3a. path B: build the UUI (User-to-User, hex)', async (d) => {
      const token = await mintToken({ privateKeyPem, iss: demo.orgId, sub: demo.channelDevName, kid: demo.keyId, ttlSeconds: 600 });
      const fields = { orgId: demo.orgId, scrt2Domain: demo.domain, token, callId: vc1, transactionId: transactionIdB };
      const value = encodeUui(fields);
      Object.assign(d, { fields: 'orgId, scrt2Domain, token, callId, transactionId', transactionId: transactionIdB, decodedChars: JSON.stringify(fields).length, headerChars: value.length });
      return value;
    });

    const callB = await step(`3b. path B: SIP INVITE sip:${demo.channelNumber}@${sipDest.host}:${sipDest.port} with User-to-User`, async (d) => {
      const call = uaRef.invite(sipDest, demo.channelNumber, '+14155551234', [['User-to-User', uui]]);
      const res = await withTimeout(call.final, 15_000, 'no final response to the INVITE');
      d.response = `${res.status} ${res.reason}`;
      check(res.status === 200, `expected 200 from the demo agent, got ${res.status} ${res.reason}${res.headers.get('warning') ? ` (${res.headers.get('warning')})` : ''}`);
      d.sipCallId = call.invite.callId;
      d.ack = 'sent through the Record-Route set';
      return call;
    });

    const vc2 = await step('3c. path B: VC1 has a second leg with handoff.path "uui"', async (d) => {
      const vc = await getVc1(vc1);
      const legs = vc.legs ?? [];
      const leg = legs.find((l) => l.handoff?.['path'] === 'uui' && l.handoff['transactionId'] === transactionIdB) ?? legs.find((l) => l.handoff?.['path'] === 'uui');
      check(leg, `VC1 has no leg with handoff.path "uui" (legs: ${JSON.stringify(legs.map((l) => l.handoff?.['path']))})`);
      check(legs.length >= 2, `VC1 has ${legs.length} leg(s), expected 2`);
      check(leg.handoff?.['partnerVoiceCallId'] === undefined || leg.handoff['partnerVoiceCallId'] === vc1, `the leg's partnerVoiceCallId is ${String(leg.handoff?.['partnerVoiceCallId'])}, not VC1`);
      Object.assign(d, {
        leg: leg.voiceCallId,
        agent: leg.handoff?.['agent'],
        status: leg.status,
        context: `partnerVoiceCallId ${String(leg.handoff?.['partnerVoiceCallId'] ?? '-')}, transactionId ${String(leg.handoff?.['transactionId'] ?? '-')}`,
        legs: legs.length,
      });
      return leg.voiceCallId;
    });

    // 4. the AI agent gives the call back
    await step(`4. escalation: POST /telephony/v1/voiceCalls/${vc2}/escalate (demo agent's token)`, async (d) => {
      check(demo.agentTokenPath && existsSync(demo.agentTokenPath), 'demo.json names no readable agentTokenPath: restart the service with this version');
      if (callB.byeReceived) throw new DemoFailure('the demo agent hung up before the escalation: raise HANDOFF_DEMO_AGENT_HANGUP_SECONDS');
      const agentToken = readFileSync(demo.agentTokenPath, 'utf8').trim();
      const r = await api<{ status: string; aiLegEnded: boolean; partnerVoiceCallId: string | null }>(
        'POST',
        `/telephony/v1/voiceCalls/${vc2}/escalate`,
        agentToken,
        { reason: 'demo: customer asked for a human', summary: 'The caller wants to talk to a person', targetQueue: 'Support_Humans' },
      );
      expect(r, 200, 'escalate');
      check(r.json.aiLegEnded === true, `aiLegEnded is ${String(r.json.aiLegEnded)}, expected true`);
      Object.assign(d, { status: r.json.status, aiLegEnded: r.json.aiLegEnded, partnerVoiceCallId: r.json.partnerVoiceCallId });
      await withTimeout(callB.byeArrived, 5000, 'the partner leg received no BYE');
      d.partnerLeg = 'BYE received, answered 200';
    });

    // 5. the records as they ended
    records = await step('5. the records as they ended (GET /telephony/v1/voiceCalls/{VC1})', async (d) => {
      // The proxy writes the BYE outcomes right after relaying them; give it a moment
      let vc = await getVc1(vc1);
      for (let i = 0; i < 40 && (vc.legs ?? []).some((l) => l.isActiveCall !== false); i++) {
        await sleep(50);
        vc = await getVc1(vc1);
      }
      const legs = vc.legs ?? [];
      check(legs.some((l) => l.handoff?.['path'] === 'number') && legs.some((l) => l.handoff?.['path'] === 'uui'), 'VC1 lacks its number and uui legs');
      check(vc.escalation?.reason === 'demo: customer asked for a human', 'VC1 does not carry the escalation');
      d.voiceCall = `${vc.voiceCallId} status=${vc.status ?? '-'} escalation=${JSON.stringify(vc.escalation?.reason ?? null)}`;
      return vc;
    });

    if (!opts.json && records) {
      out('');
      out(`VC1 ${records.voiceCallId}`);
      const rows = (records.legs ?? []).map((l) => ({
        leg: l.voiceCallId,
        path: String(l.handoff?.['path'] ?? ''),
        agent: String(l.handoff?.['agent'] ?? ''),
        status: l.status ?? '',
        disconnectReason: l.disconnectReason ?? '',
        escalation: l.escalation?.reason ?? '',
      }));
      const cols = ['leg', 'path', 'agent', 'status', 'disconnectReason', 'escalation'] as const;
      const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
      out('  ' + cols.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
      for (const r of rows) out('  ' + cols.map((c, i) => r[c].padEnd(widths[i]!)).join('  ').trimEnd());
      out('');
      out(`All ${steps.length} steps passed in ${steps.reduce((n, s) => n + s.ms, 0)} ms.`);
    }
    if (opts.json) process.stdout.write(JSON.stringify({ ok: true, steps, voiceCall: records }, null, 2) + '\n');
    return 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (opts.json) process.stdout.write(JSON.stringify({ ok: false, error: message, steps }, null, 2) + '\n');
    process.stderr.write(`handoff demo: ${message}\n`);
    return 1;
  } finally {
    await ua?.close().catch(() => {});
  }
}

export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole hand-off journey against a running service (the demo tenant of demo.json)')
    .option('--data-dir <dir>', 'where the service wrote demo.json (default: HANDOFF_DATA_DIR or ./data)')
    .option('--json', 'machine-readable output')
    .action(async (o: { dataDir?: string; json?: boolean }) => {
      const code = await runDemo({ dataDir: o.dataDir ?? process.env.HANDOFF_DATA_DIR ?? './data', json: !!o.json });
      process.exit(code);
    });
}
