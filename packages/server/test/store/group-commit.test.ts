/**
 * GroupCommit (store/group-commit.ts) and Store.patchVoiceCall, on SQLite and PostgreSQL: the SIP
 * hand-off's record writes.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachBackend } from '../support/backends.js';
import { newVoiceCallId } from '../../src/domain/ids.js';
import { DEFER_MS, GroupCommit } from '../../src/store/group-commit.js';
import type { VoiceCallInput } from '../../src/store/store.js';

const ORG = '00Dxx0000004CFG';
const OTHER = '00Dxx0000009ZZZ';
const T0 = 1_800_000_000_000;

function call(overrides: Partial<VoiceCallInput> = {}): VoiceCallInput {
  const id = newVoiceCallId();
  return {
    id,
    orgId: ORG,
    vendorCallKey: `sip:${id}`,
    callCenterApiName: null,
    toNumber: '+14155550100',
    fromNumber: '+14155551234',
    initiationMethod: 'Transfer',
    parentVoiceCallId: null,
    startTime: new Date(T0).toISOString(),
    endTime: null,
    isActiveCall: true,
    disconnectReason: null,
    callAttributes: null,
    callOrigin: null,
    queue: null,
    callSubtype: null,
    participants: null,
    telephonyProviderName: null,
    status: 'Routed',
    handoff: { path: 'uui', agent: 'bot' },
    escalation: null,
    ...overrides,
  };
}

describeEachBackend('group commit and patchVoiceCall', ({ store }) => {
  before(async () => {
    for (const id of [ORG, OTHER]) {
      await store().upsertOrg({ id, name: id, domain: `${id.toLowerCase()}.my.example.com`, features: { numberPool: false }, quotas: { maxLiveLeases: null, requestsPerSecond: null } }, T0);
    }
  });

  test('concurrent jobs all commit and each caller gets its own result', async () => {
    const gc = GroupCommit.of(store());
    assert.equal(GroupCommit.of(store()), gc, 'one group commit per store');
    const calls = Array.from({ length: 150 }, () => call());
    const results = await Promise.all(calls.map((c, i) => gc.run(async (tx) => ((await tx.insertVoiceCall(c, T0)).created ? i : -1))));
    assert.deepEqual(results, calls.map((_, i) => i));
    for (const c of calls) assert.equal((await store().getVoiceCall(ORG, c.id))?.status, 'Routed');
  });

  test('a job that throws after writing gets its error; the other jobs of its group still commit; its writes are gone', async () => {
    const gc = GroupCommit.of(store());
    const good = [call(), call(), call()];
    const bad = call();
    const boom = new Error('boom');
    const settled = await Promise.allSettled([
      gc.run((tx) => tx.insertVoiceCall(good[0]!, T0)),
      gc.run(async (tx) => {
        await tx.insertVoiceCall(bad, T0);
        throw boom;
      }),
      gc.run((tx) => tx.insertVoiceCall(good[1]!, T0)),
      gc.run((tx) => tx.insertVoiceCall(good[2]!, T0)),
    ]);
    assert.deepEqual(
      settled.map((s) => s.status),
      ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
    );
    assert.equal((settled[1] as PromiseRejectedResult).reason, boom);
    for (const c of good) assert.ok(await store().getVoiceCall(ORG, c.id), 'committed');
    assert.equal(await store().getVoiceCall(ORG, bad.id), null, 'the failing job left nothing');
  });

  test('a job failing on a database error does not undo the rest of its group', async () => {
    const gc = GroupCommit.of(store());
    const first = call();
    await store().insertVoiceCall(first, T0);
    const other = call();
    const settled = await Promise.allSettled([
      // the same primary key again: the database refuses it
      gc.run((tx) => tx.insertVoiceCall({ ...first, vendorCallKey: 'another-key' }, T0)),
      gc.run((tx) => tx.insertVoiceCall(other, T0)),
    ]);
    assert.equal(settled[0]!.status, 'rejected');
    assert.equal(settled[1]!.status, 'fulfilled');
    assert.ok(await store().getVoiceCall(ORG, other.id));
  });

  test('a deferred job commits on its own within a few ms (on SQLite, not in the turn it was submitted); its errors reach its caller', async () => {
    const gc = GroupCommit.of(store());
    const c = call();
    const started = performance.now();
    const done = gc.runDeferred((tx) => tx.insertVoiceCall(c, T0));
    await new Promise((r) => setImmediate(r));
    if (store().dialect === 'sqlite') assert.equal(await store().getVoiceCall(ORG, c.id), null, 'still waiting for company');
    assert.equal((await done).created, true);
    if (store().dialect === 'sqlite') assert.ok(performance.now() - started >= DEFER_MS - 1);
    assert.equal((await store().getVoiceCall(ORG, c.id))?.status, 'Routed');
    const boom = new Error('deferred boom');
    await assert.rejects(
      gc.runDeferred(async () => {
        throw boom;
      }),
      (e) => e === boom,
    );
  });

  test('deferred jobs join the next group flushed (on SQLite; on PostgreSQL each is its own transaction), and all commit', async () => {
    const gc = GroupCommit.of(store());
    const deferred = [call(), call(), call()];
    const urgent = call();
    let deferredDone = 0;
    const waits = deferred.map((c) => gc.runDeferred((tx) => tx.insertVoiceCall(c, T0)).then(() => void deferredDone++));
    await gc.run((tx) => tx.insertVoiceCall(urgent, T0));
    if (store().dialect === 'sqlite') assert.equal(deferredDone, 3, 'committed with the urgent job, not DEFER_MS later');
    await Promise.all(waits);
    for (const c of [...deferred, urgent]) assert.equal((await store().getVoiceCall(ORG, c.id))?.status, 'Routed');
  });

  test('patchVoiceCall applies fields without a read-back; false for an unknown call or another org', async () => {
    const c = call();
    await store().insertVoiceCall(c, T0);
    assert.equal(await store().patchVoiceCall(ORG, c.id, { status: 'Answered', handoff: { path: 'uui', answeredAt: 'x' } }, T0 + 1), true);
    const got = await store().getVoiceCall(ORG, c.id);
    assert.equal(got?.status, 'Answered');
    assert.deepEqual(got?.handoff, { path: 'uui', answeredAt: 'x' });
    assert.equal(got?.updatedAt, T0 + 1);
    assert.equal(await store().patchVoiceCall(OTHER, c.id, { status: 'Ended' }, T0 + 2), false, 'another org');
    assert.equal(await store().patchVoiceCall(ORG, newVoiceCallId(), { status: 'Ended' }, T0 + 2), false, 'no such call');
    assert.equal((await store().getVoiceCall(ORG, c.id))?.status, 'Answered', 'unchanged by the refused patches');
  });

  test('patchVoiceCall keeps a status named in keepStatus and changes the other fields', async () => {
    const escalated = call({ status: 'Escalated' });
    const answered = call({ status: 'Answered' });
    await store().insertVoiceCall(escalated, T0);
    await store().insertVoiceCall(answered, T0);
    const end = { status: 'Ended', disconnectReason: 'caller-hangup', isActiveCall: false, endTime: new Date(T0 + 5).toISOString() };
    assert.equal(await store().patchVoiceCall(ORG, escalated.id, end, T0 + 5, ['Escalated']), true);
    assert.equal(await store().patchVoiceCall(ORG, answered.id, end, T0 + 5, ['Escalated']), true);
    const e = await store().getVoiceCall(ORG, escalated.id);
    assert.equal(e?.status, 'Escalated');
    assert.equal(e?.disconnectReason, 'caller-hangup');
    assert.equal(e?.isActiveCall, false);
    assert.equal(e?.endTime, end.endTime);
    assert.equal((await store().getVoiceCall(ORG, answered.id))?.status, 'Ended');
    // several kept statuses, and a patch without a status leaves it alone
    const failed = call({ status: 'Redirected' });
    await store().insertVoiceCall(failed, T0);
    await store().patchVoiceCall(ORG, failed.id, { status: 'Ended' }, T0 + 6, ['Escalated', 'Redirected']);
    await store().patchVoiceCall(ORG, failed.id, { queue: 'Humans' }, T0 + 7, ['Escalated']);
    const f = await store().getVoiceCall(ORG, failed.id);
    assert.equal(f?.status, 'Redirected');
    assert.equal(f?.queue, 'Humans');
  });
});
