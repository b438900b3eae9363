import type { Clock } from '../domain/clock.js';
import { HandoffError } from '../domain/errors.js';
import { normalizeSfId, toId18, VOICE_CALL_PREFIX } from '../domain/ids.js';
import type { Store } from '../store/store.js';
import type { Agent, VoiceCall } from '../store/types.js';
import { bearerSecret, hashSecret } from './operator-auth.js';
import type { WebhookService } from './webhooks.js';

export interface EscalateInput {
  reason: string;
  summary?: string | undefined;
  targetQueue?: string | undefined;
}

/** What can end a live AI leg: the SIP hand-off, when this instance proxies the call. */
export interface CallControl {
  /** Ends both legs of a proxied call (BYE to the agent and to the partner); false when not active here. */
  endCall(voiceCallId: string, reason: string): Promise<boolean>;
}

export interface EscalationResult {
  aiLeg: VoiceCall;
  partnerCall: VoiceCall | null;
  /** True when this instance ended the AI leg by BYE through its proxy. */
  aiLegEnded: boolean;
}

/**
 * The agent gives the call back (SPEC §7): the outcome is stored on the AI leg (VC2) and on the
 * partner's call (VC1), the AI leg is ended, and the partner's post-flow takes the caller back.
 */
export class EscalationService {
  /** Set by the composition root once the SIP ingress runs. */
  callControl: CallControl | null = null;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly webhooks: WebhookService,
  ) {}

  /** The agent whose bearer secret this is; INVALID_TOKEN otherwise (partner JWTs do not open this). */
  async authenticate(header: string | undefined): Promise<Agent> {
    const secret = bearerSecret(header);
    if (secret === null) throw new HandoffError('INVALID_TOKEN', 'An agent bearer token is required', { details: { reason: 'missing' } });
    const agent = await this.store.getAgentByTokenHash(hashSecret(secret));
    if (!agent) throw new HandoffError('INVALID_TOKEN', 'The agent token is not valid', { details: { reason: 'bad_agent_token' } });
    return agent;
  }

  /** The AI leg this agent handles: the call itself, or the active leg of a partner call (VC1). */
  private async aiLeg(agent: Agent, idRaw: string): Promise<VoiceCall> {
    const id = normalizeSfId(idRaw, VOICE_CALL_PREFIX);
    const call = id === null ? null : await this.store.getVoiceCallAnyOrg(id);
    const mine = (c: VoiceCall) => c.handoff?.['agent'] === agent.name && (agent.orgId === null || agent.orgId === c.orgId);
    if (call && mine(call)) return call;
    if (call && (agent.orgId === null || agent.orgId === call.orgId)) {
      const legs = (await this.store.listChildCalls(call.orgId, call.id)).filter(mine);
      const live = legs.filter((l) => l.isActiveCall !== false);
      const leg = live.at(-1) ?? legs.at(-1);
      if (leg) return leg;
    }
    throw new HandoffError('VOICE_CALL_NOT_FOUND', 'No call with that ID is handled by this agent');
  }

  async escalate(agent: Agent, idRaw: string, input: EscalateInput): Promise<EscalationResult> {
    const leg = await this.aiLeg(agent, idRaw);
    if (leg.escalation !== null) throw new HandoffError('CONFLICT', 'This call was already escalated');
    if (leg.isActiveCall === false) throw new HandoffError('CONFLICT', 'This call has ended; there is nothing to escalate');
    const now = this.clock.now();
    const escalation = {
      reason: input.reason,
      summary: input.summary ?? null,
      targetQueue: input.targetQueue ?? null,
      agent: agent.name,
      aiVoiceCallId: toId18(leg.id),
      escalatedAt: new Date(now).toISOString(),
    };
    const { aiLeg, partnerCall } = await this.store.transaction(async (tx) => {
      const ai = await tx.updateVoiceCall(leg.orgId, leg.id, { escalation, status: 'Escalated' }, now);
      const partner = leg.parentVoiceCallId ? await tx.updateVoiceCall(leg.orgId, leg.parentVoiceCallId, { escalation }, now) : null;
      // The partner learns why from the record and from this event, written with the outcome.
      await this.webhooks.emit(tx, {
        orgId: leg.orgId,
        type: 'call.escalated',
        voiceCallId: leg.id,
        data: { ...escalation, partnerVoiceCallId: leg.parentVoiceCallId ? toId18(leg.parentVoiceCallId) : null },
      });
      return { aiLeg: ai!, partnerCall: partner };
    });
    const aiLegEnded = (await this.callControl?.endCall(leg.id, 'escalated')) ?? false;
    return { aiLeg: aiLegEnded ? ((await this.store.getVoiceCall(leg.orgId, leg.id)) ?? aiLeg) : aiLeg, partnerCall, aiLegEnded };
  }
}
