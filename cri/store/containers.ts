// In-memory cache of crib's containers. The durable records are the containerd
// container (spec + "crib.container.v1" extension) and a status file written
// on every state change, so exit codes and times survive a crib restart.
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type * as cri from "../../proto/gen/cri/types.js";
import { NamedStore } from "./named-store.js";
import { writeFileAtomic } from "../../runtime/atomic-file.js";

export const CONTAINER_EXTENSION = "crib.container.v1";

export interface ContainerMeta {
  id: string;
  sandboxId: string;
  config: cri.ContainerConfig;
  createdAt: string;
  /** as the request named it */
  imageRef: string;
  /** the config digest */
  imageId: string;
  /** repo digest (name@sha256:…) when known, else the ID */
  imageDigestRef: string;
  /** the containerd image name */
  imageName: string;
  /** absolute log path; "" when kubelet gave no log directory */
  logPath: string;
  /** the image's StopSignal, for StopContainer */
  stopSignal: string;
  /** stdio FIFOs live here */
  ioDir: string;
  /** the user the process runs as */
  user?: { uid: number; gid: number; additionalGids: number[] };
  /** the image volumes among config.mounts (cri/image-volumes.ts) */
  imageVolumes?: ImageVolume[];
}

export interface ImageVolume {
  /** index in config.mounts */
  mount: number;
  /** the ID (config digest) of the image mounted */
  imageId: string;
}

export type ContainerStateName = "CONTAINER_CREATED" | "CONTAINER_RUNNING" | "CONTAINER_EXITED" | "CONTAINER_UNKNOWN";

export interface ContainerStatusRecord {
  state: ContainerStateName;
  pid: number;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  reason: string;
  message: string;
  resources?: cri.LinuxContainerResources | null;
  /** set when a StopContainer killed it on purpose */
  stopping?: boolean;
}

export interface Container extends ContainerMeta {
  status: ContainerStatusRecord;
}

export const containerNameKey = (sandboxId: string, m: cri.ContainerMetadata): string => `${m.name}_${m.attempt}_${sandboxId}`;

export class ContainerStore extends NamedStore<Container> {
  constructor(readonly dir: string) {
    super("container", "container_id", (c) => (c.config.metadata ? containerNameKey(c.sandboxId, c.config.metadata) : undefined));
  }

  inSandbox(sandboxId: string): Container[] {
    return this.list().filter((c) => c.sandboxId === sandboxId);
  }

  statusPath(id: string): string {
    return join(this.dir, id, "status.json");
  }

  readonly #writes = new Map<string, Promise<void>>();
  /** containers being removed: their status changes stay in memory, or a late one would bring the directory back */
  readonly #retired = new WeakSet<Container>();

  retire(c: Container): void {
    this.#retired.add(c);
  }
  readonly #watchers = new Map<string, Set<() => void>>();

  /** Resolves at the container's next status change, or after `timeoutMs`. */
  nextChange(id: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const watchers = this.#watchers.get(id) ?? new Set();
      this.#watchers.set(id, watchers);
      const done = (): void => {
        clearTimeout(timer);
        watchers.delete(done);
        if (watchers.size === 0 && this.#watchers.get(id) === watchers) this.#watchers.delete(id);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      watchers.add(done);
    });
  }

  /**
   * Updates the status in memory at once and on disk atomically. Writes for one
   * container run in order (a start and an exit event can race), so the file
   * always ends with the newest status.
   */
  setStatus(c: Container, patch: Partial<ContainerStatusRecord>): Promise<void> {
    c.status = { ...c.status, ...patch };
    for (const wake of [...(this.#watchers.get(c.id) ?? [])]) wake();
    const write = async (): Promise<void> => {
      if (this.#retired.has(c)) return;
      await mkdir(join(this.dir, c.id), { recursive: true });
      await writeFileAtomic(this.statusPath(c.id), JSON.stringify(c.status));
    };
    const previous = this.#writes.get(c.id) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(write);
    this.#writes.set(c.id, next);
    const forget = (): void => {
      if (this.#writes.get(c.id) === next) this.#writes.delete(c.id);
    };
    next.then(forget, forget);
    return next;
  }

  async readStatus(id: string): Promise<ContainerStatusRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.statusPath(id), "utf8")) as ContainerStatusRecord;
    } catch {
      return undefined;
    }
  }

  async removeFiles(id: string): Promise<void> {
    await this.#writes.get(id)?.catch(() => undefined); // or a late write would bring the directory back
    await rm(join(this.dir, id), { recursive: true, force: true });
  }
}
