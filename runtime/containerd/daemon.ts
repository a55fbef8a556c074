// crib's own containerd: started when no containerd is configured or answering.
// It runs as a child with a config crib writes (its CRI plugin disabled), is
// restarted when it dies, and is stopped with SIGTERM on shutdown; the runc
// shims it started outlive it, so containers keep running.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";

export interface DaemonOptions {
  binary: string;
  /** persistent root, e.g. /var/lib/crib/containerd */
  root: string;
  /** state dir, e.g. /run/crib/containerd; the socket lives here */
  state: string;
  log: Logger;
  /** answers true once containerd serves its API at `address` */
  probe: (address: string, signal: AbortSignal) => Promise<boolean>;
}

/** The socket of the containerd crib runs with state directory `state`. */
export const daemonAddress = (state: string): string => join(state, "containerd.sock");

export class ContainerdDaemon {
  readonly address: string;
  readonly #opts: DaemonOptions;
  #child: ChildProcess | undefined;
  #stopping = false;
  #restarts = 0;
  #restartTimer: NodeJS.Timeout | undefined;
  /** a spawn between the restart timer and the child's creation */
  #spawning: Promise<void> | undefined;

  constructor(opts: DaemonOptions) {
    this.#opts = opts;
    this.address = daemonAddress(opts.state);
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  configText(): string {
    const { root, state } = this.#opts;
    return [
      "# written by crib: the containerd crib runs for itself",
      "version = 2",
      `root = ${JSON.stringify(root)}`,
      `state = ${JSON.stringify(state)}`,
      `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
      "oom_score = 0",
      "[grpc]",
      `  address = ${JSON.stringify(this.address)}`,
      "[ttrpc]",
      `  address = ${JSON.stringify(`${this.address}.ttrpc`)}`,
      "[debug]",
      `  address = ""`,
      "[metrics]",
      `  address = ""`,
      "",
    ].join("\n");
  }

  /** Starts containerd and resolves once it answers (or rejects after `timeoutMs`). */
  async start(timeoutMs = 30_000): Promise<void> {
    this.#stopping = false;
    // running, or about to be restarted after a crash: one containerd, not two
    await this.#spawning;
    if ((this.#child !== undefined && this.#child.exitCode === null) || this.#restartTimer !== undefined) return this.waitReady(timeoutMs);
    const { root, state } = this.#opts;
    await mkdir(root, { recursive: true, mode: 0o711 });
    await mkdir(state, { recursive: true, mode: 0o711 });
    await writeFile(join(state, "config.toml"), this.configText());
    await this.#spawn();
    await this.waitReady(timeoutMs);
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.#child === undefined && !this.#restartTimer && !this.#spawning) throw new Error("containerd exited while starting");
      if (await this.#opts.probe(this.address, AbortSignal.timeout(1000)).catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`containerd did not answer on ${this.address} within ${timeoutMs} ms (log: ${this.logPath})`);
  }

  get logPath(): string {
    return join(this.#opts.state, "containerd.log");
  }

  #spawn(): Promise<void> {
    const spawning = this.#spawnOnce().finally(() => { if (this.#spawning === spawning) this.#spawning = undefined; });
    this.#spawning = spawning;
    return spawning;
  }

  async #spawnOnce(): Promise<void> {
    const logFile = await open(this.logPath, "a");
    const child = spawn(this.#opts.binary, ["--config", join(this.#opts.state, "config.toml")], {
      stdio: ["ignore", logFile.fd, logFile.fd],
      // own process group: a terminal's ^C reaches crib, which stops containerd in order
      detached: true,
    });
    await logFile.close();
    this.#child = child;
    const { log } = this.#opts;
    child.once("error", (err) => log.error({ err }, "cannot start containerd"));
    child.once("exit", (code, signal) => {
      this.#child = undefined;
      if (this.#stopping) return;
      const delay = Math.min(30_000, 250 * 2 ** Math.min(this.#restarts++, 7));
      log.warn({ code, signal, delay }, "containerd exited; restarting it");
      this.#restartTimer = setTimeout(() => {
        this.#restartTimer = undefined;
        if (!this.#stopping) void this.#spawn().then(() => this.waitReady(30_000)).then(() => { this.#restarts = 0; }, (err: unknown) => log.error({ err }, "containerd restart failed"));
      }, delay);
    });
    log.info({ containerdPid: child.pid, address: this.address }, "started containerd");
  }

  /** SIGTERM, then SIGKILL after `graceMs`; containers (shims) keep running. */
  async stop(graceMs = 10_000): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    const child = this.#child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }
}
