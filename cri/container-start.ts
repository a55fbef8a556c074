// StartContainer: the task on the snapshot's mounts with the stdio FIFOs. A
// failed start leaves the container EXITED with runc's message as the reason.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { nowNanos } from "./sandbox-run.js";
import { failedPrecondition, internal, isKind, notFound, required, unavailable } from "../runtime/errors.js";
import type { Container } from "./store/containers.js";
import { startTask, taskState, type Stdio, type SnapshotMounts } from "../runtime/containerd/tasks.js";
import { ContainerdError, isAlreadyExists } from "../runtime/containerd/errors.js";
import { startFailure } from "../runtime/containerd/start-failure.js";
import { shown } from "./validate.js";
import { expectStaleExit } from "./exits.js";
import { removeTask } from "./reconciler.js";
import { containerEvent } from "./container-events.js";
import { crashPoint } from "./crash-point.js";
import { containerParts } from "./container-remove.js";

export async function startContainer(deps: Deps, req: cri.StartContainerRequest, ctx: CallContext): Promise<cri.StartContainerResponse__Input> {
  const found = deps.containers.get(required(req.container_id, "container_id"));
  return deps.sandboxLocks.shared(found.sandboxId, () => start(deps, found, ctx));
}

async function start(deps: Deps, c: Container, ctx: CallContext): Promise<cri.StartContainerResponse__Input> {
  // removed (with its pod, or on its own) while this call waited
  if (deps.containers.find(c.id) !== c) throw notFound(`container ${c.id} was removed`);
  if (deps.sandboxes.find(c.sandboxId) === undefined) throw notFound(`container ${c.id}: its pod sandbox ${c.sandboxId} was removed`);
  if (c.status.state !== "CONTAINER_CREATED") throw failedPrecondition(`container ${c.id} is ${c.status.state.replace("CONTAINER_", "").toLowerCase()}, not created`);
  const sandbox = deps.sandboxes.get(c.sandboxId);
  if (sandbox.state !== "SANDBOX_READY") throw failedPrecondition(`container ${c.id}: its pod sandbox ${sandbox.id} is not ready`);
  const io = deps.io.get(c.id);
  if (!io) throw internal(`container ${c.id} has no stdio`);
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(120_000)]);
  // a crash from here on leaves a task that may or may not run: start-up finishes or undoes it
  await deps.intents.record({ kind: "container-start", container: containerParts(c) });
  try {
    const pid = await startTaskOnce(deps, c.id, io.paths, signal, c.rootfs);
    crashPoint("container-start:started");
    await io.started();
    // an exit event may already have been handled while Start was in flight
    if (c.status.state === "CONTAINER_CREATED") {
      await deps.containers.setStatus(c, { state: "CONTAINER_RUNNING", pid, startedAt: nowNanos() });
      containerEvent(deps, "CONTAINER_STARTED_EVENT", c);
    }
    await deps.intents.done("container-start", c.id);
    ctx.log.info({ container: c.id.slice(0, 12), pid }, "container started");
    return {};
  } catch (err) {
    if (isKind(err, "unavailable") && (err as Error).cause instanceof ContainerdError) {
      // nothing was started by this call: the container stays CREATED for the retry
      await deps.intents.done("container-start", c.id);
      throw err;
    }
    const message = err instanceof Error ? err.message : String(err);
    const now = nowNanos();
    await deps.containers.setStatus(c, { state: "CONTAINER_EXITED", startedAt: now, finishedAt: now, exitCode: 128, reason: "StartError", message });
    containerEvent(deps, "CONTAINER_STOPPED_EVENT", c);
    await io.close();
    await deps.intents.done("container-start", c.id);
    throw startError(c, err) ?? err;
  }
}

/** runc could not start the process: say why in the CRI's words, not as UNKNOWN with runc's text (which stays in the status message). */
function startError(c: Container, err: unknown): Error | undefined {
  const why = startFailure(err);
  if (!why) return undefined;
  if (why.kind === "not found" || why.kind === "not executable") return failedPrecondition(`container ${c.id}: its program ${shown(why.program)} is ${why.kind} in the container`);
  if (why.kind === "memory limit below usage") {
    return failedPrecondition(`container ${c.id}: its memory limit of ${why.limit} bytes is below what runc's init already uses (${why.usage} bytes)`);
  }
  const memory = Number(c.config.linux?.resources?.memory_limit_in_bytes ?? 0);
  return failedPrecondition(`container ${c.id}: its process ended before it could start${memory > 0 ? ` (killed: its memory limit of ${memory} bytes is most likely too low)` : ""}`);
}

/** containerd is in, or was left by, another tasks.Create of this container: a StartContainer crib died in. */
const createInFlight = (err: unknown): boolean =>
  err instanceof ContainerdError && err.method === "tasks.Create" && (isAlreadyExists(err) || /file exists/.test(err.message));

const IN_FLIGHT_WAIT_MS = 30_000;

/**
 * startTask, after an interrupted StartContainer's own tasks.Create (crib
 * killed while containerd ran it) has ended: containerd finishes that call on
 * its own, holding the task's bundle meanwhile. The task it leaves never ran
 * and has the old call's stdio, so it is removed and made again.
 */
async function startTaskOnce(deps: Deps, id: string, stdio: Stdio, signal: AbortSignal, rootfs?: SnapshotMounts): Promise<number> {
  const deadline = Date.now() + IN_FLIGHT_WAIT_MS;
  for (;;) {
    try {
      return await startTask(deps.containerd, id, stdio, signal, rootfs);
    } catch (err) {
      if (!createInFlight(err)) throw err;
      if (Date.now() > deadline || signal.aborted) {
        throw unavailable(`container ${id}: containerd is still in the task create of an interrupted StartContainer (${(err as Error).message}); try again`, err);
      }
      const t = await taskState(deps.containerd, id, signal);
      if (t && t.status !== "CREATED") throw failedPrecondition(`container ${id}: its task is ${t.status.toLowerCase()} although crib never started it`);
      if (!t) {
        await new Promise((r) => setTimeout(r, 250)); // that Create is still running
        continue;
      }
      expectStaleExit(id, t.pid);
      await removeTask(deps, id, signal);
    }
  }
}
