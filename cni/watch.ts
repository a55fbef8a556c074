// Keeps the current network config in step with the conf dir: fs.watch while
// the dir exists (debounced, since writers touch files several times), polling
// for it while it does not (CNI installers often create it after we start).
import { watch, type FSWatcher } from "node:fs";
import { stat } from "node:fs/promises";
import type { Logger } from "pino";
import { loadNetworkConfig, type ConfigLoad } from "./config.js";

export interface CniConfigWatcherOptions {
  readonly confDir: string;
  readonly log: Logger;
  /** Quiet time after the last change before reloading. */
  readonly debounceMs?: number;
  /** How often to look for the dir while it is missing. */
  readonly pollMs?: number;
  /** Called after a reload that changed the config or the reason it is not ready. */
  readonly onChange?: (state: ConfigLoad) => void;
}

export class CniConfigWatcher implements AsyncDisposable {
  readonly #confDir: string;
  readonly #log: Logger;
  readonly #debounceMs: number;
  readonly #pollMs: number;
  readonly #onChange: ((state: ConfigLoad) => void) | undefined;
  #state: ConfigLoad;
  #watcher: FSWatcher | undefined;
  #watchedIno: number | undefined;
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  #closed = false;

  private constructor(options: CniConfigWatcherOptions) {
    this.#confDir = options.confDir;
    this.#log = options.log.child({ confDir: options.confDir });
    this.#debounceMs = options.debounceMs ?? 200;
    this.#pollMs = options.pollMs ?? 2000;
    this.#onChange = options.onChange;
    this.#state = { config: undefined, reason: "CNI config not loaded yet" };
  }

  /** Loads the config once, then keeps watching until close(). */
  static async start(options: CniConfigWatcherOptions): Promise<CniConfigWatcher> {
    const watcher = new CniConfigWatcher(options);
    await watcher.reload();
    return watcher;
  }

  /** The config in use, or why there is none (for the NetworkReady condition). */
  current(): ConfigLoad {
    return this.#state;
  }

  /** Reloads now; concurrent calls share one reload, and a call during a reload causes one more. */
  async reload(): Promise<void> {
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      try {
        do {
          this.#reloadAgain = false;
          await this.#reloadOnce();
        } while (this.#reloadAgain && !this.#closed);
      } finally {
        this.#reloading = undefined;
      }
    })();
    return this.#reloading;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unwatch();
    clearTimeout(this.#debounce);
    clearInterval(this.#poll);
    this.#poll = undefined;
    await this.#reloading;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #reloadOnce(): Promise<void> {
    if (this.#closed) return;
    await this.#arm();
    const next = await loadNetworkConfig(this.#confDir, this.#log);
    if (this.#closed) return;
    const changed = JSON.stringify(next) !== JSON.stringify(this.#state);
    this.#state = next;
    if (!changed) return;
    if (next.config) {
      this.#log.info({ file: next.config.source, network: next.config.name, cniVersion: next.config.cniVersion }, "CNI config loaded");
    } else {
      this.#log.warn({ reason: next.reason }, "CNI network not ready");
    }
    try {
      this.#onChange?.(next);
    } catch (err) {
      this.#log.error({ err }, "CNI config change handler failed");
    }
  }

  // Watch the dir if it exists (re-watching if it was replaced), poll for it if not.
  async #arm(): Promise<void> {
    let ino: number | undefined;
    try {
      const st = await stat(this.#confDir);
      if (st.isDirectory()) ino = st.ino;
    } catch {
      ino = undefined;
    }
    if (this.#closed) return;
    if (ino !== undefined && this.#watcher && this.#watchedIno === ino) return;
    this.#unwatch();
    if (ino !== undefined) {
      try {
        const watcher = watch(this.#confDir, { persistent: false }, () => this.#schedule());
        watcher.on("error", (err) => {
          this.#log.debug({ err }, "CNI config dir watch ended");
          if (this.#watcher === watcher) this.#unwatch();
          this.#schedule();
        });
        this.#watcher = watcher;
        this.#watchedIno = ino;
        clearInterval(this.#poll);
        this.#poll = undefined;
        return;
      } catch (err) {
        this.#log.debug({ err }, "cannot watch CNI config dir; polling");
      }
    }
    if (!this.#poll) {
      this.#poll = setInterval(() => void this.reload(), this.#pollMs);
      this.#poll.unref();
    }
  }

  #unwatch(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#watchedIno = undefined;
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.reload(), this.#debounceMs);
    this.#debounce.unref();
  }
}
