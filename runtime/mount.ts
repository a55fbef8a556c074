// Mounting containerd's snapshot mounts on the host: briefly, e.g. to read
// /etc/passwd from a container's rootfs before it exists (as containerd's
// WithUser does), or for a container's lifetime (image volumes).
import { execFileOffThread } from "./process-runner.js";
import { mkdtemp, readFile, realpath, rm } from "node:fs/promises";
import { resolve } from "node:path";

const run = execFileOffThread;

export interface MountSpec {
  type: string;
  source: string;
  options: string[];
}

/** Mounts `mounts` on the directory `target`, in order; read-only when `readonly`. Nothing stays mounted if one fails. */
export async function mountAll(mounts: MountSpec[], target: string, readonly = false): Promise<void> {
  try {
    for (const m of mounts) {
      const options = readonly || m.type === "bind" ? [...m.options.filter((o) => o !== "rw"), "ro"] : m.options;
      await run("mount", ["-t", m.type, ...(options.length ? ["-o", options.join(",")] : []), m.source, target]);
    }
  } catch (err) {
    await unmountAll(target).catch(() => undefined);
    throw err;
  }
}

/** Unmounts everything mounted on `target` (lazily when busy); not mounted is fine. */
export async function unmountAll(target: string): Promise<void> {
  while (await isMountPoint(target)) await run("umount", [target]).catch(() => run("umount", ["-l", target]));
}

export async function withTempMount<T>(mounts: MountSpec[], fn: (root: string) => Promise<T>): Promise<T> {
  const target = await mkdtemp("/tmp/crib-mount-");
  try {
    await mountAll(mounts, target);
    return await fn(target);
  } finally {
    await unmountAll(target).catch(() => undefined);
    await rm(target, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Mount points from /proc/self/mountinfo, with its octal escapes decoded. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text.split("\n").filter(Boolean)
    .map((line) => (line.split(" ")[4] ?? "").replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export async function isMountPoint(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => resolve(path)); // mountinfo has no symlinks
  return (await mountPoints()).includes(real);
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
