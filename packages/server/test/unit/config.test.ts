import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, expandPoolNumbers, loadProvisioningFile, loadSettings } from '../../src/config.js';
import { normalizeDomain } from '../../src/domain/org-domain.js';

const dir = mkdtempSync(join(tmpdir(), 'handoff-config-'));
let n = 0;
function file(text: string, ext = 'yaml'): string {
  const p = join(dir, `c${++n}.${ext}`);
  writeFileSync(p, text);
  return p;
}

const ORG = 'orgs:\n  - id: 00Dxx0000004CFG\n    name: Acme\n    domain: acme.my.example.com\n';

describe('settings from the environment', () => {
  test('defaults', () => {
    const s = loadSettings({});
    assert.equal(s.httpHost, '127.0.0.1');
    assert.equal(s.httpPort, 8080);
    assert.equal(s.sipHost, '127.0.0.1');
    assert.equal(s.sipPort, 5060);
    assert.equal(s.databaseUrl, undefined);
    assert.match(s.dataDir, /\/data$/);
    assert.equal(s.logLevel, 'info');
  });
  test('values are read and checked', () => {
    const s = loadSettings({ HANDOFF_HTTP_PORT: '9000', HANDOFF_SIP_PORT: '5070', HANDOFF_DATA_DIR: '/tmp/x', HANDOFF_LOG_LEVEL: 'debug', HANDOFF_ACCEPTED_AUDIENCES: 'a, b' });
    assert.equal(s.httpPort, 9000);
    assert.equal(s.sipPort, 5070);
    assert.equal(s.dataDir, '/tmp/x');
    assert.deepEqual(s.acceptedAudiences, ['a', 'b']);
    assert.throws(() => loadSettings({ HANDOFF_HTTP_PORT: '70000' }), ConfigError);
    assert.throws(() => loadSettings({ HANDOFF_SIP_PORT: '-1' }), /HANDOFF_SIP_PORT/);
    assert.throws(() => loadSettings({ HANDOFF_LOG_LEVEL: 'loud' }), /HANDOFF_LOG_LEVEL/);
    assert.throws(() => loadSettings({ HANDOFF_BODY_LIMIT: '10' }), /HANDOFF_BODY_LIMIT/);
  });
  test('SIP Timer C: 181 s by default, 1 to 3600', () => {
    assert.equal(loadSettings({}).sip.timerCSeconds, 181);
    assert.equal(loadSettings({ HANDOFF_SIP_TIMER_C_SECONDS: '30' }).sip.timerCSeconds, 30);
    for (const bad of ['0', '3601', 'soon', '1.5']) assert.throws(() => loadSettings({ HANDOFF_SIP_TIMER_C_SECONDS: bad }), /HANDOFF_SIP_TIMER_C_SECONDS/);
    // SIP workers: one by default; their own ports 100 above the SIP port, or free ones when it is 0
    assert.equal(loadSettings({}).sip.workers, 1);
    assert.equal(loadSettings({}).sip.workerPort, 5160);
    assert.equal(loadSettings({ HANDOFF_SIP_PORT: '0' }).sip.workerPort, 0);
    assert.deepEqual(
      (({ workers, workerPort }) => ({ workers, workerPort }))(loadSettings({ HANDOFF_SIP_WORKERS: '4', HANDOFF_SIP_WORKER_PORT: '6000' }).sip),
      { workers: 4, workerPort: 6000 },
    );
    for (const bad of ['0', '65', 'two', '1.5', '-2']) assert.throws(() => loadSettings({ HANDOFF_SIP_WORKERS: bad }), /HANDOFF_SIP_WORKERS/);
    for (const bad of ['70000', 'x', '-1']) assert.throws(() => loadSettings({ HANDOFF_SIP_WORKER_PORT: bad }), /HANDOFF_SIP_WORKER_PORT/);
    // the SIP warm-up: off unless asked for, at most 100,000 calls per SIP thread
    assert.equal(loadSettings({}).sip.warmUpCalls, 0);
    assert.equal(loadSettings({ HANDOFF_SIP_WARMUP_CALLS: '4000' }).sip.warmUpCalls, 4000);
    for (const bad of ['-1', '100001', 'many', '2.5']) assert.throws(() => loadSettings({ HANDOFF_SIP_WARMUP_CALLS: bad }), /HANDOFF_SIP_WARMUP_CALLS/);
  });
});

describe('provisioning file', () => {
  test('YAML and JSON are read; key files are inlined relative to the file', () => {
    writeFileSync(join(dir, 'k.pem'), '-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n');
    const y = loadProvisioningFile(file(`${ORG}    keys:\n      - id: k1\n        publicKeyFile: k.pem\n`));
    assert.match(y.orgs![0]!.keys![0]!.publicKey!, /BEGIN PUBLIC KEY/);
    assert.equal(y.orgs![0]!.keys![0]!.publicKeyFile, undefined);
    const j = loadProvisioningFile(file(JSON.stringify({ pools: [{ country: 'US', numbers: ['+12125550100'] }] }), 'json'));
    assert.equal(j.pools![0]!.country, 'US');
    assert.deepEqual(loadProvisioningFile(file('')), {});
  });

  const bad: [string, string, RegExp][] = [
    ['unreadable file', '', /cannot read/],
    ['not YAML', 'orgs: [\n', /not valid YAML/],
    ['duplicate YAML key', 'orgs: []\norgs: []\n', /not valid YAML/],
    ['unknown top-level field', 'tenants: []\n', /\(root\): unknown field\(s\): tenants/],
    ['bad org id', 'orgs:\n  - id: 001xx\n    name: A\n    domain: a.b\n', /orgs\.0\.id: /],
    ['missing name', 'orgs:\n  - id: 00Dxx0000004CFG\n    domain: a.b\n', /orgs\.0: missing required field\(s\): name/],
    ['channel number not E.164', `${ORG}    channels:\n      - devName: A\n        number: "4155550100"\n`, /orgs\.0\.channels\.0\.number: /],
    ['channel devName with a space', `${ORG}    channels:\n      - devName: A B\n        number: "+14155550100"\n`, /orgs\.0\.channels\.0\.devName: /],
    ['unknown call center', `${ORG}    channels:\n      - devName: A\n        number: "+14155550100"\n        callCenter: Nope\n`, /orgs\.0\.channels\.0\.callCenter: unknown call center Nope/],
    ['unknown flow', `${ORG}    channels:\n      - devName: A\n        number: "+14155550100"\n        flow: nope\n`, /orgs\.0\.channels\.0\.flow: unknown flow nope/],
    ['unknown agent in a flow', `${ORG}    flows:\n      - name: f\n        rules: [{ agent: ghost }]\n        fallback: {}\n`, /orgs\.0\.flows\.0\.rules\.0\.agent: unknown agent ghost/],
    ['duplicate channel number', `${ORG}    channels:\n      - { devName: A, number: "+14155550100" }\n      - { devName: B, number: "+14155550100" }\n`, /orgs\.0\.channels\.1\.number: number \+14155550100 is already used/],
    ['two key sources', `${ORG}    keys:\n      - { id: k, publicKey: a, certificate: b }\n`, /orgs\.0\.keys\.0: give exactly one of/],
    ['missing key file', `${ORG}    keys:\n      - { id: k, publicKeyFile: nope.pem }\n`, /orgs\.0\.keys\.0: cannot read .*nope\.pem/],
    ['duplicate org', `${ORG}  - id: 00Dxx0000004CFGEA2\n    name: B\n    domain: b.example.com\n`, /orgs\.1\.id: duplicate org/],
    ['bad pool country', 'pools:\n  - country: usa\n', /pools\.0\.country: /],
    ['reversed range', 'pools:\n  - country: US\n    ranges: [{ from: "+12125550199", to: "+12125550100" }]\n', /pools\.0\.ranges\.0: from and to/],
    ['huge range', 'pools:\n  - country: US\n    ranges: [{ from: "+12120000000", to: "+12129999999" }]\n', /at most 1,000,000/],
    ['agent without sipUri', 'agents:\n  - name: a\n', /agents\.0: missing required field\(s\): sipUri/],
    ['agent with an http URI', 'agents:\n  - { name: a, sipUri: "http://x" }\n', /agents\.0\.sipUri: /],
    ['bad expiresAt', `${ORG}    keys:\n      - { id: k, publicKey: a, expiresAt: tomorrow }\n`, /orgs\.0\.keys\.0\.expiresAt: /],
  ];
  for (const [name, text, re] of bad) {
    test(`refused: ${name}`, () => {
      const p = name === 'unreadable file' ? join(dir, 'missing.yaml') : file(text);
      assert.throws(() => loadProvisioningFile(p), (e: unknown) => e instanceof ConfigError && e.message.startsWith(p) && re.test(e.message));
    });
  }

  test('ranges expand with leading digits kept', () => {
    assert.deepEqual(expandPoolNumbers({ country: 'GB', numbers: ['+441'], ranges: [{ from: '+442079460098', to: '+442079460100' }] }), [
      '+441',
      '+442079460098',
      '+442079460099',
      '+442079460100',
    ]);
  });
});

describe('scrt2Domain normalisation', () => {
  test('scheme, case, trailing slash and /telephony/v1 are tolerated', () => {
    for (const v of ['acme.my.example.com', 'https://acme.my.example.com', 'HTTPS://Acme.My.Example.com/', 'acme.my.example.com/telephony/v1', 'https://acme.my.example.com/telephony/v1/']) {
      assert.equal(normalizeDomain(v), 'acme.my.example.com', v);
    }
  });
  test('other shapes are refused', () => {
    for (const v of ['', ' ', 'https://', 'acme.my.example.com/other', 'ac me.com', 'acme..com', '-acme.com', 42, null, 'a'.repeat(300)]) {
      assert.equal(normalizeDomain(v), null, String(v));
    }
  });
});
