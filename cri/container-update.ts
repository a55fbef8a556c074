// UpdateContainerResources: applied to the running task's cgroup and kept in
// the container's status.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { failedPrecondition, required } from "../runtime/errors.js";
import { applyResources } from "../runtime/spec/resources.js";
import { jsonAny } from "../proto/load.js";

const RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

export async function updateContainerResources(deps: Deps, req: cri.UpdateContainerResourcesRequest, ctx: CallContext): Promise<cri.UpdateContainerResourcesResponse__Input> {
  const c = deps.containers.get(required(req.container_id, "container_id"));
  if (!req.linux) return {};
  if (c.status.state === "CONTAINER_EXITED") throw failedPrecondition(`container ${c.id} has exited; its resources cannot change`);
  const resources = applyResources({ devices: [] }, req.linux, deps.host, "linux");
  if (c.status.state === "CONTAINER_RUNNING") {
    await deps.containerd.tasks.Update({ container_id: c.id, resources: jsonAny(RESOURCES_TYPE, resources), annotations: {} }, ctx.signal);
  }
  await deps.containers.setStatus(c, { resources: { ...(c.status.resources ?? {}), ...req.linux } as cri.LinuxContainerResources });
  return {};
}
