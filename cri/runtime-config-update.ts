// UpdateRuntimeConfig: kubelet passes the node's pod CIDRs ("10.244.1.0/24" or
// "10.244.1.0/24,fd00:1::/64"); they are kept and given to CNI ADD of new pods
// as the `ipRanges` capability. An empty CIDR (a node not assigned one yet) changes nothing.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { invalidArgument } from "../runtime/errors.js";
import { podCidrsToIpRanges } from "../cni/ip.js";
import { shown } from "./validate.js";

export async function updateRuntimeConfig(deps: Deps, req: cri.UpdateRuntimeConfigRequest, ctx: CallContext): Promise<cri.UpdateRuntimeConfigResponse__Input> {
  const text = req.runtime_config?.network_config?.pod_cidr ?? "";
  const given = text.split(",").map((s) => s.trim()).filter(Boolean);
  if (given.length === 0) return {};
  let cidrs: string[];
  try {
    cidrs = podCidrsToIpRanges(given).map((set) => set[0]!.subnet);
  } catch (err) {
    throw invalidArgument(`runtime_config.network_config.pod_cidr ${shown(text)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (cidrs.join(",") === deps.podCidrs.current.join(",")) return {};
  await deps.podCidrs.set(cidrs);
  ctx.log.info({ podCidrs: cidrs }, "pod CIDRs updated; new pods get addresses from them");
  return {};
}
