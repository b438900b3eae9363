import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeUuiValue, parseUuiContext } from '@handoff/server/dist/src/domain/uui.js';
import { liveLeases, startDemoService, type DemoService } from './support/service.js';

// Asynchronous on purpose: the service answering the installed SDK runs in this process.
const run = promisify(execFile);
const PACKAGE_DIR = fileURLToPath(new URL('../../', import.meta.url));
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const NODE_TYPES = dirname(dirname(createRequire(import.meta.url).resolve('@types/node/package.json')));

/** What the installed SDK does, with nothing but its own package available. */
const SMOKE_SCRIPT = `
import { readFileSync } from 'node:fs';
import { HandoffClient, buildUui } from '@handoff/client';

for (const name of ['@handoff/server', 'fastify', 'jose']) {
  await import(name).then(() => { throw new Error(name + ' should not be installed'); }, (err) => {
    if (err.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  });
}
const demo = JSON.parse(readFileSync(process.env.DEMO_JSON, 'utf8'));
const client = new HandoffClient({
  baseUrl: demo.httpUrl,
  orgId: demo.orgId,
  subject: demo.callCenterApiName,
  privateKeyPem: readFileSync(demo.privateKeyPath, 'utf8'),
});
const { voiceCallId } = await client.createVoiceCall({ vendorCallKey: 'installed-sdk', to: demo.channelNumber, from: '+14155557777' });
const lease = await client.reserveRoutableNumber({
  countryCode: 'US', fromNumber: '+14155557777', toNumber: demo.channelNumber, scrt2Domain: demo.domain, callId: voiceCallId,
});
const uui = buildUui({ orgId: demo.orgId, scrt2Domain: demo.domain, token: await client.getToken(), callId: voiceCallId, transactionId: lease.transactionId });
console.log(JSON.stringify({ voiceCallId, lease, uui, resolvedFrom: import.meta.resolve('@handoff/client') }));
`;

/** A consumer's TypeScript: the published typings must compile on their own, strictly. */
const CONSUMER_TS = `
import { HandoffClient, buildUui, isHandoffApiError, mintToken, type HandoffClientOptions, type ReservedNumber } from '@handoff/client';

export async function transfer(options: HandoffClientOptions, fromNumber: string): Promise<ReservedNumber | string> {
  const client = new HandoffClient(options);
  try {
    const lease = await client.reserveRoutableNumber({ countryCode: 'US', fromNumber, toNumber: '+14155550100', scrt2Domain: 'demo.my.example.com' }, { deadlineMs: 5000 });
    return lease;
  } catch (err) {
    if (isHandoffApiError(err) && err.errorCode === 'POOL_EXHAUSTED') return buildUui({ scrt2Domain: 'demo.my.example.com', token: await client.getToken() }).headerValue;
    throw err;
  }
}
export const token: string = mintToken({ privateKeyPem: '', orgId: '00Dxx0000001DMO', alg: 'ES256' });
// @ts-expect-error a key and a token provider at once
export const both: HandoffClientOptions = { baseUrl: 'http://h', orgId: 'o', privateKeyPem: 'k', tokenProvider: () => 't' };
// @ts-expect-error neither
export const neither: HandoffClientOptions = { baseUrl: 'http://h', orgId: 'o' };
`;

describe('the packed SDK, installed on its own', () => {
  let svc: DemoService;
  let work: string;
  let project: string;
  let packedFiles: string[];

  before(async () => {
    svc = await startDemoService();
    work = mkdtempSync(join(tmpdir(), 'handoff-client-install-'));
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: PACKAGE_DIR });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    assert.ok(info);
    packedFiles = info.files.map((f) => f.path);
    project = join(work, 'consumer');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'sdk-consumer', private: true, type: 'module' }));
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', join(work, info.filename)], { cwd: project });
  });
  after(async () => {
    await svc.close();
    rmSync(work, { recursive: true, force: true });
  });

  test('the tarball holds the compiled SDK, its sources and README, and no tests', () => {
    assert.ok(packedFiles.includes('dist/src/index.js') && packedFiles.includes('dist/src/index.d.ts'));
    assert.ok(packedFiles.includes('README.md') && packedFiles.includes('package.json'));
    assert.deepEqual(packedFiles.filter((p) => !/^(dist\/src\/|src\/|README\.md$|package\.json$)/.test(p)), []);
    assert.ok(!packedFiles.some((p) => p.includes('test')));
  });

  test('installs with no other package, and reserves a number and builds a UUI against the running service', async () => {
    assert.deepEqual(readdirSync(join(project, 'node_modules')).filter((n) => !n.startsWith('.')), ['@handoff']);
    assert.deepEqual(readdirSync(join(project, 'node_modules', '@handoff')), ['client']);
    const manifest = JSON.parse(readFileSync(join(project, 'node_modules', '@handoff', 'client', 'package.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(manifest.dependencies, undefined);

    writeFileSync(join(project, 'smoke.mjs'), SMOKE_SCRIPT);
    const { stdout } = await run(process.execPath, ['smoke.mjs'], { cwd: project, env: { ...process.env, DEMO_JSON: join(svc.dataDir, 'demo.json') } });
    const out = JSON.parse(stdout) as {
      voiceCallId: string;
      lease: { routableNumber: string; uid: string; transactionId: string };
      uui: { headerValue: string; decoded: string; decodedLength: number };
      resolvedFrom: string;
    };
    assert.ok(out.resolvedFrom.startsWith(`file://${project}/node_modules/@handoff/client/`), out.resolvedFrom);

    const held = (await liveLeases(svc, svc.demo.orgId)).filter((l) => l.transactionId === out.lease.transactionId);
    assert.equal(held.length, 1);
    assert.equal(held[0]!.uid, out.lease.uid);
    assert.equal(held[0]!.voiceCallId, out.voiceCallId);

    // The service reads the UUI, and its token is one the service accepts for the demo org.
    const context = parseUuiContext(decodeUuiValue(out.uui.headerValue));
    assert.equal(context.orgId, svc.demo.orgId);
    assert.equal(context.callId, out.voiceCallId.slice(0, 15));
    assert.equal(context.transactionId, out.lease.transactionId);
    assert.equal((await svc.server.services.auth.verify(context.token)).orgId, svc.demo.orgId);
  });

  test('its typings compile on their own in a strict NodeNext project', async () => {
    writeFileSync(join(project, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [NODE_TYPES] },
        files: ['consumer.ts'],
      }),
    );
    const result = await run(process.execPath, [TSC, '-p', project], { cwd: project }).catch((err: { stdout?: string }) => assert.fail(err.stdout ?? String(err)));
    assert.equal(result.stdout, '');
  });
});
