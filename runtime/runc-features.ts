// What a runtime handler's runc can do, from `runc features` (runc ≥ 1.1).
// Read once at start, as containerd does, so Status can tell kubelet which
// handlers support recursive read-only mounts.
import { execFile } from "node:child_process";
import { release } from "node:os";
import { promisify } from "node:util";

const run = promisify(execFile);
const PROBE_TIMEOUT_MS = 5000;

export interface RuncFeatures {
  /** "rro" mounts work: runc knows the option and the kernel has mount_setattr (5.12). */
  recursiveReadOnly: boolean;
}

/** Kernel release "6.1.0-18-amd64" → at least major.minor? */
export function kernelAtLeast(releaseText: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(releaseText);
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > major || (maj === major && min >= minor);
}

export function parseRuncFeatures(json: string, kernelRelease: string): RuncFeatures {
  const features = JSON.parse(json) as { mountOptions?: unknown };
  const options = Array.isArray(features.mountOptions) ? features.mountOptions : [];
  return { recursiveReadOnly: options.includes("rro") && kernelAtLeast(kernelRelease, 5, 12) };
}

/** What `binary features` reports; none of it when the binary is too old, missing or fails. */
export async function probeRuncFeatures(binary: string): Promise<RuncFeatures> {
  try {
    const { stdout } = await run(binary || "runc", ["features"], { timeout: PROBE_TIMEOUT_MS });
    return parseRuncFeatures(stdout, release());
  } catch {
    return { recursiveReadOnly: false };
  }
}
