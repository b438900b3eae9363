import type { Clock } from '../domain/clock.js';
import { countryOfE164 } from '../domain/e164.js';
import { HandoffError } from '../domain/errors.js';
import { evaluateFlow, FlowDefinition, type FlowDecision } from '../domain/flow.js';
import { toId18 } from '../domain/ids.js';
import { Value } from 'typebox/value';
import type { Store } from '../store/store.js';
import type { Agent, Channel, VoiceCall } from '../store/types.js';

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

export interface RouteResult {
  decision: FlowDecision;
  /** The chosen agent's record, when the decision names one. */
  agent: Agent | null;
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
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async route(input: RouteInput): Promise<RouteResult> {
    const name = input.flowName ?? input.channel?.flowName ?? null;
    if (name === null) throw new HandoffError('NOT_FOUND', 'No flow is configured for this channel');
    const flow = await this.store.getFlow(input.orgId, name);
    if (!flow) throw new HandoffError('NOT_FOUND', `No flow ${name} in this org`);
    if (!Value.Check(FlowDefinition, flow.definition)) throw new HandoffError('INTERNAL_ERROR', `Flow ${name} is not a valid flow definition`);
    const caller = input.call.fromNumber;
    const decision = evaluateFlow(flow.definition, {
      caller,
      callerCountry: caller ? (countryOfE164(caller) ?? null) : null,
      path: input.path,
      attributes: {
        ...attributesOf(input.call),
        transactionId: (input.call.handoff?.['transactionId'] as string | undefined) ?? null,
        partnerVoiceCallId: input.call.parentVoiceCallId ? toId18(input.call.parentVoiceCallId) : null,
        ...(input.inputs ?? {}),
      },
    });
    const agent = decision.agent === null ? null : await this.store.getAgent(decision.agent);
    if (decision.agent !== null && (!agent || (agent.orgId !== null && agent.orgId !== input.orgId))) {
      throw new HandoffError('NOT_FOUND', `Flow ${name} names agent ${decision.agent}, which this org cannot use`);
    }
    const patch = { ...decision.set, ...(decision.queue !== null ? { queue: decision.queue } : {}) };
    const call = Object.keys(patch).length
      ? ((await this.store.updateVoiceCall(input.orgId, input.call.id, patch, this.clock.now())) ?? input.call)
      : input.call;
    return { decision, agent, call };
  }
}
