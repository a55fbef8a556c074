// The intent journal: before a multi-step operation touches the host, it writes
// down what it is about to make (one small fsync'd file, replaced atomically),
// and drops the record once the store holds the result or the undo finished.
// At start-up cri/reconciler.ts finishes or undoes every record left behind.
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { CapabilityArgs, PodRef } from "../cni/network.js";
import { writeFileAtomic } from "../runtime/atomic-file.js";
import { counted } from "../runtime/call-trace.js";

/** What a sandbox has or may have on the host: enough to undo it without containerd's record. */
export interface SandboxParts {
  id: string;
  /** "" for a host-network pod */
  netnsPath: string;
  /** the CNI attachment ADD is (or was) made with; DEL uses it when no cache entry has more */
  cni?: { pod: PodRef; ifName: string; capabilityArgs: CapabilityArgs };
  /** <root>/sandboxes/<id>: hosts, resolv.conf, hostname */
  dir: string;
  /** <state>/sandboxes/<id>/shm, "" with the node's IPC */
  shmDir: string;
}

/** What a container has or may have: its snapshot and record are named by its id. */
export interface ContainerParts {
  id: string;
  sandboxId: string;
  /** <state>/containers/<id>/io: the stdio FIFOs */
  ioDir: string;
  /** indices in config.mounts of the image volumes (snapshots <id>-iv-<n> and their mounts) */
  imageVolumes: number[];
}

export type Intent =
  /** undone at start-up: the sandbox never reached the store */
  | { kind: "sandbox-run"; sandbox: SandboxParts }
  /** finished at start-up (the same steps as the undo of a run) */
  | { kind: "sandbox-remove"; sandbox: SandboxParts }
  /** finished at start-up: the pause task killed, the network torn down */
  | { kind: "sandbox-stop"; sandbox: SandboxParts }
  | { kind: "container-create"; container: ContainerParts }
  | { kind: "container-remove"; container: ContainerParts }
  /** finished (task running) or undone (task never started) at start-up */
  | { kind: "container-start"; container: ContainerParts };

export type IntentKind = Intent["kind"];

export const intentId = (intent: Intent): string => ("sandbox" in intent ? intent.sandbox.id : intent.container.id);

const FILE = /^([a-z]+-[a-z]+)\.([A-Za-z0-9_.-]+)\.json$/;

/** The shim group an intent's work happens in: a pod's containers run in its sandbox's shim. */
const groupOf = (intent: Intent): string => ("sandbox" in intent ? intent.sandbox.id : intent.container.sandboxId);

export class IntentJournal {
  #made: Promise<unknown> | undefined;
  /** record file → shim group, for the records this process made and has not dropped */
  readonly #open = new Map<string, string>();

  constructor(readonly dir: string) {}

  #path(kind: IntentKind, id: string): string {
    return join(this.dir, `${kind}.${id}.json`);
  }

  /** Durable when it resolves: a crash from here on leaves the record for the reconciler. */
  async record(intent: Intent): Promise<void> {
    this.#made ??= mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.#made;
    const path = this.#path(intent.kind, intentId(intent));
    this.#open.set(path, groupOf(intent));
    await writeFileAtomic(path, JSON.stringify(intent), { mode: 0o600, sync: true });
  }

  /** The shim groups with an operation under way in this process: a task may be starting there. */
  openGroups(): Set<string> {
    return new Set(this.#open.values());
  }

  /** The operation's result is in the store, or its undo finished. */
  async done(kind: IntentKind, id: string): Promise<void> {
    const path = this.#path(kind, id);
    await counted("file remove (intent done)", rm(path, { force: true }));
    this.#open.delete(path);
  }

  has(kind: IntentKind, id: string): Promise<boolean> {
    return readFile(this.#path(kind, id)).then(() => true, () => false);
  }

  /** Every record, oldest operation kinds first as they were written; unreadable files are reported, not dropped. */
  async list(): Promise<{ intents: Intent[]; unreadable: string[] }> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    const intents: Intent[] = [];
    const unreadable: string[] = [];
    for (const name of names.sort()) {
      // a temporary file of a write the crash interrupted: the record it was to replace is intact
      if (name.startsWith(".") && name.endsWith(".tmp")) await rm(join(this.dir, name), { force: true });
      if (!FILE.test(name)) continue;
      try {
        intents.push(JSON.parse(await readFile(join(this.dir, name), "utf8")) as Intent);
      } catch {
        unreadable.push(join(this.dir, name));
      }
    }
    return { intents, unreadable };
  }
}
