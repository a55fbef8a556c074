// IP address and CIDR parsing with ip-num, for plugin results and pod CIDRs.
import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange, collapseIPv6Number } from "ip-num";

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

const canonical = (family: IpFamily, text: string): string =>
  family === 4 ? text : collapseIPv6Number(text).toLowerCase();

function parseFamily(text: string): IpFamily {
  return text.includes(":") ? 6 : 4;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Parses a bare address ("10.88.0.1", "fd00::1"); throws InvalidIpError naming the value. */
export function parseIp(text: string): { family: IpFamily; address: string } {
  const family = parseFamily(text);
  try {
    const ip = family === 4 ? IPv4.fromString(text) : IPv6.fromString(text);
    return { family, address: canonical(family, ip.toString()) };
  } catch (err) {
    throw new InvalidIpError(`invalid IP address "${text}": ${describe(err)}`);
  }
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
  let range: IPv4CidrRange | IPv6CidrRange;
  try {
    range = family === 4 ? IPv4CidrRange.fromCidr(text) : IPv6CidrRange.fromCidr(text);
  } catch (err) {
    throw new InvalidIpError(`invalid CIDR "${text}": ${describe(err)}`);
  }
  const network = canonical(family, range.getFirst().toString());
  const cidr = `${network}/${prefixLength}`;
  if (network !== parseIp(addressText).address) {
    throw new InvalidIpError(`invalid CIDR "${text}": host bits are set (the network is ${cidr})`);
  }
  return { family, network, prefixLength, cidr };
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
