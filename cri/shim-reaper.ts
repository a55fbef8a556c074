// No shim outlives its sandbox: containerd shuts a runc v2 shim down when the
// last task of its group is deleted, but not one an interrupted call left
// blocked, nor one whose task containerd lost in a create it was killed in.
// Those of crib's own namespace and containerd that serve no task, and whose
// only children (if any) are `runc init`s of never-started containers, are
// ended. Never another namespace's or containerd's.
import type { Deps } from "./deps.js";
import { rmdir } from "node:fs/promises";
import { basename } from "node:path";
import { childrenOf, isRuncInit, listShims, shimOf, type ShimProcess } from "../runtime/containerd/shims.js";
import { cgroupDirsOf } from "../runtime/cgroup-stats.js";

const RECHECKS = 3;
const RECHECK_MS = 5000;

export interface ReapOptions {
  /** only this group's shim (running as `pid`, when known: no scan of /proc) */
  only?: { id: string; pid?: number };
  /** groups with work under way, asked after containerd's task list: never touched */
  working?: () => ReadonlySet<string>;
  /** how many more looks at a shim whose runc is still at work */
  rechecks?: number;
}

/** Ends crib's idle shims; how many. Call it when no task can be starting in the groups it may touch. */
export async function reapShims(deps: Pick<Deps, "containerd" | "log">, signal: AbortSignal, { only, working = () => new Set(), rechecks = RECHECKS }: ReapOptions = {}): Promise<number> {
  // by pid: two reads; by group alone: a scan of /proc (failure paths and start-up only)
  const candidates = only?.pid !== undefined ? [await shimOf(only.pid)] : await listShims();
  const mine = candidates.filter((s): s is ShimProcess => s !== undefined && (only === undefined || s.id === only.id)
    && s.namespace === deps.containerd.namespace && s.address === deps.containerd.address);
  if (mine.length === 0) return 0;
  const [{ tasks }, { containers }] = await Promise.all([deps.containerd.tasks.List({}, signal), deps.containerd.containers.List({}, signal)]);
  // a pod's containers run in its sandbox's shim
  const groupOf = new Map(containers.map((c) => [c.id, c.labels["crib.sandbox-id"] ?? c.id]));
  const busy = new Set(tasks.map((t) => groupOf.get(t.id) ?? t.id));
  // a group whose operation began before this point has its record open; one
  // begun after it had no shim when they were listed
  for (const id of working()) busy.add(id);
  let reaped = 0;
  for (const shim of mine) {
    if (busy.has(shim.id)) continue;
    const children = await childrenOf(shim.pid);
    const inits = (await Promise.all(children.map((pid) => isRuncInit(pid)))).every(Boolean);
    if (children.length > 0 && !inits) {
      // a runc still at work (its create or delete) ends soon: look again then
      if (rechecks > 0) {
        setTimeout(() => void reapShims(deps, AbortSignal.timeout(30_000), { only: { id: shim.id, pid: shim.pid }, working, rechecks: rechecks - 1 })
          .catch((err: unknown) => deps.log.debug({ err: String(err) }, "shim check failed")), RECHECK_MS).unref();
      } else {
        deps.log.warn({ pid: shim.pid, group: shim.id.slice(0, 12) }, "a shim with no task in containerd still has child processes; left alone");
      }
      continue;
    }
    // `runc init` of a container created but never started, whose task
    // containerd lost (killed during the create): it would wait forever
    if (children.length > 0) await endRuncInits(deps, shim, children);
    try {
      process.kill(shim.pid, "SIGKILL");
      reaped++;
      deps.log.info({ pid: shim.pid, group: shim.id.slice(0, 12) }, "ended a shim that served no task");
    } catch {
      // gone meanwhile
    }
  }
  return reaped;
}

/**
 * After RemovePodSandbox: containerd shuts the shim down by itself; if it is
 * still there a moment later, end it. `shimPid` was read while the pause ran
 * (its parent); without it the next start-up's sweep finds the shim.
 */
export function reapShimLater(deps: Pick<Deps, "containerd" | "log">, sandboxId: string, shimPid: number | undefined, afterMs = 2000): void {
  if (shimPid === undefined) return;
  setTimeout(() => {
    void reapShims(deps, AbortSignal.timeout(10_000), { only: { id: sandboxId, pid: shimPid } }).catch((err: unknown) =>
      deps.log.debug({ err: String(err), sandbox: sandboxId.slice(0, 12) }, "shim check after removal failed"));
  }, afterMs).unref();
}

/** Kills the waiting `runc init`s and removes the cgroups runc made for them, once they are empty. */
async function endRuncInits(deps: Pick<Deps, "log">, shim: ShimProcess, pids: number[]): Promise<void> {
  const dirs = (await Promise.all(pids.map((pid) => cgroupDirsOf(pid)))).flat();
  for (const pid of pids) {
    try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
  }
  deps.log.info({ pids, group: shim.id.slice(0, 12) }, "ended runc init of a container containerd lost during its create");
  // a cgroup can be removed once the kernel has taken its last process out
  for (const dir of new Set(dirs.filter((d) => /^[0-9a-f]{64}$/.test(basename(d))))) {
    for (let i = 0; i < 20; i++) {
      const err = await rmdir(dir).then(() => undefined, (e: NodeJS.ErrnoException) => e.code);
      if (err === undefined || err === "ENOENT") break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
