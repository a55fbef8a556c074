// Finishes or undoes what the intent journal (cri/intents.ts) says was under
// way when crib stopped, and every undo that failed since: a sandbox or
// container that never reached the store is taken apart from its record (task,
// CNI attachment, netns, files, container record, snapshot); a remove is
// finished the same way; a start is finished (task running) or undone (task
// never started). An undo that fails stays recorded and is tried again with
// backoff, also when containerd comes back; it is never dropped.
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import type { Deps } from "./deps.js";
import type { ContainerParts, Intent, IntentJournal, SandboxParts } from "./intents.js";
import { intentId } from "./intents.js";
import { CONTAINER_EXTENSION, type ContainerMeta } from "./store/containers.js";
import { deleteContainer, deleteTask, extensionOf, killTask, taskState } from "../runtime/containerd/tasks.js";
import { removeSandboxFiles } from "../runtime/sandbox-files.js";
import { removeImageVolumesAt } from "./image-volumes.js";
import { reapShims } from "./shim-reaper.js";

/** What undoing needs: containerd, CNI, netns and crib's directories, no stores. */
export type UndoDeps = Pick<Deps, "containerd" | "cni" | "netns" | "containers" | "config" | "log">;

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });

/** Kills the task (if any), waits until containerd reports it stopped, deletes it. Unknown states throw. */
export async function removeTask(deps: Pick<Deps, "containerd">, id: string, signal: AbortSignal): Promise<void> {
  let t = await taskState(deps.containerd, id, signal);
  if (!t) return;
  if (t.status !== "STOPPED") {
    await killTask(deps.containerd, id, 9, { all: true }, signal);
    for (let wait = 50; t && t.status !== "STOPPED"; wait = Math.min(wait * 2, 1000)) {
      if (signal.aborted) throw new Error(`task ${id} did not stop (last state ${t.status})`);
      await sleep(wait, signal);
      t = await taskState(deps.containerd, id, signal);
    }
  }
  await deleteTask(deps.containerd, id, signal);
}

/** Everything a container may have: task, image volumes, record, snapshot, FIFOs and status files. */
export async function undoContainer(deps: UndoDeps, parts: ContainerParts, signal: AbortSignal): Promise<void> {
  await removeTask(deps, parts.id, signal);
  await removeImageVolumesAt(deps, parts.id, parts.imageVolumes, signal);
  await deleteContainer(deps.containerd, parts.id, signal);
  await rm(containerStateDir(deps, parts.id), { recursive: true, force: true });
  await rm(join(deps.containers.dir, parts.id), { recursive: true, force: true });
}

export const containerStateDir = (deps: Pick<Deps, "config">, id: string): string => join(deps.config.state, "containers", id);
export const sandboxStateDir = (deps: Pick<Deps, "config">, id: string): string => join(deps.config.state, "sandboxes", id);

/** Everything a sandbox may have, its containers first: then pause task, network, netns, files, record, snapshot. */
export async function undoSandbox(deps: UndoDeps, parts: SandboxParts, signal: AbortSignal): Promise<void> {
  const { containers } = await deps.containerd.containers.List({ filters: [`labels."crib.sandbox-id"==${parts.id}`] }, signal);
  for (const record of containers) {
    const meta = extensionOf<ContainerMeta>(record, CONTAINER_EXTENSION);
    await undoContainer(deps, {
      id: record.id, sandboxId: parts.id, ioDir: meta?.ioDir ?? join(containerStateDir(deps, record.id), "io"),
      imageVolumes: meta?.imageVolumes?.map((v) => v.mount) ?? [],
    }, signal);
  }
  await removeTask(deps, parts.id, signal);
  if (parts.netnsPath) {
    // the cached attachment when ADD got that far, else the recorded one: host-local frees the IP either way
    await deps.cni.del({
      id: parts.id, netns: parts.netnsPath,
      pod: parts.cni?.pod ?? { namespace: "", name: "", uid: "" },
      ...(parts.cni ? { ifName: parts.cni.ifName, capabilityArgs: parts.cni.capabilityArgs } : {}),
    }, signal);
    await deps.netns.remove(parts.netnsPath, signal);
  }
  await removeSandboxFiles(parts.dir, parts.shmDir);
  await rm(parts.shmDir ? dirname(parts.shmDir) : sandboxStateDir(deps, parts.id), { recursive: true, force: true });
  await deleteContainer(deps.containerd, parts.id, signal);
  // a shim containerd lost track of (killed in the pause's create) serves nobody now
  // (a scan of /proc: undos are rare)
  await reapShims(deps, signal, { only: { id: parts.id } });
}

const UNDO_KINDS = new Set<Intent["kind"]>(["sandbox-run", "sandbox-remove", "container-create", "container-remove"]);
/** Undone from the record alone, before the stores are rebuilt; the rest needs the stores. */
export const isUndoKind = (intent: Intent): boolean => UNDO_KINDS.has(intent.kind);

export function undoIntent(deps: UndoDeps, intent: Intent, signal: AbortSignal): Promise<void> {
  switch (intent.kind) {
    case "sandbox-run":
    case "sandbox-remove":
      return undoSandbox(deps, intent.sandbox, signal);
    case "container-create":
    case "container-remove":
      return undoContainer(deps, intent.container, signal);
    default:
      throw new Error(`intent ${intent.kind} is finished with the stores, not undone`);
  }
}

export interface RetryOptions {
  /** first delay; doubles up to maxMs */
  firstMs?: number;
  maxMs?: number;
  /** budget of one attempt */
  attemptMs?: number;
}

/**
 * Work that must happen eventually: each job is tried until it succeeds, with
 * backoff, and tried at once on kick() (containerd is back). Jobs are keyed: a
 * job already waiting for a key is replaced by the newer one.
 */
interface Job {
  run: (signal: AbortSignal) => Promise<void>;
  delay: number;
  timer?: NodeJS.Timeout;
  running: boolean;
  /** kicked while running: try again at once if this attempt fails */
  again: boolean;
}

export class RetryQueue {
  readonly #jobs = new Map<string, Job>();
  readonly #first: number;
  readonly #max: number;
  readonly #attempt: number;
  #closed = false;

  constructor(readonly log: Logger, opts: RetryOptions = {}) {
    this.#first = opts.firstMs ?? 500;
    this.#max = opts.maxMs ?? 30_000;
    this.#attempt = opts.attemptMs ?? 60_000;
  }

  has(key: string): boolean {
    return this.#jobs.has(key);
  }

  /** Forgets a job (its work was done another way). */
  delete(key: string): void {
    clearTimeout(this.#jobs.get(key)?.timer);
    this.#jobs.delete(key);
  }

  get size(): number {
    return this.#jobs.size;
  }

  keys(): string[] {
    return [...this.#jobs.keys()];
  }

  /** Tries `run` after the first delay, then again with backoff until it succeeds. */
  add(key: string, run: (signal: AbortSignal) => Promise<void>, delayMs = this.#first): void {
    if (this.#closed) return;
    const old = this.#jobs.get(key);
    if (old) clearTimeout(old.timer);
    const job: Job = { run, delay: delayMs, running: false, again: false };
    this.#jobs.set(key, job);
    this.#schedule(key, job, delayMs);
  }

  /** Every waiting job, now. */
  kick(): void {
    for (const [key, job] of this.#jobs) {
      if (job.running) { job.again = true; continue; }
      clearTimeout(job.timer);
      this.#schedule(key, job, 0);
    }
  }

  #schedule(key: string, job: Job, ms: number): void {
    job.timer = setTimeout(() => void this.#try(key, job), ms);
    job.timer.unref();
  }

  async #try(key: string, job: Job): Promise<void> {
    if (this.#closed || this.#jobs.get(key) !== job) return;
    job.running = true;
    job.again = false;
    try {
      await job.run(AbortSignal.timeout(this.#attempt));
      if (this.#jobs.get(key) === job) this.#jobs.delete(key);
      this.log.info({ job: key }, "retried work done");
    } catch (err) {
      if (this.#jobs.get(key) !== job) return;
      job.delay = Math.min(Math.max(job.delay * 2, this.#first), this.#max);
      this.log.warn({ job: key, err: err instanceof Error ? err.message : String(err), retryInMs: job.again ? 0 : job.delay }, "work failed; will retry");
      this.#schedule(key, job, job.again ? 0 : job.delay);
    } finally {
      job.running = false;
    }
  }

  close(): void {
    this.#closed = true;
    for (const job of this.#jobs.values()) clearTimeout(job.timer);
  }
}

/** Undoes intents, dropping each record once its undo finished; a failed undo goes to `retry`. */
export class Reconciler {
  readonly retry: RetryQueue;

  constructor(readonly deps: UndoDeps, readonly journal: IntentJournal, opts: RetryOptions = {}) {
    this.retry = new RetryQueue(deps.log.child({ component: "reconcile" }), opts);
  }

  /** Whether an undo of this object is still pending (the stores must not list it). */
  pending(id: string): boolean {
    return this.retry.has(`undo:${id}`);
  }

  /** Undoes it now; when that fails, keeps the record and tries again with backoff. Resolves true when done. */
  async undo(intent: Intent, signal: AbortSignal): Promise<boolean> {
    const id = intentId(intent);
    try {
      await undoIntent(this.deps, intent, signal);
      await this.journal.done(intent.kind, id);
      this.retry.delete(`undo:${id}`);
      this.deps.log.info({ id, kind: intent.kind }, "undid or finished an operation crib had not finished");
      return true;
    } catch (err) {
      this.deps.log.warn({ id: id.slice(0, 12), kind: intent.kind, err: err instanceof Error ? err.message : String(err) }, "undo failed; kept recorded, will retry");
      this.later(intent);
      return false;
    }
  }

  /** Queues the undo of a recorded intent (a rollback step failed, or containerd was away). */
  later(intent: Intent): void {
    const id = intentId(intent);
    this.retry.add(`undo:${id}`, async (signal) => {
      await undoIntent(this.deps, intent, signal);
      await this.journal.done(intent.kind, id);
      this.deps.log.info({ id, kind: intent.kind }, "undid or finished an operation crib had not finished");
    });
  }

  close(): void {
    this.retry.close();
  }
}
