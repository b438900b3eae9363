// Imported first by workers.test.ts: the fixture then starts services with two SIP worker threads.
process.env.HANDOFF_TEST_SIP_WORKERS = '2';
