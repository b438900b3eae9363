import type { Clock } from '../domain/clock.js';
import type { Store } from '../store/store.js';
import { AuthService } from './auth.js';
import { VoiceCallService } from './voice-calls.js';

/** The services HTTP, SIP and the CLI share; built once by the composition root. */
export interface Services {
  store: Store;
  clock: Clock;
  auth: AuthService;
  voiceCalls: VoiceCallService;
}

export function createServices(store: Store, clock: Clock, opts: { acceptedAudiences?: string[] } = {}): Services {
  return {
    store,
    clock,
    auth: new AuthService(store, clock, opts),
    voiceCalls: new VoiceCallService(store, clock),
  };
}
