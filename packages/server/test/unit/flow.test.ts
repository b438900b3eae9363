import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateFlow, type FlowContext, type FlowDefinition } from '../../src/domain/flow.js';

const flow: FlowDefinition = {
  rules: [
    { name: 'tag vip', when: { attributes: { Tier__c: ['Gold', 'Platinum'] } }, set: { callSubtype: 'VIP' } },
    { name: 'uk billing', when: { country: ['GB'], attributes: { Department__c: ['Billing'] } }, agent: 'uk-billing-bot', set: { queue: 'UK_Billing' } },
    { name: 'transfers', when: { path: ['uui'], callerPrefix: ['+1415', '+1650'] }, agent: 'bay-bot' },
    { name: 'numbers to queue', when: { path: ['number'] }, queue: 'PSTN_Queue' },
  ],
  fallback: { reject: { status: 503, reason: 'No agent' } },
};
const base: FlowContext = { caller: '+14155551234', callerCountry: 'US', path: 'uui', attributes: {} };

describe('evaluateFlow', () => {
  test('first rule naming an agent decides', () => {
    const d = evaluateFlow(flow, base);
    assert.deepEqual(d, { ruleIndex: 2, ruleName: 'transfers', agent: 'bay-bot', queue: null, reject: null, set: {} });
  });
  test('every condition of a rule must hold; a list matches any value', () => {
    assert.equal(evaluateFlow(flow, { ...base, callerCountry: 'GB', attributes: { Department__c: 'Billing' } }).agent, 'uk-billing-bot');
    assert.equal(evaluateFlow(flow, { ...base, callerCountry: 'GB', attributes: { Department__c: 'Sales' } }).agent, 'bay-bot');
    assert.equal(evaluateFlow(flow, { ...base, caller: '+16505551234' }).agent, 'bay-bot');
    assert.equal(evaluateFlow(flow, { ...base, caller: '+12125551234' }).reject?.status, 503);
  });
  test('set-only rules accumulate their fields and evaluation goes on', () => {
    const d = evaluateFlow(flow, { ...base, callerCountry: 'GB', attributes: { Tier__c: 'Gold', Department__c: 'Billing' } });
    assert.deepEqual(d.set, { callSubtype: 'VIP', queue: 'UK_Billing' });
    assert.equal(d.ruleName, 'uk billing');
  });
  test('a queue can decide; path conditions never match outside a SIP hand-off', () => {
    assert.equal(evaluateFlow(flow, { ...base, path: 'number' }).queue, 'PSTN_Queue');
    const d = evaluateFlow(flow, { ...base, path: null });
    assert.equal(d.ruleIndex, null);
    assert.deepEqual(d.reject, { status: 503, reason: 'No agent' });
  });
  test('unknown caller and object-valued attributes never match conditions on them', () => {
    assert.equal(evaluateFlow(flow, { ...base, caller: null }).ruleIndex, null);
    assert.deepEqual(evaluateFlow(flow, { ...base, path: null, attributes: { Tier__c: { x: 'Gold' } } }).set, {});
    assert.deepEqual(evaluateFlow(flow, { ...base, path: null, attributes: { Tier__c: 'gold' } }).set, {}, 'values compare exactly');
  });
  test('numbers in attributes compare as text', () => {
    const f: FlowDefinition = { rules: [{ when: { attributes: { Priority__c: ['1'] } }, agent: 'a' }], fallback: { agent: 'b' } };
    assert.equal(evaluateFlow(f, { ...base, attributes: { Priority__c: 1 } }).agent, 'a');
    assert.equal(evaluateFlow(f, { ...base, attributes: { Priority__c: 2 } }).agent, 'b');
  });
});
