// How full the image filesystem is: the overlayfs snapshotter's directory (as
// containerd's introspection reports it), and the bytes and inodes of crib's
// snapshots as containerd accounts them: Snapshots.Usage, recorded at commit
// for image layers and measured (asynchronously, by containerd) for the
// writable layers of containers. Kubelet asks often, so the figure is kept
// for a few seconds, and concurrent askers share one computation.
import type { Containerd } from "../containerd/client.js";
import { isNotFound } from "../containerd/errors.js";
import { SNAPSHOTTER } from "../containerd/tasks.js";

export interface FilesystemUsage {
  /** the snapshotter's directory */
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
  /** when it was measured, Unix nanoseconds */
  timestamp: string;
}

const CONCURRENCY = 8;

export class ImageFsUsage {
  readonly #c: Containerd;
  readonly #ttlMs: number;
  #root: string | undefined;
  #last: { at: number; usage: FilesystemUsage } | undefined;
  #pending: Promise<FilesystemUsage> | undefined;

  constructor(containerd: Containerd, ttlMs = 5000) {
    this.#c = containerd;
    this.#ttlMs = ttlMs;
  }

  async get(signal?: AbortSignal): Promise<FilesystemUsage> {
    if (this.#last && Date.now() - this.#last.at < this.#ttlMs) return this.#last.usage;
    this.#pending ??= this.#measure().finally(() => (this.#pending = undefined));
    const pending = this.#pending;
    if (!signal) return pending;
    signal.throwIfAborted();
    return new Promise((resolve, reject) => {
      const abort = (): void => reject(signal.reason);
      signal.addEventListener("abort", abort, { once: true });
      pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
    });
  }

  /** The snapshotter's directory: `<containerd root>/io.containerd.snapshotter.v1.overlayfs`. */
  async root(signal?: AbortSignal): Promise<string> {
    if (this.#root !== undefined) return this.#root;
    const { plugins } = await this.#c.introspection.Plugins({ filters: [] }, signal);
    const plugin = plugins.find((p) => p.type === "io.containerd.snapshotter.v1" && p.id === SNAPSHOTTER);
    const root = plugin?.exports["root"];
    if (!root) throw new Error(`containerd at ${this.#c.address} reports no root for its ${SNAPSHOTTER} snapshotter`);
    this.#root = root;
    return root;
  }

  async #measure(): Promise<FilesystemUsage> {
    const signal = AbortSignal.timeout(60_000);
    const mountpoint = await this.root(signal);
    const keys: string[] = [];
    const stream = this.#c.raw.snapshots.List({ snapshotter: SNAPSHOTTER, filters: [] }, this.#c.metadata());
    for await (const page of stream as AsyncIterable<{ info: Array<{ name: string }> }>) {
      for (const info of page.info) keys.push(info.name);
    }
    let usedBytes = 0;
    let inodesUsed = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const key = keys[next++]!;
        try {
          const usage = await this.#c.snapshots.Usage({ snapshotter: SNAPSHOTTER, key }, signal);
          usedBytes += Number(usage.size);
          inodesUsed += Number(usage.inodes);
        } catch (err) {
          if (!isNotFound(err)) throw err; // removed meanwhile
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, keys.length) }, worker));
    const usage = { mountpoint, usedBytes, inodesUsed, timestamp: (BigInt(Date.now()) * 1_000_000n).toString() };
    this.#last = { at: Date.now(), usage };
    return usage;
  }
}
