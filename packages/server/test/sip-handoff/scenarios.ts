/**
 * Hand-off journeys shared by the SQLite and PostgreSQL suites: real sipp processes as the partner
 * and as the agent, against a running service.
 */
import assert from 'node:assert/strict';
import { toId18 } from '../../src/domain/ids.js';
import { CH, ORG_A, waitFor, type AgentName, type Fixture } from './fixture.js';
import { LOCAL, freePort, headerOf, messagesStarting, runSipp, uacScenario, uasScenario, type SippResult, type UacPlan, type UasPlan } from './sipp.js';

/** Runs a partner sipp against the service. Each row: [called, caller, header line, header line]. */
export async function partner(f: Pick<Fixture, 'dir' | 'sip'>, plan: UacPlan, rows: string[][], transport: 'udp' | 'tcp' = 'udp'): Promise<SippResult> {
  const port = transport === 'udp' ? f.sip.udp : f.sip.tcp;
  return runSipp({
    dir: f.dir,
    scenario: uacScenario(plan),
    remote: `${LOCAL}:${port}`,
    localPort: await freePort(transport),
    transport,
    calls: rows.length,
    inject: rows.map((r) => [r[0]!, r[1]!, r[2] ?? 'X-Filler: 1', r[3] ?? 'X-Filler: 2']),
  }).done;
}

/** Starts an agent sipp on its provisioned port; resolves once it is probably listening. */
export async function agent(f: Pick<Fixture, 'dir' | 'agents'>, name: AgentName, plan: UasPlan, calls = 1) {
  const run = runSipp({ dir: f.dir, scenario: uasScenario(plan), localPort: f.agents[name], transport: name === 'tcp' ? 'tcp' : 'udp', calls });
  await new Promise((r) => setTimeout(r, 300));
  return run;
}

export function assertSippOk(r: SippResult, what: string): void {
  assert.equal(r.code, 0, `${what}: sipp exit ${r.code}\n${r.out.slice(-3000)}`);
}

/** The INVITE an agent sipp received. */
export function receivedInvite(r: SippResult): string {
  const invite = messagesStarting(r, 'INVITE ')[0];
  assert.ok(invite, 'the agent received an INVITE');
  return invite;
}

/** The hand-off legs of a partner call (GET /voiceCalls/{VC1}), once `pred` holds for the first. */
export async function legsOf(f: Fixture, vc1: string, pred: (leg: any) => boolean = () => true): Promise<any[]> {
  return waitFor(async () => {
    const legs = (await f.api('GET', `/telephony/v1/voiceCalls/${vc1}`)).json.legs as any[];
    return legs.length > 0 && pred(legs[0]) ? legs : (null as unknown as any[]);
  }).then((l) => l ?? []);
}

/** Path A: reserve, call from the leased caller (agent answers, partner hangs up), then the same caller again: 404. */
export async function numberPathJourney(f: Fixture, caller: string, tx: string): Promise<void> {
  const vc1 = await f.createCall(caller);
  const routable = await f.reserve(caller, vc1, tx);
  const bot = await agent(f, 'bot', { kind: 'answer', then: 'wait-bye' });
  // national form of the called number, the caller only in P-Asserted-Identity (From anonymous)
  const national = routable.replace(/^\+1/, '');
  const pai = `P-Asserted-Identity: <tel:${caller.replace(/^\+1(\d{3})(\d{3})(\d{4})$/, '+1-$1-$2-$3')}>`;
  const first = await partner(f, { kind: 'answer', then: 'bye', afterMs: 300 }, [[national, 'anonymous', pai]]);
  assertSippOk(first, 'partner');
  const agentRun = await bot.done;
  assertSippOk(agentRun, 'agent');
  const invite = receivedInvite(agentRun);
  assert.equal(headerOf(invite, 'X-Handoff-Partner-Voice-Call-Id'), vc1);
  assert.equal(headerOf(invite, 'X-Handoff-Transaction-Id'), tx);
  assert.equal(headerOf(invite, 'X-Handoff-Org-Id'), toId18(ORG_A));
  assert.match(headerOf(invite, 'X-Handoff-Voice-Call-Id') ?? '', /^0LQ[A-Za-z0-9]{15}$/);
  assert.match(invite, new RegExp(`^INVITE sip:bot@127\\.0\\.0\\.1:${f.agents.bot} SIP/2\\.0`));
  assert.equal(headerOf(invite, 'Max-Forwards'), '69');
  assert.match(headerOf(invite, 'Record-Route') ?? '', /;lr>/);

  const legs = await legsOf(f, vc1, (l) => l.status === 'Ended');
  assert.equal(legs.length, 1);
  const leg = legs[0];
  assert.equal(leg.voiceCallId, headerOf(invite, 'X-Handoff-Voice-Call-Id'));
  assert.equal(leg.parentVoiceCallId, vc1);
  assert.equal(leg.initiationMethod, 'Transfer');
  assert.equal(leg.from, caller);
  assert.equal(leg.to, CH.main);
  assert.equal(leg.isActiveCall, false);
  assert.equal(leg.disconnectReason, 'caller-hangup');
  assert.equal(leg.handoff.path, 'number');
  assert.equal(leg.handoff.transactionId, tx);
  assert.equal(leg.handoff.partnerVoiceCallId, vc1);
  assert.equal(leg.handoff.agent, 'bot');
  assert.match(leg.handoff.leaseUid, /^lease:did:\+1212555010\d:/);
  assert.ok(leg.handoff.answeredAt && leg.endTime);

  // the lease is spent: the same caller again is refused without saying why
  const again = await partner(f, { kind: 'reject', status: 404 }, [[routable, caller]]);
  assertSippOk(again, 'second call');
  const refusal = messagesStarting(again, 'SIP/2.0 404')[0]!;
  assert.equal(headerOf(refusal, 'Warning'), '399 handoff "No matching hand-off"');
}

/** Path B: a valid token in a hex UUI; the agent answers and hangs up itself. */
export async function uuiPathJourney(f: Fixture, tx: string): Promise<void> {
  const vc1 = await f.createCall();
  const token = await f.token('a');
  const uui = f.uui({ orgId: toId18(ORG_A), scrt2Domain: 'https://Acme.my.example.com/telephony/v1', token, callId: vc1, transactionId: tx, Department__c: 'Support' });
  const bot = await agent(f, 'bot', { kind: 'answer', then: 'bye', afterMs: 300 });
  const call = await partner(f, { kind: 'answer', then: 'wait-bye' }, [[CH.main, '+14155552002', `User-to-User: ${uui}`, 'P-Asserted-Identity: <tel:+14155552002>']]);
  assertSippOk(call, 'partner');
  const agentRun = await bot.done;
  assertSippOk(agentRun, 'agent');
  const invite = receivedInvite(agentRun);
  assert.equal(headerOf(invite, 'X-Handoff-Partner-Voice-Call-Id'), vc1);
  assert.equal(headerOf(invite, 'X-Handoff-Transaction-Id'), tx);
  assert.equal(headerOf(invite, 'X-Handoff-Org-Id'), toId18(ORG_A));
  assert.equal(headerOf(invite, 'User-to-User'), undefined, 'the UUI (and its token) never reaches the agent');
  assert.ok(!agentRun.messages.some((m) => m.includes(token)), 'the token appears in no message the agent saw');
  assert.equal(headerOf(invite, 'P-Asserted-Identity'), '<tel:+14155552002>');

  const legs = await legsOf(f, vc1, (l) => l.status === 'Ended');
  const leg = legs[0];
  assert.equal(leg.voiceCallId, headerOf(invite, 'X-Handoff-Voice-Call-Id'));
  assert.equal(leg.parentVoiceCallId, vc1);
  assert.equal(leg.initiationMethod, 'Transfer');
  assert.equal(leg.from, '+14155552002');
  assert.equal(leg.isActiveCall, false);
  assert.equal(leg.disconnectReason, 'agent-hangup');
  assert.equal(leg.handoff.path, 'uui');
  assert.equal(leg.handoff.transactionId, tx);
  assert.equal(leg.handoff.sourceIp, '127.0.0.1');
  assert.equal(leg.callAttributes, '{"Department__c":"Support"}', "the partner call's attributes carry over");

  // call.routed, call.answered and call.ended reach the org's webhook, in order
  const events = () => f.hooks.on('/events', true).filter((h) => h.voiceCallId === leg.voiceCallId);
  await f.hooks.waitFor(() => events().some((h) => h.type === 'call.ended'));
  assert.deepEqual(events().map((h) => h.type), ['call.routed', 'call.answered', 'call.ended']);
  assert.equal((events()[0]!.body.data as { agent: string }).agent, 'bot');
  assert.equal((events()[2]!.body.data as { reason: string }).reason, 'agent-hangup');
}

/** Every hand-off VoiceCall is over and says so: none left Routing/Routed/Answered or active. */
export async function assertRecordsConsistent(f: Fixture): Promise<number> {
  const calls = await waitFor(async () => {
    const all = await f.handoffCalls();
    return all.every((c) => c.isActiveCall === false) ? all : null;
  }, 5000);
  const all = calls ?? (await f.handoffCalls());
  for (const c of all) {
    const what = `${toId18(c.id)} ${JSON.stringify({ status: c.status, isActiveCall: c.isActiveCall, endTime: c.endTime, reason: c.disconnectReason })}`;
    assert.ok(['Ended', 'Failed', 'Redirected', 'Escalated'].includes(c.status ?? ''), what);
    assert.equal(c.isActiveCall, false, what);
    assert.ok(c.endTime, what);
    assert.ok(c.disconnectReason, what);
    assert.equal(c.initiationMethod, 'Transfer', what);
  }
  return all.length;
}
