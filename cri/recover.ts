// Rebuilds crib's stores at start from containerd's records and crib's files,
// after the intent journal's unfinished operations were undone or finished
// (cri/reconciler.ts): every sandbox and container crib had is listed and
// managed again, running containers' logs continue from the same FIFOs, exits
// that happened while crib was down are recorded, and every state is true: a
// task state containerd cannot tell yet (UNKNOWN, a timeout) is asked again
// with backoff, never taken for "stopped".
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Deps } from "./deps.js";
import { KIND_LABEL, SANDBOX_EXTENSION, type Sandbox, type SandboxMeta } from "./store/sandboxes.js";
import { CONTAINER_EXTENSION, type ContainerMeta, type Container } from "./store/containers.js";
import { extensionOf, taskState } from "../runtime/containerd/tasks.js";
import { containerIo } from "./container-create.js";
import { expectStaleExit, settleExit } from "./exits.js";
import { sandboxEvent } from "./container-events.js";
import { removeImageVolumesAt, restoreImageVolumes } from "./image-volumes.js";
import { removeSandboxFiles } from "../runtime/sandbox-files.js";
import { isUndoKind, removeTask } from "./reconciler.js";
import type { Intent } from "./intents.js";
import { stopSandbox } from "./sandbox-stop.js";
import { crashPoint } from "./crash-point.js";
import { reapShims } from "./shim-reaper.js";

/** How long start-up waits for states containerd cannot tell at once, before serving with them still being asked. */
const KNOWN_WITHIN_MS = 8_000;
const CALL_MS = 10_000;
const ID = /^[0-9a-f]{64}$/;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Tries `once` with backoff until it answers true or `ms` pass; whether it did. */
async function within(ms: number, once: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    if (await once()) return true;
    if (Date.now() + wait > deadline) return false;
    await sleep(wait);
  }
}

/**
 * The sandbox's true state from its pause task, netns and network. Resolves
 * false, changing nothing, when containerd cannot tell the task's state yet.
 */
export async function refreshSandbox(deps: Deps, s: Sandbox, signal: AbortSignal = AbortSignal.timeout(CALL_MS)): Promise<boolean> {
  let t;
  try {
    t = await taskState(deps.containerd, s.id, signal);
  } catch {
    return false;
  }
  if (t?.status === "UNKNOWN") return false;
  const running = t?.status === "RUNNING" || t?.status === "PAUSED" || t?.status === "PAUSING";
  let reason = "";
  if (!running) reason = t ? `the pause task is ${t.status.toLowerCase()}` : "the pause task is gone";
  else if (s.netnsPath && !(await deps.netns.exists(s.netnsPath))) reason = `its network namespace ${s.netnsPath} is gone`;
  else if (s.netnsPath && s.networkDown) reason = "its pod network was torn down";
  const state = reason ? "SANDBOX_NOTREADY" : "SANDBOX_READY";
  if (running && t) s.pid = t.pid;
  if (deps.sandboxes.find(s.id) !== s) return true; // removed meanwhile
  const was = s.state;
  s.state = state;
  if (reason) s.reason = reason;
  else delete s.reason;
  if (was === "SANDBOX_READY" && state === "SANDBOX_NOTREADY") sandboxEvent(deps, "CONTAINER_STOPPED_EVENT", s);
  return true;
}

/** Asks again, with backoff, until containerd tells the pause task's state. */
export function recheckSandbox(deps: Deps, s: Sandbox): void {
  deps.reconciler.retry.add(`state:${s.id}`, async (signal) => {
    if (!(await refreshSandbox(deps, s, signal))) throw new Error(`sandbox ${s.id}: the pause task's state is not known yet`);
  });
}

/** Fills the stores from containerd's records; sandbox states are read last, once the containers' FIFOs have readers again. */
export async function recover(deps: Deps): Promise<Sandbox[]> {
  const { containers } = await deps.containerd.containers.List({ filters: [`labels."${KIND_LABEL}"`] }, AbortSignal.timeout(30_000));
  const sandboxes: Sandbox[] = [];
  for (const record of containers) {
    if (record.labels[KIND_LABEL] !== "sandbox") continue;
    const meta = extensionOf<SandboxMeta>(record, SANDBOX_EXTENSION);
    if (!meta || deps.reconciler.pending(meta.id)) continue;
    // the cache entry goes with CNI DEL: none means the network was torn down (or never set up)
    const cached = meta.netnsPath ? await deps.cni.cached(meta.id).catch(() => undefined) : undefined;
    const networkDown = meta.netnsPath !== "" && cached?.result === undefined;
    // crib may have died between the CNI ADD and recording the IPs: its cached result has them
    const ips = meta.ips.length > 0 || !meta.netnsPath ? meta.ips : cached?.parsed?.podIps ?? [];
    const s: Sandbox = { ...meta, ips: [...ips], state: "SANDBOX_NOTREADY", pid: 0, networkDown, reason: "state not read yet" };
    deps.sandboxes.add(s);
    sandboxes.push(s);
  }
  for (const record of containers) {
    if (record.labels[KIND_LABEL] !== "container") continue;
    const meta = extensionOf<ContainerMeta>(record, CONTAINER_EXTENSION);
    if (!meta || deps.reconciler.pending(meta.id) || deps.reconciler.pending(meta.sandboxId)) continue;
    const status = (await deps.containers.readStatus(meta.id)) ?? {
      state: "CONTAINER_CREATED", pid: 0, startedAt: "0", finishedAt: "0", exitCode: 0, reason: "", message: "",
    };
    const c: Container = { ...meta, status };
    deps.containers.add(c);
    if (status.state === "CONTAINER_EXITED") continue;
    // unknown (containerd cannot tell yet) is not stopped: the FIFOs are opened so a waiting shim goes on
    const task = await taskState(deps.containerd, meta.id, AbortSignal.timeout(CALL_MS)).then((t) => t ?? null, () => "unknown" as const);
    const alive = task === "unknown" || (task !== null && task.status !== "STOPPED");
    const fifosExist = await stat(meta.ioDir).then(() => true, () => false);
    const io = containerIo(deps, meta.id, { ioDir: meta.ioDir, stdin: meta.config.stdin, tty: meta.config.tty, logPath: meta.logPath });
    if (status.state === "CONTAINER_CREATED" || alive) {
      await io.open(!fifosExist);
      if (alive && status.state === "CONTAINER_RUNNING") await io.started();
      deps.io.set(meta.id, io);
    }
    if (status.state === "CONTAINER_CREATED" && task === null) {
      await restoreImageVolumes(deps, c).catch((err: unknown) => deps.log.error({ err, container: meta.id.slice(0, 12) }, "cannot mount image volumes again"));
    }
    if (status.state === "CONTAINER_CREATED" && task !== null && task !== "unknown" && task.status === "RUNNING") {
      // crib died between the task's start and recording it
      await io.started();
      await deps.containers.setStatus(c, { state: "CONTAINER_RUNNING", pid: task.pid, startedAt: meta.createdAt });
    }
    if (task !== "unknown") await settleExit(deps, c).catch(() => undefined);
  }
  return sandboxes;
}

/** A StartContainer crib died in: the task runs (recorded), ran and exited (recorded), or never started (deleted). */
async function finishStart(deps: Deps, id: string, signal: AbortSignal): Promise<void> {
  const c = deps.containers.find(id);
  if (!c) return;
  const t = await taskState(deps.containerd, id, signal);
  if (t?.status === "UNKNOWN") throw new Error(`container ${id}: the task's state is not known yet`);
  if (c.status.state !== "CONTAINER_CREATED") return;
  if (!t) return;
  if (t.status === "CREATED") {
    // never started: back to a container that can be started again (its task's exit is not the container's)
    expectStaleExit(id, t.pid);
    await removeTask(deps, id, signal);
    return;
  }
  await deps.io.get(id)?.started();
  await deps.containers.setStatus(c, { state: "CONTAINER_RUNNING", pid: t.pid, startedAt: c.createdAt });
  await settleExit(deps, c);
}

/** Finishes a stop crib died in: pause killed, network torn down, sandbox NOTREADY. */
function finishStop(deps: Deps, intent: Extract<Intent, { kind: "sandbox-stop" }>): void {
  const id = intent.sandbox.id;
  deps.reconciler.retry.add(`stop:${id}`, async (signal) => {
    const s = deps.sandboxes.find(id);
    if (s) await stopSandbox(deps, s, { signal, log: deps.log });
    await deps.intents.done("sandbox-stop", id);
  }, 0);
}

/** Removes the per-object directories no sandbox or container of the stores owns (nor a pending undo). */
async function sweepOrphanDirs(deps: Deps): Promise<number> {
  const owned = (id: string): boolean =>
    deps.sandboxes.find(id)?.id === id || deps.containers.find(id)?.id === id || deps.reconciler.pending(id);
  const orphans = async (dir: string): Promise<string[]> =>
    (await readdir(dir).catch(() => [] as string[])).filter((name) => ID.test(name) && !owned(name));
  let removed = 0;
  for (const id of new Set([...(await orphans(join(deps.config.root, "sandboxes"))), ...(await orphans(join(deps.config.state, "sandboxes")))])) {
    await removeSandboxFiles(join(deps.config.root, "sandboxes", id), join(deps.config.state, "sandboxes", id, "shm"));
    removed++;
  }
  for (const id of await orphans(join(deps.config.root, "containers"))) {
    await removeImageVolumesAt(deps, id, []);
    await rm(join(deps.config.root, "containers", id), { recursive: true, force: true });
    removed++;
  }
  for (const id of await orphans(join(deps.config.state, "containers"))) {
    await rm(join(deps.config.state, "containers", id), { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/**
 * Start-up, before any rpc but Version and Status is answered: undo or finish
 * every recorded intent, rebuild the stores, tell every state. Throws (to be
 * tried again) while containerd cannot be reached.
 */
export async function reconcileAtStart(deps: Deps): Promise<void> {
  for (const s of deps.sandboxes.list()) deps.sandboxes.delete(s.id); // a retry starts afresh
  for (const c of deps.containers.list()) deps.containers.delete(c.id);
  for (const io of deps.io.values()) await io.close().catch(() => undefined);
  deps.io.clear();

  await deps.cni.sweep();
  const { intents, unreadable } = await deps.intents.list();
  for (const path of unreadable) deps.log.error({ path }, "unreadable intent record; left in place");
  const undos = intents.filter(isUndoKind);
  const signal = AbortSignal.timeout(deps.config.cni.del_timeout + 30_000);
  const undone = await Promise.all(undos.map((i) => deps.reconciler.undo(i, signal)));
  await deps.containerd.version.Version({}, AbortSignal.timeout(CALL_MS)); // down: try the whole start-up again
  crashPoint("reconcile:undone");
  const sandboxes = await recover(deps);

  const starts = intents.filter((i): i is Extract<Intent, { kind: "container-start" }> => i.kind === "container-start");
  await Promise.all(starts.map(async (i) => {
    const finished = await within(KNOWN_WITHIN_MS, () => finishStart(deps, i.container.id, AbortSignal.timeout(CALL_MS)).then(() => true, () => false));
    if (finished) await deps.intents.done("container-start", i.container.id);
    else deps.reconciler.retry.add(`start:${i.container.id}`, async (s) => {
      await finishStart(deps, i.container.id, s);
      await deps.intents.done("container-start", i.container.id);
    });
  }));
  const unknown: Sandbox[] = [];
  await Promise.all(sandboxes.map(async (s) => {
    if (!(await within(KNOWN_WITHIN_MS, () => refreshSandbox(deps, s)))) unknown.push(s);
  }));
  for (const s of unknown) {
    // not known is not stopped: what crib last made it, while containerd is asked again
    const networkOk = !s.netnsPath || (!s.networkDown && (await deps.netns.exists(s.netnsPath)));
    s.state = networkOk ? "SANDBOX_READY" : "SANDBOX_NOTREADY";
    s.reason = networkOk ? "the pause task's state is not known yet (asking containerd again)" : "its pod network is gone";
    recheckSandbox(deps, s);
  }
  for (const i of intents) if (i.kind === "sandbox-stop") finishStop(deps, i);
  // nothing is starting yet: every shim of crib's without a task is idle
  const shims = await reapShims(deps, AbortSignal.timeout(CALL_MS)).catch((err: unknown) => { deps.log.warn({ err: String(err) }, "looking for idle shims failed"); return 0; });
  const swept = await sweepOrphanDirs(deps).catch((err: unknown) => { deps.log.warn({ err: String(err) }, "sweeping orphan directories failed"); return 0; });
  deps.log.info({
    sandboxes: deps.sandboxes.list().length, containers: deps.containers.list().length,
    intents: intents.length, undone: undone.filter(Boolean).length, undoPending: undone.filter((u) => !u).length,
    statesUnknown: unknown.length, orphanDirsRemoved: swept, idleShimsEnded: shims,
  }, "recovered state from containerd");
}

/** After the event stream (re)connects: catch up on exits it may have missed; retry pending work now. */
export async function reconcile(deps: Deps): Promise<void> {
  if (!deps.recovery.ready) return; // start-up is still at it
  deps.reconciler.retry.kick();
  // containerd restarted: a shim whose task it lost in a create it was killed in
  // serves nobody; those of groups with work under way are left alone
  void reapShims(deps, AbortSignal.timeout(CALL_MS), { working: () => deps.intents.openGroups() })
    .catch((err: unknown) => deps.log.warn({ err: String(err) }, "looking for idle shims failed"));
  for (const c of deps.containers.list()) await settleExit(deps, c).catch(() => undefined);
  for (const s of deps.sandboxes.list()) {
    if (s.state !== "SANDBOX_READY") continue;
    if (!(await refreshSandbox(deps, s))) recheckSandbox(deps, s);
  }
}
