// The device nodes a spec needs, read from the host ahead of building it:
// every host device for a privileged container, and each device the CRI asks for.
import { readdir, realpath, stat } from "node:fs/promises";
import type { Device } from "../../proto/gen/cri/runtime/v1/Device.js";
import { invalidArgument } from "../errors.js";
import type { DeviceType, LinuxDevice } from "./types.js";

/** A CRI device as found on the host, ready for the spec. */
export interface ResolvedDevice extends LinuxDevice {
  /** The host path it was found at, for messages. */
  hostPath: string;
  /** Device cgroup access: some of "rwm". */
  permissions: string;
}

// Linux's dev_t encoding (glibc's gnu_dev_major/minor).
export const deviceMajor = (rdev: bigint): number => Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
export const deviceMinor = (rdev: bigint): number => Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));

function deviceType(stats: { isCharacterDevice(): boolean; isBlockDevice(): boolean; isFIFO(): boolean }): DeviceType | undefined {
  if (stats.isCharacterDevice()) return "c";
  if (stats.isBlockDevice()) return "b";
  if (stats.isFIFO()) return "p";
  return undefined;
}

/** The device node at `hostPath`, to appear at `containerPath`; undefined when it is not a device. */
export async function deviceAt(hostPath: string, containerPath: string): Promise<LinuxDevice | undefined> {
  const big = await stat(hostPath, { bigint: true });
  const type = deviceType(big);
  if (type === undefined) return undefined;
  return {
    path: containerPath,
    type,
    major: deviceMajor(big.rdev),
    minor: deviceMinor(big.rdev),
    fileMode: Number(big.mode) & 0o777,
    uid: Number(big.uid),
    gid: Number(big.gid),
  };
}

// Directories under /dev that hold no real devices or belong to the container's own /dev.
const skippedDirs = new Set(["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"]);

/** Every device node under /dev, for privileged containers; symlinks and /dev/console are skipped. */
export const hostDevices = (dir = "/dev"): Promise<LinuxDevice[]> => devicesUnder(dir, "/dev");

/** The device nodes under `dir`, each at the same relative path under `containerDir`. */
async function devicesUnder(dir: string, containerDir: string): Promise<LinuxDevice[]> {
  const found: LinuxDevice[] = [];
  const walk = async (path: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch {
      return; // vanished or unreadable: nothing to share
    }
    for (const entry of entries) {
      const full = `${path}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!skippedDirs.has(entry.name)) await walk(full);
        continue;
      }
      if (entry.isSymbolicLink() || full === `${dir}/console`) continue;
      if (!entry.isCharacterDevice() && !entry.isBlockDevice()) continue;
      try {
        const device = await deviceAt(full, `${containerDir}${full.slice(dir.length)}`);
        if (device !== undefined) found.push(device);
      } catch {
        // a device removed while walking
      }
    }
  };
  await walk(dir);
  return found;
}

const validPermissions = (p: string): boolean => p !== "" && /^[rwm]+$/.test(p) && new Set(p).size === p.length;

/**
 * The CRI's devices as found on the host. A host_path naming a directory
 * brings every device beneath it, under container_path.
 */
export async function resolveDevices(devices: readonly Device[]): Promise<ResolvedDevice[]> {
  const resolved: ResolvedDevice[] = [];
  for (const [i, device] of devices.entries()) {
    const field = `devices[${i}]`;
    if (device.host_path === "") throw invalidArgument(`${field}.host_path is required`);
    const containerPath = device.container_path === "" ? device.host_path : device.container_path;
    if (!containerPath.startsWith("/")) throw invalidArgument(`${field}.container_path "${containerPath}" must be absolute`);
    const permissions = device.permissions === "" ? "rwm" : device.permissions;
    if (!validPermissions(permissions)) {
      throw invalidArgument(`${field}.permissions "${device.permissions}" must be letters of "rwm"`);
    }
    let real: string;
    try {
      real = await realpath(device.host_path);
    } catch (err) {
      throw invalidArgument(`${field}: host device "${device.host_path}": ${(err as Error).message}`);
    }
    if ((await stat(real)).isDirectory()) {
      for (const inner of await devicesUnder(real, containerPath)) {
        resolved.push({ ...inner, hostPath: `${real}${inner.path.slice(containerPath.length)}`, permissions });
      }
      continue;
    }
    const node = await deviceAt(real, containerPath);
    if (node === undefined) throw invalidArgument(`${field}: "${device.host_path}" is not a device`);
    resolved.push({ ...node, hostPath: device.host_path, permissions });
  }
  return resolved;
}
