// A network config's host-local ranges rendered from the node's pod CIDRs
// (`crib bootstrap` with `[cni] manage_from_node`), and crib's default network
// config (the same as deploy/cni/10-crib.conflist) for a conf dir that has none.
import { podCidrsToIpRanges } from "./ip.js";

export const DEFAULT_NETWORK_FILE = "10-crib.conflist";

/** crib's default network: bridge crib0, host-local 10.88.0.0/16, portmap. */
export function defaultNetworkConfig(): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: "crib",
    plugins: [
      {
        type: "bridge",
        bridge: "crib0",
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        capabilities: { ipRanges: true },
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: "10.88.0.0/16", gateway: "10.88.0.1" }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const familyOf = (text: string): 4 | 6 => (text.includes(":") ? 6 : 4);
const DEFAULT_ROUTE = { 4: "0.0.0.0/0", 6: "::/0" } as const;

/** The ipam objects of type host-local in a config list (or a single-plugin config). */
function hostLocalIpams(config: Json): Json[] {
  const plugins = Array.isArray(config["plugins"]) ? (config["plugins"] as unknown[]) : [config];
  return plugins.filter(isObject).map((p) => p["ipam"]).filter((ipam): ipam is Json => isObject(ipam) && ipam["type"] === "host-local");
}

export interface RenderedRanges {
  /** the config with every host-local ipam's ranges set to the pod CIDRs */
  config: Json;
  changed: boolean;
  /** the pod CIDRs in canonical form */
  subnets: string[];
}

/**
 * Sets every host-local ipam's `ranges` to one range set per pod CIDR (at most
 * one per family; validated), drops the single-range keys host-local would add
 * as another range, and keeps routes only for the families the node has, with
 * a default route for each. Throws when the config has no host-local ipam.
 */
export function renderHostLocalRanges(original: Json, podCidrs: readonly string[]): RenderedRanges {
  if (podCidrs.length === 0) throw new Error("the node has no pod CIDRs");
  const ranges = podCidrsToIpRanges(podCidrs);
  const subnets = ranges.map((set) => set[0]!.subnet);
  const families = new Set(subnets.map(familyOf));
  const config = structuredClone(original);
  const ipams = hostLocalIpams(config);
  if (ipams.length === 0) throw new Error(`network "${String(config["name"])}" has no host-local IPAM to render pod CIDRs into`);
  for (const ipam of ipams) {
    for (const key of ["subnet", "rangeStart", "rangeEnd", "gateway"]) delete ipam[key];
    ipam["ranges"] = ranges.map((set) => set.map((r) => ({ ...r })));
    const routes = (Array.isArray(ipam["routes"]) ? (ipam["routes"] as unknown[]) : [])
      .filter((r): r is Json => isObject(r) && typeof r["dst"] === "string" && families.has(familyOf(r["dst"])));
    for (const family of families) {
      if (!routes.some((r) => r["dst"] === DEFAULT_ROUTE[family])) routes.push({ dst: DEFAULT_ROUTE[family] });
    }
    ipam["routes"] = routes;
  }
  return { config, changed: JSON.stringify(config) !== JSON.stringify(original), subnets };
}
