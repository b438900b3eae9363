import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { existsSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The `handoff` bin, as `npx handoff` runs it. */
export const HANDOFF_BIN = fileURLToPath(new URL('../../../bin/handoff.js', import.meta.url));

export interface ServiceProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `handoff serve` as its own process with the given environment (HTTP and SIP ports 0 unless set). */
export function startService(env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, [HANDOFF_BIN, 'serve'], {
    env: { ...process.env, HANDOFF_HTTP_PORT: '0', HANDOFF_SIP_PORT: '0', HANDOFF_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Waits until the service logs 'handoff ready' and returns its httpUrl. */
export async function waitReady(p: ServiceProcess, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const line of p.output().split('\n')) {
      if (line.includes('"handoff ready"')) return JSON.parse(line).httpUrl as string;
    }
    if (p.child.exitCode !== null) throw new Error(`service exited (${p.child.exitCode}):\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`service not ready in ${timeoutMs} ms:\n${p.output()}`);
}

/**
 * Signs an RS256 JWT with the openssl command line, independently of the service's own code.
 */
export function opensslToken(privateKeyPath: string, claims: Record<string, unknown>): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const signing = `${enc({ alg: 'RS256', typ: 'JWT' })}.${enc(claims)}`;
  const dir = mkdtempSync(join(tmpdir(), 'handoff-jwt-'));
  const input = join(dir, 'in');
  writeFileSync(input, signing);
  const sig = execFileSync('openssl', ['dgst', '-sha256', '-sign', privateKeyPath, '-binary', input]);
  return `${signing}.${sig.toString('base64url')}`;
}

export function readJson<T = Record<string, unknown>>(path: string): T | null {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : null;
}

/** A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both), e.g. to pin the demo agent's. */
export async function freeDualPort(): Promise<number> {
  for (;;) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    const port = udp.address().port;
    const tcp = net.createServer();
    const ok = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(port, '127.0.0.1', () => r(true));
    });
    await new Promise<void>((r) => udp.close(() => r()));
    if (ok) {
      await new Promise<void>((r) => tcp.close(() => r()));
      return port;
    }
  }
}
