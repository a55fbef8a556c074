// A container's stdio: FIFOs in its io dir shared with the shim, their output
// copied into the CRI log and to any attached clients. After a crib restart the
// same FIFOs are opened again and the log continues where the FIFO is.
//
// Backpressure as under containerd's CRI: a FIFO is read one batch (READ_BYTES)
// at a time, and the next read waits until the batch is in the log file and
// every attached client took it. A slow disk or a slow attach client leaves
// the FIFO full, and the container's write() blocks; crib holds one batch per
// stream. Like containerd's blocking multiwriter (cio/WriterGroup), a client
// that attaches and stops reading holds the container's output (and log)
// until it reads again or goes away; nothing is dropped or reordered.
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Writable } from "node:stream";
import type { Socket } from "node:net";
import { openFifoReader, openFifoWriter, spawnMkfifo, type FifoMaker } from "./fifo.js";
import { CriLineEncoder, CriLogFile, type LogFileReport } from "./cri-log.js";

/** One read from a FIFO: the most output crib holds per stream, and the most a SIGKILLed crib can lose. */
export const READ_BYTES = 32 * 1024;
/**
 * One read buffer for every FIFO: a read lands in it and onRead consumes it
 * (encodes it, copies it for listeners) before it returns, and reads run one
 * at a time on the event loop. 32 KB for each of 600 streams was 19 MB.
 */
const READ_BUFFER = Buffer.allocUnsafe(READ_BYTES);

export interface IoOptions {
  dir: string;
  stdin: boolean;
  tty: boolean;
  logPath: string;
  maxLineSize: number;
  /** where the FIFOs come from (default: a mkfifo process) */
  fifos?: FifoMaker;
  /** hears when writing the log file fails and when it works again */
  onLogFile?: LogFileReport;
}

export class ContainerIo {
  readonly #opts: IoOptions;
  #log: CriLogFile | undefined;
  #releases: (() => Promise<void>)[] = [];
  #readers: Socket[] = [];
  #stdin: Socket | undefined;
  #drained: Promise<void> = Promise.resolve();
  readonly #listeners = new Set<Attached>();

  constructor(opts: IoOptions) {
    this.#opts = opts;
  }

  get paths() {
    const { dir, stdin, tty } = this.#opts;
    return {
      stdin: stdin ? join(dir, "stdin") : "",
      stdout: join(dir, "stdout"),
      stderr: tty ? "" : join(dir, "stderr"),
      terminal: tty,
    };
  }

  /** Creates the FIFOs (when `fresh`) and starts copying; call before the task starts. */
  async open(fresh: boolean): Promise<void> {
    const p = this.paths;
    // the FIFOs and the log file need nothing from each other, nor do the two readers
    if (fresh) await mkdir(this.#opts.dir, { recursive: true, mode: 0o700 });
    if (this.#opts.logPath) this.#log = new CriLogFile(this.#opts.logPath, this.#opts.onLogFile);
    await settled([
      fresh ? (this.#opts.fifos ?? spawnMkfifo).make(p.stdin, p.stdout, p.stderr) : Promise.resolve(),
      this.#log?.open() ?? Promise.resolve(),
    ]);
    const outputs = ([["stdout", p.stdout], ["stderr", p.stderr]] as const).filter(([, path]) => Boolean(path));
    const copies = (await settled(outputs.map(([name, path]) => this.#copy(path, name)))).map((c) => c.ended);
    if (p.stdin) this.#stdin = await openFifoWriter(p.stdin);
    this.#drained = Promise.all(copies).then(() => this.#log?.close());
  }

  /** Starts copying one output FIFO; `ended` settles at EOF, once the tail is written. */
  async #copy(path: string, name: "stdout" | "stderr"): Promise<{ ended: Promise<void> }> {
    const log = this.#log;
    const encoder = log ? new CriLineEncoder(name, this.#opts.maxLineSize) : undefined;
    const listeners = this.#listeners;
    let reader: Socket | undefined;
    const resume = (): void => void setImmediate(() => reader?.resume());
    const onRead = (bytes: number, buffer: Uint8Array): boolean => {
      const chunk = buffer.subarray(0, bytes);
      const waits: Promise<void>[] = [];
      const entries = encoder?.encode(chunk);
      if (log && entries && entries.length > 0) waits.push(log.write(entries));
      if (listeners.size > 0) {
        const copy = Buffer.from(chunk); // the read buffer is reused
        for (const l of listeners) {
          const wait = l.write(name, copy);
          if (wait) waits.push(wait);
        }
      }
      if (waits.length === 0) return true;
      // the next read waits for this batch; the event loop turns in between
      void Promise.all(waits).then(resume);
      return false;
    };
    const fifo = await openFifoReader(path, { buffer: READ_BUFFER, callback: onRead });
    reader = fifo.stream;
    this.#readers.push(reader);
    this.#releases.push(fifo.release);
    const stream = reader;
    const ended = new Promise<void>((resolve) => {
      stream.once("end", resolve);
      stream.once("close", () => resolve());
      stream.once("error", () => resolve());
    });
    return {
      ended: ended.then(async () => {
        const tail = encoder?.end();
        if (log && tail && tail.length > 0) await log.write(tail);
      }),
    };
  }

  /** The shim holds its ends now: EOF from here on means the process is done. */
  async started(): Promise<void> {
    for (const r of this.#releases) await r();
  }

  /** Resolves when stdout/stderr reached EOF and the log is flushed (or after `timeoutMs`). */
  async drained(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#drained, new Promise<void>((r) => { timer = setTimeout(r, timeoutMs); })]);
    clearTimeout(timer);
  }

  /** Resolves once stdout and stderr reached EOF (the container's process exited) and the log is flushed. */
  get done(): Promise<void> {
    return this.#drained;
  }

  /** kubelet renamed the log file: the next batch goes to a new file at the same path. */
  async reopenLog(): Promise<void> {
    await this.#log?.reopen();
  }

  /** Attach: output is copied to the given streams, with their backpressure, until the returned detach is called. */
  attach(out: { stdout?: Writable; stderr?: Writable }): () => void {
    const attached = new Attached(out);
    this.#listeners.add(attached);
    return () => {
      this.#listeners.delete(attached);
      attached.detach();
    };
  }

  get stdin(): Writable | undefined {
    return this.#stdin;
  }

  /** Stops reading (what the container writes from now on stays in the FIFO for the next crib) and closes the log. */
  async close(): Promise<void> {
    for (const r of this.#releases) await r().catch(() => undefined);
    for (const r of this.#readers) r.destroy();
    this.#stdin?.destroy();
    await this.#log?.close();
  }

  async remove(): Promise<void> {
    await this.close();
    await rm(this.#opts.dir, { recursive: true, force: true });
  }
}

/** An attached client's output streams; a write that the stream cannot take yet resolves once it drains, closes or is detached. */
class Attached {
  readonly #out: { stdout?: Writable; stderr?: Writable };
  readonly #detached = new AbortController();

  constructor(out: { stdout?: Writable; stderr?: Writable }) {
    this.#out = out;
  }

  write(name: "stdout" | "stderr", chunk: Buffer): Promise<void> | undefined {
    const w = this.#out[name];
    if (!w || w.destroyed || w.writableEnded || this.#detached.signal.aborted) return undefined;
    if (w.write(chunk)) return undefined;
    const signal = this.#detached.signal;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        w.off("drain", done);
        w.off("close", done);
        w.off("error", done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      w.once("drain", done);
      w.once("close", done);
      w.once("error", done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  detach(): void {
    this.#detached.abort();
  }
}

/** Every branch settled, then the first failure thrown (nothing left running behind a rejection). */
async function settled<T>(branches: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(branches);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
