import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type DestinationStream, type Logger } from 'pino';
import { loadProvisioningFile, type Provisioning, type Settings } from './config.js';
import { AddressList } from './domain/address-list.js';
import { systemClock, type Clock } from './domain/clock.js';
import { buildApp } from './http/app.js';
import { Metrics } from './metrics.js';
import { createServices, type Services } from './services/index.js';
import { applyProvisioning } from './services/provisioning.js';
import { demoInfo, demoProvisioning, ensureDemoKeys, writeDemoInfo, type DemoInfo } from './services/demo.js';
import { DemoAgent } from './sip/demo-agent.js';
import { handoffSettings, SipHandoff } from './sip/handoff.js';
import { warmUpThread } from './sip/warm-up.js';
import { SipWorkerPool } from './sip/workers.js';
import { openStore } from './store/open-store.js';
import type { Store } from './store/store.js';

export interface RunningServer {
  app: FastifyInstance;
  store: Store;
  services: Services;
  settings: Settings;
  logger: Logger;
  httpUrl: string;
  /** Set when the service provisioned the demo tenant (no HANDOFF_CONFIG). */
  demo: DemoInfo | null;
  /**
   * The SIP ingress (also `services.escalation.callControl`: `sip.endCall(id, reason)`): the
   * hand-off itself, or with HANDOFF_SIP_WORKERS > 1 the pool of worker threads that run it.
   */
  sip: SipHandoff | SipWorkerPool;
  /** Bound SIP ports (the real ones when HANDOFF_SIP_PORT is 0). */
  sipPorts: { udp: number; tcp: number; tls: number | null };
  /** The built-in demo agent, running with the demo tenant only. */
  demoAgent: DemoAgent | null;
  close(): Promise<void>;
}

/** Trunk allow-lists of the provisioning file, by 15-char org ID, as written. */
function trunkAllowLists(p: Provisioning): Array<[string, string[]]> {
  return (p.orgs ?? []).flatMap((org) => (org.trunks ? [[org.id.slice(0, 15), org.trunks.allowFrom] as [string, string[]]] : []));
}

/** How long shutdown waits for open HTTP connections before closing them. */
const CLOSE_GRACE_MS = 5000;

/** Secrets never reach the logs, whatever logs them. */
const REDACT = ['req.headers.authorization', 'headers.authorization', 'authorization', 'token', 'privateKey', 'privateKeyPem', 'secret'];

/** The service's logger (stdout unless `destination` is given). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { service: 'handoff' } }, destination);
}

/**
 * The composition root: opens the store, migrates, provisions (config file or demo tenant),
 * builds the services and the HTTP app, and listens. close() drains requests, then the database.
 */
export async function startServer(settings: Settings, opts: { clock?: Clock; logger?: Logger } = {}): Promise<RunningServer> {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? createLogger(settings.logLevel);
  // SIP workers write the same SQLite file from other threads: they wait for each other's writes without blocking (store/write-lock.ts)
  const writeLock = settings.sip.workers > 1 ? new SharedArrayBuffer(4) : undefined;
  const store = await openStore({ databaseUrl: settings.databaseUrl, sqliteFile: `${settings.dataDir}/handoff.sqlite`, ...(writeLock ? { writeLock } : {}) });
  let ready = false;
  let app: FastifyInstance | undefined;
  let sweeper: NodeJS.Timeout | undefined;
  let sip: SipHandoff | SipWorkerPool | undefined;
  let demoAgent: DemoAgent | null = null;
  try {
    const applied = await store.migrate();
    logger.info({ backend: store.dialect, applied }, 'database ready');

    const services = createServices(store, clock, {
      acceptedAudiences: settings.acceptedAudiences,
      metrics: new Metrics(),
      leaseTtlSeconds: settings.leaseTtlSeconds,
      leaseCooldownSeconds: settings.leaseCooldownSeconds,
      operatorToken: settings.operatorToken ?? ensureOperatorToken(settings.dataDir),
      webhooks: { ...settings.webhooks, logger },
    });
    let demoKeys: Awaited<ReturnType<typeof ensureDemoKeys>> | null = null;
    if (!settings.configFile) {
      // The demo agent runs first so the demo tenant names its real address (port 0 picks one)
      demoAgent = new DemoAgent({ port: settings.sip.demoAgent.port, hangupSeconds: settings.sip.demoAgent.hangupSeconds, logger });
      await demoAgent.start();
    }
    const provisioning = settings.configFile
      ? loadProvisioningFile(settings.configFile)
      : demoProvisioning((demoKeys = await ensureDemoKeys(settings.dataDir)).publicKeyPem, demoAgent!.uri, demoKeys.agentToken);
    const result = await applyProvisioning(store, provisioning, clock.now());
    for (const orgId of result.touchedOrgs) services.auth.invalidateOrg(orgId);
    services.refs.clear();
    logger.info({ source: settings.configFile ?? 'demo', changed: result.changed }, 'provisioning applied');

    app = await buildApp({ services, logger, bodyLimit: settings.bodyLimit, isReady: () => ready });
    await app.listen({ host: settings.httpHost, port: settings.httpPort });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : settings.httpPort;
    const host = settings.httpHost.includes(':') ? `[${settings.httpHost}]` : settings.httpHost;
    const httpUrl = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;

    const trunks = trunkAllowLists(provisioning);
    // SIP workers warm up on their own threads
    if (settings.sip.workers === 1) await warmUpThread(settings, logger);
    sip =
      settings.sip.workers > 1
        ? new SipWorkerPool({ settings, logger, metrics: services.metrics, trunks, writeLock: writeLock! })
        : new SipHandoff({
            services,
            logger,
            settings: handoffSettings(settings.sipHost, settings.sipPort, settings.sip),
            trunks: new Map(trunks.map(([org, list]) => [org, AddressList.parse(list)])),
          });
    await sip.start();
    services.escalation.callControl = sip;
    const bound = sip.addresses();
    const sipPorts = { udp: bound.udp!.port, tcp: bound.tcp!.port, tls: bound.tls?.port ?? null };

    let demo: DemoInfo | null = null;
    if (demoKeys) {
      demo = demoInfo({
        dataDir: settings.dataDir,
        httpUrl,
        sipHost: settings.sipHost,
        sipPort: sipPorts.udp,
        sipPorts,
        demoAgentUri: demoAgent!.uri,
        operatorTokenPath: settings.operatorToken ? null : join(settings.dataDir, 'operator-token'),
        ...demoKeys,
      });
      writeDemoInfo(settings.dataDir, demo);
    }

    // Tidying only: expiry is decided on every read, never by this timer.
    sweeper = setInterval(() => {
      store.purgeExpiredJtis(clock.now()).catch((err) => logger.warn({ err }, 'jti sweep failed'));
      services.leases.sweep().catch((err) => logger.warn({ err }, 'lease sweep failed'));
    }, 60_000);
    sweeper.unref();

    services.webhooks.start();
    ready = true;
    logger.info({ httpUrl, sipPorts, backend: store.dialect }, 'handoff ready');
    const running: RunningServer = {
      app,
      store,
      services,
      settings,
      logger,
      httpUrl,
      demo,
      sip,
      sipPorts,
      demoAgent,
      close: async () => {
        ready = false;
        clearInterval(sweeper);
        // SIP first: INVITEs in flight get their final responses and their VoiceCall updates
        await sip!.close();
        await demoAgent?.close();
        // Webhook attempts in flight are aborted and their claims released, so another instance (or
        // the next start) retries them at once; the outbox keeps everything else.
        await services.webhooks.stop();
        // In-flight requests finish; a connection that never sends one must not hold the exit for long.
        const grace = setTimeout(() => app!.server.closeAllConnections(), CLOSE_GRACE_MS);
        await app!.close();
        clearTimeout(grace);
        await store.close();
        logger.info('handoff stopped');
      },
    };
    return running;
  } catch (err) {
    clearInterval(sweeper);
    await sip?.close().catch(() => {});
    await demoAgent?.close().catch(() => {});
    await app?.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}

/** What {@link guardProcess} does with an unhandled rejection. */
export function rejectionHandler(server: Pick<RunningServer, 'logger' | 'services'>): (reason: unknown) => void {
  return (reason) => {
    server.services.metrics.unhandledRejections.inc();
    server.logger.error({ err: reason }, 'unhandled promise rejection (a bug: please report it)');
  };
}

/**
 * The `serve` process's last line of defence: a promise rejection that nothing handled (a forgotten
 * catch, a bug) is logged at error and counted in handoff_unhandled_rejections_total, rather than
 * stopping the process and every call it proxies (Node's default). Exceptions thrown outside a
 * promise still stop it: their state is unknown. Returns the uninstaller.
 *
 * @example
 * const running = await startServer(settings);
 * guardProcess(running);
 */
export function guardProcess(server: Pick<RunningServer, 'logger' | 'services'>): () => void {
  const onRejection = rejectionHandler(server);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('unhandledRejection', onRejection);
  };
}

/**
 * The operator secret when HANDOFF_OPERATOR_TOKEN is unset: generated once into the data dir (0600)
 * and reused, so the CLI and scripts on this machine can read it.
 */
export function ensureOperatorToken(dataDir: string): string {
  const path = join(dataDir, 'operator-token');
  mkdirSync(dataDir, { recursive: true });
  if (!existsSync(path)) writeFileSync(path, randomBytes(32).toString('base64url') + '\n', { mode: 0o600 });
  return readFileSync(path, 'utf8').trim();
}

/** The plain-text "how to use the demo" banner printed at start. */
export function demoBanner(demo: DemoInfo, dataDir: string): string {
  return [
    '',
    'Handoff is running with a demo tenant.',
    `  org ${demo.orgId} (${demo.domain}), call center ${demo.callCenterApiName}, channel ${demo.channelNumber}`,
    `  pools: ${demo.countries.join(', ')}; key: ${demo.privateKeyPath}; details: ${dataDir}/demo.json`,
    `  SIP ingress ${demo.sipHost} udp ${demo.sipPorts.udp}, tcp ${demo.sipPorts.tcp}${demo.sipPorts.tls ? `, tls ${demo.sipPorts.tls}` : ''}; demo agent ${demo.demoAgentUri}`,
    '',
    'Try it:',
    `  TOKEN=$(npx handoff token --private-key ${demo.privateKeyPath} --iss ${demo.orgId} --sub ${demo.callCenterApiName})`,
    `  curl -s -X POST ${demo.httpUrl}/telephony/v1/voiceCalls -H "Authorization: Bearer $TOKEN" \\`,
    `    -H 'Content-Type: application/json' \\`,
    `    -d '{"vendorCallKey":"demo-1","to":"${demo.channelNumber}","from":"+14155551234","callCenterApiName":"${demo.callCenterApiName}","callAttributes":"{\\"Department__c\\":\\"Support\\"}"}'`,
    '',
  ].join('\n');
}
