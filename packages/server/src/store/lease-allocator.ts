/**
 * An in-memory index of the number pools for allocation on SQLite: per active number, its live
 * leases (counted up to a cap) and when it was last leased, ordered the way the allocation query
 * orders them. It answers "the best number for a new lease" in microseconds instead of a query that
 * scans a window of the pool.
 *
 * It is an index, not the truth: the database stays the source of every rule. The lease store only
 * uses it while it knows it is exact (every lease written, consumed or rolled back on this database
 * since it was loaded went through this process's group commit, no other connection has committed,
 * time has not gone backwards), and every choice it makes is validated by the conditional claim that
 * writes the lease: a number the caller already holds, or one drained behind its back, fails the
 * claim and the next choice (or the allocation query) is tried.
 */

/**
 * Pools with more active numbers than this are not indexed: loading one blocks the event loop for
 * about 2 µs per number (on every reload: after a pool change, or once another connection has
 * committed), while the allocation query's cost does not grow with the pool. 100,000 numbers load in
 * about 0.2 s (chosen for latency).
 */
export const INDEX_MAX_NUMBERS = 100_000;

/** The expiries of a slot without live leases: shared, never written (leased() gives a slot its own). */
const NONE: number[] = [];

/** One active pool number. */
interface Slot {
  number: string;
  country: CountryIndex;
  /** Live leases (not consumed, not expired at the index's clock). */
  live: number;
  lastLeasedAt: number;
  /** expiresAt of the live leases, ascending, from `head` on (entries before it have expired); NONE when empty. */
  expiries: number[];
  head: number;
  /** Position in the country's allocation heap, and in its expiry heap (-1 when not in it). */
  at: number;
  expAt: number;
}

/**
 * An indexed binary min-heap of slots. The slot's position field is `at` or `expAt` by subclass: a
 * field read per sift step, not a call through an accessor.
 */
abstract class SlotHeap {
  readonly items: Slot[] = [];

  protected abstract less(a: Slot, b: Slot): boolean;
  protected abstract get(s: Slot): number;
  protected abstract set(s: Slot, i: number): void;

  get size(): number {
    return this.items.length;
  }

  /** Replaces the heap's contents with `slots`, ordered in linear time (n pushes take n log n). */
  build(slots: Slot[]): void {
    const items = this.items;
    items.length = 0;
    for (let i = 0; i < slots.length; i++) {
      items.push(slots[i]!);
      this.set(slots[i]!, i);
    }
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  push(s: Slot): void {
    this.items.push(s);
    this.set(s, this.items.length - 1);
    this.up(this.items.length - 1);
  }

  remove(s: Slot): void {
    const i = this.get(s);
    if (i < 0) return;
    const last = this.items.pop()!;
    this.set(s, -1);
    if (last === s) return;
    this.items[i] = last;
    this.set(last, i);
    this.update(last);
  }

  /** Restores order after s's key changed either way. */
  update(s: Slot): void {
    const i = this.get(s);
    if (i < 0) return;
    this.down(this.up(i));
  }

  private up(i: number): number {
    const items = this.items;
    const s = items[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p]!;
      if (!this.less(s, parent)) break;
      items[i] = parent;
      this.set(parent, i);
      i = p;
    }
    items[i] = s;
    this.set(s, i);
    return i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const s = items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(items[r]!, items[l]!) ? r : l;
      const child = items[c]!;
      if (!this.less(child, s)) break;
      items[i] = child;
      this.set(child, i);
      i = c;
    }
    items[i] = s;
    this.set(s, i);
  }
}

/** The allocation query's order: fewest live leases (capped), least recently used, then the number. */
class AllocationHeap extends SlotHeap {
  constructor(private readonly cap: number) {
    super();
  }

  protected less(a: Slot, b: Slot): boolean {
    const cap = this.cap;
    const ka = a.live < cap ? a.live : cap;
    const kb = b.live < cap ? b.live : cap;
    if (ka !== kb) return ka < kb;
    if (a.lastLeasedAt !== b.lastLeasedAt) return a.lastLeasedAt < b.lastLeasedAt;
    return a.number < b.number;
  }

  protected get(s: Slot): number {
    return s.at;
  }

  protected set(s: Slot, i: number): void {
    s.at = i;
  }
}

/** Slots with live leases, the one whose first lease expires soonest on top. */
class ExpiryHeap extends SlotHeap {
  protected less(a: Slot, b: Slot): boolean {
    return a.expiries[a.head]! < b.expiries[b.head]!;
  }

  protected get(s: Slot): number {
    return s.expAt;
  }

  protected set(s: Slot, i: number): void {
    s.expAt = i;
  }
}

class CountryIndex {
  readonly byAllocation: SlotHeap;
  readonly byExpiry: SlotHeap;
  /** The latest instant the index has been brought to; earlier instants cannot be answered. */
  clock: number;

  constructor(cap: number, now: number) {
    this.byAllocation = new AllocationHeap(cap);
    this.byExpiry = new ExpiryHeap();
    this.clock = now;
  }

  /** Ends the leases that expired by `now`. */
  advance(now: number): void {
    if (now <= this.clock) return;
    this.clock = now;
    const heap = this.byExpiry;
    while (heap.size > 0) {
      const s = heap.items[0]!;
      if (s.expiries[s.head]! > now) break;
      while (s.head < s.expiries.length && s.expiries[s.head]! <= now) {
        s.head++;
        s.live--;
      }
      compact(s);
      if (s.head === s.expiries.length) heap.remove(s);
      else heap.update(s);
      this.byAllocation.update(s);
    }
  }
}

/** Drops the expired prefix of a slot's expiries once it is worth the copy. */
function compact(s: Slot): void {
  if (s.head === s.expiries.length) {
    s.expiries = NONE;
    s.head = 0;
  } else if (s.head > 64 && s.head * 2 > s.expiries.length) {
    s.expiries = s.expiries.slice(s.head);
    s.head = 0;
  }
}

/** Index of the first entry >= v in a[from..]. */
function lowerBound(a: number[], from: number, v: number): number {
  let lo = from;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface PoolSnapshot {
  /** The country's active numbers. */
  numbers: { number: string; lastLeasedAt: number }[];
  /** expiresAt of every live lease on those numbers at `now`. */
  live: { number: string; expiresAt: number }[];
}

export class LeaseAllocator {
  /** null: known, not indexed (see skip()). */
  private readonly countries = new Map<string, CountryIndex | null>();
  private readonly slots = new Map<string, Slot>();

  constructor(private readonly cap: number) {}

  /** Forgets everything (the next use of a country loads it again). */
  clear(): void {
    this.countries.clear();
    this.slots.clear();
  }

  has(country: string): boolean {
    return this.countries.has(country);
  }

  /** Indexes a country's pool from a snapshot read at `now`. */
  load(country: string, snapshot: PoolSnapshot, now: number): void {
    this.forget(country);
    const index = new CountryIndex(this.cap, now);
    this.countries.set(country, index);
    const all: Slot[] = new Array(snapshot.numbers.length);
    for (let i = 0; i < all.length; i++) {
      const n = snapshot.numbers[i]!;
      const slot: Slot = { number: n.number, country: index, live: 0, lastLeasedAt: n.lastLeasedAt, expiries: NONE, head: 0, at: -1, expAt: -1 };
      all[i] = slot;
      this.slots.set(n.number, slot);
    }
    const busy: Slot[] = [];
    for (const l of snapshot.live) {
      const slot = this.slots.get(l.number);
      if (!slot || slot.country !== index || l.expiresAt <= now) continue;
      if (slot.expiries === NONE) {
        slot.expiries = [];
        busy.push(slot);
      }
      slot.expiries.push(l.expiresAt);
      slot.live++;
    }
    for (const slot of busy) slot.expiries.sort((a, b) => a - b);
    index.byAllocation.build(all);
    index.byExpiry.build(busy);
  }

  /**
   * Marks a country as not indexed (its pool is larger than INDEX_MAX_NUMBERS): has() is true and
   * pick() answers undefined until clear().
   */
  skip(country: string): void {
    this.forget(country);
    this.countries.set(country, null);
  }

  private forget(country: string): void {
    const index = this.countries.get(country);
    this.countries.delete(country);
    if (!index) return;
    for (const s of index.byAllocation.items) this.slots.delete(s.number);
  }

  /**
   * The best number of the country at `now` outside `exclude`; null when every number is excluded or
   * the country has none; undefined when the index cannot answer (country not loaded, or `now` is
   * earlier than an instant it already answered for).
   */
  pick(country: string, now: number, exclude: readonly string[]): string | null | undefined {
    const index = this.countries.get(country);
    if (!index || now < index.clock) return undefined;
    index.advance(now);
    const heap = index.byAllocation;
    if (exclude.length === 0) return heap.size > 0 ? heap.items[0]!.number : null;
    const held: Slot[] = [];
    let found: string | null = null;
    while (heap.size > 0) {
      const top = heap.items[0]!;
      if (!exclude.includes(top.number)) {
        found = top.number;
        break;
      }
      heap.remove(top);
      held.push(top);
    }
    for (const s of held) heap.push(s);
    return found;
  }

  /** A lease was written on `number` at `createdAt`. */
  leased(number: string, createdAt: number, expiresAt: number): void {
    const s = this.slots.get(number);
    if (!s) return;
    const index = s.country;
    if (createdAt > s.lastLeasedAt) s.lastLeasedAt = createdAt;
    if (expiresAt > index.clock) {
      if (s.expiries === NONE) s.expiries = [];
      const e = s.expiries;
      if (e.length === s.head || e[e.length - 1]! <= expiresAt) e.push(expiresAt);
      else e.splice(lowerBound(e, s.head, expiresAt), 0, expiresAt);
      s.live++;
      if (s.expAt < 0) index.byExpiry.push(s);
      else index.byExpiry.update(s);
    }
    index.byAllocation.update(s);
  }

  /** A live lease of `number` expiring at `expiresAt` was consumed. */
  consumed(number: string, expiresAt: number): void {
    const s = this.slots.get(number);
    if (!s) return;
    const e = s.expiries;
    const i = lowerBound(e, s.head, expiresAt);
    // Already ended in the index (its clock is past the expiry): nothing to take back.
    if (i >= e.length || e[i] !== expiresAt) return;
    e.splice(i, 1);
    s.live--;
    compact(s);
    const index = s.country;
    if (s.head === e.length) index.byExpiry.remove(s);
    else index.byExpiry.update(s);
    index.byAllocation.update(s);
  }

  /** `number` is no longer active (drained or removed behind the index's back). */
  remove(number: string): void {
    const s = this.slots.get(number);
    if (!s) return;
    s.country.byAllocation.remove(s);
    s.country.byExpiry.remove(s);
    this.slots.delete(number);
  }
}

/**
 * When the index may be trusted again after another connection committed (its writes bypassed the
 * index, which must then be dropped and reloaded). The wait starts at `baseMs` and doubles, up to
 * `maxMs`, each time a reload is undone less than `maxMs` after it began, so a writer that commits
 * every second or so (a SIP worker consuming leases, another process) does not make this process
 * rebuild its index, a stall of up to 0.2 s, every second. An index that stayed trusted for `maxMs`
 * starts over at `baseMs`. Times are epoch ms from the caller's clock.
 */
export class IndexTrust {
  private quietMs: number;
  private foreignAt = -Infinity;
  /** When the index was last trusted again (it is reloaded on its next use). */
  private trustedAt = -Infinity;

  constructor(
    private readonly baseMs = 1000,
    private readonly maxMs = 60_000,
  ) {
    this.quietMs = baseMs;
  }

  /** Another connection committed, seen at `now`. */
  foreignCommit(now: number): void {
    if (this.trustedAt > this.foreignAt) {
      this.quietMs = now - this.trustedAt < this.maxMs ? Math.min(this.quietMs * 2, this.maxMs) : this.baseMs;
    }
    this.foreignAt = now;
  }

  /** Whether the index may be used at `now`. */
  trusted(now: number): boolean {
    if (now - this.foreignAt < this.quietMs) return false;
    if (this.trustedAt <= this.foreignAt) this.trustedAt = now;
    return true;
  }
}
