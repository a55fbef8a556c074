// NetworkReady for Status: a CNI config must be present in the conf dir.
import { readdir } from "node:fs/promises";
import type { Logger } from "pino";
import type { NetworkReadiness } from "./deps.js";

const CONFIG_FILE = /\.(conflist|conf|json)$/;

export class CniReadiness implements NetworkReadiness {
  readonly #dir: string;
  #found: string | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(dir: string, readonly log: Logger) {
    this.#dir = dir;
    void this.#scan();
    this.#timer = setInterval(() => void this.#scan(), 2000).unref();
  }

  async #scan(): Promise<void> {
    const names = await readdir(this.#dir).catch(() => [] as string[]);
    this.#found = names.filter((n) => CONFIG_FILE.test(n)).sort()[0];
  }

  status() {
    return this.#found
      ? { ready: true, reason: "", message: "" }
      : { ready: false, reason: "NetworkPluginNotReady", message: `no CNI network config found in ${this.#dir}` };
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
