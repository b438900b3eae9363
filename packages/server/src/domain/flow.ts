import { Type, type Static } from 'typebox';

/**
 * A channel's flow: ordered rules on the call context, first match wins, else the fallback.
 *
 * @example
 * { rules: [{ when: { path: ['uui'], attributes: { Department__c: ['Billing'] } }, agent: 'billing-bot' }],
 *   fallback: { reject: { status: 503, reason: 'No agent' } } }
 */
const StringList = Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { minItems: 1, maxItems: 100 });

export const FlowCondition = Type.Object(
  {
    /** The caller matches one of these E.164 prefixes (e.g. "+1415"). */
    callerPrefix: Type.Optional(StringList),
    /** The caller's ISO 3166-1 alpha-2 country is one of these. */
    country: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Z]{2}$' }), { minItems: 1 })),
    /** The hand-off path: "number" (leased PSTN number) or "uui" (SIP transfer with UUI). */
    path: Type.Optional(Type.Array(Type.Union([Type.Literal('number'), Type.Literal('uui')]), { minItems: 1 })),
    /** callAttributes fields equal one of the listed values. */
    attributes: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 128 }), StringList)),
  },
  { additionalProperties: false },
);

export const FlowSet = Type.Object(
  {
    queue: Type.Optional(Type.String({ maxLength: 255 })),
    callSubtype: Type.Optional(Type.String({ maxLength: 255 })),
    callOrigin: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);

export const FlowRule = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 128 })),
    when: Type.Optional(FlowCondition),
    set: Type.Optional(FlowSet),
    agent: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    queue: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  },
  { additionalProperties: false },
);

export const FlowFallback = Type.Object(
  {
    agent: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    queue: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    reject: Type.Optional(
      Type.Object(
        {
          status: Type.Integer({ minimum: 400, maximum: 699 }),
          reason: Type.Optional(Type.String({ maxLength: 128 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const FlowDefinition = Type.Object(
  {
    rules: Type.Array(FlowRule, { maxItems: 1000 }),
    fallback: FlowFallback,
  },
  { additionalProperties: false },
);

export type FlowDefinition = Static<typeof FlowDefinition>;

/** What a flow sees of a call. */
export interface FlowContext {
  /** The caller in E.164, when known. */
  caller: string | null;
  /** The caller's ISO 3166-1 alpha-2 country, when known. */
  callerCountry: string | null;
  /** How the call arrived; null when the flow runs outside a SIP hand-off (omniFlow over HTTP). */
  path: 'number' | 'uui' | null;
  /** callAttributes of the VoiceCall, the UUI's extra fields and flowInputParameters, merged. */
  attributes: Record<string, unknown>;
}

export interface FlowDecision {
  /** Index of the rule that decided, or null when the fallback did. */
  ruleIndex: number | null;
  ruleName: string | null;
  agent: string | null;
  queue: string | null;
  /** A SIP rejection chosen by the fallback. */
  reject: { status: number; reason: string | null } | null;
  /** VoiceCall fields set by every matching rule up to the deciding one, later ones winning. */
  set: { queue?: string; callSubtype?: string; callOrigin?: string };
}

function matches(when: FlowDefinition['rules'][number]['when'], c: FlowContext): boolean {
  if (!when) return true;
  if (when.callerPrefix && !(c.caller !== null && when.callerPrefix.some((p) => c.caller!.startsWith(p)))) return false;
  if (when.country && !(c.callerCountry !== null && when.country.includes(c.callerCountry))) return false;
  if (when.path && !(c.path !== null && when.path.includes(c.path))) return false;
  for (const [field, values] of Object.entries(when.attributes ?? {})) {
    const v = c.attributes[field];
    if (v === undefined || v === null || typeof v === 'object' || !values.includes(String(v))) return false;
  }
  return true;
}

/**
 * Evaluates a flow: rules in order, each matching when all its conditions hold (a list matches any of
 * its values). A matching rule's `set` applies; the first matching rule naming an agent or a queue
 * decides; when none does, the fallback decides.
 *
 * @example
 * evaluateFlow({ rules: [{ when: { path: ['uui'] }, agent: 'bot' }], fallback: { queue: 'humans' } },
 *   { caller: '+14155551234', callerCountry: 'US', path: 'uui', attributes: {} }).agent; // 'bot'
 */
export function evaluateFlow(flow: FlowDefinition, c: FlowContext): FlowDecision {
  const set: FlowDecision['set'] = {};
  for (const [i, rule] of flow.rules.entries()) {
    if (!matches(rule.when, c)) continue;
    Object.assign(set, rule.set ?? {});
    if (rule.agent !== undefined || rule.queue !== undefined) {
      return { ruleIndex: i, ruleName: rule.name ?? null, agent: rule.agent ?? null, queue: rule.queue ?? null, reject: null, set };
    }
  }
  const f = flow.fallback;
  return {
    ruleIndex: null,
    ruleName: null,
    agent: f.agent ?? null,
    queue: f.queue ?? null,
    reject: f.reject ? { status: f.reject.status, reason: f.reject.reason ?? null } : null,
    set,
  };
}
