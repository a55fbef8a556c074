// `crib serve`: connect to (or start) containerd, serve the CRI, shut down in order.
import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { Config } from "./config.js";
import { CriServer } from "./server.js";
import { criServices } from "./services.js";
import type { Deps, NetworkReadiness } from "./deps.js";
import { Containerd } from "../runtime/containerd/client.js";
import { ContainerdDaemon } from "../runtime/containerd/daemon.js";
import { socketAnswers } from "./socket.js";
import { CniReadiness } from "./network-readiness.js";

export const SYSTEM_CONTAINERD = "/run/containerd/containerd.sock";

async function probe(address: string, signal: AbortSignal): Promise<boolean> {
  const client = new Containerd(address, "default");
  try {
    return await client.ping(signal);
  } finally {
    client.close();
  }
}

/** The containerd crib uses: the configured one, a system one that answers, or its own. */
export async function connectContainerd(config: Config, log: Logger): Promise<{ containerd: Containerd; daemon?: ContainerdDaemon }> {
  if (config.containerd.address) {
    log.info({ address: config.containerd.address }, "using the configured containerd");
    return { containerd: new Containerd(config.containerd.address, config.containerd.namespace) };
  }
  if ((await socketAnswers(SYSTEM_CONTAINERD)) && (await probe(SYSTEM_CONTAINERD, AbortSignal.timeout(3000)))) {
    log.info({ address: SYSTEM_CONTAINERD }, "using the system containerd");
    return { containerd: new Containerd(SYSTEM_CONTAINERD, config.containerd.namespace) };
  }
  const daemon = new ContainerdDaemon({
    binary: config.containerd.binary,
    root: join(config.root, "containerd"),
    state: join(config.state, "containerd"),
    log: log.child({ component: "containerd" }),
    probe,
  });
  await daemon.start();
  return { containerd: new Containerd(daemon.address, config.containerd.namespace), daemon };
}

export async function serve(config: Config, version: string): Promise<void> {
  const log = pino({ level: config.log_level, base: { pid: process.pid } }, pino.destination(2));
  const { containerd, daemon } = await connectContainerd(config, log);
  const network: NetworkReadiness & { close(): void } = new CniReadiness(config.cni.conf_dir, log);
  const deps: Deps = { config, version, log, containerd, network };
  const server = new CriServer(config.listen, criServices(deps), log);
  try {
    await server.listen();
  } catch (err) {
    log.fatal({ err: (err as Error).message }, "cannot serve the CRI");
    network.close();
    containerd.close();
    await daemon?.stop();
    process.exit(1);
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    await server.close();
    network.close();
    containerd.close();
    await daemon?.stop();
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
