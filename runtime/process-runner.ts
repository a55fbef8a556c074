// Short-lived child processes (CNI plugins, ip, mount, mkfifo) started off the
// event loop. Node's spawn blocks the calling thread through fork() and until
// the child has exec'd: 5 ms on a quiet machine, 30-100 ms on a loaded one for
// a process of crib's size. Done on the thread that serves rpcs, every other
// call in flight waits that long, once per plugin of every pod starting. Here a
// worker thread does the spawning; the event loop only passes messages.
import { Worker } from "node:worker_threads";
import { counted } from "./call-trace.js";

export interface RunOptions {
  /** the child's whole environment (default: crib's) */
  env?: NodeJS.ProcessEnv;
  /** written to the child's stdin, which is then closed */
  input?: string;
  /** bytes of stdout and stderr kept; the rest is read and dropped */
  maxStdout?: number;
  maxStderr?: number;
  /** aborting kills the child (SIGKILL); the promise settles once it is gone, rejecting with the reason */
  signal?: AbortSignal;
  /** the child leads a process group of its own, and a kill (on abort) ends the whole group */
  group?: boolean;
  /** told the child's pid once it runs */
  onStarted?: (pid: number) => void;
}

export interface RunResult {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** A child that could not be started at all (ENOENT, EACCES…). */
export class SpawnError extends Error {
  constructor(readonly file: string, message: string, readonly code: string) {
    super(message);
    this.name = "SpawnError";
  }
}

export type RunMessage =
  | { kind: "run"; id: number; file: string; args: string[]; env: NodeJS.ProcessEnv; input: string; maxStdout: number; maxStderr: number; group: boolean }
  | { kind: "kill"; id: number };

export type RunReply =
  | { kind: "started"; id: number; pid: number }
  | { kind: "exit"; id: number; pid: number; code: number | null; signal: NodeJS.Signals | null; stdout: Uint8Array; stderr: Uint8Array }
  | { kind: "error"; id: number; message: string; code: string };

interface Pending {
  file: string;
  onStarted: ((pid: number) => void) | undefined;
  resolve(r: RunResult): void;
  reject(e: unknown): void;
}

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * How long a spawner thread with nothing running stays. A thread is a whole V8
 * isolate, ~10 MB of RSS: a node in steady state spawns nothing, so it keeps none;
 * the first spawn after a quiet spell pays the thread's start (~30 ms) again.
 */
export const SPAWNER_IDLE_MS = 5000;

/** One worker thread and the children it has running. */
class Spawner {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  #idle: NodeJS.Timeout | undefined;
  #retired = false;
  readonly #onGone: (s: Spawner) => void;

  constructor(onGone: (s: Spawner) => void) {
    this.#onGone = onGone;
    this.worker = new Worker(new URL("./spawn-thread.js", import.meta.url));
    this.worker.unref(); // an idle spawner keeps nothing alive
    this.worker.on("message", (r: RunReply) => this.#reply(r));
    const fail = (err: unknown): void => {
      clearTimeout(this.#idle);
      onGone(this);
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new SpawnError(p.file, `the process runner thread stopped: ${err instanceof Error ? err.message : String(err)}`, "EWORKER"));
      }
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`exit code ${code}`)));
  }

  /** A run is about to be posted: the thread is not idle. */
  busy(): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
  }

  /** Out of the runner's list at once (no run is given to it any more), then ended. */
  #retire(): void {
    if (this.#retired || this.pending.size > 0) return;
    this.#retired = true;
    this.#onGone(this);
    void this.worker.terminate();
  }

  #reply(r: RunReply): void {
    const p = this.pending.get(r.id);
    if (!p) return;
    if (r.kind === "started") {
      p.onStarted?.(r.pid);
      return;
    }
    this.pending.delete(r.id);
    if (this.pending.size === 0) {
      this.worker.unref();
      this.#idle = setTimeout(() => this.#retire(), SPAWNER_IDLE_MS);
      this.#idle.unref();
    }
    if (r.kind === "error") p.reject(new SpawnError(p.file, `cannot run ${p.file}: ${r.message}`, r.code));
    else p.resolve({ pid: r.pid, code: r.code, signal: r.signal, stdout: asBuffer(r.stdout), stderr: asBuffer(r.stderr) });
  }
}

/**
 * Up to `size` spawner threads, made as they are needed: a spawn keeps its
 * thread busy until the child has exec'd, so pods starting at once want more than one.
 */
class Runner {
  #spawners: Spawner[] = [];
  #next = 1;

  constructor(readonly size: number) {}

  get threads(): number {
    return this.#spawners.length;
  }

  #pick(): Spawner {
    const idle = this.#spawners.find((s) => s.pending.size === 0);
    if (idle) return idle;
    if (this.#spawners.length < this.size) {
      const s = new Spawner((gone) => { this.#spawners = this.#spawners.filter((x) => x !== gone); });
      this.#spawners.push(s);
      return s;
    }
    return this.#spawners.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
  }

  run(file: string, args: string[], o: RunOptions): Promise<RunResult> {
    const signal = o.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.#next++;
    const spawner = this.#pick();
    spawner.busy();
    const worker = spawner.worker;
    worker.ref(); // a child is running: crib waits for it
    return new Promise<RunResult>((resolve, reject) => {
      const kill = (): void => worker.postMessage({ kind: "kill", id } satisfies RunMessage);
      signal?.addEventListener("abort", kill, { once: true });
      const settle = <T>(fn: (v: T) => void) => (v: T): void => {
        signal?.removeEventListener("abort", kill);
        // killed on purpose: the caller wants the reason it aborted with, once the child is gone
        if (signal?.aborted) reject(signal.reason);
        else fn(v);
      };
      spawner.pending.set(id, { file, onStarted: o.onStarted, resolve: settle(resolve), reject: settle(reject) });
      worker.postMessage({
        kind: "run", id, file, args, env: o.env ?? process.env, input: o.input ?? "",
        maxStdout: o.maxStdout ?? 16 << 20, maxStderr: o.maxStderr ?? 1 << 20, group: o.group ?? false,
      } satisfies RunMessage);
    });
  }
}

const runner = new Runner(4);

/** Spawner threads alive now (for tests: idle ones end after SPAWNER_IDLE_MS). */
export const spawnerThreads = (): number => runner.threads;

/** Runs `file` with `args` to its end, started from the runner thread. */
export function runProcess(file: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return runner.run(file, args, options);
}

/** Like a promisified execFile: stdout and stderr as text; a non-zero exit rejects with an error carrying them. */
export async function execFileOffThread(file: string, args: string[], options: { signal?: AbortSignal; group?: boolean } = {}): Promise<{ stdout: string; stderr: string }> {
  const what = args.filter((a) => !a.startsWith("-") && !a.startsWith("crib-") && !a.startsWith("/")).slice(0, 3).map((a) => (a.length > 32 ? `${a.slice(0, 32)}…` : a)).join(" ");
  const r = await counted(`exec ${file.split("/").pop()} ${what}`, runProcess(file, args, options));
  const stdout = r.stdout.toString("utf8");
  const stderr = r.stderr.toString("utf8");
  if (r.code !== 0) {
    const how = r.signal ? `killed by ${r.signal}` : `exit status ${r.code}`;
    throw Object.assign(new Error(`Command failed (${how}): ${[file, ...args].join(" ")}\n${stderr}`), { code: r.code, signal: r.signal, stdout, stderr });
  }
  return { stdout, stderr };
}
