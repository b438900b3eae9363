import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadSettings } from '../config.js';
import { isHandoffError } from '../domain/errors.js';
import { mintToken } from '../domain/token-mint.js';
import { demoBanner, guardProcess, startServer } from '../server.js';
import { addAdminCommands, addTenantCommands } from './admin.js';
import { addDemoCommand } from './demo.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Starts the service and stops it cleanly on SIGTERM/SIGINT (in-flight requests finish first). */
async function serve(): Promise<void> {
  const settings = loadSettings();
  const server = await startServer(settings);
  guardProcess(server);
  if (server.demo) process.stdout.write(demoBanner(server.demo, settings.dataDir) + '\n');
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err) => {
        server.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

export function buildProgram(): Command {
  const program = new Command('handoff').description('Handoff: telephony hand-off plane for AI voice agents').showHelpAfterError();

  program
    .command('serve')
    .description('run the service (configuration from HANDOFF_* environment variables; see README)')
    .action(serve);

  program
    .command('token')
    .description('mint a bearer token (JWT) signed with a private key')
    .requiredOption('--private-key <file>', 'PEM private key (PKCS#8, PKCS#1 or SEC1)')
    .requiredOption('--iss <orgId>', 'org ID, 15 or 18 characters')
    .option('--sub <name>', 'call center API name or channel developer name')
    .option('--ttl <seconds>', 'lifetime in seconds (at most 86400)', positiveInt, 3600)
    .option('--kid <kid>', 'key ID header')
    .addOption(new Option('--alg <alg>', 'signature algorithm (default: from the key)').choices(['RS256', 'ES256']))
    .option('--jti [value]', 'add a jti claim (single use); a random UUID when no value is given')
    .option('--aud <audience>', 'audience claim')
    .action(async (o: { privateKey: string; iss: string; sub?: string; ttl: number; kid?: string; alg?: 'RS256' | 'ES256'; jti?: boolean | string; aud?: string }) => {
      const token = await mintToken({
        privateKeyPem: readFileSync(o.privateKey, 'utf8'),
        iss: o.iss,
        ttlSeconds: o.ttl,
        ...(o.sub !== undefined ? { sub: o.sub } : {}),
        ...(o.kid !== undefined ? { kid: o.kid } : {}),
        ...(o.alg !== undefined ? { alg: o.alg } : {}),
        ...(o.jti !== undefined ? { jti: o.jti } : {}),
        ...(o.aud !== undefined ? { aud: o.aud } : {}),
      });
      process.stdout.write(token + '\n');
    });

  addAdminCommands(program);
  addTenantCommands(program);
  addDemoCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError || isHandoffError(err)) {
      process.stderr.write(`handoff: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
