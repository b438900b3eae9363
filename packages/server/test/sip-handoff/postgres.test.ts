/** The two hand-off paths on PostgreSQL: the same journeys as on SQLite, through a real service. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFixture, type Fixture } from './fixture.js';
import { assertRecordsConsistent, numberPathJourney, uuiPathJourney } from './scenarios.js';
import { SKIP_SIPP } from './sipp.js';

describe('SIP hand-off with sipp [postgres]', { skip: SKIP_SIPP }, () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture({ backend: 'postgres' });
  });
  after(async () => {
    await f?.close();
  });

  test('path A: a lease is consumed once; the second call gets 404', { timeout: 60_000 }, async () => {
    await numberPathJourney(f, '+14155551101', 'tx-pg-a');
  });

  test('path B: a valid token reaches the agent; VC2 linked to VC1', { timeout: 60_000 }, async () => {
    await uuiPathJourney(f, 'tx-pg-b');
  });

  test('every hand-off VoiceCall is consistent', async () => {
    assert.equal(await assertRecordsConsistent(f), 2);
  });
});
