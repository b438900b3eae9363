import { KNOWN_METHODS } from './message.js';

/** Why an input was discarded without an answer (or with a stateless one and a close). */
export type DropReason =
  | 'garbage' // not SIP at all
  | 'malformed' // a malformed message that got no answer (a response, or a request without Via)
  | 'oversize'
  | 'rate-limited'
  | 'stray-response' // matched no client transaction
  | 'stray-ack'
  | 'framing-lost' // stream closed after a framing error
  | 'slow-sender'
  | 'idle'
  | 'max-connections'
  | 'buffer-overflow'
  | 'send-failed'
  | 'internal-error'; // a handler threw outside any transaction

/** Plain-object view of {@link SipCounters}, for metrics and tests. */
export interface SipCountersSnapshot {
  receivedRequests: Record<string, number>;
  receivedResponses: Record<string, number>;
  sentRequests: Record<string, number>;
  sentResponses: Record<string, number>;
  retransmissions: number;
  parseErrors: number;
  dropped: Record<string, number>;
}

function inc<K>(m: Map<K, number>, k: K, n = 1): void {
  m.set(k, (m.get(k) ?? 0) + n);
}

/** Extension methods are counted together, so a flood of invented methods cannot grow the map. */
function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'OTHER';
}

/**
 * Counters of the SIP stack: messages received and sent by method and status, parse errors and
 * drops by reason.
 *
 * @example
 * server.counters.snapshot().receivedRequests.OPTIONS; // 42
 */
export class SipCounters {
  private readonly rxReq = new Map<string, number>();
  private readonly rxRes = new Map<number, number>();
  private readonly txReq = new Map<string, number>();
  private readonly txRes = new Map<number, number>();
  private readonly drops = new Map<DropReason, number>();
  retransmissions = 0;
  parseErrors = 0;

  receivedRequest(method: string): void {
    inc(this.rxReq, methodLabel(method));
  }
  receivedResponse(status: number): void {
    inc(this.rxRes, status);
  }
  sentRequest(method: string): void {
    inc(this.txReq, methodLabel(method));
  }
  sentResponse(status: number): void {
    inc(this.txRes, status);
  }
  dropped(reason: DropReason): void {
    inc(this.drops, reason);
  }

  snapshot(): SipCountersSnapshot {
    return {
      receivedRequests: Object.fromEntries(this.rxReq),
      receivedResponses: Object.fromEntries([...this.rxRes].map(([k, v]) => [String(k), v])),
      sentRequests: Object.fromEntries(this.txReq),
      sentResponses: Object.fromEntries([...this.txRes].map(([k, v]) => [String(k), v])),
      retransmissions: this.retransmissions,
      parseErrors: this.parseErrors,
      dropped: Object.fromEntries(this.drops),
    };
  }
}
