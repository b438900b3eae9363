import type { Clock } from '../domain/clock.js';
import { countryOfE164 } from '../domain/e164.js';
import { HandoffError } from '../domain/errors.js';
import { evaluateFlow, FlowDefinition, type FlowDecision } from '../domain/flow.js';
import { toId18 } from '../domain/ids.js';
import { Value } from 'typebox/value';
import type { Store } from '../store/store.js';
import type { Agent, Channel, Flow, VoiceCall, VoiceCallPatch } from '../store/types.js';
import type { ReferenceCache } from './reference-cache.js';

export interface RouteInput {
  orgId: string;
  /** The flow to run: a channel's, or one named directly. */
  channel: Channel | null;
  flowName?: string | null;
  call: VoiceCall;
  path: 'number' | 'uui' | null;
  /** Extra flow inputs (UUI extras, flowInputParameters); they win over callAttributes. */
  inputs?: Record<string, unknown>;
}

export interface Decided {
  decision: FlowDecision;
  /** The chosen agent's record, when the decision names one. */
  agent: Agent | null;
  /** The fields the flow sets on the call (empty when none). */
  patch: VoiceCallPatch;
}

export interface RouteResult extends Decided {
  /** The call after the flow's field changes. */
  call: VoiceCall;
}

function attributesOf(call: VoiceCall): Record<string, unknown> {
  if (!call.callAttributes) return {};
  try {
    const v = JSON.parse(call.callAttributes) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * Runs a channel's flow for a call (SIP hand-off and `PATCH /voiceCalls/{id}/omniFlow`): evaluates
 * the rules with the flow variables, applies the fields the flow sets, and resolves the agent.
 */
export class RoutingService {
  /** Flow records (as cached) already checked against FlowDefinition. */
  private readonly checked = new WeakSet<Flow>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    /** Flows and agents are read through it (the SIP hand-off runs a flow per call). */
    private readonly refs: ReferenceCache,
  ) {}

  /** Runs the flow and applies the fields it sets to the stored call (`PATCH .../omniFlow`). */
  async route(input: RouteInput): Promise<RouteResult> {
    const decided = await this.decide(input);
    const call = Object.keys(decided.patch).length
      ? ((await this.store.updateVoiceCall(input.orgId, input.call.id, decided.patch, this.clock.now())) ?? input.call)
      : input.call;
    return { ...decided, call };
  }

  /** The flow's decision for a call, its agent and the fields it sets; writes nothing (the SIP hand-off writes VC2 once). */
  async decide(input: RouteInput): Promise<Decided> {
    const name = input.flowName ?? input.channel?.flowName ?? null;
    if (name === null) throw new HandoffError('NOT_FOUND', 'No flow is configured for this channel');
    const flow = await this.validFlow(input.orgId, name);
    if (!flow) throw new HandoffError('NOT_FOUND', `No flow ${name} in this org`);
    const caller = input.call.fromNumber;
    const decision = evaluateFlow(flow.definition, {
      caller,
      // Looked up only by a rule that asks (parsing the number is a large share of a flow's cost)
      get callerCountry() {
        return caller ? (countryOfE164(caller) ?? null) : null;
      },
      path: input.path,
      attributes: {
        ...attributesOf(input.call),
        transactionId: (input.call.handoff?.['transactionId'] as string | undefined) ?? null,
        partnerVoiceCallId: input.call.parentVoiceCallId ? toId18(input.call.parentVoiceCallId) : null,
        ...(input.inputs ?? {}),
      },
    });
    const agent = decision.agent === null ? null : await this.refs.agent(decision.agent);
    if (decision.agent !== null && (!agent || (agent.orgId !== null && agent.orgId !== input.orgId))) {
      throw new HandoffError('NOT_FOUND', `Flow ${name} names agent ${decision.agent}, which this org cannot use`);
    }
    const patch: VoiceCallPatch = { ...decision.set, ...(decision.queue !== null ? { queue: decision.queue } : {}) };
    return { decision, agent, patch };
  }

  /** The channel flow's fallback agent when it is another agent than `full` that this org may use, else null. */
  async fallbackAgent(orgId: string, channel: Channel, full: Agent): Promise<Agent | null> {
    if (channel.flowName === null) return null;
    const flow = await this.validFlow(orgId, channel.flowName).catch(() => null);
    const name = flow?.definition.fallback.agent;
    if (name === undefined || name === full.name) return null;
    const agent = await this.refs.agent(name);
    return agent && (agent.orgId === null || agent.orgId === orgId) ? agent : null;
  }

  /** The org's flow, checked against FlowDefinition (500 when it is not one); null when there is none. */
  private async validFlow(orgId: string, name: string): Promise<(Flow & { definition: FlowDefinition }) | null> {
    const flow = await this.refs.flow(orgId, name);
    if (!flow) return null;
    if (!this.checked.has(flow)) {
      if (!Value.Check(FlowDefinition, flow.definition)) throw new HandoffError('INTERNAL_ERROR', `Flow ${name} is not a valid flow definition`);
      this.checked.add(flow);
    }
    return flow as Flow & { definition: FlowDefinition };
  }
}
