// The OCI spec of an application container, as containerd's CRI plugin builds
// it: small steps applied in order to the base spec. Everything the steps need
// from the host (the user's ids, device numbers, a Localhost seccomp profile,
// host facts) is read beforehand and passed in, so building is pure.
import type { ContainerConfig } from "../../proto/gen/cri/runtime/v1/ContainerConfig.js";
import type { LinuxContainerSecurityContext } from "../../proto/gen/cri/runtime/v1/LinuxContainerSecurityContext.js";
import type { Mount as CriMount } from "../../proto/gen/cri/runtime/v1/Mount.js";
import type { NamespaceOption } from "../../proto/gen/cri/runtime/v1/NamespaceOption.js";
import type { PodSandboxConfig } from "../../proto/gen/cri/runtime/v1/PodSandboxConfig.js";
import { invalidArgument } from "../errors.js";
import {
  annotations,
  cleanPath,
  compose,
  defaultMaskedPaths,
  defaultReadonlyPaths,
  int64,
  mergeEnv,
  rejectUserNamespaces,
} from "./base.js";
import type { BuiltSpec, ImageProcessConfig, Step } from "./base.js";
import { capabilityName } from "./capabilities.js";
import type { ResolvedDevice } from "./devices.js";
import type { HostFacts } from "./host.js";
import { applyResources, cgroupsPath, clampOomScoreAdj, resourceWarnings } from "./resources.js";
import { appArmorChoice, appArmorProfileFor } from "./apparmor.js";
import { seccompChoice, seccompFor } from "./seccomp.js";
import type { LoadedSeccompProfile } from "./seccomp.js";
import { namespacedSysctls } from "./sysctls.js";
import type { Capabilities, LinuxDevice, Mount, Namespace } from "./types.js";
import type { ResolvedUser } from "./user.js";

/** The files crib keeps per sandbox and binds into each of its containers. */
export interface SandboxFiles {
  hostsPath: string;
  resolvConfPath: string;
  hostnamePath: string;
  /**
   * The sandbox's /dev/shm; "" when the pod uses the node's IPC namespace,
   * in which case the node's /dev/shm is bound, as containerd does.
   */
  shmPath: string;
}

export interface ContainerSpecInput {
  /** The container's id. */
  id: string;
  config: ContainerConfig;
  sandbox: {
    id: string;
    config: PodSandboxConfig;
    /** The pause process, whose ipc, uts and pid namespaces the container joins. */
    pid: number;
    /** The pinned network namespace; "" for a host-network pod. */
    netnsPath: string;
    files: SandboxFiles;
  };
  image: {
    /** The name for the image-name annotation. */
    name: string;
    config: ImageProcessConfig;
  };
  /** The rootfs directory in the bundle; "" when containerd mounts it at "rootfs". */
  rootfs: string;
  /** From resolveUser (user.ts). */
  user: ResolvedUser;
  host: HostFacts;
  /** The CRI devices, from resolveDevices (devices.ts). */
  devices: readonly ResolvedDevice[];
  /** Every host device, from hostDevices (devices.ts); only read for a privileged container. */
  hostDevices: readonly LinuxDevice[];
  /** A Localhost seccomp profile read with readSeccompProfile when the container asks for one. */
  seccompProfile?: LoadedSeccompProfile;
  /** Where relative Localhost seccomp paths are found. */
  seccompProfileRoot?: string;
  /** The pid of the target container when namespace_options.pid is TARGET. */
  targetPid?: number;
  /** The host path bound for each image volume, by index in config.mounts (cri/image-volumes.ts). */
  imageVolumes?: ReadonlyMap<number, string>;
}

const securityContext = (input: ContainerSpecInput): LinuxContainerSecurityContext | null =>
  input.config.linux?.security_context ?? null;

const privileged = (input: ContainerSpecInput): boolean => securityContext(input)?.privileged === true;

/** The container's namespace options, falling back to the sandbox's. */
export function namespaceOptions(input: ContainerSpecInput): NamespaceOption | null {
  return securityContext(input)?.namespace_options ?? input.sandbox.config.linux?.security_context?.namespace_options ?? null;
}

const hostNetwork = (input: ContainerSpecInput): boolean => namespaceOptions(input)?.network === "NODE";
const hostIpc = (input: ContainerSpecInput): boolean => namespaceOptions(input)?.ipc === "NODE";

const label = (input: ContainerSpecInput): string =>
  `container "${input.config.metadata?.name ?? input.id}" in sandbox ${input.sandbox.id}`;

/**
 * The process's arguments by the Kubernetes rules: command replaces the image's
 * Entrypoint and args its Cmd; a command without args does not use Cmd.
 */
export function processArgs(config: Pick<ContainerConfig, "command" | "args">, image: ImageProcessConfig): string[] {
  const entrypoint = image.Entrypoint ?? [];
  const cmd = image.Cmd ?? [];
  if (config.command.length > 0) return [...config.command, ...config.args];
  // An Entrypoint of [""] is how an image resets it.
  const base = entrypoint.length === 1 && entrypoint[0] === "" ? [] : entrypoint;
  return [...base, ...(config.args.length > 0 ? config.args : cmd)];
}

/**
 * The signal that stops the container: the CRI's stop_signal, else the image's
 * StopSignal ("SIGQUIT", "QUIT" or a number), else SIGTERM.
 */
export function stopSignal(config: Pick<ContainerConfig, "stop_signal">, image: ImageProcessConfig): string {
  if (config.stop_signal !== "RUNTIME_DEFAULT") return config.stop_signal;
  const signal = (image.StopSignal ?? "").trim().toUpperCase();
  if (signal === "") return "SIGTERM";
  return /^\d+$/.test(signal) || signal.startsWith("SIG") ? signal : `SIG${signal}`;
}

export const withRoot: Step<ContainerSpecInput> = (spec, input) => ({
  ...spec,
  root: { path: input.rootfs === "" ? "rootfs" : input.rootfs, ...(securityContext(input)?.readonly_rootfs ? { readonly: true } : {}) },
});

export const withProcess: Step<ContainerSpecInput> = (spec, input) => {
  const { config, image } = input;
  const args = processArgs(config, image.config);
  if (args.length === 0) {
    throw invalidArgument(`${label(input)}: no command specified: neither the container config nor the image gives a command`);
  }
  const hostname = input.sandbox.config.hostname !== "" ? input.sandbox.config.hostname : input.host.nodeHostname;
  const env = mergeEnv(
    spec.process.env,
    [`HOSTNAME=${hostname}`],
    image.config.Env ?? [],
    config.envs.map((kv) => `${kv.key}=${kv.value.toString()}`),
  );
  const cwd = config.working_dir !== "" ? config.working_dir : image.config.WorkingDir ? image.config.WorkingDir : "/";
  const requested = int64(config.linux?.resources?.oom_score_adj, "linux.resources.oom_score_adj");
  return {
    ...spec,
    process: {
      ...spec.process,
      args,
      env,
      cwd,
      ...(config.tty ? { terminal: true } : {}),
      oomScoreAdj: clampOomScoreAdj(requested, input.host.minOomScoreAdj),
    },
  };
};

export const withUser: Step<ContainerSpecInput> = (spec, input) => ({
  ...spec,
  process: {
    ...spec.process,
    user: {
      uid: input.user.uid,
      gid: input.user.gid,
      ...(input.user.additionalGids.length > 0 ? { additionalGids: [...input.user.additionalGids] } : {}),
    },
  },
});

const union = (a: readonly string[], b: readonly string[]): string[] => [...new Set([...a, ...b])];
const without = (a: readonly string[], b: readonly string[]): string[] => a.filter((c) => !b.includes(c));

/**
 * add/drop as containerd applies them: "ALL" in add starts from every
 * capability and "ALL" in drop from none, then the named ones are added and
 * dropped. A privileged container gets every capability crib holds.
 */
export const withCapabilities: Step<ContainerSpecInput> = (spec, input) => {
  const requested = securityContext(input)?.capabilities ?? null;
  const names = (list: readonly string[], field: string): string[] =>
    list.filter((c) => c.toUpperCase() !== "ALL").map((c) => capabilityName(c, field));
  const ambient = names(requested?.add_ambient_capabilities ?? [], "capabilities.add_ambient_capabilities");
  const withAmbient = (caps: Capabilities): Capabilities =>
    ambient.length === 0
      ? caps
      : {
          bounding: union(caps.bounding, ambient),
          effective: union(caps.effective, ambient),
          permitted: union(caps.permitted, ambient),
          inheritable: union(caps.inheritable ?? [], ambient),
          ambient: union(caps.ambient ?? [], ambient),
        };
  if (privileged(input)) {
    const all = [...input.host.capabilities];
    return { ...spec, process: { ...spec.process, capabilities: withAmbient({ bounding: all, effective: [...all], permitted: [...all] }) } };
  }
  if (requested === null) return spec;
  let caps = spec.process.capabilities.bounding;
  const isAll = (c: string): boolean => c.toUpperCase() === "ALL";
  if (requested.add_capabilities.some(isAll)) caps = [...input.host.capabilities];
  if (requested.drop_capabilities.some(isAll)) caps = [];
  caps = union(caps, names(requested.add_capabilities, "capabilities.add_capabilities"));
  caps = without(caps, names(requested.drop_capabilities, "capabilities.drop_capabilities"));
  return {
    ...spec,
    process: { ...spec.process, capabilities: withAmbient({ bounding: caps, effective: [...caps], permitted: [...caps] }) },
  };
};

export const withNoNewPrivs: Step<ContainerSpecInput> = (spec, input) => ({
  ...spec,
  process: { ...spec.process, noNewPrivileges: securityContext(input)?.no_new_privs === true },
});

/** Must follow withCapabilities: the default profile allows by the bounding set. */
export const withSeccomp: Step<ContainerSpecInput> = (spec, input) => {
  if (privileged(input)) return spec;
  const sc = securityContext(input);
  const choice = seccompChoice(sc?.seccomp, sc?.seccomp_profile_path ?? "", input.seccompProfileRoot ?? "", "unconfined", "security_context");
  const seccomp = seccompFor(choice, spec.process.capabilities.bounding, input.host.arch, input.seccompProfile);
  return seccomp === undefined ? spec : { ...spec, linux: { ...spec.linux, seccomp } };
};

const propagationOption = { PROPAGATION_PRIVATE: "rprivate", PROPAGATION_HOST_TO_CONTAINER: "rslave", PROPAGATION_BIDIRECTIONAL: "rshared" } as const;

/** A CRI mount as an OCI bind mount; an image volume's from `imageVolume`, the host path its image is mounted on. */
export function bindMount(mount: CriMount, field: string, imageVolume?: string): Mount {
  if (mount.container_path === "" || !mount.container_path.startsWith("/")) {
    throw invalidArgument(`${field}.container_path "${mount.container_path}" must be an absolute path`);
  }
  if (mount.image !== null && mount.image.image !== "") {
    if (imageVolume === undefined) throw invalidArgument(`${field}: image volume "${mount.image.image}" was not prepared`);
    return { destination: mount.container_path, type: "bind", source: imageVolume, options: ["rbind", "rprivate", "ro"] };
  }
  if (mount.host_path === "") throw invalidArgument(`${field}.host_path is required for "${mount.container_path}"`);
  if (mount.uidMappings.length > 0 || mount.gidMappings.length > 0) {
    throw invalidArgument(`${field}: id-mapped mounts ("${mount.container_path}") are not supported`);
  }
  const propagation = propagationOption[mount.propagation] ?? "rprivate";
  let access = mount.readonly ? "ro" : "rw";
  if (mount.recursive_read_only) {
    if (!mount.readonly) throw invalidArgument(`${field}: recursive_read_only "${mount.container_path}" needs readonly`);
    if (propagation !== "rprivate") {
      throw invalidArgument(`${field}: recursive_read_only "${mount.container_path}" needs private propagation`);
    }
    access = "rro";
  }
  return { destination: mount.container_path, type: "bind", source: mount.host_path, options: ["rbind", propagation, access] };
}

const depth = (path: string): number => cleanPath(path).split("/").length;

/** The sandbox files the container gets unless its own mounts cover those paths. */
function sandboxFileMounts(input: ContainerSpecInput): CriMount[] {
  const files = input.sandbox.files;
  const readonly = securityContext(input)?.readonly_rootfs === true;
  const bind = (container_path: string, host_path: string, ro: boolean): CriMount => ({
    container_path,
    host_path,
    readonly: ro,
    selinux_relabel: false,
    propagation: "PROPAGATION_PRIVATE",
    uidMappings: [],
    gidMappings: [],
    recursive_read_only: false,
    image: null,
    image_sub_path: "",
  });
  const mounts: CriMount[] = [];
  if (files.hostnamePath !== "") mounts.push(bind("/etc/hostname", files.hostnamePath, readonly));
  if (files.hostsPath !== "") mounts.push(bind("/etc/hosts", files.hostsPath, readonly));
  if (files.resolvConfPath !== "") mounts.push(bind("/etc/resolv.conf", files.resolvConfPath, readonly));
  if (files.shmPath !== "") mounts.push(bind("/dev/shm", files.shmPath, false));
  else if (hostIpc(input)) mounts.push(bind("/dev/shm", "/dev/shm", false));
  return mounts;
}

/**
 * The kernel file systems, then the container's own mounts and the sandbox's
 * files (the container's win on the same path), sorted so that a mount never
 * hides one deeper than it. Also masked and read-only paths, and the root's propagation.
 */
export const withMounts: Step<ContainerSpecInput> = (spec, input) => {
  const criMounts = input.config.mounts;
  const targets = new Set(criMounts.map((m) => cleanPath(m.container_path)));
  const extras = sandboxFileMounts(input).filter((m) => !targets.has(m.container_path));
  const all = [...criMounts, ...extras];
  const covered = new Set(all.map((m) => cleanPath(m.container_path)));
  const devCovered = covered.has("/dev");
  const isPrivileged = privileged(input);

  const kernelMounts = spec.mounts
    .filter((m) => !covered.has(cleanPath(m.destination)) && !(devCovered && m.destination.startsWith("/dev/")))
    .map((m) => (isPrivileged && m.type === "sysfs" ? { ...m, options: (m.options ?? []).map((o) => (o === "ro" ? "rw" : o)) } : m));
  if (!covered.has("/sys/fs/cgroup")) {
    kernelMounts.push({
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", isPrivileged ? "rw" : "ro"],
    });
  }

  const binds = all
    .map((m, i) => ({ mount: m, bind: i < criMounts.length ? bindMount(m, `mounts[${i}]`, input.imageVolumes?.get(i)) : bindMount(m, "sandbox mount") }))
    .sort((a, b) => depth(a.mount.container_path) - depth(b.mount.container_path));
  const propagations = new Set(all.map((m) => m.propagation));
  const rootfsPropagation = propagations.has("PROPAGATION_BIDIRECTIONAL")
    ? "rshared"
    : propagations.has("PROPAGATION_HOST_TO_CONTAINER")
      ? "rslave"
      : undefined;

  const sc = securityContext(input);
  const linux = { ...spec.linux };
  delete linux.maskedPaths;
  delete linux.readonlyPaths;
  if (!isPrivileged) {
    linux.maskedPaths = sc !== null && sc.masked_paths.length > 0 ? [...sc.masked_paths] : [...defaultMaskedPaths];
    linux.readonlyPaths = sc !== null && sc.readonly_paths.length > 0 ? [...sc.readonly_paths] : [...defaultReadonlyPaths];
  }
  if (rootfsPropagation !== undefined) linux.rootfsPropagation = rootfsPropagation;
  return { ...spec, mounts: [...kernelMounts, ...binds.map((b) => b.bind)], linux };
};

/**
 * Network, IPC and UTS are the pause container's (none of them for the node's);
 * pid per namespace_options.pid; always a new mount namespace, and a new
 * cgroup namespace on cgroup v2 unless privileged.
 */
export const withNamespaces: Step<ContainerSpecInput> = (spec, input) => {
  const ns = namespaceOptions(input);
  rejectUserNamespaces(ns, "namespace_options");
  const pause = (type: string): string => `/proc/${input.sandbox.pid}/ns/${type}`;
  const namespaces: Namespace[] = [];
  switch (ns?.pid ?? "POD") {
    case "POD":
      namespaces.push({ type: "pid", path: pause("pid") });
      break;
    case "CONTAINER":
      namespaces.push({ type: "pid" });
      break;
    case "TARGET":
      if (input.targetPid === undefined) {
        throw invalidArgument(`${label(input)}: pid namespace of target "${ns?.target_id ?? ""}" requested but its pid is unknown`);
      }
      namespaces.push({ type: "pid", path: `/proc/${input.targetPid}/ns/pid` });
      break;
    case "NODE":
      break;
  }
  if (!hostIpc(input)) namespaces.push({ type: "ipc", path: pause("ipc") });
  if (!hostNetwork(input)) namespaces.push({ type: "uts", path: pause("uts") });
  namespaces.push({ type: "mount" });
  if (!hostNetwork(input)) {
    namespaces.push({ type: "network", path: input.sandbox.netnsPath !== "" ? input.sandbox.netnsPath : pause("net") });
  }
  if (input.host.cgroupV2 && !privileged(input)) namespaces.push({ type: "cgroup" });
  return { ...spec, linux: { ...spec.linux, namespaces } };
};

export const withCgroupsPath: Step<ContainerSpecInput> = (spec, input) => ({
  ...spec,
  linux: {
    ...spec.linux,
    cgroupsPath: cgroupsPath(input.sandbox.config.linux?.cgroup_parent ?? "", input.id, input.host.systemdCgroup),
  },
});

export const withResources: Step<ContainerSpecInput> = (spec, input) => ({
  ...spec,
  linux: {
    ...spec.linux,
    resources: applyResources(spec.linux.resources, input.config.linux?.resources, input.host, "linux.resources"),
  },
});

const linuxDevice = ({ path, type, major, minor, fileMode, uid, gid }: LinuxDevice): LinuxDevice => ({
  path,
  type,
  major,
  minor,
  ...(fileMode === undefined ? {} : { fileMode }),
  ...(uid === undefined ? {} : { uid }),
  ...(gid === undefined ? {} : { gid }),
});

/** The CRI's devices, allowed in the device cgroup; a privileged container gets every host device and all access. */
export const withDevices: Step<ContainerSpecInput> = (spec, input) => {
  const devices = input.devices.map(linuxDevice);
  if (privileged(input)) {
    const paths = new Set(devices.map((d) => d.path));
    devices.push(...input.hostDevices.filter((d) => !paths.has(d.path)).map(linuxDevice));
    return {
      ...spec,
      linux: { ...spec.linux, ...(devices.length > 0 ? { devices } : {}), resources: { ...spec.linux.resources, devices: [{ allow: true, access: "rwm" }] } },
    };
  }
  if (devices.length === 0) return spec;
  const rules = input.devices
    .filter((d) => d.type === "c" || d.type === "b")
    .map((d) => ({ allow: true, type: d.type as "c" | "b", major: d.major, minor: d.minor, access: d.permissions }));
  return {
    ...spec,
    linux: { ...spec.linux, devices, resources: { ...spec.linux.resources, devices: [...spec.linux.resources.devices, ...rules] } },
  };
};

/** The pod's sysctls; they live in namespaces the container shares with the pause container. */
export const withSysctls: Step<ContainerSpecInput> = (spec, input) => {
  const sysctls = input.sandbox.config.linux?.sysctls ?? {};
  if (Object.keys(sysctls).length === 0) return spec;
  const sysctl = namespacedSysctls(sysctls, { hostNetwork: hostNetwork(input), hostIpc: hostIpc(input) }, "sandbox linux.sysctls");
  return { ...spec, linux: { ...spec.linux, sysctl } };
};

/** The sandbox's hostname; a host-network container keeps the node's UTS namespace and name. */
export const withHostname: Step<ContainerSpecInput> = (spec, input) => {
  const hostname = input.sandbox.config.hostname;
  if (hostNetwork(input) || hostname === "") return spec;
  return { ...spec, hostname };
};

export const withAnnotations: Step<ContainerSpecInput> = (spec, input) => {
  const metadata = input.sandbox.config.metadata;
  return {
    ...spec,
    annotations: {
      ...spec.annotations,
      [annotations.containerType]: "container",
      [annotations.sandboxId]: input.sandbox.id,
      [annotations.sandboxNamespace]: metadata?.namespace ?? "",
      [annotations.sandboxUid]: metadata?.uid ?? "",
      [annotations.sandboxName]: metadata?.name ?? "",
      [annotations.containerName]: input.config.metadata?.name ?? "",
      [annotations.imageName]: input.image.name,
    },
  };
};

export const withAppArmor: Step<ContainerSpecInput> = (spec, input) => {
  const sc = securityContext(input);
  const choice = appArmorChoice(sc?.apparmor, sc?.apparmor_profile ?? "", "security_context");
  const profile = appArmorProfileFor(choice, privileged(input), input.host.apparmor);
  return profile === undefined ? spec : { ...spec, process: { ...spec.process, apparmorProfile: profile } };
};

export const containerSteps: ReadonlyArray<Step<ContainerSpecInput>> = [
  withRoot,
  withProcess,
  withUser,
  withCapabilities,
  withNoNewPrivs,
  withSeccomp,
  withAppArmor,
  withMounts,
  withNamespaces,
  withCgroupsPath,
  withResources,
  withDevices,
  withSysctls,
  withHostname,
  withAnnotations,
];

/** What this node cannot honour of the container's config; the spec is built without it. */
export function containerSpecWarnings(input: ContainerSpecInput): string[] {
  const sc = securityContext(input);
  const warnings = resourceWarnings(input.config.linux?.resources, input.host, "linux.resources");
  const apparmor = appArmorChoice(sc?.apparmor, sc?.apparmor_profile ?? "", "security_context");
  if (!input.host.apparmor.enabled && apparmor.kind === "localhost") {
    warnings.push(`AppArmor profile "${apparmor.name}" ignored: the node has no AppArmor`);
  } else if (input.host.apparmor.enabled && apparmor.kind === "runtime-default" && !privileged(input) && !input.host.apparmor.defaultProfile) {
    warnings.push(`running unconfined: crib's default AppArmor profile is not loaded (is apparmor_parser installed?)`);
  }
  const selinux = sc?.selinux_options;
  if (selinux && (selinux.user || selinux.role || selinux.type || selinux.level)) {
    warnings.push(`SELinux options ignored: the node has no SELinux`);
  }
  if (!privileged(input) && sc?.capabilities) {
    const missing = sc.capabilities.add_capabilities
      .filter((c) => c.toUpperCase() !== "ALL")
      .map((c) => capabilityName(c, "capabilities.add_capabilities"))
      .filter((c) => !input.host.capabilities.includes(c));
    if (missing.length > 0) warnings.push(`capabilities ${missing.join(", ")} are not held by crib; runc will fail to grant them`);
  }
  return warnings;
}

/** Checks what spans the container and its sandbox. */
function validate(input: ContainerSpecInput): void {
  if (privileged(input) && input.sandbox.config.linux?.security_context?.privileged !== true) {
    throw invalidArgument(`${label(input)}: privileged container in a sandbox not marked privileged`);
  }
}

export function buildContainerSpec(input: ContainerSpecInput): BuiltSpec {
  validate(input);
  return { spec: compose(containerSteps, input), warnings: containerSpecWarnings(input) };
}
