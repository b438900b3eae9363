/** Public entry of the service package: embed Handoff in another process or test harness. */
export { startServer, createLogger, type RunningServer } from './server.js';
export { loadSettings, loadProvisioningFile, ConfigError, type Settings, type Provisioning } from './config.js';
export { HandoffError, ERROR_CODES, type ErrorCode } from './domain/errors.js';
export { mintToken, generateKeyPair } from './domain/token-mint.js';
export { TokenVerifier, describeKey, type VerifiedToken } from './domain/token.js';
export { caseSafeSuffix, toId18, normalizeSfId, newVoiceCallId } from './domain/ids.js';
export { decodeUuiValue, parseUuiContext, encodeUui } from './domain/uui.js';
export { callerNumber, numberFromUri, normalizePhoneNumber } from './domain/caller-id.js';
export { SipHandoff, type SipHandoffOptions, type SipHandoffSettings } from './sip/handoff.js';
export { DemoAgent, type DemoAgentCall, type DemoAgentOptions } from './sip/demo-agent.js';
