// StopPodSandbox: stop the pod's containers, kill pause, tear the network down.
// Idempotent: a stopped or unknown sandbox is a success.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Sandbox } from "./store/sandboxes.js";
import { stopContainer } from "./container-stop.js";
import { deleteTask, killTask, taskState } from "../runtime/containerd/tasks.js";
import { unmountShm } from "../runtime/sandbox-files.js";
import { required } from "../runtime/errors.js";
import { sandboxEvent } from "./container-events.js";

export async function stopPodSandbox(deps: Deps, req: cri.StopPodSandboxRequest, ctx: CallContext): Promise<cri.StopPodSandboxResponse__Input> {
  const sandbox = deps.sandboxes.find(required(req.pod_sandbox_id, "pod_sandbox_id"));
  if (!sandbox) return {};
  await stopSandbox(deps, sandbox, ctx);
  return {};
}

export async function stopSandbox(deps: Deps, sandbox: Sandbox, ctx: CallContext): Promise<void> {
  const grace = Math.ceil(deps.config.containers.stop_grace_default / 1000);
  await Promise.all(deps.containers.inSandbox(sandbox.id).map((c) => stopContainer(deps, c, grace, ctx)));
  await stopPause(deps, sandbox, ctx.signal);
  if (!sandbox.networkDown && sandbox.netnsPath) {
    await deps.cni.del({
      id: sandbox.id, netns: sandbox.netnsPath,
      pod: { namespace: sandbox.config.metadata?.namespace ?? "", name: sandbox.config.metadata?.name ?? "", uid: sandbox.config.metadata?.uid ?? "" },
    }, ctx.signal);
  }
  sandbox.networkDown = true;
  await unmountShm(sandbox.shmDir);
  if (sandbox.state === "SANDBOX_READY") {
    sandbox.state = "SANDBOX_NOTREADY";
    sandboxEvent(deps, "CONTAINER_STOPPED_EVENT", sandbox);
  }
  ctx.log.info({ sandbox: sandbox.id.slice(0, 12) }, "sandbox stopped");
}

async function stopPause(deps: Deps, sandbox: Sandbox, signal: AbortSignal): Promise<void> {
  const task = await taskState(deps.containerd, sandbox.id, signal);
  if (!task) return;
  if (task.status !== "STOPPED") {
    await killTask(deps.containerd, sandbox.id, 9, { all: true }, signal);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const t = await taskState(deps.containerd, sandbox.id, signal);
      if (!t || t.status === "STOPPED") break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await deleteTask(deps.containerd, sandbox.id, signal);
}
