// Stdio FIFOs between crib and a containerd shim. Reads go through libuv's pipe
// handles (epoll on a non-blocking fd), never through its thread pool, so many
// containers' logs never starve other work.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { close as closeFd, constants, open as openFd } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { Socket } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
// Raw fds, not FileHandles: a FileHandle closes its fd when collected, under the socket.
const open = promisify(openFd);
const close = promisify(closeFd);

/** Creates FIFOs (one process for all of them: Node has no mkfifo). */
export async function mkfifo(...paths: string[]): Promise<void> {
  const wanted = paths.filter(Boolean);
  if (wanted.length > 0) await run("mkfifo", ["-m", "0600", ...wanted]);
}

/** Makes FIFOs at the given paths ("" skipped). */
export interface FifoMaker {
  make(...paths: string[]): Promise<void>;
}

export const spawnMkfifo: FifoMaker = { make: mkfifo };

/**
 * FIFOs made ahead of need, so that an exec or a container start does not wait
 * for a mkfifo process on its request path: make() renames pooled FIFOs into
 * place (the pool's directory must be on the same file system) and refills the
 * pool in the background, one mkfifo process per batch.
 */
export class FifoPool implements FifoMaker {
  #ready: string[] = [];
  #refilling: Promise<void> | undefined;

  private constructor(readonly dir: string, readonly batch: number) {}

  /** A pool in `dir`, emptied of whatever a previous crib left there, and filling. */
  static async create(dir: string, batch = 32): Promise<FifoPool> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const pool = new FifoPool(dir, batch);
    pool.#refill();
    return pool;
  }

  get ready(): number {
    return this.#ready.length;
  }

  async make(...paths: string[]): Promise<void> {
    const missing: string[] = [];
    for (const path of paths.filter(Boolean)) {
      const pooled = this.#ready.pop();
      if (pooled === undefined) missing.push(path);
      else await rename(pooled, path).catch(() => missing.push(path));
    }
    if (this.#ready.length < this.batch / 2) this.#refill();
    await mkfifo(...missing);
  }

  /** Settles once a refill in progress is done. */
  async filled(): Promise<void> {
    await this.#refilling;
  }

  #refill(): void {
    if (this.#refilling) return;
    const names = Array.from({ length: this.batch - this.#ready.length }, () => join(this.dir, randomBytes(8).toString("hex")));
    this.#refilling = mkfifo(...names)
      .then(() => void this.#ready.push(...names), () => undefined)
      .finally(() => { this.#refilling = undefined; });
  }
}

/**
 * Each read lands in `buffer` and goes to `callback` (no "data" events); a
 * callback that returns false stops reading at once, until `stream.resume()`.
 * Nothing is read ahead of the consumer, so a FIFO nobody keeps up with stays
 * full and its writer blocks.
 */
export interface FifoOnRead {
  buffer: Uint8Array;
  callback: (bytes: number, buffer: Uint8Array) => boolean;
}

/**
 * Opens the read side of a FIFO without blocking. Until `release()` is called a
 * placeholder writer keeps the pipe from reporting EOF before the shim has
 * opened its end; after that, EOF means the writer (the process) is done.
 */
export async function openFifoReader(path: string, onread?: FifoOnRead): Promise<{ stream: Socket; release: () => Promise<void> }> {
  const reader = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const placeholder = await open(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const stream = new Socket({ fd: reader, readable: true, writable: false, ...(onread && { onread }) });
  let released = false;
  return {
    stream,
    release: async () => {
      if (released) return;
      released = true;
      await close(placeholder);
    },
  };
}

/** Opens the write side of a FIFO (stdin) without blocking; the shim reads it. */
export async function openFifoWriter(path: string): Promise<Socket> {
  // O_RDWR: opening write-only would fail with ENXIO until the shim reads.
  const fd = await open(path, constants.O_RDWR | constants.O_NONBLOCK);
  return new Socket({ fd, readable: false, writable: true });
}

export async function removeFifo(path: string): Promise<void> {
  await rm(path, { force: true });
}
