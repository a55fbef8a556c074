// `crib serve`: connect to (or start) containerd, serve the CRI, shut down in order.
import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { Config } from "./config.js";
import { CriServer } from "./server.js";
import { criServices } from "./services.js";
import type { Deps } from "./deps.js";
import { Containerd } from "../runtime/containerd/client.js";
import { ContainerdDaemon } from "../runtime/containerd/daemon.js";
import { prepareSocketPath, socketAnswers } from "./socket.js";
import { CniReadiness } from "./network-readiness.js";
import { hostname } from "node:os";
import { NetnsManager } from "../runtime/netns.js";
import { CniNetwork } from "../cni/network.js";
import { readHostFacts } from "../runtime/spec/host.js";
import { ensureDefaultProfile } from "../runtime/spec/apparmor.js";
import { probeRuncFeatures } from "../runtime/runc-features.js";
import { FifoPool } from "../runtime/fifo.js";
import { CdiRegistry } from "../runtime/cdi-registry.js";
import { TaskEvents } from "../runtime/containerd/events.js";
import { SandboxStore } from "./store/sandboxes.js";
import { ContainerStore } from "./store/containers.js";
import { ImageStore } from "./store/images.js";
import { OutlivingWork } from "./outlive.js";
import { SandboxLocks } from "./sandbox-lock.js";
import { imageLookup } from "./image-lookup.js";
import { sandboxArchiveFirst } from "./sandbox-image.js";
import { ImagePuller } from "../runtime/image/pull.js";
import { RegistryClient } from "../runtime/image/registry.js";
import { ImageFsUsage } from "../runtime/image/usage.js";
import { handleTaskEvent } from "./exits.js";
import { reconcile, reconcileAtStart } from "./recover.js";
import { IntentJournal } from "./intents.js";
import { Reconciler } from "./reconciler.js";
import { removeSandbox } from "./sandbox-remove.js";
import { cgroupDriver } from "./config.js";
import { StatsCollector } from "./stats-collector.js";
import { EventBus } from "./event-bus.js";
import type { ContainerEvent } from "./container-events.js";
import { PodCidrs } from "./store/pod-cidrs.js";
import { NO_METRICS } from "./metrics-sink.js";
import { startStreaming } from "./streaming.js";
import type { StreamingServer } from "../runtime/streaming/server.js";

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

async function buildDeps(base: Pick<Deps, "config" | "version" | "log" | "containerd" | "network" | "metrics" | "containerEvents">): Promise<Deps> {
  const { config, log, containerd, metrics } = base;
  const cniState = (base.network as CniReadiness).watcher;
  const host = await readHostFacts({ systemdCgroup: cgroupDriver(config) === "systemd", nodeHostname: hostname() });
  if (host.apparmor.enabled) {
    const loaded = await ensureDefaultProfile();
    if (loaded.name) host.apparmor.defaultProfile = loaded.name;
    else log.warn({ err: loaded.error }, "cannot load crib's default AppArmor profile: containers asking for RuntimeDefault run unconfined");
  }
  const runtimeFeatures = new Map(await Promise.all(Object.entries(config.runtimes).map(async ([name, h]) => [name, await probeRuncFeatures(h.binary_name)] as const)));
  const registry = new RegistryClient({
    hosts: { configPath: config.registry.config_path, hosts: config.registry.hosts },
    progressTimeoutMs: config.registry.progress_timeout,
    connectTimeoutMs: config.registry.connect_timeout,
    responseHeaderTimeoutMs: config.registry.response_header_timeout,
    userAgent: `crib/${base.version}`,
  });
  const puller = new ImagePuller({
    containerd, registry, maxConcurrentDownloads: config.registry.max_concurrent_downloads,
    sandboxImage: config.sandbox.image, log: log.child({ component: "pull" }),
    onDownloaded: (bytes) => metrics.imageBytesDownloaded(bytes),
    maxResumes: config.registry.max_resumes,
    failedPullKeepMs: config.registry.failed_pull_keep,
  });
  const imageFs = new ImageFsUsage(containerd);
  const imageStore = new ImageStore(containerd, () => deps.events);
  const deps: Deps = {
    ...base,
    imageStore,
    images: imageLookup(imageStore, sandboxArchiveFirst(config, containerd, log, async (ref, signal) => void (await puller.pull(ref, { signal })))),
    puller,
    imageFs,
    netns: new NetnsManager({ prefix: config.sandbox.netns_prefix }),
    cni: new CniNetwork({ config: () => cniState.current(), binDirs: config.cni.bin_dirs, cacheDir: join(config.root, "cni-cache"), log: log.child({ component: "cni" }),
      addTimeoutMs: config.cni.add_timeout, delTimeoutMs: config.cni.del_timeout,
      observe: (command, seconds, failed) => metrics.cniDone(command, seconds, !failed) }),
    host,
    runtimeFeatures,
    fifos: await FifoPool.create(join(config.state, "fifos")),
    cdi: config.cdi.enabled ? new CdiRegistry(config.cdi.spec_dirs, log.child({ component: "cdi" })) : undefined,
    events: undefined as unknown as TaskEvents,
    sandboxes: new SandboxStore(),
    containers: new ContainerStore(join(config.root, "containers")),
    sandboxRuns: new OutlivingWork(async (sandbox) => {
      log.warn({ sandbox: sandbox.id }, "removing a sandbox whose RunPodSandbox nobody picked up");
      await deps.sandboxLocks.exclusive(sandbox.id, () => removeSandbox(deps, sandbox, { signal: AbortSignal.timeout(120_000), log }));
    }),
    sandboxLocks: new SandboxLocks(),
    io: new Map(),
    stats: new StatsCollector({ containerd, imageFs }),
    podCidrs: await PodCidrs.load(join(config.root, "runtime-config.json"), log),
    streaming: undefined as unknown as StreamingServer,
    intents: new IntentJournal(join(config.root, "intents")),
    reconciler: undefined as unknown as Reconciler,
    recovery: { ready: false, error: "" },
  };
  deps.reconciler = new Reconciler(deps, deps.intents);
  deps.events = new TaskEvents(containerd, log.child({ component: "events" }), () => reconcile(deps));
  deps.events.on((e) => (e.kind === "image" ? imageStore.changed() : handleTaskEvent(deps, e)));
  return deps;
}

export async function serve(config: Config, version: string): Promise<void> {
  const log = pino({ level: config.log_level, base: { pid: process.pid } }, pino.destination(2));
  try {
    await prepareSocketPath(config.listen); // refuse a second crib before touching anything
  } catch (err) {
    log.fatal({ err: (err as Error).message }, "cannot serve the CRI");
    process.exit(1);
  }
  const { containerd, daemon } = await connectContainerd(config, log);
  const network = await CniReadiness.start(config.cni.conf_dir, config.cni.bin_dirs, log.child({ component: "cni" }));
  const containerEvents = new EventBus<ContainerEvent>();
  let built: Deps | undefined;
  // prom-client is loaded only when metrics are served
  const prometheus = config.metrics.address === "" ? undefined : new (await import("./metrics.js")).CribMetrics({
    containers: () => built?.containers.list() ?? [], sandboxes: () => built?.sandboxes.list() ?? [], eventClients: () => containerEvents.clients,
  });
  const deps = built = await buildDeps({ config, version, log, containerd, network, metrics: prometheus ?? NO_METRICS, containerEvents });
  // Reconcile before serving: undo or finish what the journal recorded, rebuild the
  // stores. containerd may be down: keep trying with backoff; crib serves after a
  // few seconds anyway, answering UNAVAILABLE (never an empty list) until done.
  const reconciled = (async () => {
    for (let attempt = 0, wait = 250; ; attempt++, wait = Math.min(wait * 2, 5000)) {
      try {
        await reconcileAtStart(deps);
        deps.recovery.ready = true;
        deps.recovery.error = "";
        deps.events.start();
        return;
      } catch (err) {
        deps.recovery.error = (err as Error).message;
        if (attempt === 0) log.error({ err: (err as Error).message }, "cannot reconcile state with containerd yet; retrying");
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  })();
  await Promise.race([reconciled, new Promise((r) => setTimeout(r, 2500))]);
  deps.streaming = await startStreaming(deps);
  const server = new CriServer(config.listen, criServices(deps, prometheus), log);
  try {
    await server.listen();
  } catch (err) {
    log.fatal({ err: (err as Error).message }, "cannot serve the CRI");
    network.close();
    containerd.close();
    await daemon?.stop();
    process.exit(1);
  }
  if (prometheus) {
    await prometheus.listen(config.metrics.address, log).catch((err: unknown) =>
      log.error({ address: config.metrics.address, err: (err as Error).message }, "cannot serve Prometheus metrics; going on without"));
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    deps.containerEvents.close();
    await server.close();
    await deps.streaming.close();
    await prometheus?.close();
    network.close();
    deps.events.close();
    deps.sandboxRuns.close();
    deps.reconciler.close();
    deps.puller.close();
    for (const io of deps.io.values()) await io.close().catch(() => undefined);
    containerd.close();
    await daemon?.stop();
    log.info("stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}
