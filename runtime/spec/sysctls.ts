// Only sysctls that live in a namespace the pod owns may be set: the others
// would change the whole node.
import { invalidArgument } from "../errors.js";

const short = (s: string): string => JSON.stringify(s.length > 64 ? `${s.slice(0, 60)}…` : s);

const ipcSysctls = new Set([
  "kernel.shmall",
  "kernel.shmmax",
  "kernel.shmmni",
  "kernel.shm_rmid_forced",
  "kernel.msgmax",
  "kernel.msgmnb",
  "kernel.msgmni",
  "kernel.sem",
]);

/** "net/ipv4/conf/eth0.100/forwarding" → "net.ipv4.conf.eth0/100.forwarding", as Kubernetes converts. */
export const dottedSysctl = (name: string): string =>
  name.includes("/") ? name.replace(/[./]/g, (c) => (c === "/" ? "." : "/")) : name;

export type SysctlNamespace = "ipc" | "net";

/** The namespace a sysctl belongs to, or undefined when it is node-wide. */
export function sysctlNamespace(name: string): SysctlNamespace | undefined {
  const dotted = dottedSysctl(name);
  if (ipcSysctls.has(dotted) || dotted.startsWith("fs.mqueue.")) return "ipc";
  if (dotted.startsWith("net.")) return "net";
  return undefined;
}

export interface PodNamespaces {
  hostNetwork: boolean;
  hostIpc: boolean;
}

/** The sysctls to write, after checking each belongs to a namespace of the pod's own. */
export function namespacedSysctls(sysctls: Readonly<Record<string, string>>, pod: PodNamespaces, field: string): Record<string, string> {
  const checked: Record<string, string> = {};
  for (const [name, value] of Object.entries(sysctls)) {
    const ns = sysctlNamespace(name);
    if (ns === undefined) throw invalidArgument(`${field}: sysctl ${short(name)} is not namespaced and would change the whole node`);
    if (ns === "net" && pod.hostNetwork) {
      throw invalidArgument(`${field}: sysctl ${short(name)} is in the network namespace, which a host-network pod shares with the node`);
    }
    if (ns === "ipc" && pod.hostIpc) {
      throw invalidArgument(`${field}: sysctl ${short(name)} is in the IPC namespace, which a host-IPC pod shares with the node`);
    }
    checked[name] = value;
  }
  return checked;
}

/**
 * The sysctl the kernel refused when runc wrote it ("write /proc/sys/net/ipv4/x:
 * invalid argument"), as INVALID_ARGUMENT naming the request's key and value; only
 * the kernel knows each sysctl's range. Undefined for any other error.
 */
export function refusedSysctl(err: unknown, requested: Readonly<Record<string, string>>, field: string): Error | undefined {
  const message = err instanceof Error ? err.message : String(err);
  const m = /write \/proc\/sys\/(\S+?): ([a-z][a-z ]*[a-z])/.exec(message);
  if (!m) return undefined;
  const dotted = dottedSysctl(m[1]!);
  const name = Object.keys(requested).find((k) => dottedSysctl(k) === dotted) ?? dotted;
  return invalidArgument(`${field}[${short(name)}]: ${short(requested[name] ?? "")} is refused by the kernel (${m[2]})`);
}
