/**
 * The SIP hand-off (SPEC §6): INVITEs to a pool number (path A, lease) or to a channel with a
 * UUI (path B, token), resolved to their context, turned into the AI leg's VoiceCall (VC2),
 * routed by the channel's flow, and proxied (record-routed) or redirected to the chosen agent.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { AddressList } from '../domain/address-list.js';
import { callerNumber, numberFromUri, type CountryCode } from '../domain/caller-id.js';
import { isHandoffError } from '../domain/errors.js';
import { newVoiceCallId, normalizeSfId, toId18, VOICE_CALL_PREFIX } from '../domain/ids.js';
import { normalizeDomain } from '../domain/org-domain.js';
import { decodeUuiValue, parseUuiContext, type UuiContext } from '../domain/uui.js';
import type { WebhookEventType } from '../domain/webhook-signature.js';
import type { CallControl } from '../services/escalation.js';
import type { Services } from '../services/index.js';
import { voiceCallView } from '../services/voice-calls.js';
import { GroupCommit } from '../store/group-commit.js';
import type { PartnerCall } from '../store/store.js';
import type { Agent, Channel, VoiceCall, VoiceCallPatch } from '../store/types.js';
import { splitList } from './headers.js';
import type { SipRequest } from './message.js';
import { IN_DIALOG_METHODS, StatefulProxy, type ProxyCall, type ProxyCallEvents } from './proxy.js';
import { LocalAgentSlots, type AgentSlots } from './agent-slots.js';
import { ingressRateLimit } from './rate-limit.js';
import { SipError, SipServer, type SipServerOptions } from './sip-server.js';
import type { ServerTransaction, TransactionOptions } from './transactions.js';
import type { SipSource } from './transport.js';
import { formatSipUri, parseUri, withoutUriHeaders, type SipUri } from './uri.js';

/** Where and how the ingress listens and hands calls off (from `Settings`, see config.ts). */
export interface SipHandoffSettings {
  host: string;
  /** UDP and TCP port (0: a free one each; see {@link SipHandoff.addresses}). */
  port: number;
  tls: { port: number; cert: string; key: string } | null;
  advertisedHost?: string | undefined;
  mode: 'proxy' | 'redirect';
  defaultCountry: CountryCode;
  /** Requests per second per source address; 0 disables the limit. */
  rateLimit: number;
  uuiMaxDecoded: number;
  /** An answered call still up after this many seconds is ended with a BYE to both parties (0 or absent: never). */
  maxCallSeconds?: number;
  /** §16.6 Timer C of proxied INVITEs, in seconds (absent: 181; `timerCMs` wins). */
  timerCSeconds?: number;
  /** Path A calls matching no live lease go to this channel (E.164) as inbound calls; absent or null: 404. */
  noLeaseChannel?: string | null;
  /** Initial INVITEs get 503 at once while this many hand-offs are being resolved (0 or absent: no bound). */
  maxPendingInvites?: number;
  /** ...or while the event loop is busy this share of the time (%, for a second (four 250 ms periods) in a row; 0 or absent: not checked). */
  maxLoad?: number;
}

/** The hand-off settings of a SIP thread. One function builds them everywhere (see warm-up.ts). */
export function handoffSettings(host: string, port: number, sip: Omit<SipHandoffSettings, 'host' | 'port'>): SipHandoffSettings {
  return { host, port, ...sip };
}

export interface SipHandoffOptions {
  services: Services;
  logger: Logger;
  settings: SipHandoffSettings;
  /** Trunk allow-lists by 15-char org ID: INVITEs for such an org from elsewhere get 403. */
  trunks?: ReadonlyMap<string, AddressList>;
  /** Agents' concurrent-call counts (default: this thread's; SIP workers share one table). */
  agentSlots?: AgentSlots;
  /** Listeners instead of the settings' host and ports (a SIP worker's own ports and front, see workers.ts). */
  listen?: Pick<SipServerOptions, 'udp' | 'tcp' | 'tls' | 'front'>;
  /** Transaction timers (tests shorten T1); `retransmit2xx` is always false (§16.7 step 10). */
  transaction?: TransactionOptions;
  /** §16.6 Timer C of proxied INVITEs (default 181 s). */
  timerCMs?: number;
}

/** Methods this element forwards as a proxy (RFC 3261 §16.3 checks apply to them). */
const FORWARDED_METHODS = ['INVITE', 'ACK', 'CANCEL', ...IN_DIALOG_METHODS];
/** Headers a partner's INVITE must not carry to the agent: the UUI holds its token; X-Handoff-* are ours. */
const UUI_HEADERS = ['User-to-User', 'X-User-to-User'];
const NO_MATCH = 'No matching hand-off';
const DUPLICATE = 'this Call-ID already has a hand-off';
/** Statuses an ending leg keeps (the escalation wrote it; the hang-up that follows does not undo it). */
const KEEP_STATUS = ['Escalated'];
/** Refusals already logged with the call's VoiceCall ID (after VC2 was created). */
const LOGGED = new WeakSet<object>();
/** Retry-After of the 503 sent when the chosen agent and the fallback are full. */
const BUSY_RETRY_AFTER = 5;
/** Retry-After of the 503 sent when the ingress is overloaded. */
const OVERLOAD_RETRY_AFTER = 1;
/** How often the event loop's utilisation is sampled (ms). */
const LOAD_SAMPLE_MS = 250;
/** Periods in a row the loop must be saturated before new calls are shed. */
const SATURATED_PERIODS = 4;

/** A Warning value (RFC 3261 §20.43) with the pseudonym `handoff`; the text is caller-safe. */
function warning(text: string): string {
  return `399 handoff "${text.replace(/[\r\n\0]/g, '').replace(/[\\"]/g, (c) => '\\' + c).slice(0, 200)}"`;
}

/** A refusal with a Warning (and optional extra headers such as Reason or Retry-After). */
function refuse(status: number, text: string, headers: Array<[string, string]> = []): SipError {
  return new SipError(status, { headers: [['Warning', warning(text)], ...headers] });
}

/** An RFC 3326 Reason value for a SIP status. */
function reasonHeader(status: number, text: string): [string, string] {
  return ['Reason', `SIP ;cause=${status} ;text="${text.replace(/[\r\n\0"\\]/g, '').slice(0, 200)}"`];
}

/**
 * Every UUI value an INVITE carries: `User-to-User` and `X-User-to-User` header values (RFC 7433;
 * a raw JSON value counts as one, its commas are its own) and `User-to-User` URI headers of the
 * Request-URI. More than one is invalid (SPEC §6), so they are counted, not merged.
 *
 * @example
 * uuiValues(invite); // ['7B22...;encoding=hex']
 */
export function uuiValues(req: SipRequest): string[] {
  const out: string[] = [];
  for (const name of UUI_HEADERS) {
    for (const line of req.headers.getLines(name)) {
      const v = line.trim();
      if (v.startsWith('{')) {
        const comma = v.indexOf(',', v.lastIndexOf('}') + 1);
        out.push(...(comma < 0 ? [v] : [v.slice(0, comma), v.slice(comma + 1)]));
      } else out.push(...splitList(v).filter((e) => e !== ''));
    }
  }
  const uri = req.requestUri;
  if (uri.kind === 'sip') {
    for (const [name, value] of uri.headers) if (UUI_HEADERS.some((h) => h.toLowerCase() === name.toLowerCase())) out.push(value);
  }
  return out;
}

/** What a resolved INVITE hands to {@link SipHandoff.deliver}. */
interface Resolved {
  path: 'number' | 'uui';
  orgId: string;
  channel: Channel;
  caller: string | null;
  partner: PartnerCall | null;
  transactionId: string | null;
  leaseUid?: string;
  provider?: string | null;
  inputs: Record<string, unknown>;
  /** Set when a path A call matched no lease and went to the no-lease channel: why it matched none. */
  noLease?: string;
}

/** What the flow and the agents' capacity decided for a hand-off, before VC2 is written. */
type Plan =
  | { kind: 'refuse'; status: number; reason: string; error: SipError }
  | { kind: 'agent'; agent: Agent; target: SipUri; rule: string | null };

/** VC2 as over: not active, ended now, with its status and disconnect reason. */
function ended(call: VoiceCall, now: number, status: string, disconnectReason: string): void {
  call.status = status;
  call.disconnectReason = disconnectReason;
  call.isActiveCall = false;
  call.endTime = new Date(now).toISOString();
}

/** The flow's field changes on the in-memory VC2 (VoiceCallPatch keys are VoiceCall keys). */
function applyPatch(call: VoiceCall, patch: VoiceCallPatch): void {
  for (const [key, value] of Object.entries(patch)) if (value !== undefined) (call as unknown as Record<string, unknown>)[key] = value;
}

/** The state of one handed-off call (VC2) while this instance proxies it. */
interface HandoffCall {
  /** VC2, 15 chars. */
  id: string;
  orgId: string;
  agent: Agent;
  handoff: Record<string, unknown>;
  log: Logger;
  /** performance.now() when the INVITE arrived. */
  startedAt: number;
  /** Record updates of this call, in order. */
  chain: Promise<void>;
  released: boolean;
  /** Ends an answered call that outlives maxCallSeconds. */
  limit?: NodeJS.Timeout;
}

/**
 * The SIP ingress: a {@link SipServer} whose INVITE handler resolves hand-offs, with a
 * {@link StatefulProxy} to the agents. Implements {@link CallControl} for escalation.
 *
 * Agent capacity (`maxConcurrentCalls`) is counted in this process (by every SIP worker of it
 * together): with several instances each enforces the limit on the calls it proxies itself.
 *
 * @example
 * const sip = new SipHandoff({ services, logger, settings: { host: '127.0.0.1', port: 5060, tls: null,
 *   mode: 'proxy', defaultCountry: 'US', rateLimit: 200, uuiMaxDecoded: 1024 } });
 * await sip.start();
 * services.escalation.callControl = sip;
 * await sip.endCall('0LQxx0000004ABcGAM', 'escalated'); // BYE to the agent and to the partner
 * await sip.close();
 */
export class SipHandoff implements CallControl {
  readonly sip: SipServer;
  private readonly proxy: StatefulProxy<HandoffCall>;
  private readonly services: Services;
  private readonly log: Logger;
  private readonly settings: SipHandoffSettings;
  private readonly trunks: ReadonlyMap<string, AddressList>;
  private readonly slots: AgentSlots;
  /** Calls this SIP thread proxies, per agent (the gauge; workers' gauges add up). */
  private readonly ownByAgent = new Map<string, number>();
  private readonly byVoiceCall = new Map<string, ProxyCall<HandoffCall>>();
  private readonly inflight = new Set<Promise<unknown>>();
  /** VC2 writes of all calls share commits (SQLite). */
  private readonly writer: GroupCommit;
  private closing = false;
  /** Initial INVITEs being resolved and written, not yet forwarded or answered. */
  private pending = 0;
  /** Consecutive sample periods in which the event loop was busy at least maxLoad % of the time. */
  private saturated = 0;
  private loadTimer: NodeJS.Timeout | undefined;

  constructor(opts: SipHandoffOptions) {
    const s = opts.settings;
    this.services = opts.services;
    this.writer = GroupCommit.of(opts.services.store);
    this.log = opts.logger.child({ component: 'sip' });
    this.settings = s;
    this.trunks = opts.trunks ?? new Map();
    this.slots = opts.agentSlots ?? new LocalAgentSlots();
    const rateLimit = ingressRateLimit(s.rateLimit);
    this.sip = new SipServer({
      ...(opts.listen ?? {
        udp: { host: s.host, port: s.port },
        tcp: { host: s.host, port: s.port },
        ...(s.tls ? { tls: { host: s.host, port: s.tls.port, cert: s.tls.cert, key: s.tls.key } } : {}),
      }),
      ...(s.advertisedHost ? { advertisedHost: s.advertisedHost } : {}),
      ...(rateLimit ? { rateLimit } : {}),
      forwardedMethods: FORWARDED_METHODS,
      transaction: { ...opts.transaction, retransmit2xx: false },
    });
    const timerCMs = opts.timerCMs ?? (s.timerCSeconds ? s.timerCSeconds * 1000 : undefined);
    this.proxy = new StatefulProxy<HandoffCall>(this.sip, timerCMs !== undefined ? { timerCMs } : {});
    this.sip.onRequest('INVITE', (tx) => this.onInvite(tx));
    this.services.metrics.watchSip(() => this.sip.counters.snapshot());
  }

  async start(): Promise<void> {
    await this.sip.start();
    if (this.settings.maxLoad) {
      // Event-loop utilisation, not lateness: a loop draining a backlog of datagrams cycles quickly
      // (so is never late) but is busy all the time
      let last = performance.eventLoopUtilization();
      this.loadTimer = setInterval(() => {
        const now = performance.eventLoopUtilization();
        const busy = performance.eventLoopUtilization(now, last).utilization * 100;
        this.saturated = busy >= this.settings.maxLoad! ? this.saturated + 1 : 0;
        last = now;
      }, LOAD_SAMPLE_MS);
      this.loadTimer.unref();
    }
    this.log.info({ addresses: this.sip.addresses(), mode: this.settings.mode }, 'SIP ingress listening');
  }

  /** Bound address and port of each listener. */
  addresses(): ReturnType<SipServer['addresses']> {
    return this.sip.addresses();
  }

  /** Calls proxied to `agent` by this instance (all its SIP workers) and not yet ended. */
  activeCalls(agent: string): number {
    return this.slots.count(agent);
  }

  /**
   * Ends a call this instance proxies (SPEC §7 escalation): an answered call gets a BYE on the
   * agent leg and on the partner leg and its VoiceCall is marked ended with `reason`; a call
   * still ringing is cancelled. False when the call is not active on this instance.
   *
   * @example
   * await sip.endCall(vc2Id, 'escalated'); // true: both legs received a BYE
   */
  async endCall(voiceCallId: string, reason: string): Promise<boolean> {
    const id = normalizeSfId(voiceCallId, VOICE_CALL_PREFIX);
    const call = id === null ? undefined : this.byVoiceCall.get(id);
    if (!call) return false;
    const c = call.data; // before end(): the proxy lets go of it once the call's events have run
    if (!this.proxy.end(call, reason)) return false;
    await c.chain;
    return true;
  }

  /**
   * Stops taking calls (new INVITEs get 503), lets INVITEs being resolved finish, answers the ones
   * still waiting for their agent with 503 (and CANCELs them downstream), ends answered calls with a
   * BYE to both parties (Reason "shutdown": their in-dialog requests are routed through this instance,
   * so they could not go on without it), waits for the VoiceCall updates, then closes the listeners.
   */
  async close(): Promise<void> {
    this.closing = true;
    await this.settle(5000);
    for (const call of [...this.proxy.calls()]) {
      if (call.state === 'confirmed') this.proxy.end(call, 'shutdown');
      else this.proxy.abort(call, 503, true);
    }
    await this.settle(5000);
    // a moment for the BYEs, CANCELs and final responses to leave before the sockets close
    await new Promise((r) => setTimeout(r, 50));
    clearInterval(this.loadTimer);
    await this.sip.close();
  }

  private async settle(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => undefined);
    return p;
  }

  // --- INVITE ---

  private onInvite(tx: ServerTransaction): void {
    if (tx.request.to.tag !== undefined) {
      this.proxy.routeInDialog(tx); // re-INVITE
      return;
    }
    const startedAt = performance.now();
    if (this.closing) {
      tx.reply(503, { headers: [['Retry-After', String(BUSY_RETRY_AFTER)], ['Warning', warning('shutting down')]] });
      tx.release();
      this.observe(startedAt, 503);
      return;
    }
    const overload = this.overloaded();
    if (overload) {
      // Shed new calls before any work, so the calls already admitted keep their timers and answers
      this.services.metrics.sipOverloadRejections.inc({ cause: overload });
      tx.reply(503, { headers: [['Retry-After', String(OVERLOAD_RETRY_AFTER)], ['Warning', warning('overloaded, try again')]] });
      tx.release(); // a flood's INVITEs are not kept whole until their ACK (or Timer H)
      this.observe(startedAt, 503);
      return;
    }
    void this.track(this.handle(tx, startedAt));
  }

  /** Why a new call would be shed now (too many 'pending' hand-offs, or a busy event loop: 'load'), or null. */
  private overloaded(): 'pending' | 'load' | null {
    const { maxPendingInvites, maxLoad } = this.settings;
    if (maxPendingInvites && this.pending >= maxPendingInvites) return 'pending';
    // A second in a row: a cold start's compilation or a burst is not an overload
    if (maxLoad && this.saturated >= SATURATED_PERIODS) return 'load';
    return null;
  }

  private async handle(tx: ServerTransaction, startedAt: number): Promise<void> {
    this.pending++;
    try {
      await this.deliver(tx, await this.resolve(tx), startedAt);
    } catch (err) {
      this.refuse(tx, err, startedAt);
    } finally {
      this.pending--;
    }
  }

  /** Path A or B: the hand-off context of the INVITE, or a SipError to answer. Cheapest checks first. */
  private async resolve(tx: ServerTransaction): Promise<Resolved> {
    const req = tx.request;
    const country = this.settings.defaultCountry;
    const called = numberFromUri(req.requestUri, country);
    if (called === null) throw refuse(404, NO_MATCH);
    const uui = uuiValues(req);
    const channel = await this.services.refs.channelByNumber(called);
    if (channel) return this.resolveUui(tx, channel, uui);
    if (await this.services.store.getPoolNumber(called)) return this.resolveNumber(tx, called);
    throw refuse(404, NO_MATCH);
  }

  private resolution(path: 'sip-number' | 'sip-uui', outcome: string): void {
    this.services.metrics.resolutions.inc({ path, outcome });
  }

  private sourceAllowed(orgId: string, src: SipSource): boolean {
    const list = this.trunks.get(orgId);
    return !list || list.has(src.remoteAddress);
  }

  /** Path A: a pool number; the (number, caller) lease is consumed once. */
  private async resolveNumber(tx: ServerTransaction, called: string): Promise<Resolved> {
    const req = tx.request;
    const caller = callerNumber({ pAssertedIdentity: req.headers.getAll('P-Asserted-Identity'), from: req.headers.get('from') }, this.settings.defaultCountry);
    if (caller === null) {
      this.resolution('sip-number', 'unknown_caller');
      throw refuse(404, NO_MATCH);
    }
    if (this.trunks.size > 0) {
      // checked before the lease is spent: a call from an address the org does not allow consumes nothing
      const lease = await this.services.leases.peek(called, caller);
      if (lease && !this.sourceAllowed(lease.orgId, tx.source)) {
        this.resolution('sip-number', 'source_not_allowed');
        throw refuse(403, 'source address not allowed for this trunk');
      }
    }
    const result = await this.services.leases.resolve(called, caller);
    if (!result.ok) {
      this.resolution('sip-number', result.reason === 'consumed' ? 'consumed_already' : result.reason);
      const fallback = await this.noLeaseFallback(tx, caller, result.reason);
      if (fallback) return fallback;
      throw refuse(404, NO_MATCH); // never say which part mismatched
    }
    const lease = result.lease;
    const channel = await this.services.refs.channelByNumber(lease.toNumber);
    if (!channel || channel.orgId !== lease.orgId) {
      this.resolution('sip-number', 'channel_not_found');
      throw refuse(404, NO_MATCH);
    }
    if (!this.sourceAllowed(lease.orgId, tx.source)) {
      this.resolution('sip-number', 'source_not_allowed');
      throw refuse(403, 'source address not allowed for this trunk');
    }
    this.resolution('sip-number', 'consumed');
    const partner = lease.callId ? await this.services.store.getPartnerCall(lease.orgId, lease.callId) : null;
    return {
      path: 'number',
      orgId: lease.orgId,
      channel,
      caller,
      partner,
      transactionId: lease.transactionId,
      leaseUid: lease.uid,
      provider: lease.provider,
      inputs: {},
    };
  }

  /**
   * A path A call that matched no lease, as a new inbound call to the configured no-lease channel
   * (its flow decides; `noLease` tells it why), or null when none is configured or allowed.
   */
  private async noLeaseFallback(tx: ServerTransaction, caller: string, reason: string): Promise<Resolved | null> {
    const number = this.settings.noLeaseChannel;
    if (!number) return null;
    const channel = await this.services.refs.channelByNumber(number);
    if (!channel || !this.sourceAllowed(channel.orgId, tx.source)) return null;
    this.resolution('sip-number', 'no_lease_channel');
    return { path: 'number', orgId: channel.orgId, channel, caller, partner: null, transactionId: null, inputs: { noLease: reason }, noLease: reason };
  }

  /** Path B: a channel number with a UUI; the token is verified after every cheaper check. */
  private async resolveUui(tx: ServerTransaction, channel: Channel, values: string[]): Promise<Resolved> {
    const fail = (outcome: string, err: SipError): never => {
      this.resolution('sip-uui', outcome);
      throw err;
    };
    if (values.length === 0) fail('missing_uui', refuse(400, 'User-to-User: the hand-off context is required'));
    if (values.length > 1) fail('invalid_uui', refuse(400, 'User-to-User: more than one UUI value'));
    if (!this.sourceAllowed(channel.orgId, tx.source)) fail('source_not_allowed', refuse(403, 'source address not allowed for this trunk'));
    let ctx: UuiContext;
    try {
      ctx = parseUuiContext(decodeUuiValue(values[0]!, this.settings.uuiMaxDecoded));
    } catch (err) {
      return fail('invalid_uui', refuse(400, isHandoffError(err) ? err.message : 'User-to-User: malformed'));
    }
    const domain = normalizeDomain(ctx.scrt2Domain);
    if (domain === null) fail('invalid_uui', refuse(400, 'User-to-User: scrt2Domain is not a domain name'));
    if (ctx.orgId !== null) {
      // Both would be 403 after the signature check too, so refusing first saves the crypto
      const claimed = await this.services.refs.org(ctx.orgId);
      if (!claimed || claimed.domain !== domain) fail('domain_mismatch', refuse(403, 'scrt2Domain is not the org\'s domain'));
    }
    let orgId: string;
    try {
      // A UDP retransmission never gets here (the transaction absorbs it), so a jti is claimed once per call
      orgId = (await this.services.auth.verify(ctx.token)).orgId;
    } catch (err) {
      if (!isHandoffError(err) || err.code !== 'INVALID_TOKEN') throw err;
      this.services.metrics.authFailures.inc({ reason: String(err.details?.['reason'] ?? 'unknown') });
      return fail('invalid_token', refuse(403, `token refused (${String(err.details?.['reason'] ?? 'invalid')})`));
    }
    if (ctx.orgId !== null && ctx.orgId !== orgId) fail('org_mismatch', refuse(403, 'orgId does not match the token'));
    const org = await this.services.refs.org(orgId);
    if (!org || org.domain !== domain) fail('domain_mismatch', refuse(403, 'scrt2Domain is not the org\'s domain'));
    if (channel.orgId !== orgId) fail('channel_not_found', refuse(404, 'no such channel in this org'));
    const partner = ctx.callId === null ? null : await this.services.store.getPartnerCall(orgId, ctx.callId);
    if (ctx.callId !== null && !partner) fail('call_not_found', refuse(404, 'callId: no such VoiceCall in this org'));
    this.resolution('sip-uui', 'resolved');
    const req = tx.request;
    return {
      path: 'uui',
      orgId,
      channel,
      caller: callerNumber({ pAssertedIdentity: req.headers.getAll('P-Asserted-Identity'), from: req.headers.get('from') }, this.settings.defaultCountry),
      partner,
      transactionId: ctx.transactionId,
      inputs: ctx.extra,
    };
  }

  // --- hand-off ---

  /**
   * Builds VC2, runs the channel's flow, picks an agent with room, and writes VC2 once with the
   * outcome and its webhook events; then proxies (or redirects) the INVITE to the agent, or refuses it.
   */
  private async deliver(tx: ServerTransaction, r: Resolved, startedAt: number): Promise<void> {
    const req = tx.request;
    if (tx.cancelled) throw refuse(487, 'cancelled');
    const { services } = this;
    const now = services.clock.now();
    const id = newVoiceCallId();
    const handoff: Record<string, unknown> = {
      path: r.path,
      transactionId: r.transactionId,
      partnerVoiceCallId: r.partner ? toId18(r.partner.id) : null,
      channel: r.channel.devName,
      ...(r.leaseUid !== undefined ? { leaseUid: r.leaseUid } : {}),
      sipCallId: req.callId,
      sourceIp: tx.source.remoteAddress,
      ...(r.provider ? { provider: r.provider } : {}),
      ...(r.noLease !== undefined ? { noLease: r.noLease } : {}),
    };
    const call: VoiceCall = {
      id,
      orgId: r.orgId,
      vendorCallKey: `sip:${req.callId}`,
      callCenterApiName: r.channel.callCenterApiName,
      toNumber: r.channel.number,
      fromNumber: r.caller,
      // a call that matched no lease carries no hand-off: it is the channel's own inbound call
      initiationMethod: r.noLease !== undefined ? 'Inbound' : 'Transfer',
      parentVoiceCallId: r.partner?.id ?? null,
      startTime: new Date(now).toISOString(),
      endTime: null,
      isActiveCall: true,
      disconnectReason: null,
      // the partner's callAttributes are the flow's input for the AI leg too
      callAttributes: r.partner?.callAttributes ?? null,
      callOrigin: null,
      queue: null,
      callSubtype: null,
      participants: null,
      telephonyProviderName: r.provider ?? r.partner?.telephonyProviderName ?? null,
      status: 'Routing',
      handoff,
      escalation: null,
      createdAt: now,
      updatedAt: now,
    };
    const log = this.log.child({ voiceCallId: toId18(id), transactionId: r.transactionId, orgId: r.orgId });
    let plan: Plan;
    try {
      plan = await this.plan(tx, r, call, log);
    } catch (err) {
      log.error({ err }, 'hand-off failed');
      plan = { kind: 'refuse', status: 500, reason: 'internal error', error: refuse(500, 'internal error') };
    }
    if (plan.kind === 'refuse') return this.refuseLeg(r, call, log, plan);

    const { agent, target, rule } = plan;
    const routedEvent = { agent: agent.name, path: r.path, rule, partnerVoiceCallId: handoff['partnerVoiceCallId'] };
    call.handoff = { ...handoff, agent: agent.name, routedAt: new Date(services.clock.now()).toISOString() };
    const context: Array<[string, string]> = [
      ['X-Handoff-Voice-Call-Id', toId18(id)],
      ['X-Handoff-Partner-Voice-Call-Id', r.partner ? toId18(r.partner.id) : ''],
      ['X-Handoff-Transaction-Id', r.transactionId ?? ''],
      ['X-Handoff-Org-Id', toId18(r.orgId)],
    ];
    if (this.settings.mode === 'redirect') {
      this.release(agent);
      ended(call, services.clock.now(), 'Redirected', 'redirected');
      if (!(await this.insertLeg(call, 'call.routed', routedEvent))) throw refuse(482, DUPLICATE);
      const contact = formatSipUri({ ...withoutUriHeaders(target), params: [...target.params], headers: context });
      tx.reply(302, { headers: [['Contact', `<${contact.raw}>`]] });
      tx.release();
      this.observe(startedAt, 302);
      log.info({ agent: agent.name, path: r.path }, 'hand-off redirected to the agent');
      return;
    }

    call.status = 'Routed';
    let inserted: boolean;
    try {
      inserted = await this.insertLeg(call, 'call.routed', routedEvent);
    } catch (err) {
      this.release(agent);
      throw err;
    }
    if (!inserted) {
      this.release(agent);
      throw refuse(482, DUPLICATE);
    }
    const hc: HandoffCall = { id, orgId: r.orgId, agent, handoff: call.handoff, log, startedAt, chain: Promise.resolve(), released: false };
    if (tx.cancelled || tx.finalSent) {
      // CANCELled while VC2 was written: the INVITE never leaves for the agent
      this.forget(hc);
      this.queueFinish(hc, { status: 'Failed', disconnectReason: 'sip-487' }, { reason: 'cancelled', sipStatus: 487 });
      await hc.chain;
      throw refuse(487, 'cancelled');
    }
    const strip = [...UUI_HEADERS, ...new Set([...req.headers.entries()].map(([n]) => n).filter((n) => /^x-handoff-/i.test(n)))];
    let pc: ProxyCall<HandoffCall>;
    try {
      pc = this.proxy.forward(tx, { target: withoutUriHeaders(target), remove: strip, add: context, data: hc, events: this.events });
    } catch (err) {
      log.error({ err }, 'hand-off failed');
      this.forget(hc);
      this.queueFinish(hc, { status: 'Failed', disconnectReason: 'sip-500' }, { reason: 'internal error', sipStatus: 500 });
      await hc.chain;
      const error = refuse(500, 'internal error');
      LOGGED.add(error);
      throw error;
    }
    this.byVoiceCall.set(id, pc);
    log.info({ agent: agent.name, path: r.path, rule }, 'hand-off routed to the agent');
  }

  /**
   * The flow's decision for VC2 (its field changes applied to `call`) and an agent with a free slot
   * (taken), or the refusal to answer. Writes nothing.
   */
  private async plan(tx: ServerTransaction, r: Resolved, call: VoiceCall, log: Logger): Promise<Plan> {
    const routing = this.services.routing;
    const no = (status: number, reason: string, headers: Array<[string, string]> = []): Plan => ({ kind: 'refuse', status, reason, error: refuse(status, reason, headers) });
    let decided;
    try {
      decided = await routing.decide({ orgId: r.orgId, channel: r.channel, call, path: r.path, inputs: r.inputs });
    } catch (err) {
      const status = isHandoffError(err) ? err.sipStatus : 500;
      return { kind: 'refuse', status, reason: 'routing failed', error: refuse(status, isHandoffError(err) ? err.message : 'routing failed') };
    }
    applyPatch(call, decided.patch);
    const decision = decided.decision;
    if (decision.reject) {
      const text = decision.reject.reason ?? 'Rejected by the channel flow';
      return no(decision.reject.status, text, [reasonHeader(decision.reject.status, text)]);
    }
    if (!decided.agent) {
      const text = decision.queue ? `No AI agent: the flow chose queue ${decision.queue}` : 'No AI agent available';
      return no(480, text, [reasonHeader(480, text)]);
    }
    let agent = decided.agent;
    if (!this.take(agent)) {
      const fallback = await routing.fallbackAgent(r.orgId, r.channel, agent);
      if (!fallback || !this.take(fallback)) {
        const text = `Agent ${agent.name} is at capacity`;
        return no(503, text, [['Retry-After', String(BUSY_RETRY_AFTER)], reasonHeader(503, text)]);
      }
      log.info({ agent: fallback.name, full: agent.name }, 'agent at capacity: flow fallback agent chosen');
      agent = fallback;
    }
    const target = parseUri(agent.sipUri);
    if (!target || target.kind !== 'sip') {
      this.release(agent);
      return no(500, `Agent ${agent.name} has no usable SIP URI`);
    }
    if (tx.cancelled) {
      this.release(agent);
      return no(487, 'cancelled');
    }
    return { kind: 'agent', agent, target, rule: decision.ruleName };
  }

  /** A hand-off that reaches no agent: VC2 is written over (Failed) with its events, then the refusal is thrown. */
  private async refuseLeg(r: Resolved, call: VoiceCall, log: Logger, plan: Extract<Plan, { kind: 'refuse' }>): Promise<never> {
    ended(call, this.services.clock.now(), 'Failed', `sip-${plan.status}`);
    if (!(await this.insertLeg(call, 'call.ended', { reason: plan.reason, sipStatus: plan.status }))) throw refuse(482, DUPLICATE);
    log.info({ status: plan.status, reason: plan.reason, path: r.path }, 'hand-off refused');
    LOGGED.add(plan.error);
    throw plan.error;
  }

  /**
   * Writes VC2 with voiceCall.created and `event`, in one (group-committed) transaction; false when
   * the Call-ID already has a hand-off (a re-sent INVITE on a new transaction: the first owns the record).
   */
  private insertLeg(call: VoiceCall, event: WebhookEventType, data: Record<string, unknown>): Promise<boolean> {
    const { webhooks } = this.services;
    return this.writer.run(async (st) => {
      const { created } = await st.insertVoiceCall(call, call.createdAt);
      if (!created) return false;
      if (await webhooks.wants(call.orgId, 'voiceCall.created', st)) {
        await webhooks.emit(st, { orgId: call.orgId, type: 'voiceCall.created', voiceCallId: call.id, data: voiceCallView(call) });
      }
      await webhooks.emitIfWanted(st, { orgId: call.orgId, type: event, voiceCallId: call.id, data });
      return true;
    });
  }

  private readonly events: ProxyCallEvents<HandoffCall> = {
    onAnswered: (pc) => {
      const c = pc.data;
      this.observe(c.startedAt, 200);
      c.handoff = { ...c.handoff, answeredAt: new Date(this.services.clock.now()).toISOString() };
      this.write(c, { status: 'Answered', handoff: c.handoff }, 'call.answered', { agent: c.agent.name });
      c.log.info({ agent: c.agent.name }, 'agent answered');
      const max = this.settings.maxCallSeconds;
      if (max) {
        // A party that vanished without a BYE would hold its agent slot and dialog state forever
        c.limit = setTimeout(() => this.proxy.end(pc, 'max-duration'), max * 1000);
        c.limit.unref();
      }
    },
    onFailed: (pc, status) => {
      const c = pc.data;
      this.observe(c.startedAt, status);
      this.forget(c);
      const reason = pc.endReason ?? `sip-${status}`;
      c.log.info({ agent: c.agent.name, status }, 'hand-off failed');
      this.queueFinish(c, { status: 'Failed', disconnectReason: reason }, { reason, sipStatus: status });
    },
    onEnded: (pc, by, reason) => {
      const c = pc.data;
      this.forget(c);
      const why = by === 'caller' ? 'caller-hangup' : by === 'callee' ? 'agent-hangup' : (reason ?? 'ended');
      c.log.info({ agent: c.agent.name, by: by === 'callee' ? 'agent' : by, reason: why }, 'call ended');
      this.queueFinish(c, { status: 'Ended', disconnectReason: why }, { reason: why });
    },
  };

  /** Releases the agent's slot and forgets the call (once). */
  private forget(c: HandoffCall): void {
    clearTimeout(c.limit);
    this.byVoiceCall.delete(c.id);
    if (!c.released) {
      c.released = true;
      this.release(c.agent);
    }
  }

  /**
   * Marks VC2 over (isActiveCall false, endTime) with call.ended, after the updates queued before it.
   * An escalated call keeps its 'Escalated' status.
   */
  private queueFinish(c: HandoffCall, patch: VoiceCallPatch & { status: string; disconnectReason: string }, data: Record<string, unknown>): void {
    const endTime = new Date(this.services.clock.now()).toISOString();
    // c.handoff is as written already (at the insert, or at the answer)
    this.write(c, { ...patch, isActiveCall: false, endTime }, 'call.ended', data, KEEP_STATUS);
  }

  /**
   * Applies a change to VC2 after the ones queued before it, with its webhook event. Nothing on the
   * call's path waits for it, so it may wait a few ms to share a COMMIT (GroupCommit.runDeferred).
   */
  private write(c: HandoffCall, patch: VoiceCallPatch, event: WebhookEventType, data: Record<string, unknown>, keep?: readonly string[]): void {
    const { webhooks, clock } = this.services;
    c.chain = this.track(
      c.chain.then(async () => {
        try {
          await this.writer.runDeferred(async (st) => {
            await st.patchVoiceCall(c.orgId, c.id, patch, clock.now(), keep);
            await webhooks.emitIfWanted(st, { orgId: c.orgId, type: event, voiceCallId: c.id, data });
          });
        } catch (err) {
          c.log.error({ err }, 'VoiceCall update failed');
        }
      }),
    );
  }

  /** Takes a slot of the agent's `maxConcurrentCalls` (this instance's count); false when full. */
  private take(agent: Agent): boolean {
    if (!this.slots.take(agent.name, agent.maxConcurrentCalls)) return false;
    const n = (this.ownByAgent.get(agent.name) ?? 0) + 1;
    this.ownByAgent.set(agent.name, n);
    this.services.metrics.agentActiveCalls.set({ agent: agent.name }, n);
    return true;
  }

  private release(agent: Agent): void {
    this.slots.release(agent.name);
    const n = Math.max(0, (this.ownByAgent.get(agent.name) ?? 0) - 1);
    this.ownByAgent.set(agent.name, n);
    this.services.metrics.agentActiveCalls.set({ agent: agent.name }, n);
  }

  private observe(startedAt: number, status: number): void {
    this.services.metrics.sipInviteSeconds.observe({ status: String(status) }, (performance.now() - startedAt) / 1000);
  }

  /** Answers a refused INVITE: SipError as given, HandoffError by its SIP status, anything else 500. */
  private refuse(tx: ServerTransaction, err: unknown, startedAt: number): void {
    let status: number;
    let headers: Array<[string, string]>;
    if (err instanceof SipError) {
      status = err.status;
      headers = (err.options.headers ?? []).map(([k, v]) => [k, v]);
    } else if (isHandoffError(err)) {
      status = err.sipStatus;
      headers = [['Warning', warning(err.message)]];
      if (err.retryAfter !== undefined) headers.push(['Retry-After', String(err.retryAfter)]);
    } else {
      status = 500;
      headers = [];
      this.log.error({ err, sipCallId: tx.request.callId }, 'INVITE handling failed');
    }
    if (!LOGGED.has(err as object)) {
      const text = headers.find(([k]) => k === 'Warning')?.[1];
      this.log.info({ status, warning: text, sipCallId: tx.request.callId, source: tx.source.remoteAddress }, 'hand-off refused');
    }
    if (!tx.finalSent && tx.state !== 'terminated') tx.reply(status, { headers });
    // The INVITE is over here: its transaction waits for the ACK (or Timer H) with its identity and response bytes only
    tx.release();
    this.observe(startedAt, status);
  }
}
