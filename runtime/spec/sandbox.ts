// The OCI spec of a sandbox's pause container: it only holds the pod's
// namespaces, so it runs read-only, without capabilities or new privileges
// (under seccomp when the sandbox asks for it).
import type { PodSandboxConfig } from "../../proto/gen/cri/runtime/v1/PodSandboxConfig.js";
import type { LinuxSandboxSecurityContext } from "../../proto/gen/cri/runtime/v1/LinuxSandboxSecurityContext.js";
import { invalidArgument } from "../errors.js";
import { annotations, compose, int64, mergeEnv, rejectUserNamespaces } from "./base.js";
import type { BuiltSpec, ImageProcessConfig, Step } from "./base.js";
import type { HostFacts } from "./host.js";
import { applyResources, cgroupsPath, clampOomScoreAdj, resourceWarnings } from "./resources.js";
import { seccompChoice, seccompFor } from "./seccomp.js";
import type { LoadedSeccompProfile } from "./seccomp.js";
import { namespacedSysctls } from "./sysctls.js";
import type { Namespace } from "./types.js";

export interface SandboxSpecInput {
  /** The sandbox's id. */
  id: string;
  config: PodSandboxConfig;
  /** The pinned network namespace; "" for a host-network pod. */
  netnsPath: string;
  /** The pause image's config; without Entrypoint and Cmd, "/pause" runs. */
  image: { config: ImageProcessConfig };
  /** The rootfs directory in the bundle; "" when containerd mounts it at "rootfs". */
  rootfs: string;
  host: HostFacts;
  /** A Localhost seccomp profile read with readSeccompProfile when the sandbox asks for one. */
  seccompProfile?: LoadedSeccompProfile;
  /** Where relative Localhost seccomp paths are found. */
  seccompProfileRoot?: string;
  /**
   * Let the pod bind ports below 1024 and send ICMP echo without privileges
   * (containerd's enable_unprivileged_ports/icmp). Default true.
   */
  unprivilegedPortsAndIcmp?: boolean;
}

/** containerd's pause adjustment: the last thing the OOM killer should pick. */
export const sandboxOomScoreAdj = -998;
/** The pause process needs next to no CPU. */
export const sandboxCpuShares = 2;

const securityContext = (input: SandboxSpecInput): LinuxSandboxSecurityContext | null =>
  input.config.linux?.security_context ?? null;
const hostNetwork = (input: SandboxSpecInput): boolean => securityContext(input)?.namespace_options?.network === "NODE";
const hostIpc = (input: SandboxSpecInput): boolean => securityContext(input)?.namespace_options?.ipc === "NODE";

export const withSandboxRoot: Step<SandboxSpecInput> = (spec, input) => ({
  ...spec,
  root: { path: input.rootfs === "" ? "rootfs" : input.rootfs, readonly: true },
});

export const withSandboxProcess: Step<SandboxSpecInput> = (spec, input) => {
  const image = input.image.config;
  const args = [...(image.Entrypoint ?? []), ...(image.Cmd ?? [])].filter((a, i) => !(i === 0 && a === ""));
  return {
    ...spec,
    process: {
      ...spec.process,
      args: args.length > 0 ? args : ["/pause"],
      env: mergeEnv(spec.process.env, image.Env ?? []),
      cwd: image.WorkingDir ? image.WorkingDir : "/",
      capabilities: { bounding: [], effective: [], permitted: [] },
      noNewPrivileges: true,
      oomScoreAdj: clampOomScoreAdj(sandboxOomScoreAdj, input.host.minOomScoreAdj),
    },
  };
};

/** run_as_user and run_as_group when given, else root; pause needs no account files. */
export const withSandboxUser: Step<SandboxSpecInput> = (spec, input) => {
  const sc = securityContext(input);
  if (sc === null) return spec;
  if (sc.run_as_group !== null && sc.run_as_user === null) {
    throw invalidArgument(`sandbox security_context.run_as_group (${sc.run_as_group.value}) is set without run_as_user`);
  }
  const uid = sc.run_as_user === null ? 0 : int64(sc.run_as_user.value, "security_context.run_as_user");
  const gid = sc.run_as_group === null ? 0 : int64(sc.run_as_group.value, "security_context.run_as_group");
  const groups = [...new Set(sc.supplemental_groups.map((g, i) => int64(g, `security_context.supplemental_groups[${i}]`)))];
  return { ...spec, process: { ...spec.process, user: { uid, gid, ...(groups.length > 0 ? { additionalGids: groups } : {}) } } };
};

/** What the sandbox's security context asks for; unset is unconfined, as the CRI says. */
export const withSandboxSeccomp: Step<SandboxSpecInput> = (spec, input) => {
  const sc = securityContext(input);
  const choice = seccompChoice(sc?.seccomp, sc?.seccomp_profile_path ?? "", input.seccompProfileRoot ?? "", "unconfined", "sandbox security_context");
  const seccomp = seccompFor(choice, spec.process.capabilities.bounding, input.host.arch, input.seccompProfile);
  return seccomp === undefined ? spec : { ...spec, linux: { ...spec.linux, seccomp } };
};

/**
 * The kernel file systems only: pause uses no /dev/shm and no files of the
 * sandbox. sysfs is per network namespace and the first mount's read-only flag
 * holds for the pod's later mounts, so a privileged pod's pause mounts it
 * writable, or its privileged containers would get a read-only /sys.
 */
export const withSandboxMounts: Step<SandboxSpecInput> = (spec, input) => {
  const writableSysfs = securityContext(input)?.privileged === true;
  return {
    ...spec,
    mounts: spec.mounts
      .filter((m) => m.destination !== "/dev/shm")
      .map((m) => (writableSysfs && m.type === "sysfs" ? { ...m, options: (m.options ?? []).map((o) => (o === "ro" ? "rw" : o)) } : m)),
  };
};

export const withSandboxNamespaces: Step<SandboxSpecInput> = (spec, input) => {
  const ns = securityContext(input)?.namespace_options ?? null;
  rejectUserNamespaces(ns, "sandbox security_context.namespace_options");
  const namespaces: Namespace[] = [];
  if (ns?.pid !== "NODE") namespaces.push({ type: "pid" });
  if (!hostIpc(input)) namespaces.push({ type: "ipc" });
  if (!hostNetwork(input)) namespaces.push({ type: "uts" });
  namespaces.push({ type: "mount" });
  if (!hostNetwork(input)) {
    if (input.netnsPath === "") throw invalidArgument(`sandbox ${input.id}: a pod network namespace path is required`);
    namespaces.push({ type: "network", path: input.netnsPath });
  }
  return { ...spec, linux: { ...spec.linux, namespaces } };
};

export const withSandboxCgroupsPath: Step<SandboxSpecInput> = (spec, input) => ({
  ...spec,
  linux: { ...spec.linux, cgroupsPath: cgroupsPath(input.config.linux?.cgroup_parent ?? "", input.id, input.host.systemdCgroup) },
});

/** Two CPU shares, unless the pod's overhead (else its resources) says more. */
export const withSandboxResources: Step<SandboxSpecInput> = (spec, input) => {
  const linux = input.config.linux;
  const [res, field] = linux?.overhead ? [linux.overhead, "linux.overhead"] : [linux?.resources ?? null, "linux.resources"];
  const base = { ...spec.linux.resources, cpu: { shares: sandboxCpuShares } };
  return { ...spec, linux: { ...spec.linux, resources: applyResources(base, res, input.host, field) } };
};

export const withSandboxSysctls: Step<SandboxSpecInput> = (spec, input) => {
  const requested = input.config.linux?.sysctls ?? {};
  const sysctl = namespacedSysctls(requested, { hostNetwork: hostNetwork(input), hostIpc: hostIpc(input) }, "linux.sysctls");
  if (!hostNetwork(input) && input.unprivilegedPortsAndIcmp !== false) {
    sysctl["net.ipv4.ip_unprivileged_port_start"] ??= "0";
    sysctl["net.ipv4.ping_group_range"] ??= "0 2147483647";
  }
  return Object.keys(sysctl).length === 0 ? spec : { ...spec, linux: { ...spec.linux, sysctl } };
};

/** A host-network pod shares the node's UTS namespace, and so its name. */
export const withSandboxHostname: Step<SandboxSpecInput> = (spec, input) =>
  hostNetwork(input) || input.config.hostname === "" ? spec : { ...spec, hostname: input.config.hostname };

export const withSandboxAnnotations: Step<SandboxSpecInput> = (spec, input) => {
  const metadata = input.config.metadata;
  return {
    ...spec,
    annotations: {
      ...spec.annotations,
      [annotations.containerType]: "sandbox",
      [annotations.sandboxId]: input.id,
      [annotations.sandboxName]: metadata?.name ?? "",
      [annotations.sandboxNamespace]: metadata?.namespace ?? "",
      [annotations.sandboxUid]: metadata?.uid ?? "",
      [annotations.sandboxLogDirectory]: input.config.log_directory,
    },
  };
};

export const sandboxSteps: ReadonlyArray<Step<SandboxSpecInput>> = [
  withSandboxRoot,
  withSandboxProcess,
  withSandboxUser,
  withSandboxSeccomp,
  withSandboxMounts,
  withSandboxNamespaces,
  withSandboxCgroupsPath,
  withSandboxResources,
  withSandboxSysctls,
  withSandboxHostname,
  withSandboxAnnotations,
];

export function buildSandboxSpec(input: SandboxSpecInput): BuiltSpec {
  const linux = input.config.linux;
  const warnings = linux?.overhead
    ? resourceWarnings(linux.overhead, input.host, "linux.overhead")
    : resourceWarnings(linux?.resources, input.host, "linux.resources");
  const sc = securityContext(input);
  if (sc?.apparmor?.profile_type === "Localhost") warnings.push("the sandbox's AppArmor profile is not applied to the pause process (its containers' own profiles are)");
  const selinux = sc?.selinux_options;
  if (selinux && (selinux.user || selinux.role || selinux.type || selinux.level)) {
    warnings.push("SELinux options ignored: the node has no SELinux");
  }
  return { spec: compose(sandboxSteps, input), warnings };
}
