// PodSandboxStats and ListPodSandboxStats: the pod's CPU, memory, pressure and
// process count, its interfaces' counters, and the stats of each of its containers.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { required } from "../runtime/errors.js";
import { matchesLabels } from "./labels.js";
import { sandboxStats } from "./stats-collector.js";

export async function podSandboxStats(deps: Deps, req: cri.PodSandboxStatsRequest, ctx: CallContext): Promise<cri.PodSandboxStatsResponse__Input> {
  const sandbox = deps.sandboxes.get(required(req.pod_sandbox_id, "pod_sandbox_id"));
  return { stats: sandboxStats(await deps.stats.sandbox(sandbox, deps.containers.inSandbox(sandbox.id), ctx.signal)) };
}

export async function listPodSandboxStats(deps: Deps, req: cri.ListPodSandboxStatsRequest, ctx: CallContext): Promise<cri.ListPodSandboxStatsResponse__Input> {
  const f = req.filter;
  const sandboxes = deps.sandboxes.list()
    .filter((s) => !f?.id || s.id.startsWith(f.id))
    .filter((s) => matchesLabels(s.config.labels, f?.label_selector));
  const samples = await Promise.all(sandboxes.map((s) => deps.stats.sandbox(s, deps.containers.inSandbox(s.id), ctx.signal)));
  return { stats: samples.filter((s) => deps.sandboxes.find(s.sandbox.id) !== undefined).map(sandboxStats) };
}
