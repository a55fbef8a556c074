// No shim outlives its sandbox: containerd shuts a runc v2 shim down when the
// last task of its group is deleted, but not one an interrupted call left
// blocked. Those of crib's own namespace and containerd that serve no task and
// have no child process are ended. Never another namespace's or containerd's.
import type { Deps } from "./deps.js";
import { hasChildren, listShims, shimOf, type ShimProcess } from "../runtime/containerd/shims.js";

/**
 * Ends crib's idle shims (only the one of group `only.id` running as
 * `only.pid`, when given); how many. Call it when no task can be starting in those groups.
 */
export async function reapShims(deps: Pick<Deps, "containerd" | "log">, signal: AbortSignal, only?: { id: string; pid: number }): Promise<number> {
  const candidates = only ? [await shimOf(only.pid)].filter((s): s is ShimProcess => s?.id === only.id) : await listShims();
  const mine = candidates.filter((s) => s.namespace === deps.containerd.namespace && s.address === deps.containerd.address);
  if (mine.length === 0) return 0;
  const [{ tasks }, { containers }] = await Promise.all([deps.containerd.tasks.List({}, signal), deps.containerd.containers.List({}, signal)]);
  // a pod's containers run in its sandbox's shim
  const groupOf = new Map(containers.map((c) => [c.id, c.labels["crib.sandbox-id"] ?? c.id]));
  const busy = new Set(tasks.map((t) => groupOf.get(t.id) ?? t.id));
  let reaped = 0;
  for (const shim of mine) {
    if (busy.has(shim.id)) continue;
    if (await hasChildren(shim.pid)) {
      deps.log.warn({ pid: shim.pid, group: shim.id.slice(0, 12) }, "a shim with no task in containerd still has child processes; left alone");
      continue;
    }
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
    void reapShims(deps, AbortSignal.timeout(10_000), { id: sandboxId, pid: shimPid }).catch((err: unknown) =>
      deps.log.debug({ err: String(err), sandbox: sandboxId.slice(0, 12) }, "shim check after removal failed"));
  }, afterMs).unref();
}
