/**
 * A SIP worker thread (see workers.ts): a hand-off with services of its own on the service's
 * database, its own SIP ports, the front's datagrams handed in by the main thread.
 */
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { Gauge } from 'prom-client';
import { AddressList } from '../domain/address-list.js';
import { systemClock } from '../domain/clock.js';
import { Metrics } from '../metrics.js';
import { createLogger, rejectionHandler } from '../server.js';
import { createServices } from '../services/index.js';
import { openStore } from '../store/open-store.js';
import { SharedAgentSlots } from './agent-slots.js';
import { handoffSettings, SipHandoff } from './handoff.js';
import { warmUpThread } from './warm-up.js';
import { DatagramQueue, frontOption, workerPorts, type FromWorker, type SipWorkerData, type ToWorker } from './workers.js';

const port = parentPort!;
const data = workerData as SipWorkerData;
const { settings, index } = data;
const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

async function main(): Promise<void> {
  const logger = createLogger(settings.logLevel).child({ sipWorker: index });
  const store = await openStore({ databaseUrl: settings.databaseUrl, sqliteFile: `${settings.dataDir}/handoff.sqlite`, writeLock: data.writeLock });
  const services = createServices(store, systemClock, {
    acceptedAudiences: settings.acceptedAudiences,
    metrics: new Metrics({ defaultMetrics: false }),
    leaseTtlSeconds: settings.leaseTtlSeconds,
    leaseCooldownSeconds: settings.leaseCooldownSeconds,
    webhooks: { ...settings.webhooks, logger },
  });
  process.on('unhandledRejection', rejectionHandler({ logger, services }));
  // The process's memory metrics are the main thread's; each worker's heap is its own
  new Gauge({
    name: 'handoff_sip_worker_heap_used_bytes',
    help: 'V8 heap in use by each SIP worker thread',
    labelNames: ['worker'] as const,
    registers: [services.metrics.registry],
    collect() {
      this.set({ worker: String(index) }, getHeapStatistics().used_heap_size);
    },
  });

  await warmUpThread(settings, logger, index);
  const host = settings.sipHost;
  const own = workerPorts(settings.sip.workerPort, index);
  const tls = settings.sip.tls;
  const toFront = new DatagramQueue((batch, transfer) => post({ t: 'send', ...batch }, transfer));
  const sip = new SipHandoff({
    services,
    logger,
    settings: handoffSettings(host, settings.sipPort, settings.sip),
    trunks: new Map(data.trunks.map(([org, list]) => [org, AddressList.parse(list)])),
    agentSlots: new SharedAgentSlots(data.slots),
    listen: {
      udp: { host, port: own.udp },
      // Worker 0 serves the public stream ports; the others listen on their own for in-dialog requests
      tcp: { host, port: index === 0 ? settings.sipPort : own.udp },
      ...(tls ? { tls: { host, port: index === 0 ? tls.port : own.tls, cert: tls.cert, key: tls.key } } : {}),
      front: frontOption(data.front.address, data.front.port, toFront),
    },
  });
  try {
    await sip.start();
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  const transport = sip.sip.transport;

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'dgrams':
        for (let i = 0; i < m.data.length; i++) {
          const d = m.data[i]!;
          transport.inject(Buffer.from(d.buffer, d.byteOffset, d.byteLength), m.hosts[i]!, m.ports[i]!);
        }
        return;
      case 'end':
        sip.endCall(m.voiceCallId, m.reason).then(
          (ended) => post({ t: 'ended', id: m.id, ended }),
          (err: unknown) => {
            logger.error({ err }, 'ending a call failed');
            post({ t: 'ended', id: m.id, ended: false });
          },
        );
        return;
      case 'metrics':
        services.metrics.registry.getMetricsAsJSON().then(
          (metrics) => post({ t: 'metrics', id: m.id, metrics }),
          () => post({ t: 'metrics', id: m.id, metrics: [] }),
        );
        return;
      case 'close':
        void (async () => {
          try {
            await sip.close();
            await services.webhooks.stop();
            await store.close();
          } catch (err) {
            logger.error({ err }, 'SIP worker shutdown failed');
          } finally {
            // whatever failed, the main thread must not wait for this worker forever
            post({ t: 'closed' });
          }
        })();
        return;
    }
  });
  post({ t: 'ready', addresses: sip.addresses() });
}

main().catch((err: unknown) => post({ t: 'failed', message: err instanceof Error ? err.message : String(err) }));
