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
import type { SandboxParts } from "./intents.js";
import { DEFAULT_IFNAME } from "../cni/network.js";
import { parentShim } from "../runtime/containerd/shims.js";

/** What the intent journal records of a sandbox being stopped or removed. */
export function sandboxParts(sandbox: Sandbox): SandboxParts {
  const m = sandbox.config.metadata;
  return {
    id: sandbox.id, netnsPath: sandbox.netnsPath, dir: sandbox.dir, shmDir: sandbox.shmDir,
    ...(sandbox.netnsPath ? { cni: { pod: { namespace: m?.namespace ?? "", name: m?.name ?? "", uid: m?.uid ?? "" }, ifName: DEFAULT_IFNAME, capabilityArgs: {} } } : {}),
  };
}

export async function stopPodSandbox(deps: Deps, req: cri.StopPodSandboxRequest, ctx: CallContext): Promise<cri.StopPodSandboxResponse__Input> {
  const sandbox = deps.sandboxes.find(required(req.pod_sandbox_id, "pod_sandbox_id"));
  if (!sandbox) return {};
  await deps.sandboxLocks.exclusive(sandbox.id, async () => {
    if (deps.sandboxes.find(sandbox.id) === sandbox) await stopSandbox(deps, sandbox, ctx);
  });
  return {};
}

export async function stopSandbox(deps: Deps, sandbox: Sandbox, ctx: CallContext): Promise<void> {
  const stopped = sandbox.state === "SANDBOX_NOTREADY" && (sandbox.networkDown || !sandbox.netnsPath);
  // a crash from here on: start-up finishes the stop from this record
  if (!stopped) await deps.intents.record({ kind: "sandbox-stop", sandbox: sandboxParts(sandbox) });
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
  await allSettled([stopPause(deps, sandbox, ctx.signal), network(), unmountShm(sandbox.shmDir)]);
  sandbox.networkDown = true;
  if (sandbox.state === "SANDBOX_READY") {
    sandbox.state = "SANDBOX_NOTREADY";
    sandboxEvent(deps, "CONTAINER_STOPPED_EVENT", sandbox);
  }
  await deps.intents.done("sandbox-stop", sandbox.id);
  ctx.log.info({ sandbox: sandbox.id.slice(0, 12) }, "sandbox stopped");
}

async function stopPause(deps: Deps, sandbox: Sandbox, signal: AbortSignal): Promise<void> {
  const task = await taskState(deps.containerd, sandbox.id, signal);
  if (!task) return;
  if (task.status !== "STOPPED") {
    // the pause's parent is its shim: known now, it can be ended if containerd leaves it behind
    const shim = sandbox.shimPid === undefined && task.pid > 0 ? await parentShim(task.pid) : undefined;
    if (shim) sandbox.shimPid = shim.pid;
    // Wait answers when the task exits: no polling delay on the pod's stop path. A task is
    // deleted only once it is gone: on a loaded node the exit can take longer than one wait.
    for (;;) {
      const exited = deps.containerd.tasks.Wait({ container_id: sandbox.id }, AbortSignal.any([signal, AbortSignal.timeout(10_000)]));
      await killTask(deps.containerd, sandbox.id, 9, { all: true }, signal);
      const ok = await exited.then(() => true, (err: unknown) => {
        deps.log.warn({ sandbox: sandbox.id.slice(0, 12), err: String(err) }, "waiting for the pause task to exit");
        return false;
      });
      if (ok) break;
      signal.throwIfAborted();
      const now = await taskState(deps.containerd, sandbox.id, signal);
      if (!now || now.status === "STOPPED") break;
    }
  }
  await deleteTask(deps.containerd, sandbox.id, signal);
}
