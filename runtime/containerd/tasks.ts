// The containerd steps behind a CRI container or sandbox: a snapshot from an
// image, a container record holding the OCI spec and crib's metadata, a task
// (the running process) created on the snapshot's mounts, and their removal.
import { encodeAny, jsonAny } from "../../proto/load.js";
import type { Containerd } from "./client.js";
import { isNotFound } from "./errors.js";

export const SNAPSHOTTER = "overlayfs";
export const SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
export const PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process";
export const RUNC_V2 = "io.containerd.runc.v2";

export interface RuntimeChoice {
  binaryName: string;
  systemdCgroup: boolean;
}

export interface NewContainer {
  id: string;
  /** the containerd image name the container was made from */
  image: string;
  /** chain ID of the image's top layer: the snapshot parent */
  parent: string;
  spec: object;
  runtime: RuntimeChoice;
  labels: Record<string, string>;
  /** crib's own metadata, stored as JSON under the extension name */
  extensions: Record<string, unknown>;
}

/**
 * A writable snapshot for container `key` on top of the image's layers (a
 * read-only one with `view`); returns its mounts. Kept from garbage collection until removed.
 */
export async function prepareSnapshot(c: Containerd, key: string, parent: string, signal?: AbortSignal, view = false) {
  const request = { snapshotter: SNAPSHOTTER, key, parent, labels: { "containerd.io/gc.root": new Date().toISOString() } };
  const { mounts } = await (view ? c.snapshots.View(request, signal) : c.snapshots.Prepare(request, signal));
  return mounts;
}

/** The rootfs mounts of a snapshot as containerd answers Prepare and Mounts. */
export type SnapshotMounts = Awaited<ReturnType<typeof prepareSnapshot>>;

/**
 * Prepares the snapshot (unless `prepared`) and creates the container record;
 * returns the mounts Prepare gave (undefined when `prepared`), which startTask can take.
 */
export async function createContainer(c: Containerd, n: NewContainer, signal?: AbortSignal, prepared = false): Promise<SnapshotMounts | undefined> {
  const mounts = prepared ? undefined : await prepareSnapshot(c, n.id, n.parent, signal);
  try {
    await c.containers.Create({
      container: {
        id: n.id,
        image: n.image,
        labels: n.labels,
        runtime: {
          name: RUNC_V2,
          options: encodeAny("containerd.runc.v1.Options", { binary_name: n.runtime.binaryName, systemd_cgroup: n.runtime.systemdCgroup }),
        },
        spec: jsonAny(SPEC_TYPE, n.spec),
        snapshotter: SNAPSHOTTER,
        snapshot_key: n.id,
        extensions: Object.fromEntries(Object.entries(n.extensions).map(([k, v]) => [k, jsonAny(k, v)])),
      },
    }, signal);
  } catch (err) {
    await removeSnapshot(c, n.id).catch(() => undefined);
    throw err;
  }
  return mounts;
}

export async function updateExtension(c: Containerd, id: string, name: string, value: unknown, signal?: AbortSignal): Promise<void> {
  await c.containers.Update({
    container: { id, extensions: { [name]: jsonAny(name, value) } },
    update_mask: { paths: [`extensions.${name}`] },
  }, signal);
}

/** Replaces the OCI spec of a container record (a task made later starts with it). */
export async function updateSpec(c: Containerd, id: string, spec: unknown, signal?: AbortSignal): Promise<void> {
  await c.containers.Update({ container: { id, spec: jsonAny(SPEC_TYPE, spec) }, update_mask: { paths: ["spec"] } }, signal);
}

/** The OCI spec containerd holds for a container (for verbose status); undefined when it is gone. */
export async function specOf(c: Containerd, id: string, signal?: AbortSignal): Promise<unknown> {
  try {
    const { container } = await c.containers.Get({ id }, signal);
    return container?.spec ? (JSON.parse(container.spec.value.toString("utf8")) as unknown) : undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export function extensionOf<T>(container: { extensions: Record<string, { value: Buffer }> }, name: string): T | undefined {
  const any = container.extensions[name];
  return any ? (JSON.parse(any.value.toString("utf8")) as T) : undefined;
}

export interface Stdio {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/**
 * Creates the task on the snapshot's mounts and starts it; returns its pid.
 * `rootfs`: the mounts Prepare answered for this snapshot, saving a Mounts round trip.
 */
export async function startTask(c: Containerd, id: string, stdio: Stdio, signal?: AbortSignal, rootfs?: SnapshotMounts): Promise<number> {
  const mounts = rootfs ?? (await c.snapshots.Mounts({ snapshotter: SNAPSHOTTER, key: id }, signal)).mounts;
  await c.tasks.Create({ container_id: id, rootfs: mounts, ...stdio }, signal);
  try {
    const { pid } = await c.tasks.Start({ container_id: id }, signal);
    return pid;
  } catch (err) {
    await deleteTask(c, id).catch(() => undefined);
    throw err;
  }
}

export interface TaskState {
  pid: number;
  status: "UNKNOWN" | "CREATED" | "RUNNING" | "STOPPED" | "PAUSED" | "PAUSING";
  exitStatus: number;
  exitedAt: { seconds: string; nanos: number } | null;
}

export async function taskState(c: Containerd, id: string, signal?: AbortSignal): Promise<TaskState | undefined> {
  try {
    const { process } = await c.tasks.Get({ container_id: id }, signal);
    if (!process) return undefined;
    return { pid: process.pid, status: process.status as TaskState["status"], exitStatus: process.exit_status, exitedAt: process.exited_at };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export async function killTask(c: Containerd, id: string, signal: number, opts: { all?: boolean; execId?: string } = {}, abort?: AbortSignal): Promise<void> {
  try {
    await c.tasks.Kill({ container_id: id, signal, all: opts.all ?? false, exec_id: opts.execId ?? "" }, abort);
  } catch (err) {
    if (isNotFound(err)) return;
    // "process already finished" answers NOT_FOUND or FAILED_PRECONDITION; both mean it is gone
    if ((err as { code?: number }).code === 9) return;
    throw err;
  }
}

/** Deletes the task (its exit status is kept by crib beforehand); absent → fine. */
const deletes = new WeakMap<Containerd, Map<string, Promise<void>>>();

/**
 * Deletes a task; absent → fine. Concurrent calls for one task (the exit
 * handler's and RemoveContainer's) share one Delete: two at once can fail with
 * "ttrpc: closed" as the shim goes away under the second.
 */
export function deleteTask(c: Containerd, id: string, signal?: AbortSignal): Promise<void> {
  const inFlight = deletes.get(c) ?? new Map<string, Promise<void>>();
  deletes.set(c, inFlight);
  const pending = inFlight.get(id);
  if (pending) return pending;
  const done = (async () => {
    try {
      await c.tasks.Delete({ container_id: id }, signal);
    } catch (err) {
      if (isNotFound(err)) return;
      // the shim can go away as it answers (its last task deleted): "ttrpc: closed"
      // although the delete was done; gone is what was asked
      if (!signal?.aborted && (await taskState(c, id, signal).catch(() => "unknown" as const)) === undefined) return;
      throw err;
    }
  })().finally(() => inFlight.delete(id));
  inFlight.set(id, done);
  return done;
}

export async function removeSnapshot(c: Containerd, key: string, signal?: AbortSignal): Promise<void> {
  try {
    await c.snapshots.Remove({ snapshotter: SNAPSHOTTER, key }, signal);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/**
 * Removes the container record and its snapshot, side by side (containerd keeps no
 * reference from one to the other; its GC only follows labels); absent → fine.
 */
export async function deleteContainer(c: Containerd, id: string, signal?: AbortSignal): Promise<void> {
  const record = c.containers.Delete({ id }, signal).then(() => undefined, (err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
  const [a, b] = await Promise.allSettled([record, removeSnapshot(c, id, signal)]);
  if (a.status === "rejected") throw a.reason;
  if (b.status === "rejected") throw b.reason;
}
