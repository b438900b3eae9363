/**
 * The SIP warm-up (HANDOFF_SIP_WARMUP_CALLS): before a SIP thread takes traffic it runs whole
 * hand-offs against itself, so V8 has compiled the hot code by the time real calls arrive.
 *
 * Why: a cold thread spends 2–3 ms of CPU per call where a warm one spends about 1 ms, so a service
 * restarted under load (500–800 calls/s on the 2-core machine) was saturated for its first seconds
 * and shed calls as overload. The calls here are real ones on loopback (partner user agent → this
 * code's SipHandoff → built-in agent, INVITE/180/200/ACK/BYE, both paths, an RS256 token, a lease),
 * against a scratch SQLite file in a temporary directory and a scratch tenant: nothing reaches the
 * service's own database, metrics or logs, and everything is closed and deleted afterwards.
 */
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Settings } from '../config.js';
import { systemClock } from '../domain/clock.js';
import { generateKeyPair, mintToken } from '../domain/token-mint.js';
import { encodeUui } from '../domain/uui.js';
import { Metrics } from '../metrics.js';
import { createLogger } from '../server.js';
import { applyProvisioning } from '../services/provisioning.js';
import { createServices } from '../services/index.js';
import type { KyselyStore } from '../store/kysely-store.js';
import { openStore } from '../store/open-store.js';
import { SharedAgentSlots } from './agent-slots.js';
import { DemoAgent } from './demo-agent.js';
import { handoffSettings, SipHandoff, type SipHandoffOptions } from './handoff.js';
import { lookupLiteral } from './transport.js';
import { UserAgent } from './user-agent.js';
import { DatagramQueue, frontOption } from './workers.js';

export interface WarmUpOptions {
  /** Hand-offs to run (0: none). */
  calls: number;
  /** The service's settings (SIP mode, UUI limit, lease TTL, log level, ...); addresses and database are the warm-up's own. */
  settings: Settings;
  /**
   * The index of the SIP worker thread this runs on (HANDOFF_SIP_WORKERS > 1), whose agent slots are
   * a shared table, whose store takes the process's write lock and whose datagrams come from a front:
   * the warm-up is built the same way (code warmed on other kinds of object is thrown away at the
   * first real call).
   */
  workerThread?: number;
}

export interface WarmUpReport {
  /** Calls placed, and those that reached the agent and ended normally. */
  calls: number;
  completed: number;
  ms: number;
  /** Why the warm-up could not run (the service starts anyway, cold). */
  error?: string;
}

const ORG = '00DWARMUP000001';
const DOMAIN = 'warm-up.invalid';
const CHANNEL = '+14155550100';
/** Calls in flight at once: enough to exercise batching, few enough not to time anything out. */
const CONCURRENCY = 16;
/** A call not over after this long counts as failed. */
const CALL_TIMEOUT_MS = 10_000;
/** More failed calls than this end the warm-up early: something is wrong, and the service must still start. */
const MAX_FAILURES = 20;

/**
 * Runs `calls` hand-offs (alternately path A and path B) on loopback and tears everything down.
 * Never throws: the report says how many calls completed, or why the warm-up could not run; more
 * than {@link MAX_FAILURES} failed calls end it early.
 *
 * @example
 * const report = await warmUp({ calls: 2000, settings }); // { calls: 2000, completed: 2000, ms: 2400 }
 */
export async function warmUp(opts: WarmUpOptions): Promise<WarmUpReport> {
  const { calls } = opts;
  const { sip } = opts.settings;
  if (calls <= 0) return { calls: 0, completed: 0, ms: 0 };
  const started = performance.now();
  // The thread's kind of logger at its level, writing nowhere: the warm-up's calls are not the service's
  const sink = createLogger(opts.settings.logLevel, { write: () => {} });
  const quiet = opts.workerThread === undefined ? sink : sink.child({ sipWorker: opts.workerThread });
  let dir: string | null = null;
  let store: KyselyStore | null = null;
  let agent: DemoAgent | null = null;
  let handoff: SipHandoff | null = null;
  let ua: UserAgent | null = null;
  let frontSocket: dgram.Socket | null = null;
  let completed = 0;
  let next = 0;
  let error: string | undefined;
  try {
    // A file, as the service's own database is: the same driver, write lock and checkpoint code run
    dir = mkdtempSync(join(tmpdir(), 'handoff-warm-up-'));
    store = await openStore({ sqliteFile: join(dir, 'warm-up.sqlite'), ...(opts.workerThread !== undefined ? { writeLock: new SharedArrayBuffer(4) } : {}) });
    await store.migrate();
    const services = createServices(store, systemClock, {
      acceptedAudiences: opts.settings.acceptedAudiences,
      metrics: new Metrics({ defaultMetrics: false }),
      leaseTtlSeconds: opts.settings.leaseTtlSeconds,
      leaseCooldownSeconds: opts.settings.leaseCooldownSeconds,
      webhooks: { ...opts.settings.webhooks, logger: quiet },
    });
    agent = new DemoAgent({ port: 0, hangupSeconds: 3_600, logger: quiet, keep: 0 });
    await agent.start();
    const keys = await generateKeyPair('RS256');
    await applyProvisioning(
      store,
      {
        orgs: [
          {
            id: ORG,
            name: 'Warm-up',
            domain: DOMAIN,
            features: { numberPool: true },
            keys: [{ id: 'warm-up', publicKey: keys.publicKeyPem }],
            callCenters: [{ apiName: 'WarmUp' }],
            flows: [{ name: 'warm_up', rules: [{ name: 'agent', agent: 'warm-up-agent' }], fallback: { reject: { status: 503, reason: 'No agent' } } }],
            channels: [{ devName: 'Warm_up', number: CHANNEL, callCenter: 'WarmUp', flow: 'warm_up' }],
          },
        ],
        pools: [{ country: 'US', ranges: [{ from: '+14155551000', to: '+14155551099' }] }],
        agents: [{ name: 'warm-up-agent', sipUri: agent.uri, maxConcurrentCalls: 1_000_000 }],
      },
      Date.now(),
    );
    const aud = opts.settings.acceptedAudiences[0];
    const token = await mintToken({ privateKeyPem: keys.privateKeyPem, iss: ORG, sub: 'WarmUp', ttlSeconds: 3_600, ...(aud ? { aud } : {}) });
    const vc1 = (await services.voiceCalls.create(ORG, { vendorCallKey: 'warm-up', to: CHANNEL, from: '+14155559000' }, null, 'WarmUp')).call.id;

    // Built as the thread's real hand-off is (the same settings, listeners, slots and front), so the
    // code V8 compiles here keeps serving real calls instead of being thrown away at the first one
    // ("wrong map" deoptimisations).
    const host = '127.0.0.1';
    const settings = handoffSettings(host, 0, sip);
    if (settings.tls) settings.tls = { ...settings.tls, port: 0 };
    // Every call comes from one address, as fast as it can: a rate limit of the same kind that never
    // bites, and no shedding (the loop is busy all the time, by design)
    if (settings.rateLimit > 0) settings.rateLimit = 1_000_000;
    settings.maxLoad = 0;
    settings.maxPendingInvites = 0;
    let listen: SipHandoffOptions['listen'];
    if (opts.workerThread !== undefined) {
      const sock = (frontSocket = dgram.createSocket({ type: 'udp4', lookup: lookupLiteral }));
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind(0, host, () => resolve());
      });
      const toFront = new DatagramQueue((batch) => batch.data.forEach((d, i) => sock.send(d, batch.ports[i]!, batch.hosts[i]!)));
      listen = {
        udp: { host, port: 0 },
        tcp: { host, port: 0 },
        ...(settings.tls ? { tls: { host, port: 0, cert: settings.tls.cert, key: settings.tls.key } } : {}),
        front: frontOption(host, sock.address().port, toFront),
      };
    }
    handoff = new SipHandoff({
      services,
      logger: quiet,
      settings,
      trunks: new Map(),
      ...(listen ? { listen } : {}),
      ...(opts.workerThread !== undefined ? { agentSlots: new SharedAgentSlots() } : {}),
    });
    await handoff.start();
    const transport = handoff.sip.transport;
    frontSocket?.on('message', (buf, rinfo) => transport.inject(buf, rinfo.address, rinfo.port));
    ua = await UserAgent.start();
    const dest = { transport: 'udp' as const, host, port: frontSocket ? frontSocket.address().port : handoff.addresses().udp!.port };

    const one = async (i: number): Promise<boolean> => {
      const caller = `+1628555${String(i % 10_000).padStart(4, '0')}`;
      let call;
      if (i % 2 === 0) {
        const { lease } = await services.reservations.reserve(
          ORG,
          { countryCode: 'US', fromNumber: caller, scrt2Domain: DOMAIN, toNumber: CHANNEL, callId: vc1, transactionId: `warm-up-${i}` },
          { idempotencyKey: null, provider: null },
        );
        call = ua!.invite(dest, lease.routableNumber, caller);
      } else {
        const uui = encodeUui({ orgId: ORG, scrt2Domain: DOMAIN, token, callId: vc1, transactionId: `warm-up-${i}` });
        call = ua!.invite(dest, CHANNEL, caller, [['User-to-User', uui]]);
      }
      try {
        const final = (await call.final).status;
        // redirect mode answers 302 with the agent's Contact: the call ends there
        if (sip.mode === 'redirect') return final === 302;
        if (final !== 200) return false;
        return (await call.bye()).status === 200;
      } finally {
        ua!.calls.delete(call.callId);
      }
    };
    const deadline = async (p: Promise<boolean>) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([p, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CALL_TIMEOUT_MS)))]);
      } finally {
        clearTimeout(timer);
      }
    };
    let failed = 0;
    const lane = async () => {
      while (next < calls && failed <= MAX_FAILURES) {
        if (await deadline(one(next++)).catch(() => false)) completed++;
        // a refused or lost call (this thread's own overload shedding, say) is not fatal; many are
        else if (++failed <= MAX_FAILURES) await new Promise((r) => setTimeout(r, 50));
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, calls) }, lane));
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  } finally {
    await ua?.close().catch(() => {});
    try {
      frontSocket?.close();
    } catch {
      // never bound: nothing to close
    }
    await handoff?.close().catch(() => {});
    await agent?.close().catch(() => {});
    await store?.close().catch(() => {});
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
  return { calls: Math.min(next, calls), completed, ms: Math.round(performance.now() - started), ...(error !== undefined ? { error } : {}) };
}

/** Runs the warm-up when HANDOFF_SIP_WARMUP_CALLS asks for one and logs how it went. */
export async function warmUpThread(settings: Settings, logger: Logger, workerThread?: number): Promise<void> {
  if (settings.sip.warmUpCalls <= 0) return;
  const report = await warmUp({ calls: settings.sip.warmUpCalls, settings, ...(workerThread !== undefined ? { workerThread } : {}) });
  if (report.error !== undefined || report.completed < settings.sip.warmUpCalls) {
    logger.warn(report, 'SIP warm-up incomplete: this SIP thread starts (partly) cold');
  } else {
    logger.info(report, 'SIP warm-up done');
  }
}
