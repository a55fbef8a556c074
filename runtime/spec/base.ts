// What every crib container and sandbox spec starts from: containerd's default
// Unix spec without /run, rlimits, seccomp or AppArmor (the CRI settles those).
import type { NamespaceOption } from "../../proto/gen/cri/runtime/v1/NamespaceOption.js";
import type { ImageConfig } from "../image/oci.js";
import { invalidArgument } from "../errors.js";
import { defaultCapabilities } from "./capabilities.js";
import { ociVersion } from "./types.js";
import type { DeviceCgroupRule, Mount, Spec } from "./types.js";

export type Step<I> = (spec: Spec, input: I) => Spec;

export interface BuiltSpec {
  spec: Spec;
  /** What the spec could not honour on this node (AppArmor, SELinux, swap…), for the log. */
  warnings: string[];
}

/** The process settings of an OCI image config (its `config` object). */
export type ImageProcessConfig = Pick<NonNullable<ImageConfig["config"]>, "User" | "Env" | "Entrypoint" | "Cmd" | "WorkingDir" | "StopSignal">;

// The annotations containerd sets; tools such as cadvisor and crictl read them.
export const annotations = {
  containerType: "io.kubernetes.cri.container-type",
  containerName: "io.kubernetes.cri.container-name",
  imageName: "io.kubernetes.cri.image-name",
  sandboxId: "io.kubernetes.cri.sandbox-id",
  sandboxName: "io.kubernetes.cri.sandbox-name",
  sandboxNamespace: "io.kubernetes.cri.sandbox-namespace",
  sandboxUid: "io.kubernetes.cri.sandbox-uid",
  sandboxLogDirectory: "io.kubernetes.cri.sandbox-log-directory",
} as const;

/** Applies the steps in order to the base spec. */
export const compose = <I>(steps: ReadonlyArray<Step<I>>, input: I): Spec =>
  steps.reduce((spec, step) => step(spec, input), baseSpec());

export const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export const defaultMaskedPaths: readonly string[] = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];

export const defaultReadonlyPaths: readonly string[] = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

/** The kernel file systems every container gets; /dev/shm is a private tmpfs until a step replaces it. */
export function defaultMounts(): Mount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
  ];
}

const rwm = "rwm";

/**
 * The device cgroup: deny everything, then allow what runc creates in every
 * container's /dev (and mknod of any node, which the default MKNOD capability implies).
 */
export function defaultDeviceRules(): DeviceCgroupRule[] {
  const char = (major: number, minor?: number): DeviceCgroupRule =>
    minor === undefined ? { allow: true, type: "c", major, access: rwm } : { allow: true, type: "c", major, minor, access: rwm };
  return [
    { allow: false, access: rwm },
    { allow: true, type: "c", access: "m" },
    { allow: true, type: "b", access: "m" },
    char(1, 3), // /dev/null
    char(1, 5), // /dev/zero
    char(1, 7), // /dev/full
    char(1, 8), // /dev/random
    char(1, 9), // /dev/urandom
    char(5, 0), // /dev/tty
    char(5, 1), // /dev/console
    char(5, 2), // /dev/ptmx
    char(136), // /dev/pts/*
  ];
}

export function baseSpec(): Spec {
  return {
    ociVersion,
    process: {
      user: { uid: 0, gid: 0 },
      args: [],
      env: [defaultPath],
      cwd: "/",
      capabilities: {
        bounding: [...defaultCapabilities],
        effective: [...defaultCapabilities],
        permitted: [...defaultCapabilities],
      },
      noNewPrivileges: false,
    },
    root: { path: "rootfs" },
    mounts: defaultMounts(),
    annotations: {},
    linux: {
      namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "network" }],
      resources: { devices: defaultDeviceRules() },
      maskedPaths: [...defaultMaskedPaths],
      readonlyPaths: [...defaultReadonlyPaths],
    },
  };
}

const envKey = (entry: string): string => {
  const eq = entry.indexOf("=");
  return eq < 0 ? entry : entry.slice(0, eq);
};

/** Later entries replace earlier ones with the same name in place, as containerd's WithEnv does. */
export function mergeEnv(...lists: ReadonlyArray<readonly string[]>): string[] {
  const merged: string[] = [];
  const at = new Map<string, number>();
  for (const entry of lists.flat()) {
    const key = envKey(entry);
    const index = at.get(key);
    if (index === undefined) {
      at.set(key, merged.length);
      merged.push(entry);
    } else {
      merged[index] = entry;
    }
  }
  return merged;
}

/** A path with "." and ".." resolved and no trailing slash, as Go's path.Clean. */
export function cleanPath(path: string): string {
  const absolute = path.startsWith("/");
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length > 0 && parts[parts.length - 1] !== "..") parts.pop();
      else if (!absolute) parts.push("..");
      continue;
    }
    parts.push(part);
  }
  const joined = parts.join("/");
  return absolute ? `/${joined}` : joined || ".";
}

/** Splits a CRI int64 (a decimal string under the loader's longs: String) into a number. */
export function int64(value: string | number | undefined, field: string): number {
  if (value === undefined || value === "") return 0;
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw invalidArgument(`${field}: ${String(value)} is not an integer crib can represent`);
  return n;
}

/** crib runs pods in the node's user namespace only. */
export function rejectUserNamespaces(ns: NamespaceOption | null | undefined, field: string): void {
  const userns = ns?.userns_options;
  // An empty message reads as mode POD; only mappings make it a real request.
  if (userns && userns.mode !== "NODE" && (userns.uids.length > 0 || userns.gids.length > 0)) {
    const mode = userns.mode;
    throw invalidArgument(`${field}.userns_options: user namespaces (mode ${mode}) are not supported`);
  }
}
