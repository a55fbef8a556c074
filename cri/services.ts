// Wires crib's handlers to the two CRI services. An rpc not listed here answers
// UNIMPLEMENTED naming itself (cri/rpc.ts implementAll).
import type { UntypedServiceImplementation, handleUnaryCall } from "@grpc/grpc-js";
import type { RuntimeServiceHandlers } from "../proto/gen/cri/runtime/v1/RuntimeService.js";
import type { ImageServiceHandlers } from "../proto/gen/cri/runtime/v1/ImageService.js";
import { loadCri } from "../proto/load.js";
import type { Deps } from "./deps.js";
import { unary, type CallContext, type CallObserver } from "./rpc.js";
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
import { updateContainerResources } from "./container-update.js";
import { reopenContainerLog } from "./container-reopen-log.js";

type Unary<H> = H extends handleUnaryCall<infer Req, infer Res> ? { req: Req; res: Res } : never;
type Impl<H> = { [K in keyof H]?: (deps: Deps, req: Unary<H[K]>["req"], ctx: CallContext) => Promise<NonNullable<Unary<H[K]>["res"]>> };

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
  UpdateContainerResources: updateContainerResources,
  ReopenContainerLog: reopenContainerLog,
};

export const imageHandlers: Impl<ImageServiceHandlers> = {};

function bind<H>(service: string, impl: Impl<H>, deps: Deps, observer?: CallObserver): UntypedServiceImplementation {
  const out: UntypedServiceImplementation = {};
  for (const [name, fn] of Object.entries(impl) as [string, (deps: Deps, req: unknown, ctx: CallContext) => Promise<unknown>][]) {
    out[name] = unary(`${service}/${name}`, deps.log, (req, ctx) => fn(deps, req, ctx), observer);
  }
  return out;
}

export function criServices(deps: Deps, observer?: CallObserver): ServiceBinding[] {
  const v1 = loadCri().runtime.v1;
  return [
    { definition: v1.RuntimeService.service, handlers: bind("RuntimeService", runtimeHandlers, deps, observer) },
    { definition: v1.ImageService.service, handlers: bind("ImageService", imageHandlers, deps, observer) },
  ];
}
