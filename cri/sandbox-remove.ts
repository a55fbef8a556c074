// RemovePodSandbox: force-remove the pod's containers, then its network
// namespace, files and pause container. An unknown sandbox is a success.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Sandbox } from "./store/sandboxes.js";
import { sandboxParts, stopSandbox } from "./sandbox-stop.js";
import { removeContainer } from "./container-remove.js";
import { deleteContainer } from "../runtime/containerd/tasks.js";
import { removeSandboxFiles } from "../runtime/sandbox-files.js";
import { required } from "../runtime/errors.js";
import { sandboxEvent } from "./container-events.js";
import { reapShimLater } from "./shim-reaper.js";

export async function removePodSandbox(deps: Deps, req: cri.RemovePodSandboxRequest, ctx: CallContext): Promise<cri.RemovePodSandboxResponse__Input> {
  const sandbox = deps.sandboxes.find(required(req.pod_sandbox_id, "pod_sandbox_id"));
  if (!sandbox) return {};
  // alone in the sandbox: every create and start in it has finished, none begins
  await deps.sandboxLocks.exclusive(sandbox.id, async () => {
    if (deps.sandboxes.find(sandbox.id) === sandbox) await removeSandbox(deps, sandbox, ctx);
  });
  return {};
}

export async function removeSandbox(deps: Deps, sandbox: Sandbox, ctx: CallContext): Promise<void> {
  // a crash from here on: start-up finishes the removal from this record
  await deps.intents.record({ kind: "sandbox-remove", sandbox: sandboxParts(sandbox) });
  for (const c of deps.containers.inSandbox(sandbox.id)) await removeContainer(deps, c, ctx);
  await stopSandbox(deps, sandbox, ctx);
  if (sandbox.netnsPath) await deps.netns.remove(sandbox.netnsPath, ctx.signal);
  await removeSandboxFiles(sandbox.dir, sandbox.shmDir);
  await deleteContainer(deps.containerd, sandbox.id, ctx.signal);
  deps.sandboxes.delete(sandbox.id);
  await deps.intents.done("sandbox-remove", sandbox.id);
  reapShimLater(deps, sandbox.id, sandbox.shimPid);
  sandboxEvent(deps, "CONTAINER_DELETED_EVENT", sandbox);
  ctx.log.info({ sandbox: sandbox.id.slice(0, 12) }, "sandbox removed");
}
