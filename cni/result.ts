// Normalizing a chain's final result (CNI 0.3.x, 0.4.0 and 1.x formats; they
// differ only in details: 0.3.x/0.4.0 put a "version" on each IP).
import { InvalidIpError, parseIp, parseIpWithPrefix, type IpFamily } from "./ip.js";
import { CniError, CniErrorCode } from "./exec.js";

export interface NetworkInterface {
  readonly name: string;
  readonly mac?: string;
  /** The netns path for interfaces inside the sandbox; absent for host-side ones. */
  readonly sandbox?: string;
}

export interface IpConfig {
  readonly family: IpFamily;
  readonly address: string;
  readonly prefixLength: number;
  readonly gateway?: string;
  /** Index into `interfaces`. */
  readonly interface?: number;
}

export interface Route {
  readonly dst: string;
  readonly gw?: string;
}

export interface Dns {
  readonly nameservers: readonly string[];
  readonly domain?: string;
  readonly search: readonly string[];
  readonly options: readonly string[];
}

export interface NetworkResult {
  readonly cniVersion: string;
  readonly interfaces: readonly NetworkInterface[];
  readonly ips: readonly IpConfig[];
  readonly routes: readonly Route[];
  readonly dns: Dns;
  /** Addresses of the pod's interface, IPv4 first (the first is the primary pod IP). */
  readonly podIps: readonly string[];
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : []);

function bad(message: string, cause?: unknown): CniError {
  return new CniError({ cniCode: CniErrorCode.DECODING_FAILURE, message: `invalid CNI result: ${message}`, cause });
}

function parseInterface(raw: unknown, i: number): NetworkInterface {
  if (!isObject(raw) || typeof raw["name"] !== "string" || raw["name"] === "") throw bad(`interfaces[${i}] has no name`);
  const mac = raw["mac"];
  const sandbox = raw["sandbox"];
  return {
    name: raw["name"],
    ...(typeof mac === "string" && mac !== "" ? { mac } : {}),
    ...(typeof sandbox === "string" && sandbox !== "" ? { sandbox } : {}),
  };
}

function parseIpConfig(raw: unknown, i: number, interfaceCount: number): IpConfig {
  if (!isObject(raw) || typeof raw["address"] !== "string") throw bad(`ips[${i}] has no address`);
  let ip;
  try {
    ip = parseIpWithPrefix(raw["address"]);
  } catch (err) {
    throw bad(`ips[${i}]: ${(err as Error).message}`, err);
  }
  const version = raw["version"];
  if (version !== undefined && version !== String(ip.family)) {
    throw bad(`ips[${i}] address ${raw["address"]} is not IPv${String(version)}`);
  }
  const iface = raw["interface"];
  if (iface !== undefined && iface !== null) {
    if (typeof iface !== "number" || !Number.isInteger(iface) || iface < 0 || iface >= interfaceCount) {
      throw bad(`ips[${i}] interface ${JSON.stringify(iface)} is not an index into ${interfaceCount} interfaces`);
    }
  }
  let gateway: string | undefined;
  if (typeof raw["gateway"] === "string" && raw["gateway"] !== "") {
    try {
      gateway = parseIp(raw["gateway"]).address;
    } catch (err) {
      throw bad(`ips[${i}] gateway: ${(err as InvalidIpError).message}`, err);
    }
  }
  return {
    family: ip.family,
    address: ip.address,
    prefixLength: ip.prefixLength,
    ...(gateway !== undefined ? { gateway } : {}),
    ...(typeof iface === "number" ? { interface: iface } : {}),
  };
}

/**
 * Parses a result as a plugin chain returns it. The pod IPs are those on the
 * interface named `ifName` inside the sandbox; when no IP names an interface
 * (some IPAM-only results), all IPs are taken.
 */
export function parseResult(raw: unknown, ifName: string): NetworkResult {
  if (!isObject(raw)) throw bad("not a JSON object");
  const cniVersion = typeof raw["cniVersion"] === "string" ? raw["cniVersion"] : "";
  if (cniVersion.startsWith("0.1.") || cniVersion.startsWith("0.2.") || "ip4" in raw || "ip6" in raw) {
    throw bad(`result version "${cniVersion}" (ip4/ip6 format) is not supported`);
  }
  const interfaces = (Array.isArray(raw["interfaces"]) ? raw["interfaces"] : []).map(parseInterface);
  const ips = (Array.isArray(raw["ips"]) ? raw["ips"] : []).map((ip, i) => parseIpConfig(ip, i, interfaces.length));
  const routes = (Array.isArray(raw["routes"]) ? raw["routes"] : []).map((r, i): Route => {
    if (!isObject(r) || typeof r["dst"] !== "string") throw bad(`routes[${i}] has no dst`);
    return { dst: r["dst"], ...(typeof r["gw"] === "string" && r["gw"] !== "" ? { gw: r["gw"] } : {}) };
  });
  const rawDns = isObject(raw["dns"]) ? raw["dns"] : {};
  const dns: Dns = {
    nameservers: strings(rawDns["nameservers"]),
    ...(typeof rawDns["domain"] === "string" && rawDns["domain"] !== "" ? { domain: rawDns["domain"] } : {}),
    search: strings(rawDns["search"]),
    options: strings(rawDns["options"]),
  };

  const onPodInterface = (ip: IpConfig): boolean => {
    if (ip.interface === undefined) return false;
    const iface = interfaces[ip.interface];
    return iface !== undefined && iface.sandbox !== undefined && iface.name === ifName;
  };
  const anyIndexed = ips.some((ip) => ip.interface !== undefined);
  const podIps = (anyIndexed ? ips.filter(onPodInterface) : ips)
    .slice()
    .sort((a, b) => a.family - b.family)
    .map((ip) => ip.address);

  return { cniVersion, interfaces, ips, routes, dns, podIps };
}
