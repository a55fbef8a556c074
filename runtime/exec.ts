// A process started inside a running container's task (containerd exec), with
// its stdio on FIFOs. Used by ExecSync and by the streaming server's exec.
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import type { Socket } from "node:net";
import { jsonAny } from "../proto/load.js";
import type { Containerd } from "./containerd/client.js";
import { PROCESS_TYPE, killTask } from "./containerd/tasks.js";
import { isNotFound } from "./containerd/errors.js";
import { mkfifo, openFifoReader, openFifoWriter } from "./fifo.js";

export interface OciProcess {
  args: string[];
  env?: string[];
  cwd: string;
  terminal?: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  [key: string]: unknown;
}

export interface ExecOptions {
  containerId: string;
  process: OciProcess;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  /** parent of the per-exec FIFO dir */
  dir: string;
}

export class ExecProcess {
  readonly execId = randomBytes(8).toString("hex");
  readonly #c: Containerd;
  readonly #opts: ExecOptions;
  readonly #dir: string;
  stdout: Readable | undefined;
  stderr: Readable | undefined;
  stdin: Socket | undefined;
  #releases: (() => Promise<void>)[] = [];
  #started = false;

  constructor(c: Containerd, opts: ExecOptions) {
    this.#c = c;
    this.#opts = opts;
    this.#dir = join(opts.dir, this.execId);
  }

  async start(signal?: AbortSignal): Promise<void> {
    const { stdin, stdout, stderr, tty } = this.#opts;
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const path = (name: string, want: boolean) => (want ? join(this.#dir, name) : "");
    const paths = { stdin: path("stdin", stdin), stdout: path("stdout", stdout), stderr: path("stderr", stderr && !tty) };
    for (const p of Object.values(paths)) if (p) await mkfifo(p);
    if (paths.stdout) { const r = await openFifoReader(paths.stdout); this.stdout = r.stream; this.#releases.push(r.release); }
    if (paths.stderr) { const r = await openFifoReader(paths.stderr); this.stderr = r.stream; this.#releases.push(r.release); }
    if (paths.stdin) this.stdin = await openFifoWriter(paths.stdin);
    await this.#c.tasks.Exec({
      container_id: this.#opts.containerId, exec_id: this.execId, terminal: tty, ...paths,
      spec: jsonAny(PROCESS_TYPE, { ...this.#opts.process, terminal: tty }),
    }, signal);
    this.#started = true;
    await this.#c.tasks.Start({ container_id: this.#opts.containerId, exec_id: this.execId }, signal);
    for (const r of this.#releases) await r();
  }

  /** Resolves with the exit status. */
  async wait(signal?: AbortSignal): Promise<number> {
    const res = await this.#c.tasks.Wait({ container_id: this.#opts.containerId, exec_id: this.execId }, signal);
    return res.exit_status;
  }

  async kill(sig = 9): Promise<void> {
    await killTask(this.#c, this.#opts.containerId, sig, { execId: this.execId });
  }

  async resize(width: number, height: number): Promise<void> {
    await this.#c.tasks.ResizePty({ container_id: this.#opts.containerId, exec_id: this.execId, width, height });
  }

  /** Closes stdin in the process (EOF). */
  async closeStdin(): Promise<void> {
    this.stdin?.end();
    await this.#c.tasks.CloseIO({ container_id: this.#opts.containerId, exec_id: this.execId, stdin: true }).catch(() => undefined);
  }

  /** Removes the exec process from containerd and its FIFOs; safe to call twice. */
  async close(): Promise<void> {
    for (const r of this.#releases) await r().catch(() => undefined);
    this.stdin?.destroy();
    this.stdout?.destroy();
    this.stderr?.destroy();
    if (this.#started) {
      this.#started = false;
      try {
        await this.#c.tasks.DeleteProcess({ container_id: this.#opts.containerId, exec_id: this.execId });
      } catch (err) {
        if (!isNotFound(err)) {
          await this.kill().catch(() => undefined);
          await this.wait(AbortSignal.timeout(5000)).catch(() => undefined);
          await this.#c.tasks.DeleteProcess({ container_id: this.#opts.containerId, exec_id: this.execId }).catch(() => undefined);
        }
      }
    }
    await rm(this.#dir, { recursive: true, force: true });
  }
}

/** Reads a stream to its end, keeping at most `cap` bytes. */
export function collect(stream: Readable | undefined, cap: number): Promise<{ data: Buffer; truncated: boolean }> {
  if (!stream) return Promise.resolve({ data: Buffer.alloc(0), truncated: false });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    stream.on("data", (chunk: Buffer) => {
      if (size >= cap) { truncated = true; return; }
      const part = chunk.subarray(0, cap - size);
      if (part.length < chunk.length) truncated = true;
      chunks.push(part);
      size += part.length;
    });
    const done = () => resolve({ data: Buffer.concat(chunks), truncated });
    stream.once("end", done);
    stream.once("close", done);
    stream.once("error", done);
  });
}

export type { Writable };
