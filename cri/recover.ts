// Rebuilds crib's stores at start from containerd's records and crib's files:
// every sandbox and container crib had is listed and managed again, running
// containers' logs continue from the same FIFOs, and exits that happened while
// crib was down are recorded.
import { stat } from "node:fs/promises";
import type { Deps } from "./deps.js";
import { KIND_LABEL, SANDBOX_EXTENSION, type SandboxMeta } from "./store/sandboxes.js";
import { CONTAINER_EXTENSION, type ContainerMeta, type Container } from "./store/containers.js";
import { extensionOf, taskState } from "../runtime/containerd/tasks.js";
import { ContainerIo } from "../runtime/container-io.js";
import { settleExit } from "./exits.js";
import { sandboxEvent } from "./container-events.js";
import { restoreImageVolumes } from "./image-volumes.js";

export async function recover(deps: Deps): Promise<void> {
  const { containers } = await deps.containerd.containers.List({ filters: [`labels."${KIND_LABEL}"`] });
  for (const record of containers) {
    if (record.labels[KIND_LABEL] !== "sandbox") continue;
    const meta = extensionOf<SandboxMeta>(record, SANDBOX_EXTENSION);
    if (!meta) continue;
    const task = await taskState(deps.containerd, meta.id);
    const running = task?.status === "RUNNING";
    // crib may have died between the CNI ADD and recording the IPs: its cached result has them
    const ips = meta.ips.length > 0 || !meta.netnsPath ? meta.ips : (await deps.cni.cached(meta.id).catch(() => undefined))?.parsed?.podIps ?? [];
    deps.sandboxes.add({ ...meta, ips: [...ips], state: running ? "SANDBOX_READY" : "SANDBOX_NOTREADY", pid: task?.pid ?? 0, networkDown: false });
  }
  for (const record of containers) {
    if (record.labels[KIND_LABEL] !== "container") continue;
    const meta = extensionOf<ContainerMeta>(record, CONTAINER_EXTENSION);
    if (!meta) continue;
    const status = (await deps.containers.readStatus(meta.id)) ?? {
      state: "CONTAINER_CREATED", pid: 0, startedAt: "0", finishedAt: "0", exitCode: 0, reason: "", message: "",
    };
    const c: Container = { ...meta, status };
    deps.containers.add(c);
    if (status.state === "CONTAINER_EXITED") continue;
    const task = await taskState(deps.containerd, meta.id);
    const fifosExist = await stat(meta.ioDir).then(() => true, () => false);
    const io = new ContainerIo({ dir: meta.ioDir, stdin: meta.config.stdin, tty: meta.config.tty, logPath: meta.logPath, maxLineSize: deps.config.containers.max_log_line_size, fifos: deps.fifos });
    if (status.state === "CONTAINER_CREATED" || (task && task.status !== "STOPPED")) {
      await io.open(!fifosExist);
      if (task && task.status !== "STOPPED") await io.started();
      deps.io.set(meta.id, io);
    }
    if (status.state === "CONTAINER_CREATED" && !task) {
      await restoreImageVolumes(deps, c).catch((err: unknown) => deps.log.error({ err, container: meta.id.slice(0, 12) }, "cannot mount image volumes again"));
    }
    if (status.state === "CONTAINER_CREATED" && task && task.status === "RUNNING") {
      // crib died between the task's start and recording it
      await deps.containers.setStatus(c, { state: "CONTAINER_RUNNING", pid: task.pid, startedAt: meta.createdAt });
    }
    await settleExit(deps, c);
  }
  deps.log.info({ sandboxes: deps.sandboxes.list().length, containers: deps.containers.list().length }, "recovered state from containerd");
}

/** After the event stream (re)connects: catch up on exits it may have missed. */
export async function reconcile(deps: Deps): Promise<void> {
  for (const c of deps.containers.list()) await settleExit(deps, c).catch(() => undefined);
  for (const s of deps.sandboxes.list()) {
    if (s.state !== "SANDBOX_READY") continue;
    const t = await taskState(deps.containerd, s.id).catch(() => undefined);
    if (!t || t.status !== "RUNNING") {
      s.state = "SANDBOX_NOTREADY";
      sandboxEvent(deps, "CONTAINER_STOPPED_EVENT", s);
    }
  }
}
