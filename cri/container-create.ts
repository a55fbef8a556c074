// CreateContainer: a writable snapshot from the image, the image volumes, the
// OCI spec built from the CRI config, the sandbox and the image, a containerd
// container record with crib's metadata, and the stdio FIFOs. Every step has its undo.
import { mkdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { Rollback, allSettled } from "./rollback.js";
import { newId, nowNanos } from "./sandbox-run.js";
import { CONTAINER_EXTENSION, containerNameKey, type Container, type ContainerMeta } from "./store/containers.js";
import { KIND_LABEL, type Sandbox } from "./store/sandboxes.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, required } from "../runtime/errors.js";
import { createContainer, deleteContainer, prepareSnapshot, removeSnapshot } from "../runtime/containerd/tasks.js";
import { layerDirs, withTempMount, type MountSpec } from "../runtime/mount.js";
import { lstat } from "node:fs/promises";
import { resolveUser, type UserRequest } from "../runtime/spec/user.js";
import { resolveDevices, hostDevices } from "../runtime/spec/devices.js";
import { seccompChoice, readSeccompProfile } from "../runtime/spec/seccomp.js";
import { appArmorChoice, requireLoaded } from "../runtime/spec/apparmor.js";
import { buildContainerSpec, stopSignal } from "../runtime/spec/container.js";
import { requestedCdiDevices, withCdiEdits } from "../runtime/spec/cdi.js";
import { ContainerIo } from "../runtime/container-io.js";
import { filePaths } from "../runtime/sandbox-files.js";
import { taskState } from "../runtime/containerd/tasks.js";
import { containerEvent } from "./container-events.js";
import { imageVolumeMounts, prepareImageVolumes } from "./image-volumes.js";
import type { Intent } from "./intents.js";
import { crashPoint } from "./crash-point.js";
import { containerInSandbox, logTarget, shown } from "./validate.js";
import { resourcesInForce } from "../runtime/spec/resources.js";
import { countCall, counted } from "../runtime/call-trace.js";

export async function createContainerRpc(deps: Deps, req: cri.CreateContainerRequest, ctx: CallContext): Promise<cri.CreateContainerResponse__Input> {
  const found = deps.sandboxes.get(required(req.pod_sandbox_id, "pod_sandbox_id"));
  // shared with other creates and starts in the pod; a stop or remove waits, or is waited for
  return deps.sandboxLocks.shared(found.id, () => create(deps, req, ctx, found));
}

async function create(deps: Deps, req: cri.CreateContainerRequest, ctx: CallContext, found: Sandbox): Promise<cri.CreateContainerResponse__Input> {
  if (deps.sandboxes.find(found.id) !== found) throw notFound(`pod sandbox ${found.id} was removed`);
  const sandbox = found;
  const config = required(req.config, "config");
  const metadata = required(config.metadata, "config.metadata");
  required(metadata.name, "config.metadata.name");
  const imageRef = required(config.image?.image, "config.image.image");
  if (sandbox.state !== "SANDBOX_READY") throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`);
  // checked against the sandbox crib stored, never the request's sandbox_config copy
  const nsOpts = config.linux?.security_context?.namespace_options;
  const target = nsOpts?.pid === "TARGET" ? deps.containers.get(required(nsOpts.target_id, "config.linux.security_context.namespace_options.target_id")) : undefined;
  containerInSandbox(config, sandbox, target?.sandboxId);
  const logPath = sandbox.config.log_directory && config.log_path ? join(sandbox.config.log_directory, config.log_path) : "";
  const checked = countCall("create: checks before the first side effect");
  await logTarget("pod sandbox log_directory", sandbox.config.log_directory, logPath);
  const handlerName = sandbox.runtimeHandler || deps.config.default_runtime;
  const rro = config.mounts.find((m) => m.recursive_read_only);
  if (rro && !deps.runtimeFeatures.get(handlerName)?.recursiveReadOnly) {
    throw invalidArgument(`mount "${rro.container_path}": runtime handler "${handlerName}" cannot make recursive read-only mounts (needs runc >= 1.1 and Linux >= 5.12)`);
  }

  const appArmor = appArmorChoice(config.linux?.security_context?.apparmor, config.linux?.security_context?.apparmor_profile ?? "", "config.linux.security_context");
  await requireLoaded(appArmor, deps.host.apparmor);
  const cdi = deps.cdi ? await deps.cdi.resolve(requestedCdiDevices(config)) : undefined;

  const key = containerNameKey(sandbox.id, metadata);
  const id = newId();
  const holder = deps.containers.reserve(key, id);
  if (holder !== undefined) throw alreadyExists(`container name "${metadata.name}" (attempt ${metadata.attempt}) in sandbox ${sandbox.id} is already reserved for container ${holder}`);
  const log = ctx.log.child({ container: id.slice(0, 12), name: metadata.name });
  const ioDir = join(deps.config.state, "containers", id, "io");
  // what this call is about to make, durable before the first side effect (the fsync overlaps the image lookup)
  const intent: Intent = { kind: "container-create", container: { id, sandboxId: sandbox.id, ioDir, imageVolumes: imageVolumeMounts(config) } };
  const recorded = deps.intents.record(intent);
  await using undo = new Rollback(log, {
    settled: async (failed) => {
      if (!(await recorded.then(() => true, () => false))) return;
      if (failed.length > 0) deps.reconciler.later(intent);
      else await deps.intents.done("container-create", id);
    },
  });
  undo.defer("release name", () => deps.containers.release(key, id));

  checked();
  const [image] = await counted("create: image and intent", Promise.all([deps.images.find(imageRef, ctx.signal), recorded]));
  if (!image) throw notFound(`container ${shown(metadata.name)} in sandbox ${sandbox.id}: image ${shown(imageRef)} not found`);
  const imageConfig = image.config.config ?? {};

  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(120_000)]);
  const imageVolumes = await prepareImageVolumes(deps, id, config, undo, signal);
  undo.defer("remove snapshot", (s) => removeSnapshot(deps.containerd, id, s));
  const mounts = await prepareSnapshot(deps.containerd, id, image.chainId, signal);
  crashPoint("container-create:snapshot");

  const sc = config.linux?.security_context ?? null;
  const [user, devices] = await allSettled([
    counted("create: user from the image", resolveUserInSnapshot(mounts, { securityContext: sc, imageUser: imageConfig.User ?? "" })),
    resolveDevices(config.devices),
  ]);
  const privileged = sc?.privileged ?? false;
  const seccomp = seccompChoice(sc?.seccomp ?? null, sc?.seccomp_profile_path ?? "", "", "unconfined", "config.linux.security_context");
  const seccompProfile = seccomp.kind === "localhost" ? await readSeccompProfile(seccomp.path) : undefined;
  let targetPid: number | undefined;
  if (target) {
    const t = await taskState(deps.containerd, target.id, signal);
    if (!t || t.status !== "RUNNING") throw failedPrecondition(`target container ${target.id} for the PID namespace is not running`);
    targetPid = t.pid;
  }
  const files = filePaths(sandbox.dir, sandbox.shmDir);
  const specified = countCall("create: spec");
  const { spec, warnings } = withCdiEdits(buildContainerSpec({
    id, config,
    sandbox: {
      id: sandbox.id, config: sandbox.config, pid: sandbox.pid, netnsPath: sandbox.netnsPath,
      files: { hostsPath: files.hosts, resolvConfPath: files.resolvConf, hostnamePath: files.hostname, shmPath: sandbox.shmDir },
    },
    image: { name: imageRef, config: imageConfig },
    rootfs: "", user, host: deps.host, devices,
    hostDevices: privileged ? await hostDevices() : [],
    ...(seccompProfile ? { seccompProfile } : {}),
    ...(targetPid !== undefined ? { targetPid } : {}),
    imageVolumes: imageVolumes.sources,
  }), cdi);
  for (const w of warnings) log.warn({ warning: w }, "container spec");

  specified();
  // kubelet expects a missing host path to be created as a directory: made once the request has
  // proved valid (a refused one leaves no directory behind)
  await counted("create: host paths", Promise.all(config.mounts.map(async (m) => {
    if (m.host_path && !(await stat(m.host_path).then(() => true, () => false))) await mkdir(m.host_path, { recursive: true, mode: 0o755 });
  })));
  const meta: ContainerMeta = {
    id, sandboxId: sandbox.id, config, createdAt: nowNanos(),
    imageRef, imageId: image.id, imageDigestRef: image.repoDigests[0] ?? image.id, imageName: image.name,
    logPath, stopSignal: stopSignal(config, imageConfig), ioDir,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
    ...(imageVolumes.volumes.length ? { imageVolumes: imageVolumes.volumes } : {}),
  };
  const handler = deps.config.runtimes[handlerName] ?? deps.config.runtimes[deps.config.default_runtime]!;
  // the record and the stdio FIFOs need nothing from each other (the intent names both)
  const io = containerIo(deps, meta.id, { ioDir: meta.ioDir, stdin: config.stdin ?? false, tty: config.tty ?? false, logPath });
  // the log file is kubelet's once the container exists; one this failed call made is removed with it
  const logExisted = logPath === "" || (await lstat(logPath).then(() => true, () => false));
  undo.defer("remove io", async () => {
    await io.remove();
    await rm(dirname(ioDir), { recursive: true, force: true });
    if (!logExisted) await rm(logPath, { force: true });
  });
  await allSettled([
    counted("create: record", createContainer(deps.containerd, {
      id, image: image.name, parent: image.chainId, spec,
      runtime: { binaryName: handler.binary_name, systemdCgroup: handler.systemd_cgroup },
      labels: { [KIND_LABEL]: "container", "crib.sandbox-id": sandbox.id, ...config.labels },
      extensions: { [CONTAINER_EXTENSION]: meta },
    }, signal, true).then(() => {
      crashPoint("container-create:record");
      undo.defer("delete container", (s) => deleteContainer(deps.containerd, id, s));
    })),
    counted("create: stdio", io.open(true)),
  ]);
  undo.defer("remove status", () => deps.containers.removeFiles(id));

  const container: Container = {
    ...meta,
    rootfs: mounts,
    status: { state: "CONTAINER_CREATED", pid: 0, startedAt: "0", finishedAt: "0", exitCode: 0, reason: "", message: "", resources: resourcesInForce(null, config.linux?.resources, deps.host) },
  };
  await deps.containers.setStatus(container, {});
  deps.containers.add(container);
  deps.io.set(id, io);
  undo.disarm();
  crashPoint("container-create:stored");
  await deps.intents.done("container-create", id).catch((err: unknown) => log.warn({ err: String(err) }, "cannot drop the intent record"));
  containerEvent(deps, "CONTAINER_CREATED_EVENT", container);
  log.info("container created");
  return { container_id: id };
}

/**
 * The user from the image's /etc/passwd and /etc/group. When one layer holds
 * both files as plain files (and no layer above it touches them) they are read
 * there directly; otherwise the snapshot is mounted for a moment, as containerd does.
 */
async function resolveUserInSnapshot(mounts: MountSpec[], request: UserRequest) {
  const layers = layerDirs(mounts);
  if (layers) {
    for (const layer of layers) {
      const kinds = await Promise.all(["etc/passwd", "etc/group", "etc"].map((f) => lstat(join(layer, f)).then((st) => st, () => undefined)));
      const [passwd, group, etc] = kinds;
      if (!passwd && !group && !etc) continue; // this layer leaves /etc alone
      if (passwd?.isFile() && group?.isFile()) return resolveUser(layer, request);
      break; // anything else (a whiteout, a symlink, one file only): mount
    }
  }
  return withTempMount(mounts, (root) => resolveUser(root, request));
}

/** A container's stdio, its log-file failures logged (once, and when writing works again). */
export function containerIo(deps: Pick<Deps, "config" | "fifos" | "log">, id: string, o: { ioDir: string; stdin: boolean; tty: boolean; logPath: string }): ContainerIo {
  const log = deps.log.child({ container: id.slice(0, 12), path: o.logPath });
  return new ContainerIo({
    dir: o.ioDir, stdin: o.stdin, tty: o.tty, logPath: o.logPath, maxLineSize: deps.config.containers.max_log_line_size, fifos: deps.fifos,
    onLogFile: (what, err) => {
      if (what === "failed") log.error({ err: err?.message }, "cannot write the container's log file: its output is dropped until writing works again");
      else log.info("the container's log file is written again");
    },
  });
}
