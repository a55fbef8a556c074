// NetworkReady for Status: a loadable CNI config whose plugins all exist,
// re-evaluated whenever the conf dir changes.
import type { Logger } from "pino";
import type { NetworkReadiness } from "./deps.js";
import { CniConfigWatcher } from "../cni/watch.js";
import { missingPlugins, type ConfigLoad } from "../cni/config.js";

export class CniReadiness implements NetworkReadiness {
  #missing: string[] = [];

  private constructor(readonly watcher: CniConfigWatcher, readonly binDirs: readonly string[], readonly confDir: string) {}

  static async start(confDir: string, binDirs: readonly string[], log: Logger): Promise<CniReadiness> {
    let self: CniReadiness | undefined;
    const watcher = await CniConfigWatcher.start({
      confDir, log,
      onChange: (state) => void self?.check(state),
    });
    self = new CniReadiness(watcher, binDirs, confDir);
    await self.check(watcher.current());
    return self;
  }

  async check(state: ConfigLoad): Promise<void> {
    this.#missing = state.config ? await missingPlugins(state.config, this.binDirs).catch(() => []) : [];
  }

  status() {
    const state = this.watcher.current();
    if (!state.config) return { ready: false, reason: "NetworkPluginNotReady", message: `cni config not loaded: ${state.reason}` };
    if (this.#missing.length > 0) {
      return { ready: false, reason: "NetworkPluginNotReady", message: `${state.config.source}: CNI plugins not found in ${this.binDirs.join(", ")}: ${this.#missing.join(", ")}` };
    }
    return { ready: true, reason: "", message: "" };
  }

  describe(): Record<string, unknown> {
    const state = this.watcher.current();
    return {
      confDir: this.confDir,
      binDirs: this.binDirs,
      configFile: state.config?.source ?? "",
      network: state.config?.name ?? "",
      cniVersion: state.config?.cniVersion ?? "",
      plugins: state.config?.plugins.map((p) => p.type) ?? [],
      missingPlugins: this.#missing,
      ...(state.config ? {} : { notLoaded: state.reason }),
    };
  }

  close(): void {
    void this.watcher.close();
  }
}
