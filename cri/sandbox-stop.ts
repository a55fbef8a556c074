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
import { allSettled } from "./rollback.js";

export async function stopPodSandbox(deps: Deps, req: cri.StopPodSandboxRequest, ctx: CallContext): Promise<cri.StopPodSandboxResponse__Input> {
  const sandbox = deps.sandboxes.find(required(req.pod_sandbox_id, "pod_sandbox_id"));
  if (!sandbox) return {};
  await stopSandbox(deps, sandbox, ctx);
  return {};
}

export async function stopSandbox(deps: Deps, sandbox: Sandbox, ctx: CallContext): Promise<void> {
  const grace = Math.ceil(deps.config.containers.stop_grace_default / 1000);
  await Promise.all(deps.containers.inSandbox(sandbox.id).map((c) => stopContainer(deps, c, grace, ctx)));
  // the pause process and the pod network go down side by side: DEL needs only the pinned netns
  const network = async (): Promise<void> => {
    if (sandbox.networkDown || !sandbox.netnsPath) return;
    await deps.cni.del({
      id: sandbox.id, netns: sandbox.netnsPath,
      pod: { namespace: sandbox.config.metadata?.namespace ?? "", name: sandbox.config.metadata?.name ?? "", uid: sandbox.config.metadata?.uid ?? "" },
    }, ctx.signal);
    sandbox.networkDown = true;
  };
  await allSettled([stopPauseTask(deps, sandbox.id, ctx.signal), network(), unmountShm(sandbox.shmDir)]);
  sandbox.networkDown = true;
  if (sandbox.state === "SANDBOX_READY") {
    sandbox.state = "SANDBOX_NOTREADY";
    sandboxEvent(deps, "CONTAINER_STOPPED_EVENT", sandbox);
  }
  ctx.log.info({ sandbox: sandbox.id.slice(0, 12) }, "sandbox stopped");
}

/** Kills the pause task, waits until it has exited, and deletes it; absent is fine. */
export async function stopPauseTask(deps: Pick<Deps, "containerd" | "log">, id: string, signal: AbortSignal): Promise<void> {
  const task = await taskState(deps.containerd, id, signal);
  if (!task) return;
  if (task.status !== "STOPPED") {
    // Wait answers when the task exits: no polling delay on the pod's stop path
    const exited = deps.containerd.tasks.Wait({ container_id: id }, AbortSignal.any([signal, AbortSignal.timeout(10_000)]));
    await killTask(deps.containerd, id, 9, { all: true }, signal);
    await exited.catch((err: unknown) => deps.log.warn({ sandbox: id.slice(0, 12), err: String(err) }, "waiting for the pause task to exit"));
  }
  await deleteTask(deps.containerd, id, signal);
}
