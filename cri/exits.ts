// Exit tracking: containerd's task events move containers to EXITED (after
// their log is flushed) and sandboxes to NOTREADY. settleExit asks containerd
// directly, for exits that happened while crib was down or an event was lost.
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import type { TaskEvent } from "../runtime/containerd/events.js";
import { toNanos } from "../runtime/containerd/events.js";
import { deleteTask, taskState } from "../runtime/containerd/tasks.js";
import { containerEvent, sandboxEvent } from "./container-events.js";

const LOG_DRAIN_MS = 5000;
const oomKilled = new Set<string>();

export function reasonFor(c: Container, exitCode: number): string {
  if (oomKilled.has(c.id)) return "OOMKilled";
  return exitCode === 0 ? "Completed" : "Error";
}

const dateNanos = (d: Date): string => (BigInt(d.getTime()) * 1_000_000n).toString();

async function recordExit(deps: Deps, c: Container, exitCode: number, finishedAt: string): Promise<void> {
  if (c.status.state === "CONTAINER_EXITED") return;
  await deps.io.get(c.id)?.drained(LOG_DRAIN_MS);
  if ((c.status.state as string) === "CONTAINER_EXITED") return; // another path recorded it while the log drained
  // containerd's clock and crib's may disagree by a hair: keep created <= started <= finished
  const started = c.status.startedAt === "0" ? finishedAt : c.status.startedAt;
  const floor = [c.createdAt, started].reduce((a, b) => (BigInt(a) > BigInt(b) ? a : b));
  const finished = BigInt(finishedAt) < BigInt(floor) ? floor : finishedAt;
  await deps.containers.setStatus(c, {
    state: "CONTAINER_EXITED", exitCode, finishedAt: finished, reason: reasonFor(c, exitCode), stopping: false, pid: 0,
    ...(c.status.startedAt === "0" ? { startedAt: BigInt(started) < BigInt(c.createdAt) ? c.createdAt : started } : {}),
  });
  containerEvent(deps, "CONTAINER_STOPPED_EVENT", c);
  oomKilled.delete(c.id);
  await deleteTask(deps.containerd, c.id).catch((err: unknown) => deps.log.debug({ err: String(err) }, "task delete after exit"));
  deps.log.info({ container: c.id.slice(0, 12), exitCode }, "container exited");
}

export function handleTaskEvent(deps: Deps, e: TaskEvent): void {
  if (e.kind === "oom") {
    oomKilled.add(e.containerId);
    return;
  }
  if (e.kind !== "exit" || (e.execId !== "" && e.execId !== e.containerId)) return;
  const sandbox = deps.sandboxes.find(e.containerId);
  if (sandbox) {
    if (sandbox.state === "SANDBOX_NOTREADY") return;
    sandbox.state = "SANDBOX_NOTREADY";
    sandboxEvent(deps, "CONTAINER_STOPPED_EVENT", sandbox);
    return;
  }
  const c = deps.containers.find(e.containerId);
  if (!c || c.status.state === "CONTAINER_EXITED") return;
  void recordExit(deps, c, e.exitStatus, dateNanos(e.exitedAt)).catch((err: unknown) => deps.log.warn({ err: String(err) }, "recording an exit failed"));
}

/** Looks at containerd's task: records the exit of a stopped or vanished one. */
export async function settleExit(deps: Deps, c: Container): Promise<void> {
  if (c.status.state !== "CONTAINER_RUNNING") return;
  const t = await taskState(deps.containerd, c.id);
  if (t && t.status !== "STOPPED") return;
  const finishedAt = t?.exitedAt ? toNanos(t.exitedAt).toString() : (BigInt(Date.now()) * 1_000_000n).toString();
  await recordExit(deps, c, t ? t.exitStatus : 255, finishedAt);
}
