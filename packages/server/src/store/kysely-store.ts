import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { sql, type CompiledQuery, type ExpressionBuilder, type Kysely, type Transaction } from 'kysely';
import type { SqliteReader } from './sqlite-reader.js';
import { Statement } from './statement.js';
import type { Database, VoiceCallsTable } from './schema.js';
import type {
  AgentInput,
  CallCenterInput,
  ChannelInput,
  Dialect,
  FlowInput,
  OrgInput,
  OrgKeyInput,
  PartnerCall,
  Store,
  VoiceCallInput,
} from './store.js';
import type {
  Agent,
  CallCenter,
  Channel,
  Flow,
  KeyAlg,
  Org,
  OrgKey,
  PoolNumber,
  PoolNumberState,
  PoolSummary,
  VoiceCall,
  VoiceCallPatch,
} from './types.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/', import.meta.url));

type Db = Kysely<Database> | Transaction<Database>;

/** "Any of these columns differs from the incoming row": makes an upsert a no-op on identical input. */
function anyDistinct<T extends keyof Database>(table: T, cols: readonly string[]) {
  return (eb: ExpressionBuilder<any, any>) =>
    eb.or(cols.map((c) => eb(eb.ref(`${table}.${c}`), 'is distinct from', eb.ref(`excluded.${c}`))));
}

function wrote(result: { numInsertedOrUpdatedRows?: bigint | undefined } | undefined): boolean {
  return (result?.numInsertedOrUpdatedRows ?? 0n) > 0n;
}

const json = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v));
const parseJson = <T>(v: string | null): T | null => (v === null ? null : (JSON.parse(v) as T));

function toOrg(r: Database['orgs']): Org {
  return {
    id: r.id,
    name: r.name,
    domain: r.domain,
    features: JSON.parse(r.features),
    quotas: { maxLiveLeases: r.max_live_leases, requestsPerSecond: r.requests_per_second },
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toKey(r: Database['org_keys']): OrgKey {
  return {
    id: r.id,
    orgId: r.org_id,
    kid: r.kid,
    alg: r.alg as KeyAlg,
    pem: r.pem,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    createdAt: r.created_at,
  };
}

function toChannel(r: Database['channels']): Channel {
  return {
    orgId: r.org_id,
    devName: r.dev_name,
    number: r.number,
    callCenterApiName: r.call_center_api_name,
    flowName: r.flow_name,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toAgent(r: Database['agents']): Agent {
  return {
    name: r.name,
    orgId: r.org_id,
    sipUri: r.sip_uri,
    webhookUrl: r.webhook_url,
    maxConcurrentCalls: r.max_concurrent_calls,
    tokenHash: r.token_hash,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function toVoiceCall(r: VoiceCallsTable): VoiceCall {
  return {
    id: r.id,
    orgId: r.org_id,
    vendorCallKey: r.vendor_call_key,
    callCenterApiName: r.call_center_api_name,
    toNumber: r.to_number,
    fromNumber: r.from_number,
    initiationMethod: r.initiation_method,
    parentVoiceCallId: r.parent_voice_call_id,
    startTime: r.start_time,
    endTime: r.end_time,
    isActiveCall: r.is_active_call === null ? null : r.is_active_call !== 0,
    disconnectReason: r.disconnect_reason,
    callAttributes: r.call_attributes,
    callOrigin: r.call_origin,
    queue: r.queue,
    callSubtype: r.call_subtype,
    participants: parseJson<unknown[]>(r.participants),
    telephonyProviderName: r.telephony_provider_name,
    status: r.status,
    handoff: parseJson<Record<string, unknown>>(r.handoff),
    escalation: parseJson<Record<string, unknown>>(r.escalation),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

const PATCH_COLUMNS: Record<keyof VoiceCallPatch, keyof VoiceCallsTable> = {
  toNumber: 'to_number',
  fromNumber: 'from_number',
  startTime: 'start_time',
  endTime: 'end_time',
  isActiveCall: 'is_active_call',
  disconnectReason: 'disconnect_reason',
  callAttributes: 'call_attributes',
  callOrigin: 'call_origin',
  queue: 'queue',
  callSubtype: 'call_subtype',
  participants: 'participants',
  status: 'status',
  handoff: 'handoff',
  escalation: 'escalation',
  telephonyProviderName: 'telephony_provider_name',
};

function patchValue(key: keyof VoiceCallPatch, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (key === 'isActiveCall') return value ? 1 : 0;
  if (key === 'participants' || key === 'handoff' || key === 'escalation') return JSON.stringify(value);
  return value;
}

const VOICE_CALL_COLUMNS = [
  'id', 'org_id', 'vendor_call_key', 'call_center_api_name', 'to_number', 'from_number', 'initiation_method',
  'parent_voice_call_id', 'start_time', 'end_time', 'is_active_call', 'disconnect_reason', 'call_attributes',
  'call_origin', 'queue', 'call_subtype', 'participants', 'telephony_provider_name', 'status', 'handoff',
  'escalation', 'created_at', 'updated_at',
] as const satisfies readonly (keyof VoiceCallsTable)[];

// The SIP hand-off writes and reads VoiceCalls on every call: these skip Kysely's query builder (see Statement)
const INSERT_VOICE_CALL = new Statement(
  `INSERT INTO voice_calls (${VOICE_CALL_COLUMNS.join(', ')}) VALUES (${VOICE_CALL_COLUMNS.map((c) => ':' + c).join(', ')})
   ON CONFLICT (org_id, vendor_call_key) DO NOTHING`,
);
const GET_VOICE_CALL = new Statement('SELECT * FROM voice_calls WHERE id = :id AND org_id = :org');
// Materialising all 23 columns cost three times these three (measured 12 µs against 4 µs on SQLite).
const GET_PARTNER_CALL = new Statement('SELECT id, call_attributes, telephony_provider_name FROM voice_calls WHERE id = :id AND org_id = :org');

/** UPDATE statements by the patch's columns (a handful of shapes in practice). */
const patchStatements = new Map<string, Statement>();

function patchStatement(keys: readonly (keyof VoiceCallPatch)[], keep: number): Statement {
  const signature = `${keys.join(',')}|${keep}`;
  let stmt = patchStatements.get(signature);
  if (!stmt) {
    const sets = keys.map((k) => {
      const col = PATCH_COLUMNS[k];
      if (col !== 'status' || keep === 0) return `${col} = :${col}`;
      const kept = Array.from({ length: keep }, (_, i) => `:keep_${i}`).join(', ');
      return `status = CASE WHEN status IN (${kept}) THEN status ELSE :status END`;
    });
    stmt = new Statement(`UPDATE voice_calls SET ${[...sets, 'updated_at = :updated_at'].join(', ')} WHERE id = :id AND org_id = :org`);
    if (patchStatements.size < 256) patchStatements.set(signature, stmt);
  }
  return stmt;
}

/** Pool numbers committed per transaction by a large addition (see addPoolNumbers). */
export const POOL_ADD_CHUNK = 5000;

/** The Kysely implementation of Store, shared by SQLite and PostgreSQL. */
export class KyselyStore implements Store {
  constructor(
    protected readonly db: Db,
    readonly dialect: Dialect,
    private readonly root: Kysely<Database> | null,
    private readonly reader: SqliteReader | null = null,
  ) {}

  /** The Kysely instance (or open transaction) this store runs on, for stores of further tables. */
  get executor(): Db {
    return this.db;
  }

  async close(): Promise<void> {
    await this.reader?.close();
    await this.root?.destroy();
  }

  /**
   * Runs a read-only query off the event loop where it can (SQLite in a file, outside a transaction:
   * see SqliteReader), else on this store's connection. For aggregates whose cost grows with the data.
   */
  async readRows<R>(query: CompiledQuery): Promise<R[]> {
    if (this.reader?.available && !this.db.isTransaction) {
      try {
        return await this.reader.all<R>(query.sql, query.parameters);
      } catch {
        // The reader ended or failed: the query still has an answer on this connection.
      }
    }
    return (await this.db.executeQuery<R>(query)).rows as R[];
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  async transaction<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    if (this.db.isTransaction) return fn(this);
    return (this.db as Kysely<Database>).transaction().execute((trx) => fn(new KyselyStore(trx, this.dialect, null)));
  }

  /**
   * Applies pending migrations/*.sql in order, inside one transaction that holds a lock, so several
   * instances starting at once on one database apply each migration exactly once.
   */
  async migrate(): Promise<string[]> {
    await sql`create table if not exists handoff_migrations (version text primary key, applied_at bigint not null)`.execute(this.db);
    const files = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort();
    return this.transaction(async (tx) => {
      const db = (tx as KyselyStore).db;
      if (this.dialect === 'postgres') await sql`select pg_advisory_xact_lock(7215301)`.execute(db);
      const done = new Set((await db.selectFrom('handoff_migrations').select('version').execute()).map((r) => r.version));
      const applied: string[] = [];
      for (const file of files) {
        const version = file.replace(/\.sql$/, '');
        if (done.has(version)) continue;
        const text = await readFile(MIGRATIONS_DIR + file, 'utf8');
        for (const stmt of splitSql(text)) await sql.raw(stmt).execute(db);
        await db.insertInto('handoff_migrations').values({ version, applied_at: Date.now() }).execute();
        applied.push(version);
      }
      return applied;
    });
  }

  async upsertOrg(org: OrgInput, now: number): Promise<boolean> {
    const row = {
      id: org.id,
      name: org.name,
      domain: org.domain,
      features: JSON.stringify(org.features),
      max_live_leases: org.quotas.maxLiveLeases,
      requests_per_second: org.quotas.requestsPerSecond,
      created_at: now,
      updated_at: now,
    };
    const cols = ['name', 'domain', 'features', 'max_live_leases', 'requests_per_second'] as const;
    const r = await this.db
      .insertInto('orgs')
      .values(row)
      .onConflict((oc) =>
        oc
          .column('id')
          .doUpdateSet((eb) => ({ ...Object.fromEntries(cols.map((c) => [c, eb.ref(`excluded.${c}`)])), updated_at: now }))
          .where(anyDistinct('orgs', cols)),
      )
      .executeTakeFirst();
    return wrote(r);
  }

  async getOrg(id: string): Promise<Org | null> {
    const r = await this.db.selectFrom('orgs').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toOrg(r) : null;
  }

  async listOrgs(): Promise<Org[]> {
    return (await this.db.selectFrom('orgs').selectAll().orderBy('id').execute()).map(toOrg);
  }

  async upsertKey(key: OrgKeyInput, now: number): Promise<boolean> {
    const cols = ['org_id', 'kid', 'alg', 'pem', 'expires_at'] as const;
    const r = await this.db
      .insertInto('org_keys')
      .values({
        id: key.id,
        org_id: key.orgId,
        kid: key.kid,
        alg: key.alg,
        pem: key.pem,
        expires_at: key.expiresAt,
        revoked_at: null,
        created_at: now,
      })
      .onConflict((oc) =>
        oc
          .column('id')
          .doUpdateSet((eb) => Object.fromEntries(cols.map((c) => [c, eb.ref(`excluded.${c}`)])))
          .where(anyDistinct('org_keys', cols)),
      )
      .executeTakeFirst();
    return wrote(r);
  }

  async listKeys(orgId: string): Promise<OrgKey[]> {
    const rows = await this.db.selectFrom('org_keys').selectAll().where('org_id', '=', orgId).orderBy('created_at').orderBy('id').execute();
    return rows.map(toKey);
  }

  async getKey(id: string): Promise<OrgKey | null> {
    const r = await this.db.selectFrom('org_keys').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toKey(r) : null;
  }

  async revokeKey(id: string, now: number): Promise<boolean> {
    const r = await this.db.updateTable('org_keys').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  async upsertCallCenter(cc: CallCenterInput, now: number): Promise<boolean> {
    const r = await this.db
      .insertInto('call_centers')
      .values({ org_id: cc.orgId, api_name: cc.apiName, name: cc.name, created_at: now })
      .onConflict((oc) =>
        oc
          .columns(['org_id', 'api_name'])
          .doUpdateSet((eb) => ({ name: eb.ref('excluded.name') }))
          .where(anyDistinct('call_centers', ['name'])),
      )
      .executeTakeFirst();
    return wrote(r);
  }

  async getCallCenter(orgId: string, apiName: string): Promise<CallCenter | null> {
    const r = await this.db.selectFrom('call_centers').selectAll().where('org_id', '=', orgId).where('api_name', '=', apiName).executeTakeFirst();
    return r ? { orgId: r.org_id, apiName: r.api_name, name: r.name, createdAt: r.created_at } : null;
  }

  async listCallCenters(orgId: string): Promise<CallCenter[]> {
    const rows = await this.db.selectFrom('call_centers').selectAll().where('org_id', '=', orgId).orderBy('api_name').execute();
    return rows.map((r) => ({ orgId: r.org_id, apiName: r.api_name, name: r.name, createdAt: r.created_at }));
  }

  async upsertChannel(ch: ChannelInput, now: number): Promise<boolean> {
    const cols = ['number', 'call_center_api_name', 'flow_name'] as const;
    const r = await this.db
      .insertInto('channels')
      .values({
        org_id: ch.orgId,
        dev_name: ch.devName,
        number: ch.number,
        call_center_api_name: ch.callCenterApiName,
        flow_name: ch.flowName,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) =>
        oc
          .columns(['org_id', 'dev_name'])
          .doUpdateSet((eb) => ({ ...Object.fromEntries(cols.map((c) => [c, eb.ref(`excluded.${c}`)])), updated_at: now }))
          .where(anyDistinct('channels', cols)),
      )
      .executeTakeFirst();
    return wrote(r);
  }

  async getChannel(orgId: string, devName: string): Promise<Channel | null> {
    const r = await this.db.selectFrom('channels').selectAll().where('org_id', '=', orgId).where('dev_name', '=', devName).executeTakeFirst();
    return r ? toChannel(r) : null;
  }

  async getChannelByNumber(number: string): Promise<Channel | null> {
    const r = await this.db.selectFrom('channels').selectAll().where('number', '=', number).executeTakeFirst();
    return r ? toChannel(r) : null;
  }

  async channelAmong(numbers: readonly string[]): Promise<Channel | null> {
    // One query for the channels and a lookup per number: channels are few next to the numbers of a pool
    // addition, and thousands of IN queries would hold the event loop for a second per million numbers.
    const byNumber = new Map((await this.db.selectFrom('channels').selectAll().execute()).map((r) => [r.number, r]));
    for (const n of numbers) {
      const r = byNumber.get(n);
      if (r) return toChannel(r);
    }
    return null;
  }

  async listChannels(orgId: string): Promise<Channel[]> {
    return (await this.db.selectFrom('channels').selectAll().where('org_id', '=', orgId).orderBy('dev_name').execute()).map(toChannel);
  }

  async upsertFlow(flow: FlowInput, now: number): Promise<boolean> {
    const r = await this.db
      .insertInto('flows')
      .values({ org_id: flow.orgId, name: flow.name, definition: JSON.stringify(flow.definition), updated_at: now })
      .onConflict((oc) =>
        oc
          .columns(['org_id', 'name'])
          .doUpdateSet((eb) => ({ definition: eb.ref('excluded.definition'), updated_at: now }))
          .where(anyDistinct('flows', ['definition'])),
      )
      .executeTakeFirst();
    return wrote(r);
  }

  async getFlow(orgId: string, name: string): Promise<Flow | null> {
    const r = await this.db.selectFrom('flows').selectAll().where('org_id', '=', orgId).where('name', '=', name).executeTakeFirst();
    return r ? { orgId: r.org_id, name: r.name, definition: JSON.parse(r.definition), updatedAt: r.updated_at } : null;
  }

  async upsertAgent(agent: AgentInput, now: number): Promise<boolean> {
    const cols = ['org_id', 'sip_uri', 'webhook_url', 'max_concurrent_calls', 'token_hash'] as const;
    const r = await this.db
      .insertInto('agents')
      .values({
        name: agent.name,
        org_id: agent.orgId,
        sip_uri: agent.sipUri,
        webhook_url: agent.webhookUrl,
        max_concurrent_calls: agent.maxConcurrentCalls,
        token_hash: agent.tokenHash,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) =>
        oc
          .column('name')
          .doUpdateSet((eb) => ({ ...Object.fromEntries(cols.map((c) => [c, eb.ref(`excluded.${c}`)])), updated_at: now }))
          .where(anyDistinct('agents', cols)),
      )
      .executeTakeFirst();
    return wrote(r);
  }

  async getAgent(name: string): Promise<Agent | null> {
    const r = await this.db.selectFrom('agents').selectAll().where('name', '=', name).executeTakeFirst();
    return r ? toAgent(r) : null;
  }

  async getAgentByTokenHash(tokenHash: string): Promise<Agent | null> {
    const r = await this.db.selectFrom('agents').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
    return r ? toAgent(r) : null;
  }

  async listAgents(): Promise<Agent[]> {
    return (await this.db.selectFrom('agents').selectAll().orderBy('name').execute()).map(toAgent);
  }

  async ensurePool(country: string, now: number): Promise<boolean> {
    const r = await this.db
      .insertInto('pools')
      .values({ country, created_at: now })
      .onConflict((oc) => oc.column('country').doNothing())
      .executeTakeFirst();
    return wrote(r);
  }

  async addPoolNumbers(country: string, numbers: string[], now: number): Promise<number> {
    const insert = async (tx: Store, from: number, to: number): Promise<number> => {
      const db = (tx as KyselyStore).db;
      let added = 0;
      // Statements of 500 rows stay under SQLite's bound-parameter limit.
      for (let i = from; i < to; i += 500) {
        const rows = numbers.slice(i, Math.min(i + 500, to)).map((number) => ({ number, country, state: 'active', last_leased_at: 0, created_at: now }));
        const r = await db.insertInto('pool_numbers').values(rows).onConflict((oc) => oc.column('number').doNothing()).executeTakeFirst();
        added += Number(r.numInsertedOrUpdatedRows ?? 0n);
      }
      return added;
    };
    if (this.db.isTransaction) {
      await this.ensurePool(country, now);
      return insert(this, 0, numbers.length);
    }
    // Outside a transaction, a large addition commits POOL_ADD_CHUNK numbers at a time and lets the
    // event loop turn in between: SQLite's writer lock (and, with better-sqlite3, this thread) is never
    // held for seconds, so calls and reservations go on meanwhile (1,000,000 numbers take ~4 s).
    let added = 0;
    for (let i = 0; i === 0 || i < numbers.length; i += POOL_ADD_CHUNK) {
      added += await this.transaction(async (tx) => {
        if (i === 0) await tx.ensurePool(country, now);
        return insert(tx, i, Math.min(i + POOL_ADD_CHUNK, numbers.length));
      });
      if (i + POOL_ADD_CHUNK < numbers.length) await new Promise((resolve) => setImmediate(resolve));
    }
    return added;
  }

  async setPoolNumberState(number: string, state: PoolNumberState): Promise<boolean> {
    const r = await this.db.updateTable('pool_numbers').set({ state }).where('number', '=', number).where('state', '!=', state).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  async getPoolNumber(number: string): Promise<PoolNumber | null> {
    const r = await this.db.selectFrom('pool_numbers').selectAll().where('number', '=', number).executeTakeFirst();
    return r ? { number: r.number, country: r.country, state: r.state as PoolNumberState, lastLeasedAt: r.last_leased_at, createdAt: r.created_at } : null;
  }

  async removePoolNumber(number: string): Promise<boolean> {
    const r = await this.db.deleteFrom('pool_numbers').where('number', '=', number).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  async listPoolCountries(): Promise<string[]> {
    return (await this.db.selectFrom('pools').select('country').orderBy('country').execute()).map((r) => r.country);
  }

  async listPools(): Promise<PoolSummary[]> {
    // It counts every number of every pool: off the event loop where it can be (readRows)
    const query = this.db
      .selectFrom('pools')
      .leftJoin('pool_numbers', 'pool_numbers.country', 'pools.country')
      .select((eb) => [
        'pools.country',
        eb.fn.count<number>('pool_numbers.number').as('numbers'),
        eb.fn.sum<number>(eb.case().when('pool_numbers.state', '=', 'active').then(1).else(0).end()).as('active'),
      ])
      .groupBy('pools.country')
      .orderBy('pools.country')
      .compile();
    const rows = await this.readRows<{ country: string; numbers: unknown; active: unknown }>(query);
    return rows.map((r) => {
      const numbers = Number(r.numbers);
      const active = Number(r.active ?? 0);
      return { country: r.country, numbers, active, draining: numbers - active };
    });
  }

  async insertVoiceCall(call: VoiceCallInput, now: number): Promise<{ created: boolean; call: VoiceCall }> {
    const row: VoiceCallsTable = {
      id: call.id,
      org_id: call.orgId,
      vendor_call_key: call.vendorCallKey,
      call_center_api_name: call.callCenterApiName,
      to_number: call.toNumber,
      from_number: call.fromNumber,
      initiation_method: call.initiationMethod,
      parent_voice_call_id: call.parentVoiceCallId,
      start_time: call.startTime,
      end_time: call.endTime,
      is_active_call: call.isActiveCall === null ? null : call.isActiveCall ? 1 : 0,
      disconnect_reason: call.disconnectReason,
      call_attributes: call.callAttributes,
      call_origin: call.callOrigin,
      queue: call.queue,
      call_subtype: call.callSubtype,
      participants: json(call.participants),
      telephony_provider_name: call.telephonyProviderName,
      status: call.status,
      handoff: json(call.handoff),
      escalation: json(call.escalation),
      created_at: now,
      updated_at: now,
    };
    // ON CONFLICT DO NOTHING makes concurrent creates with one vendorCallKey race-free: one inserts,
    // the others read the winner.
    const r = await this.db.executeQuery(INSERT_VOICE_CALL.compile(this.dialect, row as unknown as Record<string, unknown>));
    if (Number(r.numAffectedRows ?? 0n) > 0) return { created: true, call: toVoiceCall(row) };
    const existing = call.vendorCallKey === null ? null : await this.getVoiceCallByVendorKey(call.orgId, call.vendorCallKey);
    if (!existing) throw new Error('voice call insert conflicted on its id');
    return { created: false, call: existing };
  }

  async getVoiceCall(orgId: string, id: string): Promise<VoiceCall | null> {
    const { rows } = await this.db.executeQuery<VoiceCallsTable>(GET_VOICE_CALL.compile(this.dialect, { id, org: orgId }));
    return rows[0] ? toVoiceCall(rows[0]) : null;
  }

  async getPartnerCall(orgId: string, id: string): Promise<PartnerCall | null> {
    type Row = Pick<VoiceCallsTable, 'id' | 'call_attributes' | 'telephony_provider_name'>;
    const [r] = (await this.db.executeQuery<Row>(GET_PARTNER_CALL.compile(this.dialect, { id, org: orgId }))).rows;
    return r ? { id: r.id, callAttributes: r.call_attributes, telephonyProviderName: r.telephony_provider_name } : null;
  }

  async getVoiceCallAnyOrg(id: string): Promise<VoiceCall | null> {
    const r = await this.db.selectFrom('voice_calls').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toVoiceCall(r) : null;
  }

  async getVoiceCallByVendorKey(orgId: string, vendorCallKey: string): Promise<VoiceCall | null> {
    const r = await this.db
      .selectFrom('voice_calls')
      .selectAll()
      .where('org_id', '=', orgId)
      .where('vendor_call_key', '=', vendorCallKey)
      .executeTakeFirst();
    return r ? toVoiceCall(r) : null;
  }

  async updateVoiceCall(orgId: string, id: string, patch: VoiceCallPatch, now: number): Promise<VoiceCall | null> {
    const set: Record<string, unknown> = { updated_at: now };
    for (const [key, value] of Object.entries(patch) as [keyof VoiceCallPatch, unknown][]) {
      if (value === undefined) continue;
      set[PATCH_COLUMNS[key]] = patchValue(key, value);
    }
    const r = await this.db.updateTable('voice_calls').set(set).where('id', '=', id).where('org_id', '=', orgId).executeTakeFirst();
    if (r.numUpdatedRows === 0n) return null;
    return this.getVoiceCall(orgId, id);
  }

  async patchVoiceCall(orgId: string, id: string, patch: VoiceCallPatch, now: number, keepStatus: readonly string[] = []): Promise<boolean> {
    const params: Record<string, unknown> = { id, org: orgId, updated_at: now };
    const keys: (keyof VoiceCallPatch)[] = [];
    for (const [key, value] of Object.entries(patch) as [keyof VoiceCallPatch, unknown][]) {
      if (value === undefined) continue;
      keys.push(key);
      params[PATCH_COLUMNS[key]] = patchValue(key, value);
    }
    // The status is decided by the row itself, in the one statement: no read, no race with an escalation's write
    const keep = patch.status !== undefined ? keepStatus : [];
    keep.forEach((k, i) => (params[`keep_${i}`] = k));
    const r = await this.db.executeQuery(patchStatement(keys, keep.length).compile(this.dialect, params));
    return Number(r.numAffectedRows ?? 0n) > 0;
  }

  async listChildCalls(orgId: string, parentId: string, limit?: number): Promise<VoiceCall[]> {
    const q = this.db.selectFrom('voice_calls').selectAll().where('org_id', '=', orgId).where('parent_voice_call_id', '=', parentId);
    if (limit === undefined) return (await q.orderBy('created_at').orderBy('id').execute()).map(toVoiceCall);
    const newest = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return newest.reverse().map(toVoiceCall);
  }

  async countChildCalls(orgId: string, parentId: string): Promise<number> {
    const r = await this.db
      .selectFrom('voice_calls')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('org_id', '=', orgId)
      .where('parent_voice_call_id', '=', parentId)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  async listRecentCalls(orgId: string | null, limit: number): Promise<VoiceCall[]> {
    let q = this.db.selectFrom('voice_calls').selectAll();
    if (orgId !== null) q = q.where('org_id', '=', orgId);
    return (await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute()).map(toVoiceCall);
  }

  async claimJti(orgId: string, jti: string, expiresAt: number, now: number): Promise<boolean> {
    // An expired record of the same jti may be reclaimed; a live one may not.
    const r = await this.db
      .insertInto('used_jtis')
      .values({ org_id: orgId, jti, expires_at: expiresAt })
      .onConflict((oc) =>
        oc
          .columns(['org_id', 'jti'])
          .doUpdateSet({ expires_at: expiresAt })
          .where('used_jtis.expires_at', '<=', now),
      )
      .executeTakeFirst();
    return wrote(r);
  }

  async purgeExpiredJtis(now: number): Promise<number> {
    const r = await this.db.deleteFrom('used_jtis').where('expires_at', '<=', now).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}

/** Splits a migration file on statement-ending semicolons; migrations keep semicolons out of literals. */
export function splitSql(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => !line.trim().startsWith('--'))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
