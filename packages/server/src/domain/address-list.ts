import { BlockList, isIP } from 'node:net';

/**
 * A set of IP addresses and CIDR prefixes (IPv4 and IPv6), as a trunk allow-list names them.
 *
 * @example
 * const trunk = AddressList.parse(['10.0.0.0/8', '127.0.0.1', '2001:db8::/32']);
 * trunk.has('10.1.2.3');          // true
 * trunk.has('::ffff:10.1.2.3');   // true (IPv4-mapped IPv6, as dual-stack sockets report it)
 * trunk.has('192.0.2.1');         // false
 */
export class AddressList {
  private constructor(
    private readonly list: BlockList,
    /** The entries as configured. */
    readonly entries: readonly string[],
  ) {}

  /** Why `entry` is not an address or CIDR prefix, or null when it is one. */
  static problem(entry: string): string | null {
    const [address = '', bits, extra] = entry.trim().split('/');
    const family = isIP(address);
    if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR prefix`;
    if (bits === undefined) return null;
    const n = Number(bits);
    const max = family === 4 ? 32 : 128;
    return /^\d{1,3}$/.test(bits) && n <= max ? null : `"${entry}": the prefix length must be 0 to ${max}`;
  }

  /** Builds a list; throws TypeError naming the first bad entry. */
  static parse(entries: readonly string[]): AddressList {
    const list = new BlockList();
    for (const raw of entries) {
      const problem = AddressList.problem(raw);
      if (problem) throw new TypeError(problem);
      const [address = '', bits] = raw.trim().split('/');
      const type = isIP(address) === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) list.addAddress(address, type);
      else list.addSubnet(address, Number(bits), type);
    }
    return new AddressList(list, [...entries]);
  }

  /** True when `ip` is in the list (an IPv4-mapped IPv6 address counts as its IPv4 form). */
  has(ip: string): boolean {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
    const address = mapped?.[1] ?? ip;
    const family = isIP(address);
    if (family === 0) return false;
    return this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}
