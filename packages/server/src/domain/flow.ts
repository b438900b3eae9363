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
