// What the rpc handlers work with: one object built at start (cri/serve.ts).
import type { Logger } from "pino";
import type { Config } from "./config.js";
import type { Containerd } from "../runtime/containerd/client.js";
import type { TaskEvents } from "../runtime/containerd/events.js";
import type { NetnsManager } from "../runtime/netns.js";
import type { CniNetwork } from "../cni/network.js";
import type { HostFacts } from "../runtime/spec/host.js";
import type { RuncFeatures } from "../runtime/runc-features.js";
import type { FifoMaker } from "../runtime/fifo.js";
import type { CdiRegistry } from "../runtime/cdi-registry.js";
import type { ImageConfig } from "../runtime/image/oci.js";
import type { SandboxStore, Sandbox } from "./store/sandboxes.js";
import type { ContainerStore } from "./store/containers.js";
import type { ImageStore } from "./store/images.js";
import type { OutlivingWork } from "./outlive.js";
import type { SandboxLocks } from "./sandbox-lock.js";
import type { ContainerIo } from "../runtime/container-io.js";
import type { StreamingServer } from "../runtime/streaming/server.js";
import type { ImagePuller } from "../runtime/image/pull.js";
import type { ImageFsUsage } from "../runtime/image/usage.js";
import type { StatsCollector } from "./stats-collector.js";
import type { EventBus } from "./event-bus.js";
import type { ContainerEvent } from "./container-events.js";
import type { PodCidrs } from "./store/pod-cidrs.js";
import type { MetricsSink } from "./metrics-sink.js";
import type { IntentJournal } from "./intents.js";
import type { Reconciler } from "./reconciler.js";

export interface NetworkReadiness {
  /** Whether pods can be networked now, and why not. */
  status(): { ready: boolean; reason: string; message: string };
  /** What `crictl info` shows of the network: config file, missing plugins… */
  describe?(): Record<string, unknown>;
}

/** An image present in containerd, as the runtime side needs it. */
export interface LocalImage {
  /** the image ID: its config digest */
  id: string;
  /** the containerd image record name used to make containers */
  name: string;
  repoTags: string[];
  repoDigests: string[];
  /** chain ID of the top layer: parent of a container's snapshot */
  chainId: string;
  config: ImageConfig;
}

export interface ImageLookup {
  /** By reference, ID or digest; undefined when not present. */
  find(ref: string, signal?: AbortSignal): Promise<LocalImage | undefined>;
  /** Present or pulled (the sandbox image), pinned. */
  ensure(ref: string, signal?: AbortSignal): Promise<LocalImage>;
}

export interface Deps {
  config: Config;
  version: string;
  log: Logger;
  containerd: Containerd;
  network: NetworkReadiness;
  images: ImageLookup;
  /** the image records, listed from containerd when they changed (cri/store/images.ts) */
  imageStore: ImageStore;
  /** pulls from registries into containerd (PullImage, and the sandbox image on demand) */
  puller: ImagePuller;
  imageFs: ImageFsUsage;
  netns: NetnsManager;
  cni: CniNetwork;
  host: HostFacts;
  /** CDI devices by name, from the spec dirs; undefined when [cdi] is off */
  cdi: CdiRegistry | undefined;
  /** stdio FIFOs for execs and containers, made ahead of need */
  fifos: FifoMaker;
  /** what each configured runtime handler's runc supports, by handler name */
  runtimeFeatures: ReadonlyMap<string, RuncFeatures>;
  events: TaskEvents;
  sandboxes: SandboxStore;
  containers: ContainerStore;
  sandboxRuns: OutlivingWork<Sandbox>;
  /** the lifecycle lock of each sandbox: creates and starts share it, stop and remove hold it alone */
  sandboxLocks: SandboxLocks;
  /** stdio of the containers this crib process holds open */
  io: Map<string, ContainerIo>;
  /** samples for the stats and metrics rpcs (keeps the previous CPU sample) */
  stats: StatsCollector;
  /** GetContainerEvents clients; fed by cri/container-events.ts hooks */
  containerEvents: EventBus<ContainerEvent>;
  /** from UpdateRuntimeConfig, for CNI ADD */
  podCidrs: PodCidrs;
  /** crib's Prometheus metrics (served when [metrics] address is set) */
  metrics: MetricsSink;
  /** hands out the URLs of Exec, Attach and PortForward (cri/streaming.ts) */
  streaming: StreamingServer;
  /** what multi-step operations are about to make, durable before their first side effect */
  intents: IntentJournal;
  /** undoes recorded intents, retries failed undos and unknown states with backoff */
  reconciler: Reconciler;
  /** false until start-up reconciled the journal and the stores with containerd: rpcs answer UNAVAILABLE meanwhile */
  recovery: { ready: boolean; error: string };
}
