// RunPodSandbox: validate, then each side effect paired with its undo (netns,
// CNI, files, pause container and task); the store last. The work outlives a
// request whose deadline expires, and its retry gets the result.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import { Rollback, allSettled } from "./rollback.js";
import { KIND_LABEL, SANDBOX_EXTENSION, sandboxNameKey, type Sandbox, type SandboxMeta } from "./store/sandboxes.js";
import { alreadyExists, failedPrecondition, invalidArgument, required } from "../runtime/errors.js";
import { startFailure } from "../runtime/containerd/start-failure.js";
import { buildSandboxSpec } from "../runtime/spec/sandbox.js";
import { refusedSysctl } from "../runtime/spec/sysctls.js";
import { readSeccompProfile, seccompChoice } from "../runtime/spec/seccomp.js";
import { createContainer, deleteContainer, startTask, updateExtension } from "../runtime/containerd/tasks.js";
import { removeSandboxFiles, shmOptions, writeSandboxFiles } from "../runtime/sandbox-files.js";
import { mkdir } from "node:fs/promises";
import type { CapabilityArgs } from "../cni/network.js";
import type { IpRanges } from "../cni/ip.js";
import { sandboxEvent } from "./container-events.js";
import { removeTask } from "./reconciler.js";
import { reapShims } from "./shim-reaper.js";
import type { Intent, SandboxParts } from "./intents.js";
import { crashPoint } from "./crash-point.js";
import { DEFAULT_IFNAME } from "../cni/network.js";
import { logTarget } from "./validate.js";

const RUN_TIMEOUT_MS = 4 * 60_000;

export const newId = (): string => randomBytes(32).toString("hex");
// wall clock in nanoseconds: the epoch offset taken once, then the monotonic clock
const epochOffset = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
export const nowNanos = (): string => (epochOffset + process.hrtime.bigint()).toString();

export function runtimeHandlerOf(deps: Deps, name: string) {
  const handler = deps.config.runtimes[name || deps.config.default_runtime];
  if (!handler) throw invalidArgument(`runtime handler "${name}" is not configured (known: ${Object.keys(deps.config.runtimes).join(", ")})`);
  return { name: name || deps.config.default_runtime, handler };
}

function validate(config: cri.PodSandboxConfig | null): cri.PodSandboxConfig & { metadata: cri.PodSandboxMetadata } {
  const c = required(config, "config");
  const m = required(c.metadata, "config.metadata");
  required(m.name, "config.metadata.name");
  required(m.namespace, "config.metadata.namespace");
  required(m.uid, "config.metadata.uid");
  return c as cri.PodSandboxConfig & { metadata: cri.PodSandboxMetadata };
}

export const hostNetwork = (config: cri.PodSandboxConfig): boolean =>
  config.linux?.security_context?.namespace_options?.network === "NODE";
const hostIpc = (config: cri.PodSandboxConfig): boolean =>
  config.linux?.security_context?.namespace_options?.ipc === "NODE";

/** The pause process was killed before its start, or could not be limited: the pod's memory limit (overhead, else resources) is too low. */
function pauseEnded(config: cri.PodSandboxConfig, err: unknown): Error | undefined {
  const why = startFailure(err);
  const [res, field] = config.linux?.overhead ? [config.linux.overhead, "config.linux.overhead"] : [config.linux?.resources, "config.linux.resources"];
  if (why?.kind === "memory limit below usage") {
    return failedPrecondition(`pod sandbox: ${field}.memory_limit_in_bytes ${why.limit} is below what runc's init already uses (${why.usage} bytes)`);
  }
  if (why?.kind !== "ended before start") return undefined;
  const memory = Number(res?.memory_limit_in_bytes ?? 0);
  return failedPrecondition(`pod sandbox: the pause process ended before it could start${memory > 0 ? ` (killed: ${field}.memory_limit_in_bytes ${memory} is most likely too low)` : ""}`);
}

function capabilityArgs(config: cri.PodSandboxConfig, ipRanges: IpRanges | undefined): CapabilityArgs {
  const portMappings = config.port_mappings
    .filter((p) => p.host_port > 0)
    .map((p) => ({ hostPort: p.host_port, containerPort: p.container_port, protocol: String(p.protocol).toLowerCase() as "tcp" | "udp" | "sctp", ...(p.host_ip ? { hostIP: p.host_ip } : {}) }));
  return { ...(portMappings.length > 0 ? { portMappings } : {}), ...(ipRanges ? { ipRanges } : {}) };
}

/**
 * ADD ends in time for the undo to finish before the client gives up: the
 * request's remaining time less the DEL budget and a margin (configured ADD
 * timeout at most; CniNetwork applies that one too).
 */
function addDeadline(deps: Deps, ctx: CallContext, signal: AbortSignal): AbortSignal {
  if (ctx.deadline === undefined) return signal;
  const ms = Math.max(1000, ctx.deadline - Date.now() - deps.config.cni.del_timeout - 5000);
  return AbortSignal.any([signal, AbortSignal.timeout(ms)]);
}

export async function runPodSandbox(deps: Deps, req: cri.RunPodSandboxRequest, ctx: CallContext): Promise<cri.RunPodSandboxResponse__Input> {
  const config = validate(req.config);
  const { name: handlerName } = runtimeHandlerOf(deps, req.runtime_handler);
  await logTarget("config.log_directory", config.log_directory);
  const key = sandboxNameKey(config.metadata);
  const holder = deps.sandboxes.holder(key);
  if (holder !== undefined && !deps.sandboxRuns.has(key)) {
    throw alreadyExists(`pod sandbox name "${key}" is already reserved for sandbox ${holder}`);
  }
  const sandbox = await deps.sandboxRuns.run(key, () => create(deps, config, handlerName, ctx), ctx.signal);
  return { pod_sandbox_id: sandbox.id };
}

async function create(deps: Deps, config: cri.PodSandboxConfig & { metadata: cri.PodSandboxMetadata }, handlerName: string, ctx: CallContext): Promise<Sandbox> {
  const signal = AbortSignal.timeout(RUN_TIMEOUT_MS);
  const id = newId();
  const key = sandboxNameKey(config.metadata);
  const log = ctx.log.child({ sandbox: id.slice(0, 12), pod: `${config.metadata.namespace}/${config.metadata.name}` });
  if (deps.sandboxes.reserve(key, id) !== undefined) throw alreadyExists(`pod sandbox name "${key}" is already reserved`);
  // a Localhost seccomp profile is read before anything is made: a missing one fails the call cleanly
  const sc = config.linux?.security_context ?? null;
  let seccompProfile: Awaited<ReturnType<typeof readSeccompProfile>> | undefined;
  try {
    const seccomp = seccompChoice(sc?.seccomp, sc?.seccomp_profile_path ?? "", "", "unconfined", "config.linux.security_context");
    seccompProfile = seccomp.kind === "localhost" ? await readSeccompProfile(seccomp.path) : undefined;
  } catch (err) {
    deps.sandboxes.release(key, id);
    throw err;
  }
  const host = hostNetwork(config);
  const dir = join(deps.config.root, "sandboxes", id);
  const shmDir = hostIpc(config) ? "" : join(deps.config.state, "sandboxes", id, "shm");
  const pod = { namespace: config.metadata.namespace, name: config.metadata.name, uid: config.metadata.uid };
  const capArgs = capabilityArgs(config, deps.podCidrs.ipRanges());
  const parts: SandboxParts = {
    id, netnsPath: host ? "" : deps.netns.pathFor(id), dir, shmDir,
    ...(host ? {} : { cni: { pod, ifName: DEFAULT_IFNAME, capabilityArgs: capArgs } }),
  };
  // what this call is about to make, durable before the first side effect (the fsync overlaps the image lookup)
  const intent: Intent = { kind: "sandbox-run", sandbox: parts };
  const recorded = deps.intents.record(intent);
  await using undo = new Rollback(log, {
    timeoutMs: deps.config.cni.del_timeout + 30_000,
    settled: async (failed) => {
      if (!(await recorded.then(() => true, () => false))) return;
      if (failed.length > 0) deps.reconciler.later(intent);
      else await deps.intents.done("sandbox-run", id);
    },
  });
  undo.defer("release name", () => deps.sandboxes.release(key, id));
  // how long each part took, for the log: where a slow pod start goes
  const started = performance.now();
  const ms: Record<string, number> = {};
  const lap = <T>(what: string, work: Promise<T>): Promise<T> =>
    work.finally(() => { ms[what] = Math.round(performance.now() - started); });
  lap("intent", recorded).catch(() => {});
  const handler = deps.config.runtimes[handlerName]!;
  // The netns with its loopback up (after the intent record) and the sandbox image need nothing from each other; the pause
  // container's record and snapshot need the image and the netns's path, not the netns: only its task does.
  if (!host) undo.defer("remove netns", (s) => deps.netns.remove(parts.netnsPath, s));
  // the pod's /dev/shm is mounted by the process that makes the netns (one spawn less)
  const shmWithNetns = !host && shmDir !== "";
  const adding = host ? Promise.resolve(undefined) : recorded.then(async () => {
    if (shmWithNetns) await mkdir(shmDir, { recursive: true, mode: 0o700 });
    return lap("netns", deps.netns.create(id, signal, shmWithNetns ? { dir: shmDir, options: shmOptions() } : undefined));
  }).then((added) => {
    crashPoint("sandbox-run:netns");
    return added;
  });
  const imaged = lap("image", deps.images.ensure(deps.config.sandbox.image, signal));
  undo.defer("remove sandbox files", () => removeSandboxFiles(dir, shmDir));
  const netnsPath = parts.netnsPath;
  const meta: SandboxMeta = {
    id, config, createdAt: nowNanos(), runtimeHandler: handlerName, netnsPath, ips: [], dir, shmDir, image: "",
  };

  // The pod network (then the files, /etc/hosts names the pod IPs) and the pause
  // container need nothing from each other but the netns: set them up side by side.
  const network = async (): Promise<string[]> => {
    const netns = await adding;
    let ips: string[] = [];
    if (netns) {
      const attachment = { id, netns: netns.path, pod, capabilityArgs: capArgs };
      // ADD can half-allocate: DEL runs even when ADD fails
      undo.defer("CNI DEL", (s) => deps.cni.del(attachment, s));
      const result = await deps.cni.add(attachment, addDeadline(deps, ctx, signal));
      crashPoint("sandbox-run:cni-added");
      ips = [...result.podIps];
    }
    await writeSandboxFiles({ dir, shmDir, shmMounted: shmWithNetns, hostNetwork: host, ips, hostname: config.hostname || deps.host.nodeHostname, dns: config.dns_config });
    return ips;
  };
  const pauseCreated = async () => {
    const [image] = await allSettled([imaged, recorded]);
    meta.image = image.name;
    const { spec, warnings } = buildSandboxSpec({
      id, config, netnsPath, image: { config: image.config.config ?? {} }, rootfs: "", host: deps.host,
      ...(seccompProfile ? { seccompProfile } : {}),
    });
    for (const w of warnings) log.warn({ warning: w }, "sandbox spec");
    // deferred before they are made: containerd may die with the snapshot prepared and the record not, or
    // the shim started and the task not; the steps run last to first, each fine with nothing to undo
    // after the answer: finding a shim by group scans /proc
    undo.defer("end the pause's idle shim", () => void reapShims(deps, AbortSignal.timeout(30_000), { only: { id } })
      .catch((err: unknown) => log.debug({ err: String(err) }, "looking for the pause's shim failed")));
    undo.defer("delete pause container", (s) => deleteContainer(deps.containerd, id, s));
    const rootfs = await createContainer(deps.containerd, {
      id, image: image.name, parent: image.chainId, spec,
      runtime: { binaryName: handler.binary_name, systemdCgroup: handler.systemd_cgroup },
      labels: { [KIND_LABEL]: "sandbox", ...config.labels },
      extensions: { [SANDBOX_EXTENSION]: meta },
    }, signal);
    crashPoint("sandbox-run:pause-created");
    return rootfs;
  };
  const created = lap("pause record", pauseCreated());
  const pause = async (): Promise<number> => {
    const rootfs = await created;
    await adding; // the task joins the netns
    undo.defer("delete pause task", (s) => removeTask(deps, id, s));
    const pid = await startTask(deps.containerd, id, { stdin: "", stdout: "", stderr: "", terminal: false }, signal, rootfs)
      .catch((err: unknown) => { throw refusedSysctl(err, config.linux?.sysctls ?? {}, "config.linux.sysctls") ?? pauseEnded(config, err) ?? err; });
    crashPoint("sandbox-run:pause-started");
    return pid;
  };
  const networked = lap("network", network());
  // the pod IPs go into the record (for recover) while the pause task starts
  const ipsRecorded = async (): Promise<void> => {
    const [ips] = await allSettled([networked, created]);
    if (ips.length === 0) return;
    meta.ips = ips;
    await updateExtension(deps.containerd, id, SANDBOX_EXTENSION, meta, signal);
  };
  const [, pid] = await allSettled<[void, number, string[], unknown, unknown, unknown]>([
    lap("ips recorded", ipsRecorded()), lap("pause", pause()), networked, created, adding, imaged,
  ]);

  const sandbox: Sandbox = { ...meta, state: "SANDBOX_READY", pid, networkDown: false };
  crashPoint("sandbox-run:stored");
  deps.sandboxes.add(sandbox);
  undo.disarm();
  await deps.intents.done("sandbox-run", id).catch((err: unknown) => log.warn({ err: String(err) }, "cannot drop the intent record"));
  sandboxEvent(deps, "CONTAINER_CREATED_EVENT", sandbox);
  sandboxEvent(deps, "CONTAINER_STARTED_EVENT", sandbox);
  ms["ready"] = Math.round(performance.now() - started);
  log.info({ pid, ips: meta.ips, msSinceStart: ms }, "sandbox ready");
  return sandbox;
}
