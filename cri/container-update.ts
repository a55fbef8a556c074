// UpdateContainerResources, as containerd's CRI does it: the new resources go
// into the container's OCI spec in containerd (so a created container starts
// with them and a restart of crib sees them), then onto the running task's
// cgroup before OK; a failed task update puts the old spec back. The status
// reports what is in force, never a value the node ignored.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { failedPrecondition, notFound, required } from "../runtime/errors.js";
import { applyResources, resourcesInForce } from "../runtime/spec/resources.js";
import { specOf, updateSpec } from "../runtime/containerd/tasks.js";
import { jsonAny } from "../proto/load.js";
import type { Spec } from "../runtime/spec/types.js";

const RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

export async function updateContainerResources(deps: Deps, req: cri.UpdateContainerResourcesRequest, ctx: CallContext): Promise<cri.UpdateContainerResourcesResponse__Input> {
  const found = deps.containers.get(required(req.container_id, "container_id"));
  if (!req.linux) return {};
  const linux = req.linux;
  // in the pod's lifecycle lock: a start in flight sees the whole update or none of it
  return deps.sandboxLocks.shared(found.sandboxId, async () => {
    const c = deps.containers.find(found.id);
    if (c !== found) throw notFound(`container ${found.id} was removed`);
    if (c.status.state === "CONTAINER_EXITED") throw failedPrecondition(`container ${c.id} has exited; its resources cannot change`);
    const spec = (await specOf(deps.containerd, c.id, ctx.signal)) as Spec | undefined;
    if (!spec) throw notFound(`container ${c.id} has no record in containerd`);
    const resources = applyResources(spec.linux.resources, linux, deps.host, "linux");
    await updateSpec(deps.containerd, c.id, { ...spec, linux: { ...spec.linux, resources } }, ctx.signal);
    if (c.status.state === "CONTAINER_RUNNING") {
      try {
        await deps.containerd.tasks.Update({ container_id: c.id, resources: jsonAny(RESOURCES_TYPE, resources), annotations: {} }, ctx.signal);
      } catch (err) {
        await updateSpec(deps.containerd, c.id, spec, AbortSignal.timeout(10_000)).catch((undo: unknown) =>
          ctx.log.warn({ container: c.id.slice(0, 12), err: String(undo) }, "putting the old spec back after a failed update"));
        throw err;
      }
    }
    await deps.containers.setStatus(c, { resources: resourcesInForce(c.status.resources, linux, deps.host) });
    return {};
  });
}
