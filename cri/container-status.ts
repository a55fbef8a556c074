import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import { required } from "../runtime/errors.js";
import { matchesLabels } from "./labels.js";
import { RUNC_V2, SNAPSHOTTER, specOf } from "../runtime/containerd/tasks.js";
import { criSignal } from "../runtime/signals.js";
import { requestedCdiDevices } from "../runtime/spec/cdi.js";
import { criMessage } from "../proto/load.js";
import { EncodedItems, lengthDelimited, repeated, type Encoded } from "../proto/encoded.js";

/** A container as ListContainers lists it (from kept bytes: see `summaries` below). */
export function containerSummary(c: Container): cri.Container__Input {
  return {
    id: c.id, pod_sandbox_id: c.sandboxId, metadata: c.config.metadata,
    image: { image: c.imageRef, annotations: c.config.image?.annotations ?? {}, user_specified_image: c.imageRef, runtime_handler: "" },
    image_ref: c.imageDigestRef, image_id: c.imageId, state: c.status.state, created_at: c.createdAt,
    labels: c.config.labels, annotations: c.config.annotations,
  };
}

/** The CRI mounts, an image volume's with the ID of the image mounted (image.image_ref). */
function statusMounts(c: Container): cri.Mount__Input[] {
  return c.config.mounts.map((m, i) => {
    const volume = c.imageVolumes?.find((v) => v.mount === i);
    return volume && m.image ? { ...m, image: { ...m.image, image_ref: volume.imageId } } : m;
  });
}

/**
 * The status as ContainerStatus (not verbose) and the container events report it.
 * ContainerStatus sends it from kept bytes: whatever it reads that can change in place must be in `statuses`' version.
 */
export function containerStatusOf(c: Container): cri.ContainerStatus__Input {
  const s = c.status;
  return {
    id: c.id, metadata: c.config.metadata, state: s.state,
    created_at: c.createdAt, started_at: s.startedAt, finished_at: s.finishedAt,
    exit_code: s.exitCode, reason: s.reason, message: s.message,
    image: { image: c.imageRef, annotations: c.config.image?.annotations ?? {}, user_specified_image: c.imageRef },
    image_ref: c.imageDigestRef, image_id: c.imageId,
    labels: c.config.labels, annotations: c.config.annotations, mounts: statusMounts(c), log_path: c.logPath,
    ...(s.resources ? { resources: { linux: s.resources } } : {}),
    stop_signal: criSignal(c.stopSignal || "SIGTERM"),
    ...(c.user ? { user: { linux: { uid: c.user.uid, gid: c.user.gid, supplemental_groups: c.user.additionalGids } } } : {}),
  };
}

// What the replies show of a container that can change in place; the rest (image, log path, user…) is fixed at creation.
const summaries = new EncodedItems(criMessage<cri.Container__Input>("runtime.v1.Container"), containerSummary,
  (c) => [c.status.state, c.config]);
const statuses = new EncodedItems(criMessage<cri.ContainerStatus__Input>("runtime.v1.ContainerStatus"), containerStatusOf, (c) => {
  const s = c.status;
  return [s, s.state, s.startedAt, s.finishedAt, s.exitCode, s.reason, s.message, s.resources, c.config];
});
const STATUS_FIELD = criMessage("runtime.v1.ContainerStatusResponse").field("status");
const LIST_FIELD = criMessage("runtime.v1.ListContainersResponse").field("containers");

export async function containerStatus(deps: Deps, req: cri.ContainerStatusRequest, ctx: CallContext): Promise<cri.ContainerStatusResponse__Input | Encoded<cri.ContainerStatusResponse__Input>> {
  const c = deps.containers.get(required(req.container_id, "container_id"));
  if (!req.verbose) return lengthDelimited([[STATUS_FIELD, statuses.bytes(c)]]);
  const s = c.status;
  // the keys containerd's CRI plugin uses, so `crictl inspect` templates (.info.pid, .info.runtimeSpec) work alike
  const info = JSON.stringify({
    sandboxID: c.sandboxId, pid: s.pid, removing: false, snapshotKey: c.id, snapshotter: SNAPSHOTTER,
    runtimeType: RUNC_V2, imageName: c.imageName, ioDir: c.ioDir, config: c.config,
    runtimeSpec: (await specOf(deps.containerd, c.id, ctx.signal)) ?? null,
    ...(deps.config.cdi.enabled ? { cdiDevices: requestedCdiDevices(c.config) } : {}),
  });
  return { status: containerStatusOf(c), info: { info } };
}

/** Newest first, by creation time (Unix nanoseconds as decimal strings, no leading zeros). */
const newestFirst = (a: { createdAt: string }, b: { createdAt: string }): number =>
  b.createdAt.length - a.createdAt.length || (b.createdAt > a.createdAt ? 1 : b.createdAt < a.createdAt ? -1 : 0);

const sorted = new WeakMap<readonly object[], readonly object[]>();

/** A store's items newest first, sorted once per change of the store (its `all()` array). */
export function newestFirstOf<T extends { createdAt: string }>(all: readonly T[]): readonly T[] {
  let s = sorted.get(all) as readonly T[] | undefined;
  if (!s) {
    s = [...all].sort(newestFirst);
    sorted.set(all, s);
  }
  return s;
}

function selectContainers(deps: Deps, req: cri.ListContainersRequest): readonly Container[] {
  const f = req.filter;
  const all = newestFirstOf(deps.containers.all());
  if (!f?.id && !f?.state && !f?.pod_sandbox_id && Object.keys(f?.label_selector ?? {}).length === 0) return all;
  return all.filter((c) => (!f?.id || c.id.startsWith(f.id))
    && (!f?.state || c.status.state === f.state.state)
    && (!f?.pod_sandbox_id || c.sandboxId.startsWith(f.pod_sandbox_id))
    && matchesLabels(c.config.labels, f?.label_selector));
}

/** ListContainers as StreamContainers sends it, in parts. */
export async function listContainers(deps: Deps, req: cri.ListContainersRequest, _ctx: CallContext): Promise<cri.ListContainersResponse__Input> {
  return { containers: selectContainers(deps, req).map(containerSummary) };
}

export async function listContainersRpc(deps: Deps, req: cri.ListContainersRequest, _ctx: CallContext): Promise<Encoded<cri.ListContainersResponse__Input>> {
  return repeated(LIST_FIELD, selectContainers(deps, req).map((c) => summaries.bytes(c)));
}
