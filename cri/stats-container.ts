// ContainerStats and ListContainerStats: CPU, memory, swap, pressure and
// writable layer of containers (cri/stats-collector.ts). A container removed
// meanwhile is left out of a list, not an error.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { required } from "../runtime/errors.js";
import { matchesLabels } from "./labels.js";
import { containerStats } from "./stats-collector.js";

export async function containerStatsRpc(deps: Deps, req: cri.ContainerStatsRequest, ctx: CallContext): Promise<cri.ContainerStatsResponse__Input> {
  const c = deps.containers.get(required(req.container_id, "container_id"));
  return { stats: containerStats(await deps.stats.container(c, ctx.signal)) };
}

export async function listContainerStats(deps: Deps, req: cri.ListContainerStatsRequest, ctx: CallContext): Promise<cri.ListContainerStatsResponse__Input> {
  const f = req.filter;
  const containers = deps.containers.list()
    .filter((c) => !f?.id || c.id.startsWith(f.id))
    .filter((c) => !f?.pod_sandbox_id || c.sandboxId.startsWith(f.pod_sandbox_id))
    .filter((c) => matchesLabels(c.config.labels, f?.label_selector));
  const samples = await Promise.all(containers.map((c) => deps.stats.container(c, ctx.signal)));
  return { stats: samples.filter((s) => deps.containers.find(s.container.id) !== undefined).map(containerStats) };
}
