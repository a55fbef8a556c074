// IP address and CIDR parsing, for plugin results and pod CIDRs. node:net says
// whether a text is an address; the rest (groups, a network's first address,
// RFC 5952 text) is a few lines here. ip-num did this before, at ~1 MB of the
// daemon's heap for three calls.
import { isIPv4, isIPv6 } from "node:net";

export type IpFamily = 4 | 6;

/** An address with its prefix length, as a CNI result reports it ("10.88.0.5/16"). */
export interface IpWithPrefix {
  readonly family: IpFamily;
  /** Canonical text of the address: dotted quad, or compressed lower-case IPv6. */
  readonly address: string;
  readonly prefixLength: number;
}

/** A network (host bits zero), as a pod CIDR or a host-local subnet ("10.88.0.0/16"). */
export interface Cidr {
  readonly family: IpFamily;
  /** Canonical network address. */
  readonly network: string;
  readonly prefixLength: number;
  /** "network/prefixLength" in canonical form. */
  readonly cidr: string;
}

export class InvalidIpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvalidIpError";
  }
}

function parseFamily(text: string): IpFamily {
  return text.includes(":") ? 6 : 4;
}

/** The address's groups: 4 octets, or 8 groups of 16 bits; undefined when the text is not an address of its family. */
function groups(family: IpFamily, text: string): number[] | undefined {
  if (family === 4) return isIPv4(text) ? text.split(".").map(Number) : undefined;
  if (!isIPv6(text) || text.includes("%")) return undefined; // no zone in a CNI result or a CIDR
  const part = (p: string): number[] => (p === "" ? [] : p.split(":").flatMap((g) => {
    if (!g.includes(".")) return [parseInt(g, 16)];
    const [a, b, c, d] = g.split(".").map(Number) as [number, number, number, number];
    return [(a << 8) | b, (c << 8) | d];
  }));
  const gap = text.indexOf("::");
  if (gap < 0) return part(text);
  const head = part(text.slice(0, gap));
  const tail = part(text.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** Canonical text: the dotted quad, or RFC 5952 IPv6 (lower case, the longest run of two or more zero groups, the first of equals, as "::"). */
function format(family: IpFamily, g: readonly number[]): string {
  if (family === 4) return g.join(".");
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (xs: readonly number[]): string => xs.map((x) => x.toString(16)).join(":");
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLength))}`;
}

/** The first address of the network of `prefixLength` bits that holds `g`. */
function network(family: IpFamily, g: readonly number[], prefixLength: number): number[] {
  const width = family === 4 ? 8 : 16;
  return g.map((x, i) => {
    const keep = Math.min(width, Math.max(0, prefixLength - i * width));
    return keep === 0 ? 0 : x & (((1 << keep) - 1) << (width - keep));
  });
}

/** Parses a bare address ("10.88.0.1", "fd00::1"); throws InvalidIpError naming the value. */
export function parseIp(text: string): { family: IpFamily; address: string } {
  const family = parseFamily(text);
  const g = groups(family, text);
  if (g === undefined) throw new InvalidIpError(`invalid IP address "${text}": not an IPv${family} address`);
  return { family, address: format(family, g) };
}

function splitPrefix(text: string, what: string): [string, number] {
  const slash = text.indexOf("/");
  const prefixText = slash < 0 ? "" : text.slice(slash + 1);
  if (slash < 0 || !/^\d{1,3}$/.test(prefixText)) {
    throw new InvalidIpError(`invalid ${what} "${text}": expected address/prefix-length`);
  }
  return [text.slice(0, slash), Number(prefixText)];
}

/** Parses an address with prefix length; host bits may be set (it is an interface address). */
export function parseIpWithPrefix(text: string): IpWithPrefix {
  const [addressText, prefixLength] = splitPrefix(text, "IP address");
  const { family, address } = parseIp(addressText);
  const max = family === 4 ? 32 : 128;
  if (prefixLength > max) {
    throw new InvalidIpError(`invalid IP address "${text}": prefix length ${prefixLength} is more than ${max}`);
  }
  return { family, address, prefixLength };
}

/**
 * Parses a network CIDR. Host bits must be zero, as host-local requires of a
 * subnet; the error names the network the value was probably meant to be.
 */
export function parseCidr(text: string): Cidr {
  const [addressText, prefixLength] = splitPrefix(text, "CIDR");
  const family = parseFamily(addressText);
  const g = groups(family, addressText);
  const max = family === 4 ? 32 : 128;
  if (g === undefined) throw new InvalidIpError(`invalid CIDR "${text}": "${addressText}" is not an IPv${family} address`);
  if (prefixLength > max) throw new InvalidIpError(`invalid CIDR "${text}": prefix length ${prefixLength} is more than ${max}`);
  const first = format(family, network(family, g, prefixLength));
  const cidr = `${first}/${prefixLength}`;
  if (first !== format(family, g)) {
    throw new InvalidIpError(`invalid CIDR "${text}": host bits are set (the network is ${cidr})`);
  }
  return { family, network: first, prefixLength, cidr };
}

export function isValidCidr(text: string): boolean {
  try {
    parseCidr(text);
    return true;
  } catch {
    return false;
  }
}

/** host-local's `ipRanges` runtime config: one range set per pod CIDR (one per family). */
export type IpRanges = Array<Array<{ subnet: string }>>;

/** Pod CIDRs (as kubelet sends them in UpdateRuntimeConfig) → host-local `ipRanges`. */
export function podCidrsToIpRanges(podCidrs: readonly string[]): IpRanges {
  const cidrs = podCidrs.map((text) => parseCidr(text.trim()));
  const families = new Set<IpFamily>();
  for (const cidr of cidrs) {
    if (families.has(cidr.family)) {
      throw new InvalidIpError(`pod CIDRs ${podCidrs.join(",")}: more than one IPv${cidr.family} CIDR`);
    }
    families.add(cidr.family);
  }
  return cidrs.map((cidr) => [{ subnet: cidr.cidr }]);
}
