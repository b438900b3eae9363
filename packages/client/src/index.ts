/**
 * `@handoff/client`: the partner SDK of Handoff's `/telephony/v1` API. No runtime dependencies
 * (node:crypto and the global fetch), Node 20 or later.
 *
 * @example
 * import { HandoffClient, buildUui, isHandoffApiError } from '@handoff/client';
 */
export { HandoffClient } from './client.js';
export { mintToken, type MintTokenOptions, type TokenAlg } from './token.js';
export { buildUui, type Uui, type UuiInput, type UuiOptions } from './uui.js';
export { HandoffApiError, isHandoffApiError, type HandoffApiErrorInit, type HandoffErrorCode } from './errors.js';
export type {
  CreatedVoiceCall,
  CreateVoiceCallInput,
  EscalateInput,
  Escalation,
  EscalationResult,
  HandoffClientOptions,
  ReservedNumber,
  ReserveOptions,
  ReserveRoutableNumberInput,
  TokenProvider,
  UpdateVoiceCallInput,
  VoiceCallParticipant,
  VoiceCallRecord,
} from './types.js';
