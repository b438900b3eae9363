/**
 * The in-house SIP stack (RFC 3261): message model, parser and serializer, transports,
 * transactions and a small endpoint core. See sip-server.ts for the entry point.
 */
export * from './counters.js';
export * from './header-values.js';
export * from './headers.js';
export * from './ids.js';
export * from './message.js';
export * from './parser.js';
export * from './proxy.js';
export * from './rate-limit.js';
export * from './serializer.js';
export * from './sip-server.js';
export * from './timers.js';
export * from './transactions.js';
export * from './transport.js';
export * from './uri.js';
export * from './user-agent.js';
