// Wires crib's handlers to the two CRI services. An rpc not listed here answers
// UNIMPLEMENTED naming itself (cri/rpc.ts implementAll).
import type { UntypedServiceImplementation, handleServerStreamingCall, handleUnaryCall } from "@grpc/grpc-js";
import type { RuntimeServiceHandlers } from "../proto/gen/cri/runtime/v1/RuntimeService.js";
import type { ImageServiceHandlers } from "../proto/gen/cri/runtime/v1/ImageService.js";
import { criDefinitions, loadCri } from "../proto/load.js";
import { WireCheck, requestChecker } from "./validate.js";
import type { Deps } from "./deps.js";
import { serverStream, unary, type CallContext, type CallObserver } from "./rpc.js";
import type { ServiceBinding } from "./server.js";
import { version } from "./runtime-version.js";
import { runtimeStatus } from "./runtime-status.js";
import { runtimeConfig } from "./runtime-config.js";
import { runPodSandbox } from "./sandbox-run.js";
import { stopPodSandbox } from "./sandbox-stop.js";
import { removePodSandbox } from "./sandbox-remove.js";
import { podSandboxStatus } from "./sandbox-status.js";
import { listPodSandbox } from "./sandbox-list.js";
import { createContainerRpc } from "./container-create.js";
import { startContainer } from "./container-start.js";
import { stopContainerRpc } from "./container-stop.js";
import { removeContainerRpc } from "./container-remove.js";
import { containerStatus, listContainers } from "./container-status.js";
import { execSync } from "./container-exec-sync.js";
import { execRpc } from "./container-exec.js";
import { attachRpc } from "./container-attach.js";
import { portForwardRpc } from "./sandbox-port-forward.js";
import { updateContainerResources } from "./container-update.js";
import { reopenContainerLog } from "./container-reopen-log.js";
import { pullImage } from "./image-pull.js";
import { listImagesRpc } from "./image-list.js";
import { imageStatus } from "./image-status.js";
import { removeImage } from "./image-remove.js";
import { imageFsInfo } from "./image-fs-info.js";
import { containerStatsRpc, listContainerStats } from "./stats-container.js";
import { podSandboxStats, listPodSandboxStats } from "./stats-sandbox.js";
import { listMetricDescriptors, listPodSandboxMetrics } from "./stats-metrics.js";
import { getContainerEvents } from "./container-events.js";
import { updateRuntimeConfig } from "./runtime-config-update.js";
import { listStream } from "./list-stream.js";
import { unavailable } from "../runtime/errors.js";
import { updatePodSandboxResources } from "./sandbox-update-resources.js";

type Unary<H> = H extends handleUnaryCall<infer Req, infer Res> ? { req: Req; res: Res } : never;
type Impl<H> = { [K in keyof H]?: (deps: Deps, req: Unary<H[K]>["req"], ctx: CallContext) => Promise<NonNullable<Unary<H[K]>["res"]>> };
type Stream<H> = H extends handleServerStreamingCall<infer Req, infer Res> ? { req: Req; res: Res } : never;
type StreamImpl<H> = { [K in keyof H]?: (deps: Deps, req: Stream<H[K]>["req"], send: (res: Stream<H[K]>["res"]) => Promise<void>, ctx: CallContext) => Promise<void> };

export const runtimeHandlers: Impl<RuntimeServiceHandlers> = {
  Version: version,
  Status: runtimeStatus,
  RuntimeConfig: runtimeConfig,
  RunPodSandbox: runPodSandbox,
  StopPodSandbox: stopPodSandbox,
  RemovePodSandbox: removePodSandbox,
  PodSandboxStatus: podSandboxStatus,
  ListPodSandbox: listPodSandbox,
  CreateContainer: createContainerRpc,
  StartContainer: startContainer,
  StopContainer: stopContainerRpc,
  RemoveContainer: removeContainerRpc,
  ContainerStatus: containerStatus,
  ListContainers: listContainers,
  ExecSync: execSync,
  Exec: execRpc,
  Attach: attachRpc,
  PortForward: portForwardRpc,
  UpdateContainerResources: updateContainerResources,
  ReopenContainerLog: reopenContainerLog,
  ContainerStats: containerStatsRpc,
  ListContainerStats: listContainerStats,
  PodSandboxStats: podSandboxStats,
  ListPodSandboxStats: listPodSandboxStats,
  ListMetricDescriptors: listMetricDescriptors,
  ListPodSandboxMetrics: listPodSandboxMetrics,
  UpdateRuntimeConfig: updateRuntimeConfig,
  UpdatePodSandboxResources: updatePodSandboxResources,
};

// Server-streaming rpcs: long-lived, so not in the latency histogram.
export const runtimeStreams: StreamImpl<RuntimeServiceHandlers> = {
  GetContainerEvents: getContainerEvents,
  StreamPodSandboxes: listStream(listPodSandbox, "items", "pod_sandboxes"),
  StreamContainers: listStream(listContainers, "containers", "containers"),
  StreamContainerStats: listStream(listContainerStats, "stats", "container_stats"),
  StreamPodSandboxStats: listStream(listPodSandboxStats, "stats", "pod_sandbox_stats"),
  StreamPodSandboxMetrics: listStream(listPodSandboxMetrics, "pod_metrics", "pod_sandbox_metrics"),
};

const imageStreams: StreamImpl<ImageServiceHandlers> = {
  StreamImages: listStream(listImagesRpc, "images", "images"),
};

export const imageHandlers: Impl<ImageServiceHandlers> = {
  PullImage: pullImage,
  ListImages: listImagesRpc,
  ImageStatus: imageStatus,
  RemoveImage: removeImage,
  ImageFsInfo: imageFsInfo,
};

// Answered while start-up reconciles: they read nothing of the stores.
const UNGATED = new Set(["RuntimeService/Version", "RuntimeService/Status", "RuntimeService/RuntimeConfig", "RuntimeService/UpdateRuntimeConfig", "RuntimeService/GetContainerEvents"]);

/** Until the stores are true, an empty list would tell kubelet every pod is gone: UNAVAILABLE instead. */
function whenReconciled(deps: Deps, method: string): void {
  if (!deps.recovery.ready && method.startsWith("RuntimeService/") && !UNGATED.has(method)) {
    throw unavailable(`crib is reconciling its state with containerd${deps.recovery.error ? ` (${deps.recovery.error})` : ""}; try again`);
  }
}

// Every request passes cri/validate.ts before its handler runs.
function bind<H>(service: string, impl: Impl<H>, deps: Deps, observer?: CallObserver, streams: StreamImpl<H> = {}): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  const check = requestChecker(new WireCheck(criDefinitions(), "runtime.v1"), service, deps.host);
  for (const [name, fn] of Object.entries(impl) as [string, (deps: Deps, req: unknown, ctx: CallContext) => Promise<unknown>][]) {
    const method = `${service}/${name}`;
    out[name] = unary(method, deps.log, async (req, ctx) => { whenReconciled(deps, method); check(name, req); return fn(deps, req, ctx); }, observer);
  }
  type AnyStream = (deps: Deps, req: unknown, send: (res: unknown) => Promise<void>, ctx: CallContext) => Promise<void>;
  for (const [name, fn] of Object.entries(streams) as [string, AnyStream][]) {
    const method = `${service}/${name}`;
    out[name] = serverStream(method, deps.log, async (req, send, ctx) => { whenReconciled(deps, method); check(name, req); return fn(deps, req, send, ctx); });
  }
  return out;
}

export function criServices(deps: Deps, observer?: CallObserver): ServiceBinding[] {
  const v1 = loadCri().runtime.v1;
  return [
    { definition: v1.RuntimeService.service, handlers: bind("RuntimeService", runtimeHandlers, deps, observer, runtimeStreams) },
    { definition: v1.ImageService.service, handlers: bind("ImageService", imageHandlers, deps, observer, imageStreams) },
  ];
}
