// Image volumes (CRI Mount.image, KEP 4639) as containerd 2.1 and CRI-O make
// them: a read-only view snapshot of an image kubelet pulled, mounted on the
// host at <root>/containers/<id>/image-volumes/<n> and bound into the container
// from there, or from its image_sub_path. Snapshot keys and directories follow
// from the container ID and the mount's index, so removal, after a crib restart
// too, needs nothing but the container's config and directory.
import { mkdir, readdir, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import type * as cri from "../proto/gen/cri/types.js";
import type { Deps } from "./deps.js";
import type { Rollback } from "./rollback.js";
import type { Container, ImageVolume } from "./store/containers.js";
import { invalidArgument, notFound } from "../runtime/errors.js";
import { prepareSnapshot, removeSnapshot, SNAPSHOTTER } from "../runtime/containerd/tasks.js";
import { imageVolumeKey, resolveSubPath, subPathParts } from "../runtime/image-volume.js";
import { isMountPoint, mountAll, unmountAll } from "../runtime/mount.js";

type VolumeDeps = Pick<Deps, "containerd" | "containers" | "images">;

const volumesDir = (deps: Pick<Deps, "containers">, id: string): string => join(deps.containers.dir, id, "image-volumes");
const volumeDir = (deps: Pick<Deps, "containers">, id: string, index: number): string => join(volumesDir(deps, id), String(index));
const isImageVolume = (m: cri.Mount): boolean => (m.image?.image ?? "") !== "";

/** The indices of the image volumes in config.mounts, unchecked (for the intent journal). */
export const imageVolumeMounts = (config: cri.ContainerConfig): number[] => config.mounts.flatMap((m, i) => (isImageVolume(m) ? [i] : []));

/** The indices of the image volumes in config.mounts, each checked before anything is made. */
function imageVolumeIndices(config: cri.ContainerConfig): number[] {
  const indices: number[] = [];
  for (const [i, m] of config.mounts.entries()) {
    if (!isImageVolume(m)) continue;
    const what = `mounts[${i}]: image volume "${m.image!.image}" at "${m.container_path}"`;
    if (!m.readonly) throw invalidArgument(`${what} must be read-only`);
    if (m.host_path !== "") throw invalidArgument(`${what} must have no host_path ("${m.host_path}")`);
    subPathParts(m.image_sub_path, `mounts[${i}].image_sub_path`);
    indices.push(i);
  }
  return indices;
}

export interface PreparedImageVolumes {
  /** the host path bound into the container, by index in config.mounts */
  sources: Map<number, string>;
  volumes: ImageVolume[];
}

/** Mounts the image volumes of container `id`; `undo` removes them all if the creation fails. */
export async function prepareImageVolumes(deps: VolumeDeps, id: string, config: cri.ContainerConfig, undo: Rollback, signal: AbortSignal): Promise<PreparedImageVolumes> {
  const prepared: PreparedImageVolumes = { sources: new Map(), volumes: [] };
  const indices = imageVolumeIndices(config);
  if (indices.length === 0) return prepared;
  undo.defer("remove image volumes", (s) => removeImageVolumes(deps, id, config, s));
  for (const i of indices) {
    const m = config.mounts[i]!;
    const image = await deps.images.find(m.image!.image, signal);
    if (!image) throw notFound(`mounts[${i}]: image "${m.image!.image}" of the image volume at "${m.container_path}" not found`);
    const mounts = await prepareSnapshot(deps.containerd, imageVolumeKey(id, i), image.chainId, signal, true);
    const dir = volumeDir(deps, id, i);
    await mkdir(dir, { recursive: true });
    await mountAll(mounts, dir, true);
    prepared.sources.set(i, await resolveSubPath(dir, m.image_sub_path, `mounts[${i}].image_sub_path`));
    prepared.volumes.push({ mount: i, imageId: image.id });
  }
  return prepared;
}

/** Unmounts and removes every image volume of container `id`, those its config names and any its directory holds. */
export async function removeImageVolumes(deps: VolumeDeps, id: string, config: cri.ContainerConfig, signal?: AbortSignal): Promise<void> {
  await removeImageVolumesAt(deps, id, imageVolumeMounts(config), signal);
}

/** The same, by the indices in config.mounts (as the intent journal records them). */
export async function removeImageVolumesAt(deps: Pick<Deps, "containerd" | "containers">, id: string, mounts: number[], signal?: AbortSignal): Promise<void> {
  const dir = volumesDir(deps, id);
  const indices = new Set(mounts);
  for (const name of await readdir(dir).catch(() => [])) if (/^\d+$/.test(name)) indices.add(Number(name));
  for (const i of indices) {
    await unmountAll(volumeDir(deps, id, i));
    await removeSnapshot(deps.containerd, imageVolumeKey(id, i), signal);
  }
  await rm(dir, { recursive: true, force: true });
  await rmdir(join(deps.containers.dir, id)).catch(() => undefined); // when the volumes were all it held
}

/** After a reboot the host mounts are gone: mounts the views again for a container yet to start. */
export async function restoreImageVolumes(deps: VolumeDeps, c: Container): Promise<void> {
  for (const v of c.imageVolumes ?? []) {
    const dir = volumeDir(deps, c.id, v.mount);
    if (await isMountPoint(dir)) continue;
    const { mounts } = await deps.containerd.snapshots.Mounts({ snapshotter: SNAPSHOTTER, key: imageVolumeKey(c.id, v.mount) });
    await mkdir(dir, { recursive: true });
    await mountAll(mounts, dir, true);
  }
}
