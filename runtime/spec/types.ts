// The subset of the OCI runtime spec (runtime-spec 1.0.2, as runc 1.1 reads it)
// that crib emits. Field names are the JSON names; optional fields are left out
// of the JSON rather than written as null.

/** The runtime-spec version crib writes into config.json. */
export const ociVersion = "1.0.2-dev";

export interface Spec {
  ociVersion: string;
  process: Process;
  root: Root;
  hostname?: string;
  mounts: Mount[];
  annotations: Record<string, string>;
  linux: Linux;
}

export interface Process {
  terminal?: boolean;
  user: User;
  args: string[];
  env: string[];
  cwd: string;
  capabilities: Capabilities;
  rlimits?: Rlimit[];
  noNewPrivileges: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}

export interface User {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
}

export interface Capabilities {
  bounding: string[];
  effective: string[];
  permitted: string[];
  inheritable?: string[];
  ambient?: string[];
}

export interface Rlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface Root {
  path: string;
  readonly?: boolean;
}

export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export type NamespaceType = "pid" | "network" | "mount" | "ipc" | "uts" | "user" | "cgroup";

export interface Namespace {
  type: NamespaceType;
  /** Join the namespace at this path; without it runc creates a new one. */
  path?: string;
}

export interface Linux {
  namespaces: Namespace[];
  resources: Resources;
  cgroupsPath?: string;
  sysctl?: Record<string, string>;
  devices?: LinuxDevice[];
  maskedPaths?: string[];
  readonlyPaths?: string[];
  seccomp?: Seccomp;
  rootfsPropagation?: "rprivate" | "rslave" | "rshared" | "private" | "slave" | "shared";
  mountLabel?: string;
}

export interface Resources {
  devices: DeviceCgroupRule[];
  memory?: MemoryResources;
  cpu?: CpuResources;
  pids?: { limit: number };
  hugepageLimits?: HugepageLimit[];
  unified?: Record<string, string>;
}

export interface MemoryResources {
  limit?: number;
  reservation?: number;
  swap?: number;
}

export interface CpuResources {
  shares?: number;
  quota?: number;
  period?: number;
  cpus?: string;
  mems?: string;
}

export interface HugepageLimit {
  pageSize: string;
  limit: number;
}

export type DeviceType = "c" | "b" | "u" | "p";

/** A device cgroup rule; type "a" with no major/minor means every device. */
export interface DeviceCgroupRule {
  allow: boolean;
  type?: "a" | "c" | "b";
  major?: number;
  minor?: number;
  access?: string;
}

/** A device node runc creates in the container's /dev. */
export interface LinuxDevice {
  path: string;
  type: DeviceType;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export type SeccompAction =
  | "SCMP_ACT_KILL"
  | "SCMP_ACT_KILL_PROCESS"
  | "SCMP_ACT_KILL_THREAD"
  | "SCMP_ACT_TRAP"
  | "SCMP_ACT_ERRNO"
  | "SCMP_ACT_TRACE"
  | "SCMP_ACT_ALLOW"
  | "SCMP_ACT_LOG"
  | "SCMP_ACT_NOTIFY";

export type SeccompOperator =
  | "SCMP_CMP_NE"
  | "SCMP_CMP_LT"
  | "SCMP_CMP_LE"
  | "SCMP_CMP_EQ"
  | "SCMP_CMP_GE"
  | "SCMP_CMP_GT"
  | "SCMP_CMP_MASKED_EQ";

export interface Seccomp {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: SeccompSyscall[];
}

export interface SeccompSyscall {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: SeccompOperator;
}
