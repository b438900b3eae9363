/** The pieces of the SIP hand-off that need no network: settings, trunk allow-lists, UUI collection. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadSettings, validateProvisioning } from '../../src/config.js';
import { AddressList } from '../../src/domain/address-list.js';
import { uuiValues } from '../../src/sip/handoff.js';
import { parseDatagram, SipRequest } from '../../src/sip/index.js';

describe('SIP settings', () => {
  test('defaults', () => {
    const s = loadSettings({}).sip;
    assert.equal(s.tls, null);
    assert.equal(s.mode, 'proxy');
    assert.equal(s.defaultCountry, 'US');
    assert.equal(s.rateLimit, 200);
    assert.equal(s.uuiMaxDecoded, 1024);
    assert.equal(s.advertisedHost, undefined);
    assert.deepEqual(s.demoAgent, { port: 5061, hangupSeconds: 30 });
    assert.equal(loadSettings({ HANDOFF_SIP_PORT: '0' }).sip.demoAgent.port, 0, 'a free port when the ingress takes one');
  });

  test('values are read and checked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'handoff-sip-settings-'));
    writeFileSync(join(dir, 'c.pem'), 'CERT');
    writeFileSync(join(dir, 'k.pem'), 'KEY');
    const s = loadSettings({
      HANDOFF_SIP_PORT: '5070',
      HANDOFF_SIP_TLS_CERT: join(dir, 'c.pem'),
      HANDOFF_SIP_TLS_KEY: join(dir, 'k.pem'),
      HANDOFF_SIP_ADVERTISED_HOST: 'sip.example.com',
      HANDOFF_SIP_MODE: 'redirect',
      HANDOFF_SIP_DEFAULT_COUNTRY: 'gb',
      HANDOFF_SIP_RATE_LIMIT: '0',
      HANDOFF_UUI_MAX_DECODED: '4096',
      HANDOFF_DEMO_AGENT_HANGUP_SECONDS: '5',
    }).sip;
    assert.deepEqual(s.tls, { port: 5061, cert: 'CERT', key: 'KEY' });
    assert.equal(s.advertisedHost, 'sip.example.com');
    assert.equal(s.mode, 'redirect');
    assert.equal(s.defaultCountry, 'GB');
    assert.equal(s.rateLimit, 0);
    assert.equal(s.uuiMaxDecoded, 4096);
    assert.deepEqual(s.demoAgent, { port: 5071, hangupSeconds: 5 });
    const tls = { HANDOFF_SIP_TLS_CERT: join(dir, 'c.pem'), HANDOFF_SIP_TLS_KEY: join(dir, 'k.pem') };
    assert.equal(loadSettings(tls).sip.demoAgent.port, 5062, 'the demo agent keeps clear of the TLS port');
    assert.throws(() => loadSettings({ HANDOFF_SIP_TLS_CERT: join(dir, 'c.pem') }), /must be set together/);
    assert.throws(() => loadSettings({ HANDOFF_SIP_TLS_CERT: join(dir, 'none.pem'), HANDOFF_SIP_TLS_KEY: join(dir, 'k.pem') }), /HANDOFF_SIP_TLS_CERT: cannot read/);
    assert.throws(() => loadSettings({ HANDOFF_SIP_MODE: 'b2bua' }), /HANDOFF_SIP_MODE/);
    assert.throws(() => loadSettings({ HANDOFF_SIP_DEFAULT_COUNTRY: 'XX' }), /HANDOFF_SIP_DEFAULT_COUNTRY/);
    assert.throws(() => loadSettings({ HANDOFF_SIP_RATE_LIMIT: '-1' }), ConfigError);
    assert.throws(() => loadSettings({ HANDOFF_UUI_MAX_DECODED: '10' }), /HANDOFF_UUI_MAX_DECODED/);
  });
});

describe('trunk allow-lists', () => {
  test('addresses and prefixes, IPv4 and IPv6, IPv4-mapped sources', () => {
    const list = AddressList.parse(['10.0.0.0/8', '192.0.2.1', '2001:db8::/32']);
    assert.ok(list.has('10.200.3.4'));
    assert.ok(list.has('::ffff:10.1.2.3'));
    assert.ok(list.has('192.0.2.1'));
    assert.ok(!list.has('192.0.2.2'));
    assert.ok(list.has('2001:db8::5'));
    assert.ok(!list.has('2001:db9::5'));
    assert.ok(!list.has('not an address'));
    assert.equal(AddressList.problem('10.0.0.0/33'), '"10.0.0.0/33": the prefix length must be 0 to 32');
    assert.match(AddressList.problem('example.com') ?? '', /not an IP address/);
    assert.throws(() => AddressList.parse(['1.2.3.4/x']), TypeError);
  });

  test('the provisioning file names the bad entry', () => {
    const doc = { orgs: [{ id: '00Dxx0000004CFG', name: 'A', domain: 'a.example.com', trunks: { allowFrom: ['10.0.0.0/8', '300.1.1.1'] } }] };
    assert.throws(() => validateProvisioning(doc, 'handoff.yaml', '.'), /handoff\.yaml: orgs\.0\.trunks\.allowFrom\.1: "300\.1\.1\.1" is not an IP address/);
    const ok = validateProvisioning({ orgs: [{ ...doc.orgs[0], trunks: { allowFrom: ['127.0.0.1'] } }] }, 'x', '.');
    assert.deepEqual(ok.orgs?.[0]?.trunks?.allowFrom, ['127.0.0.1']);
  });
});

function invite(uri: string, headers: string[]): SipRequest {
  const text = [
    `INVITE ${uri} SIP/2.0`,
    'Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKunit',
    'From: <sip:+14155550001@127.0.0.1>;tag=a',
    'To: <sip:+14155550100@127.0.0.1>',
    'Call-ID: unit@127.0.0.1',
    'CSeq: 1 INVITE',
    'Max-Forwards: 70',
    ...headers,
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  const m = parseDatagram(Buffer.from(text));
  assert.ok(m instanceof SipRequest);
  return m;
}

describe('uuiValues: every UUI value an INVITE carries', () => {
  const uri = 'sip:+14155550100@127.0.0.1';
  test('one header, hex with parameters', () => {
    assert.deepEqual(uuiValues(invite(uri, ['User-to-User: 7B7D;encoding=hex;purpose=isdn-uui'])), ['7B7D;encoding=hex;purpose=isdn-uui']);
  });
  test('raw JSON is one value whatever commas it holds', () => {
    assert.deepEqual(uuiValues(invite(uri, ['User-to-User: {"a":1,"b":"x,y"}'])), ['{"a":1,"b":"x,y"}']);
    assert.equal(uuiValues(invite(uri, ['User-to-User: {"a":1}, 7B7D'])).length, 2);
  });
  test('values are counted across headers, comma lists, X-User-to-User and the Request-URI', () => {
    assert.equal(uuiValues(invite(uri, ['User-to-User: 7B7D, 7B7D'])).length, 2);
    assert.equal(uuiValues(invite(uri, ['User-to-User: 7B7D', 'User-to-User: 7B7D'])).length, 2);
    assert.equal(uuiValues(invite(uri, ['User-to-User: 7B7D', 'X-User-to-User: 7B7D'])).length, 2);
    assert.deepEqual(uuiValues(invite(`${uri}?User-to-User=7B7D%3Bencoding%3Dhex`, [])), ['7B7D;encoding=hex']);
    assert.equal(uuiValues(invite(`${uri}?user-to-user=7B7D`, ['X-User-to-User: 7B7D'])).length, 2);
    assert.deepEqual(uuiValues(invite(uri, [])), []);
  });
});
