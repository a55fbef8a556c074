// A container's stdio: FIFOs in its io dir shared with the shim, their output
// copied into the CRI log and to any attached clients. After a crib restart the
// same FIFOs are opened again and the log continues.
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable, type Writable } from "node:stream";
import type { Socket } from "node:net";
import { openFifoReader, openFifoWriter, spawnMkfifo, type FifoMaker } from "./fifo.js";
import { CriLogWriter } from "./cri-log.js";

export interface IoOptions {
  dir: string;
  stdin: boolean;
  tty: boolean;
  logPath: string;
  maxLineSize: number;
  /** where the FIFOs come from (default: a mkfifo process) */
  fifos?: FifoMaker;
}

export class ContainerIo {
  readonly #opts: IoOptions;
  #log: CriLogWriter | undefined;
  #releases: (() => Promise<void>)[] = [];
  #stdin: Socket | undefined;
  #drained: Promise<void> = Promise.resolve();
  readonly #listeners = new Set<{ stdout?: Writable; stderr?: Writable }>();

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
    if (fresh) {
      await mkdir(this.#opts.dir, { recursive: true, mode: 0o700 });
      await (this.#opts.fifos ?? spawnMkfifo).make(p.stdin, p.stdout, p.stderr);
    }
    if (this.#opts.logPath) {
      this.#log = new CriLogWriter(this.#opts.logPath, this.#opts.maxLineSize);
      await this.#log.open();
    }
    const copies: Promise<void>[] = [];
    for (const [name, path] of [["stdout", p.stdout], ["stderr", p.stderr]] as const) {
      if (!path) continue;
      const { stream, release } = await openFifoReader(path);
      this.#releases.push(release);
      copies.push(this.#copy(stream, name));
    }
    if (p.stdin) this.#stdin = await openFifoWriter(p.stdin);
    this.#drained = Promise.all(copies).then(() => this.#log?.close());
  }

  #copy(source: Readable, name: "stdout" | "stderr"): Promise<void> {
    const tee = new PassThrough();
    source.on("data", (chunk: Buffer) => {
      tee.write(chunk);
      for (const l of this.#listeners) l[name]?.write(chunk);
    });
    const ended = new Promise<void>((r) => { source.once("end", r); source.once("close", r); source.once("error", () => r()); });
    void ended.then(() => tee.end());
    return this.#log ? this.#log.follow(tee, name) : ended;
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

  async reopenLog(): Promise<void> {
    await this.#log?.reopen();
  }

  /** Attach: output is copied to the given streams until detach() is called. */
  attach(out: { stdout?: Writable; stderr?: Writable }): () => void {
    this.#listeners.add(out);
    return () => this.#listeners.delete(out);
  }

  get stdin(): Writable | undefined {
    return this.#stdin;
  }

  async close(): Promise<void> {
    for (const r of this.#releases) await r().catch(() => undefined);
    this.#stdin?.destroy();
    await this.#log?.close();
  }

  async remove(): Promise<void> {
    await this.close();
    await rm(this.#opts.dir, { recursive: true, force: true });
  }
}
