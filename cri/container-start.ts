// StartContainer: the task on the snapshot's mounts with the stdio FIFOs. A
// failed start leaves the container EXITED with runc's message as the reason.
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { nowNanos } from "./sandbox-run.js";
import { failedPrecondition, internal, notFound, required } from "../runtime/errors.js";
import type { Container } from "./store/containers.js";
import { startTask } from "../runtime/containerd/tasks.js";
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
    const pid = await startTask(deps.containerd, c.id, io.paths, signal);
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
    const message = err instanceof Error ? err.message : String(err);
    const now = nowNanos();
    await deps.containers.setStatus(c, { state: "CONTAINER_EXITED", startedAt: now, finishedAt: now, exitCode: 128, reason: "StartError", message });
    containerEvent(deps, "CONTAINER_STOPPED_EVENT", c);
    await io.close();
    await deps.intents.done("container-start", c.id);
    throw err;
  }
}
