// StopContainer: the image's StopSignal (or SIGTERM), SIGKILL after the
// timeout. Idempotent: a container that is not running, or unknown, is a success.
import { constants } from "node:os";
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import { required } from "../runtime/errors.js";
import { killTask } from "../runtime/containerd/tasks.js";
import { settleExit } from "./exits.js";
import { signalNumber } from "../runtime/signals.js";

export async function stopContainerRpc(deps: Deps, req: cri.StopContainerRequest, ctx: CallContext): Promise<cri.StopContainerResponse__Input> {
  const c = deps.containers.find(required(req.container_id, "container_id"));
  if (c) await stopContainer(deps, c, Number(req.timeout), ctx);
  return {};
}

export async function stopContainer(deps: Deps, c: Container, timeoutSeconds: number, ctx: CallContext): Promise<void> {
  if (c.status.state !== "CONTAINER_RUNNING") return;
  c.status.stopping = true;
  if (timeoutSeconds > 0) {
    await killTask(deps.containerd, c.id, signalNumber(c.stopSignal) ?? constants.signals.SIGTERM, {}, ctx.signal);
    if (await waitExited(deps, c, timeoutSeconds * 1000)) return;
  }
  // SIGKILL to the main process ends a container with its own PID namespace at
  // once; `all` (runc kill --all, slow: it walks the cgroup) only for stragglers
  await killTask(deps.containerd, c.id, constants.signals.SIGKILL, {}, ctx.signal);
  if (await waitExited(deps, c, 2_000)) return;
  await killTask(deps.containerd, c.id, constants.signals.SIGKILL, { all: true }, ctx.signal);
  if (!(await waitExited(deps, c, 30_000))) throw new Error(`container ${c.id} did not exit after SIGKILL`);
}

/** Waits until the container is EXITED; asks containerd itself now and then in case an event was missed. */
export async function waitExited(deps: Deps, c: Container, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (c.status.state === "CONTAINER_RUNNING") {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await deps.containers.nextChange(c.id, Math.min(left, 500));
    if (c.status.state === "CONTAINER_RUNNING") await settleExit(deps, c).catch(() => undefined);
  }
  return true;
}
