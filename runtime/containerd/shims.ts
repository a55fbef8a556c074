// containerd-shim-runc-v2 processes, found by their command line
// (`-namespace <ns> -id <group id> -address <containerd socket>`), so that
// crib can end those of its own namespace and containerd that serve no task
// any more. Shims of any other namespace or containerd are never touched.
import { readdir, readFile } from "node:fs/promises";

export interface ShimProcess {
  pid: number;
  namespace: string;
  /** the shim's group: the sandbox id for a pod's shim */
  id: string;
  address: string;
}

const flag = (args: string[], name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

/** The shim running as `pid`, if that process is one. */
export async function shimOf(pid: number, proc = "/proc"): Promise<ShimProcess | undefined> {
  const args = await readFile(`${proc}/${pid}/cmdline`, "utf8").then((t) => t.split("\0").filter(Boolean), () => [] as string[]);
  if (!args[0]?.endsWith("containerd-shim-runc-v2")) return undefined;
  const namespace = flag(args, "-namespace");
  const id = flag(args, "-id");
  const address = flag(args, "-address");
  if (!namespace || !id || !address || args.includes("delete") || args.includes("start")) return undefined;
  return { pid, namespace, id, address };
}

/** The shim whose child `pid` is (a task's process: its parent is the shim). */
export async function parentShim(pid: number, proc = "/proc"): Promise<ShimProcess | undefined> {
  const stat = await readFile(`${proc}/${pid}/stat`, "utf8").catch(() => "");
  // pid (comm) state ppid …; comm may hold spaces and parentheses
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  return Number.isInteger(ppid) && ppid > 1 ? shimOf(ppid, proc) : undefined;
}

/** Every runc v2 shim on the host, from /proc (one read per process: for start-up, not request paths). */
export async function listShims(proc = "/proc"): Promise<ShimProcess[]> {
  const shims: ShimProcess[] = [];
  for (const name of await readdir(proc).catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const shim = await shimOf(Number(name), proc);
    if (shim) shims.push(shim);
  }
  return shims;
}

/** The processes whose parent is `pid`. */
export async function childrenOf(pid: number, proc = "/proc"): Promise<number[]> {
  const tasks = await readdir(`${proc}/${pid}/task`).catch(() => [] as string[]);
  const out: number[] = [];
  for (const t of tasks) {
    const children = await readFile(`${proc}/${pid}/task/${t}/children`, "utf8").catch(() => "");
    for (const c of children.split(" ")) if (/^\d+$/.test(c)) out.push(Number(c));
  }
  return out;
}

/**
 * Whether `pid` is `runc init` of a container that was created and never
 * started: it waits for `runc start` on the exec FIFO, running nothing of the container's.
 */
export async function isRuncInit(pid: number, proc = "/proc"): Promise<boolean> {
  const args = await readFile(`${proc}/${pid}/cmdline`, "utf8").then((t) => t.split("\0").filter(Boolean), () => [] as string[]);
  return args.length === 2 && /(^|\/)runc$/.test(args[0]!) && args[1] === "init";
}
