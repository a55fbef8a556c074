// Exit tracking: containerd's task events move containers to EXITED (after
// their log is flushed) and sandboxes to NOTREADY. settleExit asks containerd
// directly, for exits that happened while crib was down or an event was lost.
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import type { TaskEvent } from "../runtime/containerd/events.js";
import { toNanos } from "../runtime/containerd/events.js";
import { deleteTask, taskState } from "../runtime/containerd/tasks.js";
import { CgroupStats, oomKills } from "../runtime/cgroup-stats.js";
import { cgroupsPath } from "../runtime/spec/resources.js";
import { containerEvent, sandboxEvent } from "./container-events.js";

const LOG_DRAIN_MS = 5000;
const oomKilled = new Set<string>();
const cgroups = new CgroupStats();

/**
 * Whether the kernel's OOM killer struck in the container's memory cgroup.
 * containerd's OOM event is missed when the kill comes before the shim watches
 * the cgroup (a process over its limit at once), so the kernel's count is read
 * while the task, and with it the cgroup, still exists. Only the cgroupfs
 * driver's cgroup is known by path; systemd removes a scope's at the exit anyway.
 */
async function oomKilledInCgroup(deps: Deps, c: Container): Promise<boolean> {
  const sandbox = deps.sandboxes.find(c.sandboxId);
  if (!sandbox || deps.host.systemdCgroup) return false;
  const { memory } = await cgroups.ofPath(cgroupsPath(sandbox.config.linux?.cgroup_parent ?? "", c.id, false));
  return memory !== undefined && (await oomKills(memory)) > 0;
}

const dateNanos = (d: Date): string => (BigInt(d.getTime()) * 1_000_000n).toString();

async function recordExit(deps: Deps, c: Container, exitCode: number, finishedAt: string, pid?: number): Promise<void> {
  if (c.status.state === "CONTAINER_EXITED") return;
  await deps.io.get(c.id)?.drained(LOG_DRAIN_MS);
  // the exit of another task of this id (one an interrupted start left, removed since): not this one's
  if (pid !== undefined && c.status.pid > 0 && c.status.pid !== pid) return;
  const oom = oomKilled.has(c.id) || (exitCode !== 0 && (await oomKilledInCgroup(deps, c).catch(() => false)));
  if ((c.status.state as string) === "CONTAINER_EXITED") return; // another path recorded it meanwhile
  const reason = oom ? "OOMKilled" : exitCode === 0 ? "Completed" : "Error";
  // containerd's clock and crib's may disagree by a hair: keep created <= started <= finished
  const started = c.status.startedAt === "0" ? finishedAt : c.status.startedAt;
  const floor = [c.createdAt, started].reduce((a, b) => (BigInt(a) > BigInt(b) ? a : b));
  const finished = BigInt(finishedAt) < BigInt(floor) ? floor : finishedAt;
  await deps.containers.setStatus(c, {
    state: "CONTAINER_EXITED", exitCode, finishedAt: finished, reason, stopping: false, pid: 0,
    ...(c.status.startedAt === "0" ? { startedAt: BigInt(started) < BigInt(c.createdAt) ? c.createdAt : started } : {}),
  });
  containerEvent(deps, "CONTAINER_STOPPED_EVENT", c);
  oomKilled.delete(c.id);
  await deleteTask(deps.containerd, c.id).catch((err: unknown) => deps.log.debug({ err: String(err) }, "task delete after exit"));
  deps.log.info({ container: c.id.slice(0, 12), exitCode }, "container exited");
}

/**
 * Exits crib caused itself in a task it replaces (container id → pids): not the
 * container's exit. recordExit's pid check covers a container started again
 * meanwhile; this covers one that stays CREATED (pid still unknown).
 */
const staleExits = new Map<string, Set<number>>();

/** The exit of task process `pid` of container `id`, about to be removed and made again, is not the container's. */
export function expectStaleExit(id: string, pid: number): void {
  const pids = staleExits.get(id) ?? new Set<number>();
  staleExits.set(id, pids);
  pids.add(pid);
  // its event comes within moments, or never (containerd lost it)
  setTimeout(() => {
    pids.delete(pid);
    if (pids.size === 0 && staleExits.get(id) === pids) staleExits.delete(id);
  }, 60_000).unref();
}

export function handleTaskEvent(deps: Deps, e: TaskEvent): void {
  if (e.kind === "oom") {
    const c = deps.containers.find(e.containerId);
    // the OOM event may come after the exit was recorded: the reason follows it, as in containerd's CRI plugin
    if (c?.status.state === "CONTAINER_EXITED") {
      if (c.status.reason !== "OOMKilled") {
        void deps.containers.setStatus(c, { reason: "OOMKilled" }).catch((err: unknown) => deps.log.warn({ err: String(err) }, "recording an OOM kill failed"));
      }
    } else if (c) {
      oomKilled.add(e.containerId);
    }
    return;
  }
  if (e.kind !== "exit" || (e.execId !== "" && e.execId !== e.containerId)) return;
  if (staleExits.get(e.containerId)?.delete(e.pid)) return;
  const sandbox = deps.sandboxes.find(e.containerId);
  if (sandbox) {
    if (sandbox.state === "SANDBOX_NOTREADY") return;
    sandbox.state = "SANDBOX_NOTREADY";
    sandbox.reason = `the pause task exited with status ${e.exitStatus}`;
    sandboxEvent(deps, "CONTAINER_STOPPED_EVENT", sandbox);
    return;
  }
  const c = deps.containers.find(e.containerId);
  if (!c || c.status.state === "CONTAINER_EXITED") return;
  void recordExit(deps, c, e.exitStatus, dateNanos(e.exitedAt), e.pid).catch((err: unknown) => deps.log.warn({ err: String(err) }, "recording an exit failed"));
}

/** Looks at containerd's task: records the exit of a stopped or vanished one. */
export async function settleExit(deps: Deps, c: Container): Promise<void> {
  if (c.status.state !== "CONTAINER_RUNNING") return;
  const t = await taskState(deps.containerd, c.id);
  if (t && t.status !== "STOPPED") return;
  const finishedAt = t?.exitedAt ? toNanos(t.exitedAt).toString() : (BigInt(Date.now()) * 1_000_000n).toString();
  await recordExit(deps, c, t ? t.exitStatus : 255, finishedAt);
}
