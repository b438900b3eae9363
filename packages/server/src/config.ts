import { readFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { Type, type Static, type TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { isSupportedCountry, type CountryCode } from 'libphonenumber-js';
import YAML from 'yaml';
import { isE164 } from './domain/e164.js';
import { FlowDefinition } from './domain/flow.js';
import { expandRange } from './domain/number-list.js';
import { AddressList } from './domain/address-list.js';
import { DEFAULT_MAX_UUI_DECODED } from './domain/uui.js';
import { WEBHOOK_EVENT_TYPES, webhookUrlProblem } from './domain/webhook-signature.js';

/** Process settings, all from the environment (see README "Configuration"). */
export interface Settings {
  dataDir: string;
  httpHost: string;
  httpPort: number;
  sipHost: string;
  sipPort: number;
  databaseUrl: string | undefined;
  configFile: string | undefined;
  logLevel: string;
  /** Audiences a token's `aud` may name; a token with `aud` is refused when this is empty. */
  acceptedAudiences: string[];
  /** Largest request body in bytes. */
  bodyLimit: number;
  /** Lifetime of a number lease in seconds (at most 180). */
  leaseTtlSeconds: number;
  /** How long a (number, caller) pair stays held after its lease is consumed or expires. */
  leaseCooldownSeconds: number;
  /** Bearer secret of the operator endpoints (admin API, resolver); generated into the data dir when unset. */
  operatorToken: string | undefined;
  /** Webhook retry policy (see services/webhooks.ts). */
  webhooks: { maxAttempts: number; attemptTimeoutMs: number; retryBaseMs: number; retryMaxMs: number };
  /** SIP ingress beyond host and port (see {@link loadSipSettings}). */
  sip: SipSettings;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function intSetting(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max} (got "${value}")`);
  return n;
}

function port(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name} must be a port number 0-65535 (got "${value}")`);
  return n;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** SIP ingress settings (README "SIP ingress"). */
export interface SipSettings {
  /** TLS listener: PEM certificate chain and key read from HANDOFF_SIP_TLS_CERT/KEY; null when unset. */
  tls: { port: number; cert: string; key: string } | null;
  /** Host written in Via and Record-Route (default: the bound address). */
  advertisedHost: string | undefined;
  /** `proxy`: stateful record-routing proxy to the agent; `redirect`: 302 to the agent. */
  mode: 'proxy' | 'redirect';
  /** ISO 3166-1 alpha-2 country whose numbering plan national numbers follow. */
  defaultCountry: CountryCode;
  /** Requests per second one source address may send (0: no limit). */
  rateLimit: number;
  /** Longest decoded UUI text, in characters. */
  uuiMaxDecoded: number;
  /** Overload protection: initial INVITEs get 503 at once while this many hand-offs are being resolved (0: no bound)... */
  maxPendingInvites: number;
  /**
   * Path A INVITEs to a pool number that matches no live lease go to this channel (E.164 number) as
   * new inbound calls, run by its flow; null: they are refused 404.
   */
  noLeaseChannel: string | null;
  /** Answered calls still up after this many seconds are ended with a BYE to both parties (0: never). */
  maxCallSeconds: number;
  /** Timer C: a proxied INVITE with no final answer this long after its last provisional is cancelled. */
  timerCSeconds: number;
  /** ...or while the event loop is busy this share of the time (%, for a second (four 250 ms periods) in a row; 0: not checked). */
  maxLoad: number;
  /** Hand-offs each SIP thread runs against itself on loopback before it takes traffic (0: none; see sip/warm-up.ts). */
  warmUpCalls: number;
  /** SIP threads (1: the main thread runs the SIP side; more: worker threads behind a UDP front, see sip/workers.ts). */
  workers: number;
  /** First of the SIP workers' own ports: worker k listens on workerPort + 2k (UDP, TCP) and + 2k + 1 (TLS); 0: free ports. */
  workerPort: number;
  /** The built-in demo agent (demo tenant only): UDP/TCP port on 127.0.0.1 and when it hangs up. */
  demoAgent: { port: number; hangupSeconds: number };
}

function readPem(name: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${name}: cannot read ${file}: ${(e as Error).message}`);
  }
}

/**
 * The HANDOFF_SIP_* settings. `sipPort` is HANDOFF_SIP_PORT: the demo agent defaults to the next
 * port (or a free one when the ingress port is 0).
 */
export function loadSipSettings(env: NodeJS.ProcessEnv, sipPort: number): SipSettings {
  const certFile = env.HANDOFF_SIP_TLS_CERT || undefined;
  const keyFile = env.HANDOFF_SIP_TLS_KEY || undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) throw new ConfigError('HANDOFF_SIP_TLS_CERT and HANDOFF_SIP_TLS_KEY must be set together');
  const tls =
    certFile && keyFile
      ? { port: port('HANDOFF_SIP_TLS_PORT', env.HANDOFF_SIP_TLS_PORT, 5061), cert: readPem('HANDOFF_SIP_TLS_CERT', certFile), key: readPem('HANDOFF_SIP_TLS_KEY', keyFile) }
      : null;
  const mode = env.HANDOFF_SIP_MODE || 'proxy';
  if (mode !== 'proxy' && mode !== 'redirect') throw new ConfigError(`HANDOFF_SIP_MODE must be proxy or redirect (got "${mode}")`);
  const country = (env.HANDOFF_SIP_DEFAULT_COUNTRY || 'US').toUpperCase();
  if (!isSupportedCountry(country)) throw new ConfigError(`HANDOFF_SIP_DEFAULT_COUNTRY must be an ISO 3166-1 alpha-2 country with a numbering plan (got "${country}")`);
  const noLeaseChannel = env.HANDOFF_SIP_NO_LEASE_CHANNEL || null;
  if (noLeaseChannel !== null && !isE164(noLeaseChannel)) throw new ConfigError(`HANDOFF_SIP_NO_LEASE_CHANNEL must be a channel's E.164 number such as +14155550100 (got "${noLeaseChannel}")`);
  return {
    tls,
    advertisedHost: env.HANDOFF_SIP_ADVERTISED_HOST || undefined,
    mode,
    defaultCountry: country,
    rateLimit: intSetting(env, 'HANDOFF_SIP_RATE_LIMIT', 200, 0, 1_000_000),
    uuiMaxDecoded: intSetting(env, 'HANDOFF_UUI_MAX_DECODED', DEFAULT_MAX_UUI_DECODED, 64, 16_384),
    noLeaseChannel,
    maxCallSeconds: intSetting(env, 'HANDOFF_SIP_MAX_CALL_SECONDS', 14_400, 0, 604_800),
    timerCSeconds: intSetting(env, 'HANDOFF_SIP_TIMER_C_SECONDS', 181, 1, 3_600),
    maxPendingInvites: intSetting(env, 'HANDOFF_SIP_MAX_PENDING', 500, 0, 1_000_000),
    maxLoad: intSetting(env, 'HANDOFF_SIP_MAX_LOAD', 100, 0, 100),
    warmUpCalls: intSetting(env, 'HANDOFF_SIP_WARMUP_CALLS', 0, 0, 100_000),
    workers: intSetting(env, 'HANDOFF_SIP_WORKERS', 1, 1, 64),
    workerPort: port('HANDOFF_SIP_WORKER_PORT', env.HANDOFF_SIP_WORKER_PORT, sipPort === 0 ? 0 : sipPort + 100),
    demoAgent: {
      // the next port, or the one after when TLS listens there (5061 is SIP over TLS's own port)
      port: port('HANDOFF_DEMO_AGENT_PORT', env.HANDOFF_DEMO_AGENT_PORT, sipPort === 0 ? 0 : tls?.port === sipPort + 1 ? sipPort + 2 : sipPort + 1),
      hangupSeconds: intSetting(env, 'HANDOFF_DEMO_AGENT_HANGUP_SECONDS', 30, 1, 86_400),
    },
  };
}

export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const logLevel = env.HANDOFF_LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`HANDOFF_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  const bodyLimit = env.HANDOFF_BODY_LIMIT ? Number(env.HANDOFF_BODY_LIMIT) : 64 * 1024;
  if (!Number.isInteger(bodyLimit) || bodyLimit < 1024) throw new ConfigError('HANDOFF_BODY_LIMIT must be an integer >= 1024');
  const leaseTtlSeconds = env.HANDOFF_LEASE_TTL_SECONDS ? Number(env.HANDOFF_LEASE_TTL_SECONDS) : 180;
  if (!Number.isInteger(leaseTtlSeconds) || leaseTtlSeconds < 1 || leaseTtlSeconds > 180) {
    throw new ConfigError('HANDOFF_LEASE_TTL_SECONDS must be an integer from 1 to 180');
  }
  const leaseCooldownSeconds = env.HANDOFF_LEASE_COOLDOWN_SECONDS ? Number(env.HANDOFF_LEASE_COOLDOWN_SECONDS) : 10;
  if (!Number.isInteger(leaseCooldownSeconds) || leaseCooldownSeconds < 0 || leaseCooldownSeconds > 3600) {
    throw new ConfigError('HANDOFF_LEASE_COOLDOWN_SECONDS must be an integer from 0 to 3600');
  }
  const operatorToken = env.HANDOFF_OPERATOR_TOKEN || undefined;
  if (operatorToken !== undefined && operatorToken.length < 24) throw new ConfigError('HANDOFF_OPERATOR_TOKEN must be at least 24 characters');
  return {
    dataDir: resolve(env.HANDOFF_DATA_DIR || './data'),
    httpHost: env.HANDOFF_HTTP_HOST || '127.0.0.1',
    httpPort: port('HANDOFF_HTTP_PORT', env.HANDOFF_HTTP_PORT, 8080),
    sipHost: env.HANDOFF_SIP_HOST || '127.0.0.1',
    sipPort: port('HANDOFF_SIP_PORT', env.HANDOFF_SIP_PORT, 5060),
    databaseUrl: env.HANDOFF_DATABASE_URL || undefined,
    configFile: env.HANDOFF_CONFIG || undefined,
    logLevel,
    acceptedAudiences: (env.HANDOFF_ACCEPTED_AUDIENCES ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    bodyLimit,
    leaseTtlSeconds,
    leaseCooldownSeconds,
    operatorToken,
    sip: loadSipSettings(env, port('HANDOFF_SIP_PORT', env.HANDOFF_SIP_PORT, 5060)),
    webhooks: {
      maxAttempts: intSetting(env, 'HANDOFF_WEBHOOK_MAX_ATTEMPTS', 15, 1, 100),
      attemptTimeoutMs: intSetting(env, 'HANDOFF_WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
      retryBaseMs: intSetting(env, 'HANDOFF_WEBHOOK_RETRY_BASE_MS', 1000, 10, 3_600_000),
      retryMaxMs: intSetting(env, 'HANDOFF_WEBHOOK_RETRY_MAX_MS', 600_000, 10, 86_400_000),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Provisioning file (YAML or JSON): orgs with keys, call centers, flows, channels; pools; agents.

const E164 = Type.String({ pattern: '^\\+[1-9]\\d{1,14}$' });
const Name = Type.String({ pattern: '^[A-Za-z0-9_]+$', maxLength: 80 });

const KeyConfig = Type.Object(
  {
    id: Type.String({ pattern: '^[A-Za-z0-9_.:-]+$', maxLength: 128 }),
    kid: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    publicKey: Type.Optional(Type.String({ minLength: 1 })),
    publicKeyFile: Type.Optional(Type.String({ minLength: 1 })),
    certificate: Type.Optional(Type.String({ minLength: 1 })),
    certificateFile: Type.Optional(Type.String({ minLength: 1 })),
    expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);

const WebhookConfig = Type.Object(
  {
    id: Type.String({ pattern: '^[A-Za-z0-9_.:-]+$', maxLength: 128 }),
    url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2048 }),
    secret: Type.Optional(Type.String({ minLength: 16, maxLength: 512 })),
    secretFile: Type.Optional(Type.String({ minLength: 1 })),
    /** Event types to deliver; all of them ("*") when absent. */
    events: Type.Optional(Type.Array(Type.Union(['*', ...WEBHOOK_EVENT_TYPES].map((t) => Type.Literal(t))), { minItems: 1 })),
  },
  { additionalProperties: false },
);

const OrgConfig = Type.Object(
  {
    id: Type.String({ pattern: '^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$' }),
    name: Type.String({ minLength: 1, maxLength: 255 }),
    domain: Type.String({ minLength: 1, maxLength: 253 }),
    features: Type.Optional(Type.Object({ numberPool: Type.Optional(Type.Boolean()) }, { additionalProperties: false })),
    quotas: Type.Optional(
      Type.Object(
        {
          maxLiveLeases: Type.Optional(Type.Integer({ minimum: 1 })),
          requestsPerSecond: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    keys: Type.Optional(Type.Array(KeyConfig)),
    callCenters: Type.Optional(
      Type.Array(Type.Object({ apiName: Name, name: Type.Optional(Type.String({ maxLength: 255 })) }, { additionalProperties: false })),
    ),
    flows: Type.Optional(
      Type.Array(
        Type.Object(
          { name: Name, rules: FlowDefinition.properties.rules, fallback: FlowDefinition.properties.fallback },
          { additionalProperties: false },
        ),
      ),
    ),
    channels: Type.Optional(
      Type.Array(
        Type.Object(
          { devName: Name, number: E164, callCenter: Type.Optional(Name), flow: Type.Optional(Name) },
          { additionalProperties: false },
        ),
      ),
    ),
    webhooks: Type.Optional(Type.Array(WebhookConfig)),
    /** SIP trunks of the org: INVITEs for it from other source addresses are refused (403). */
    trunks: Type.Optional(
      Type.Object({ allowFrom: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 1000 }) }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);

const PoolConfig = Type.Object(
  {
    country: Type.String({ pattern: '^[A-Z]{2}$' }),
    numbers: Type.Optional(Type.Array(E164)),
    ranges: Type.Optional(Type.Array(Type.Object({ from: E164, to: E164 }, { additionalProperties: false }))),
  },
  { additionalProperties: false },
);

const AgentConfig = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9_.-]+$', maxLength: 128 }),
    sipUri: Type.String({ pattern: '^sips?:[^\\s]+$', maxLength: 512 }),
    webhookUrl: Type.Optional(Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2048 })),
    maxConcurrentCalls: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000 })),
    org: Type.Optional(Type.String({ pattern: '^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$' })),
    /** Bearer secret of the agent runtime (escalation), 24+ characters; or read from tokenFile. */
    token: Type.Optional(Type.String({ minLength: 24, maxLength: 512 })),
    tokenFile: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

export const ProvisioningSchema = Type.Object(
  {
    orgs: Type.Optional(Type.Array(OrgConfig)),
    pools: Type.Optional(Type.Array(PoolConfig)),
    agents: Type.Optional(Type.Array(AgentConfig)),
  },
  { additionalProperties: false },
);

export type Provisioning = Static<typeof ProvisioningSchema>;
export type OrgProvisioning = Static<typeof OrgConfig>;
export type KeyProvisioning = Static<typeof KeyConfig>;

/** The first few schema errors as "path: message" lines, with the offending field path. */
export function schemaErrors(schema: TSchema, value: unknown, max = 10): string[] {
  const out: string[] = [];
  for (const e of Value.Errors(schema, value)) {
    if (e.keyword === 'boolean') continue; // duplicates the additionalProperties entry
    let path = e.instancePath || '/';
    let message = e.message;
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperties?: string[] }).additionalProperties ?? [];
      message = `unknown field(s): ${extra.join(', ')}`;
    }
    if (e.keyword === 'required') {
      const missing = (e.params as { requiredProperties?: string[] }).requiredProperties ?? [];
      message = `missing required field(s): ${missing.join(', ')}`;
    }
    path = path.replace(/^\//, '').replace(/\//g, '.') || '(root)';
    out.push(`${path}: ${message}`);
    if (out.length >= max) break;
  }
  return out;
}

/**
 * Reads and validates a provisioning file. Key files named in it are resolved relative to the
 * file and inlined, so the result is self-contained. Throws ConfigError naming file, field and fault.
 */
export function loadProvisioningFile(file: string): Provisioning {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`${file}: cannot read: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : YAML.parse(text, { uniqueKeys: true });
  } catch (e) {
    throw new ConfigError(`${file}: not valid ${extname(file).toLowerCase() === '.json' ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) doc = {};
  return validateProvisioning(doc, file, dirname(file));
}

export function validateProvisioning(doc: unknown, source: string, baseDir: string): Provisioning {
  const errors = schemaErrors(ProvisioningSchema, doc);
  if (errors.length) throw new ConfigError(`${source}: ${errors.join('; ')}`);
  const p = doc as Provisioning;
  const fail = (path: string, msg: string): never => {
    throw new ConfigError(`${source}: ${path}: ${msg}`);
  };
  const agentNames = new Set((p.agents ?? []).map((a) => a.name));
  const seen = { orgs: new Set<string>(), domains: new Set<string>(), numbers: new Set<string>(), keys: new Set<string>() };
  (p.orgs ?? []).forEach((org, i) => {
    const at = `orgs.${i}`;
    const id15 = org.id.slice(0, 15);
    if (seen.orgs.has(id15)) fail(`${at}.id`, `duplicate org ${id15}`);
    seen.orgs.add(id15);
    const ccs = new Set<string>();
    (org.callCenters ?? []).forEach((cc, j) => {
      if (ccs.has(cc.apiName)) fail(`${at}.callCenters.${j}.apiName`, `duplicate call center ${cc.apiName}`);
      ccs.add(cc.apiName);
    });
    const flows = new Set<string>();
    (org.flows ?? []).forEach((f, j) => {
      if (flows.has(f.name)) fail(`${at}.flows.${j}.name`, `duplicate flow ${f.name}`);
      flows.add(f.name);
      const refs = [...f.rules.map((r, k) => [`rules.${k}.agent`, r.agent] as const), ['fallback.agent', f.fallback.agent] as const];
      for (const [path, agent] of refs) {
        if (agent !== undefined && !agentNames.has(agent)) fail(`${at}.flows.${j}.${path}`, `unknown agent ${agent} (define it under agents)`);
      }
    });
    const channelNames = new Set<string>();
    (org.channels ?? []).forEach((ch, j) => {
      if (channelNames.has(ch.devName)) fail(`${at}.channels.${j}.devName`, `duplicate channel ${ch.devName}`);
      channelNames.add(ch.devName);
      if (seen.numbers.has(ch.number)) fail(`${at}.channels.${j}.number`, `number ${ch.number} is already used by another channel`);
      seen.numbers.add(ch.number);
      if (ch.callCenter !== undefined && !ccs.has(ch.callCenter)) fail(`${at}.channels.${j}.callCenter`, `unknown call center ${ch.callCenter}`);
      if (ch.flow !== undefined && !flows.has(ch.flow)) fail(`${at}.channels.${j}.flow`, `unknown flow ${ch.flow}`);
    });
    (org.keys ?? []).forEach((k, j) => {
      if (seen.keys.has(k.id)) fail(`${at}.keys.${j}.id`, `duplicate key id ${k.id}`);
      seen.keys.add(k.id);
      const sources = [k.publicKey, k.publicKeyFile, k.certificate, k.certificateFile].filter((v) => v !== undefined);
      if (sources.length !== 1) fail(`${at}.keys.${j}`, 'give exactly one of publicKey, publicKeyFile, certificate, certificateFile');
      const file = k.publicKeyFile ?? k.certificateFile;
      if (file !== undefined) {
        const path = isAbsolute(file) ? file : resolve(baseDir, file);
        try {
          const pem = readFileSync(path, 'utf8');
          if (k.publicKeyFile !== undefined) k.publicKey = pem;
          else k.certificate = pem;
        } catch (e) {
          fail(`${at}.keys.${j}`, `cannot read ${path}: ${(e as Error).message}`);
        }
        delete k.publicKeyFile;
        delete k.certificateFile;
      }
    });
    (org.trunks?.allowFrom ?? []).forEach((entry, j) => {
      const problem = AddressList.problem(entry);
      if (problem) fail(`${at}.trunks.allowFrom.${j}`, problem);
    });
    const hooks = new Set<string>();
    (org.webhooks ?? []).forEach((w, j) => {
      if (hooks.has(w.id)) fail(`${at}.webhooks.${j}.id`, `duplicate webhook ${w.id}`);
      hooks.add(w.id);
      const problem = webhookUrlProblem(w.url);
      if (problem) fail(`${at}.webhooks.${j}.url`, problem);
      if ((w.secret === undefined) === (w.secretFile === undefined)) fail(`${at}.webhooks.${j}`, 'give exactly one of secret, secretFile');
      if (w.secretFile !== undefined) {
        const path = isAbsolute(w.secretFile) ? w.secretFile : resolve(baseDir, w.secretFile);
        try {
          w.secret = readFileSync(path, 'utf8').trim();
        } catch (e) {
          fail(`${at}.webhooks.${j}.secretFile`, `cannot read ${path}: ${(e as Error).message}`);
        }
        if ((w.secret ?? '').length < 16) fail(`${at}.webhooks.${j}.secretFile`, 'the secret must be at least 16 characters');
        delete w.secretFile;
      }
    });
  });
  const countries = new Set<string>();
  (p.pools ?? []).forEach((pool, i) => {
    if (countries.has(pool.country)) fail(`pools.${i}.country`, `duplicate pool ${pool.country}`);
    countries.add(pool.country);
    (pool.ranges ?? []).forEach((r, j) => {
      const size = BigInt(r.to) - BigInt(r.from);
      if (r.from.length !== r.to.length || size < 0n) fail(`pools.${i}.ranges.${j}`, 'from and to must have the same length and from <= to');
      if (size >= 1_000_000n) fail(`pools.${i}.ranges.${j}`, 'a range may hold at most 1,000,000 numbers');
    });
  });
  (p.agents ?? []).forEach((a, i) => {
    if ((p.agents ?? []).findIndex((b) => b.name === a.name) !== i) fail(`agents.${i}.name`, `duplicate agent ${a.name}`);
    if (a.token !== undefined && a.tokenFile !== undefined) fail(`agents.${i}`, 'give token or tokenFile, not both');
    if (a.tokenFile !== undefined) {
      const path = isAbsolute(a.tokenFile) ? a.tokenFile : resolve(baseDir, a.tokenFile);
      try {
        a.token = readFileSync(path, 'utf8').trim();
      } catch (e) {
        fail(`agents.${i}.tokenFile`, `cannot read ${path}: ${(e as Error).message}`);
      }
      if ((a.token ?? '').length < 24) fail(`agents.${i}.tokenFile`, 'the token must be at least 24 characters');
      delete a.tokenFile;
    }
  });
  return p;
}

/** Expands a pool's numbers and ranges into one list of E.164 numbers. */
export function expandPoolNumbers(pool: Static<typeof PoolConfig>): string[] {
  return [...(pool.numbers ?? []), ...(pool.ranges ?? []).flatMap((r) => expandRange(r.from, r.to))];
}
