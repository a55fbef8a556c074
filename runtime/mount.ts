// Mounting containerd's snapshot mounts briefly, e.g. to read /etc/passwd from
// a container's rootfs before it exists (as containerd's WithUser does).
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface MountSpec {
  type: string;
  source: string;
  options: string[];
}

export async function withTempMount<T>(mounts: MountSpec[], fn: (root: string) => Promise<T>): Promise<T> {
  const target = await mkdtemp("/tmp/crib-mount-");
  const mounted: string[] = [];
  try {
    for (const m of mounts) {
      const options = m.type === "bind" ? [...m.options.filter((o) => o !== "rw"), "ro"] : m.options;
      await run("mount", ["-t", m.type, ...(options.length ? ["-o", options.join(",")] : []), m.source, target]);
      mounted.push(target);
    }
    return await fn(target);
  } finally {
    for (const t of mounted.reverse()) await run("umount", [t]).catch(() => run("umount", ["-l", t]).catch(() => undefined));
    await rm(target, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * The layer directories of an overlay (or bind) mount, topmost first, as the
 * host sees them: files of a fresh snapshot can be read there without mounting.
 */
export function layerDirs(mounts: MountSpec[]): string[] | undefined {
  if (mounts.length !== 1) return undefined;
  const [m] = mounts;
  if (m!.type === "bind") return [m!.source];
  if (m!.type !== "overlay") return undefined;
  const opt = (name: string) => m!.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
  const upper = opt("upperdir");
  const lower = opt("lowerdir")?.split(":") ?? [];
  return [...(upper ? [upper] : []), ...lower];
}
