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
import { openFifoReader, openFifoWriter, spawnMkfifo, type FifoMaker } from "./fifo.js";

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
  /** where the FIFOs come from (default: a mkfifo process) */
  fifos?: FifoMaker;
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
  /** every output FIFO reader, wanted or not */
  #drop: Readable[] = [];
  #started = false;

  constructor(c: Containerd, opts: ExecOptions) {
    this.#c = c;
    this.#opts = opts;
    this.#dir = join(opts.dir, this.execId);
  }

  /** `attach` runs once the output streams exist and before the process can write or end them. */
  async start(signal?: AbortSignal, attach?: (p: ExecProcess) => void): Promise<void> {
    const { stdin, stdout, stderr, tty } = this.#opts;
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const path = (name: string, want: boolean) => (want ? join(this.#dir, name) : "");
    // The runc shim opens both output paths once it has any stdio: every FIFO is
    // made, and output nobody asked for is read and dropped.
    const paths = { stdin: path("stdin", stdin), stdout: path("stdout", true), stderr: path("stderr", !tty) };
    await (this.#opts.fifos ?? spawnMkfifo).make(...Object.values(paths));
    for (const [name, want] of [["stdout", stdout], ["stderr", stderr && !tty]] as const) {
      const p = paths[name];
      if (!p) continue;
      const r = await openFifoReader(p);
      this.#releases.push(r.release);
      this.#drop.push(r.stream);
      if (want) this[name] = r.stream;
      else r.stream.resume();
    }
    if (paths.stdin) this.stdin = await openFifoWriter(paths.stdin);
    attach?.(this);
    await this.#c.tasks.Exec({
      container_id: this.#opts.containerId, exec_id: this.execId, terminal: tty, ...paths,
      spec: jsonAny(PROCESS_TYPE, { ...this.#opts.process, terminal: tty }),
    }, signal);
    this.#started = true;
    // Ask for the exit before starting, as containerd's own client does.
    const waitAbort = new AbortController();
    this.#waitAbort = waitAbort;
    this.#exit = this.#c.tasks.Wait({ container_id: this.#opts.containerId, exec_id: this.execId }, waitAbort.signal)
      .then((res) => res.exit_status);
    this.#exit.catch(() => undefined);
    const { pid } = await this.#c.tasks.Start({ container_id: this.#opts.containerId, exec_id: this.execId }, signal);
    this.pid = pid;
    for (const r of this.#releases) await r();
  }

  pid = 0;
  #exit: Promise<number> | undefined;
  #waitAbort: AbortController | undefined;

  /** Resolves with the exit status. */
  async wait(signal?: AbortSignal): Promise<number> {
    const exit = this.#exit;
    if (!exit) throw new Error(`exec ${this.execId} was not started`);
    if (!signal) return exit;
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      exit.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
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
    this.#waitAbort?.abort();
    for (const r of this.#releases) await r().catch(() => undefined);
    this.stdin?.destroy();
    for (const stream of this.#drop) stream.destroy();
    if (this.#started) {
      this.#started = false;
      const req = { container_id: this.#opts.containerId, exec_id: this.execId };
      try {
        await this.#c.tasks.DeleteProcess(req, AbortSignal.timeout(5000));
      } catch (err) {
        if (!isNotFound(err)) {
          await this.kill().catch(() => undefined);
          await this.wait(AbortSignal.timeout(2000)).catch(() => undefined);
          await this.#c.tasks.DeleteProcess(req, AbortSignal.timeout(5000)).catch(() => undefined);
        }
      }
    }
    await rm(this.#dir, { recursive: true, force: true });
  }
}

const lastData = new WeakMap<Readable, number>();
/** When `stream` last delivered data (0 if never). */
export const lastDataAt = (stream: Readable | undefined): number => (stream ? lastData.get(stream) ?? 0 : 0);

/** Reads a stream to its end, keeping at most `cap` bytes. */
export function collect(stream: Readable | undefined, cap: number, stop?: AbortSignal): Promise<{ data: Buffer; truncated: boolean }> {
  if (!stream) return Promise.resolve({ data: Buffer.alloc(0), truncated: false });
  return new Promise((resolve) => {
    stop?.addEventListener("abort", () => done(), { once: true });
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    stream.on("data", (chunk: Buffer) => {
      lastData.set(stream, Date.now());
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
