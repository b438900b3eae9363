import type { Clock } from '../domain/clock.js';
import { isE164 } from '../domain/e164.js';
import { HandoffError } from '../domain/errors.js';
import { expandRange, MAX_NUMBERS_PER_ADD, parseNumberCsv, rangeSize } from '../domain/number-list.js';
import type { Store } from '../store/store.js';
import type { PoolNumber } from '../store/types.js';
import type { LeaseService } from './lease-service.js';
import type { ReferenceCache } from './reference-cache.js';

export interface PoolView {
  country: string;
  numbers: number;
  active: number;
  draining: number;
  liveLeases: number;
  busyNumbers: number;
  /** Share of active numbers holding at least one live lease. */
  utilisation: number;
}

export interface AddNumbersInput {
  numbers?: string[];
  ranges?: { from: string; to: string }[];
  csv?: string;
}

/** Operator administration of the number pools (admin API and CLI). Changes take effect at once. */
export class PoolAdmin {
  constructor(
    private readonly store: Store,
    private readonly leases: LeaseService,
    private readonly clock: Clock,
    private readonly refs: ReferenceCache,
  ) {}

  async list(): Promise<PoolView[]> {
    return (await this.leases.stats()).map((s) => ({
      country: s.country,
      numbers: s.numbers,
      active: s.activeNumbers,
      draining: s.numbers - s.activeNumbers,
      liveLeases: s.liveLeases,
      busyNumbers: s.busyNumbers,
      utilisation: s.utilisation,
    }));
  }

  /**
   * Adds numbers (one by one, ranges, CSV text) to a pool, creating it; returns how many were new.
   * The total is checked before any range is expanded, and nothing is added when a number is refused.
   */
  async add(countryRaw: string, input: AddNumbersInput): Promise<{ added: number; given: number }> {
    if (!/^[A-Za-z]{2}$/.test(countryRaw)) throw new HandoffError('INVALID_FIELD', 'country: must be an ISO 3166-1 alpha-2 code', { details: { field: 'country' } });
    const numbers = [...(input.numbers ?? [])];
    for (const n of numbers) {
      if (!isE164(n)) throw new HandoffError('INVALID_FIELD', `numbers: "${String(n).slice(0, 32)}" is not an E.164 number`, { details: { field: 'numbers' } });
    }
    const ranges = input.ranges ?? [];
    let total = numbers.length;
    for (const r of ranges) total += rangeSize(r.from, r.to);
    if (total > MAX_NUMBERS_PER_ADD) throw new HandoffError('INVALID_REQUEST', `At most ${MAX_NUMBERS_PER_ADD} numbers at once`);
    for (const r of ranges) expandRange(r.from, r.to, numbers);
    if (input.csv !== undefined) parseNumberCsv(input.csv, numbers, MAX_NUMBERS_PER_ADD);
    if (numbers.length === 0) throw new HandoffError('INVALID_REQUEST', 'Give numbers, ranges or csv');
    const clash = await this.store.channelAmong(numbers);
    if (clash) throw new HandoffError('CONFLICT', `${clash.number} is the address of channel ${clash.devName}; a channel number cannot be leased`);
    const added = await this.store.addPoolNumbers(countryRaw.toUpperCase(), numbers, this.clock.now());
    this.refs.clear();
    this.leases.poolsChanged();
    return { added, given: numbers.length };
  }

  private async number(number: string): Promise<PoolNumber> {
    const n = await this.store.getPoolNumber(number);
    if (!n) throw new HandoffError('NOT_FOUND', `${number} is in no pool`);
    return n;
  }

  /** No new leases on the number; live ones run their course. */
  async drain(number: string): Promise<PoolNumber> {
    await this.number(number);
    await this.store.setPoolNumberState(number, 'draining');
    this.leases.poolsChanged();
    return this.number(number);
  }

  async activate(number: string): Promise<PoolNumber> {
    await this.number(number);
    await this.store.setPoolNumberState(number, 'active');
    this.leases.poolsChanged();
    return this.number(number);
  }

  /** Removes a drained number without live leases (409 otherwise, so no caller is stranded). */
  async remove(number: string): Promise<void> {
    const n = await this.number(number);
    if (n.state !== 'draining') throw new HandoffError('CONFLICT', `${number} is active: drain it first`);
    const live = await this.leases.liveOnNumber(number);
    if (live > 0) throw new HandoffError('CONFLICT', `${number} still has ${live} live lease(s); remove it once they end`);
    await this.store.removePoolNumber(number);
    this.leases.poolsChanged();
  }
}
