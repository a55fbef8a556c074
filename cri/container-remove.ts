// RemoveContainer: force-stop, then the task, the image volumes, the record, the
// snapshot and the FIFOs. An unknown container is a success. The log file stays
// (kubelet owns it).
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { Container } from "./store/containers.js";
import { required } from "../runtime/errors.js";
import { deleteContainer, deleteTask } from "../runtime/containerd/tasks.js";
import { stopContainer } from "./container-stop.js";
import { containerEvent } from "./container-events.js";
import { removeImageVolumes } from "./image-volumes.js";
import { allSettled } from "./rollback.js";
import type { ContainerParts } from "./intents.js";
import { containerStateDir } from "./reconciler.js";
import { rm } from "node:fs/promises";

export const containerParts = (c: Container): ContainerParts =>
  ({ id: c.id, sandboxId: c.sandboxId, ioDir: c.ioDir, imageVolumes: c.imageVolumes?.map((v) => v.mount) ?? [] });

export async function removeContainerRpc(deps: Deps, req: cri.RemoveContainerRequest, ctx: CallContext): Promise<cri.RemoveContainerResponse__Input> {
  const c = deps.containers.find(required(req.container_id, "container_id"));
  if (c) await removeContainer(deps, c, ctx);
  return {};
}

export async function removeContainer(deps: Deps, c: Container, ctx: CallContext): Promise<void> {
  // a crash from here on: start-up finishes the removal from this record
  const recorded = deps.intents.record({ kind: "container-remove", container: containerParts(c) });
  if (c.status.state === "CONTAINER_EXITED") {
    // the exit handler's task Delete is under way whatever this call does: the record's fsync
    // waits beside it, and a crash before the record leaves what it would anyway (an exited container)
    await allSettled([recorded, deleteTask(deps.containerd, c.id, ctx.signal)]);
  } else {
    await recorded;
    await stopContainer(deps, c, 0, ctx);
    await deleteTask(deps.containerd, c.id, ctx.signal);
  }
  // status changes from here on stay in memory, or a late one would bring the directory back
  deps.containers.retire(c);
  // with the task gone, the record and snapshot, the FIFOs then their state directory, and the
  // image volumes then the container's directory (the volumes are mounted inside it) go side by side
  await allSettled([
    removeImageVolumes(deps, c.id, c.config, ctx.signal).then(() => deps.containers.removeFiles(c.id)),
    deleteContainer(deps.containerd, c.id, ctx.signal),
    (deps.io.get(c.id)?.remove() ?? Promise.resolve()).then(() => rm(containerStateDir(deps, c.id), { recursive: true, force: true })),
  ]);
  deps.io.delete(c.id);
  deps.containers.delete(c.id);
  await deps.intents.done("container-remove", c.id);
  containerEvent(deps, "CONTAINER_DELETED_EVENT", c);
  ctx.log.info({ container: c.id.slice(0, 12) }, "container removed");
}
