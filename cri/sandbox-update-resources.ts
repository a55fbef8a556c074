// UpdatePodSandboxResources: kubelet has already resized the pod's cgroup; the
// runtime records the pod-level overhead and resources in the sandbox's config
// (memory and the containerd record, so it outlives a crib restart).
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { SANDBOX_EXTENSION, type Sandbox, type SandboxMeta } from "./store/sandboxes.js";
import { required } from "../runtime/errors.js";
import { updateExtension } from "../runtime/containerd/tasks.js";

export const sandboxMeta = ({ state: _state, pid: _pid, networkDown: _down, ...meta }: Sandbox): SandboxMeta => meta;

export async function updatePodSandboxResources(deps: Deps, req: cri.UpdatePodSandboxResourcesRequest, ctx: CallContext): Promise<cri.UpdatePodSandboxResourcesResponse__Input> {
  const sandbox = deps.sandboxes.get(required(req.pod_sandbox_id, "pod_sandbox_id"));
  const linux: cri.LinuxPodSandboxConfig = {
    ...(sandbox.config.linux ?? ({} as cri.LinuxPodSandboxConfig)),
    ...(req.overhead ? { overhead: req.overhead } : {}),
    ...(req.resources ? { resources: req.resources } : {}),
  };
  const config = { ...sandbox.config, linux };
  await updateExtension(deps.containerd, sandbox.id, SANDBOX_EXTENSION, sandboxMeta({ ...sandbox, config }), ctx.signal);
  sandbox.config = config;
  return {};
}
