import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HANDOFF_BIN, opensslToken, readJson, startService, waitReady, type ServiceProcess } from '../support/process.js';
import type { DemoInfo } from '../../src/services/demo.js';

/** Runs the CLI as its own process, asynchronously (the service must keep serving meanwhile). */
function runCli(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HANDOFF_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('handoff demo against a running service', () => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-demo-'));
  let svc: ServiceProcess | undefined;
  after(async () => {
    await svc?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the whole journey: VC1, path A, path B, escalation, records; exit 0', async () => {
    svc = startService({ HANDOFF_DATA_DIR: dir });
    const url = await waitReady(svc);
    const demo = readJson<DemoInfo>(join(dir, 'demo.json'))!;
    assert.ok(demo.agentTokenPath, 'demo.json names the demo agent token');
    assert.equal(statSync(demo.agentTokenPath).mode & 0o777, 0o600, 'the agent token is 0600');

    // The data dir comes from --data-dir, not the environment
    const env = { ...process.env, HANDOFF_DATA_DIR: join(dir, 'elsewhere') };
    const r = await runCli(['demo', '--data-dir', dir], env);
    assert.equal(r.code, 0, `exit code\n${r.stdout}\n${r.stderr}\n${svc.output().slice(-4000)}`);
    for (const step of ['1. create VC1', '2a. path A: reserve', '2b. path A: SIP INVITE', '2c. path A: the lease is consumed', '2d. path A: hang up', '3a. path B: build the UUI', '3b. path B: SIP INVITE', '3c. path B', '4. escalation', '5. the records as they ended']) {
      assert.match(r.stdout, new RegExp(`✔ ${step.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*\\(\\d+ ms\\)`), `step "${step}" printed with its duration`);
    }
    assert.doesNotMatch(r.stdout, /✘/);
    assert.match(r.stdout, /All 10 steps passed/);

    // The records, through the API
    const vc1 = /voiceCallId: (0LQ\w{15})/.exec(r.stdout)?.[1];
    assert.ok(vc1, 'VC1 printed');
    const now = Math.floor(Date.now() / 1000);
    const token = opensslToken(demo.privateKeyPath, { iss: demo.orgId, sub: demo.callCenterApiName, iat: now, exp: now + 600 });
    const res = await fetch(`${url}/telephony/v1/voiceCalls/${vc1}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const call = (await res.json()) as {
      escalation: { reason: string; agent: string } | null;
      legs: Array<{ handoff: { path: string; agent: string } | null; status: string; isActiveCall: boolean; disconnectReason: string | null; escalation: { reason: string } | null }>;
    };
    assert.deepEqual(call.legs.map((l) => l.handoff?.path).sort(), ['number', 'uui']);
    assert.ok(call.legs.every((l) => l.handoff?.agent === demo.agentName));
    assert.equal(call.escalation?.reason, 'demo: customer asked for a human');
    assert.equal(call.escalation?.agent, demo.agentName);
    const a = call.legs.find((l) => l.handoff?.path === 'number')!;
    const b = call.legs.find((l) => l.handoff?.path === 'uui')!;
    assert.equal(a.isActiveCall, false);
    assert.equal(a.disconnectReason, 'caller-hangup');
    assert.equal(b.escalation?.reason, 'demo: customer asked for a human');
    assert.equal(b.isActiveCall, false);

    // --json, a second run on the same service (fresh caller, fresh VC1)
    const j = await runCli(['demo', '--data-dir', dir, '--json'], env);
    assert.equal(j.code, 0, `${j.stdout}\n${j.stderr}`);
    const out = JSON.parse(j.stdout) as { ok: boolean; steps: Array<{ step: string; ok: boolean; ms: number }>; voiceCall: { legs: unknown[] } };
    assert.equal(out.ok, true);
    assert.equal(out.steps.length, 10);
    assert.ok(out.steps.every((s) => s.ok && Number.isInteger(s.ms)));
    assert.equal(out.voiceCall.legs.length, 2);
  });

  test('a clear message and a non-zero exit without a service', () => {
    const empty = mkdtempSync(join(tmpdir(), 'handoff-demo-none-'));
    try {
      const r = spawnSync(process.execPath, [HANDOFF_BIN, 'demo', '--data-dir', empty], { encoding: 'utf8' });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /demo\.json: start the service first/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
