// What the rpc handlers work with: one object built at start (cri/serve.ts).
import type { Logger } from "pino";
import type { Config } from "./config.js";
import type { Containerd } from "../runtime/containerd/client.js";

export interface NetworkReadiness {
  /** Whether pods can be networked now, and why not. */
  status(): { ready: boolean; reason: string; message: string };
}

export interface Deps {
  config: Config;
  version: string;
  log: Logger;
  containerd: Containerd;
  network: NetworkReadiness;
}
