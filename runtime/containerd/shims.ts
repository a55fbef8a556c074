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

/** Every runc v2 shim on the host, from /proc. */
export async function listShims(proc = "/proc"): Promise<ShimProcess[]> {
  const shims: ShimProcess[] = [];
  for (const name of await readdir(proc).catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const args = await readFile(`${proc}/${name}/cmdline`, "utf8").then((t) => t.split("\0").filter(Boolean), () => [] as string[]);
    if (!args[0]?.endsWith("containerd-shim-runc-v2")) continue;
    const namespace = flag(args, "-namespace");
    const id = flag(args, "-id");
    const address = flag(args, "-address");
    if (namespace && id && address && !args.includes("delete") && !args.includes("start")) shims.push({ pid: Number(name), namespace, id, address });
  }
  return shims;
}

/** Whether any process has `pid` as its parent (a shim with children still runs containers). */
export async function hasChildren(pid: number, proc = "/proc"): Promise<boolean> {
  const tasks = await readdir(`${proc}/${pid}/task`).catch(() => [] as string[]);
  for (const t of tasks) {
    const children = await readFile(`${proc}/${pid}/task/${t}/children`, "utf8").catch(() => "");
    if (children.trim() !== "") return true;
  }
  return false;
}
