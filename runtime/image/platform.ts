// Which manifest of a multi-platform index this host runs: the rules of
// containerd's platforms package (normalise, then an ordered list of platforms
// the host can run, best first).
import type { Descriptor, Platform } from "./oci.js";

/** Node's process.arch names → Go's GOARCH, as OCI platforms and Docker seccomp profiles spell them. */
export const GO_ARCHITECTURES: Readonly<Record<string, string>> = {
  x64: "amd64",
  ia32: "386",
  arm64: "arm64",
  arm: "arm",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
  loong64: "loong64",
  mips64el: "mips64le",
};

/** This host's platform, from process.arch (and the ARM version Node was built for). */
export function hostPlatform(): Platform {
  const architecture = GO_ARCHITECTURES[process.arch] ?? process.arch;
  if (architecture !== "arm") return { os: "linux", architecture };
  const armVersion = (process.config.variables as { arm_version?: string | number }).arm_version;
  return normalizePlatform({ os: "linux", architecture, variant: armVersion === undefined ? "" : `v${armVersion}` });
}

export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase() === "macos" ? "darwin" : platform.os.toLowerCase();
  let architecture = platform.architecture.toLowerCase();
  let variant = (platform.variant ?? "").toLowerCase();
  switch (architecture) {
    case "i386":
      architecture = "386";
      variant = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      architecture = "amd64";
      if (variant === "v1") variant = "";
      break;
    case "aarch64":
    case "arm64":
      architecture = "arm64";
      if (variant === "8" || variant === "v8" || variant === "v8.0") variant = "";
      break;
    case "armhf":
      architecture = "arm";
      variant = "v7";
      break;
    case "armel":
      architecture = "arm";
      variant = "v6";
      break;
    case "arm":
      if (variant === "") variant = "v7";
      else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
      break;
  }
  return variant === "" ? { os, architecture } : { os, architecture, variant };
}

/** `linux/arm/v7`, `linux/amd64` */
export function parsePlatform(spec: string): Platform {
  const parts = spec.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new Error(`invalid platform "${spec}": want os/architecture[/variant]`);
  }
  const [os = "", architecture = "", variant] = parts;
  return normalizePlatform(variant === undefined ? { os, architecture } : { os, architecture, variant });
}

export const formatPlatform = (platform: Platform): string =>
  [platform.os, platform.architecture, platform.variant].filter((p) => p !== undefined && p !== "").join("/");

// The platforms a host of `platform` runs, best first.
function compatible(platform: Platform): Platform[] {
  const p = normalizePlatform(platform);
  const out: Platform[] = [p];
  const version = Number.parseInt((p.variant ?? "").replace(/^v/, ""), 10);
  switch (p.architecture) {
    case "amd64":
      for (let v = Number.isNaN(version) ? 0 : version - 1; v >= 1; v--) {
        out.push(v === 1 ? { os: p.os, architecture: "amd64" } : { os: p.os, architecture: "amd64", variant: `v${v}` });
      }
      out.push({ os: p.os, architecture: "386" });
      break;
    case "arm":
      for (let v = Number.isNaN(version) ? 0 : version - 1; v >= 5; v--) {
        out.push({ os: p.os, architecture: "arm", variant: `v${v}` });
      }
      break;
    case "arm64":
      out.push(...compatible({ os: p.os, architecture: "arm", variant: "v8" }));
      break;
  }
  return out;
}

const samePlatform = (a: Platform, b: Platform): boolean =>
  a.os === b.os && a.architecture === b.architecture && (a.variant ?? "") === (b.variant ?? "");

/**
 * Ranks a candidate for a host of `want`: 0 is an exact match, higher is a
 * worse but runnable one, undefined is not runnable.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const c = normalizePlatform(candidate);
  const rank = compatible(want).findIndex((p) => samePlatform(p, c));
  return rank < 0 ? undefined : rank;
}

/** The best manifest of an index for `want`; the first one wins a tie. */
export function selectPlatformManifest(manifests: readonly Descriptor[], want: Platform): Descriptor | undefined {
  let best: Descriptor | undefined;
  let bestRank = Infinity;
  for (const manifest of manifests) {
    if (manifest.platform === undefined) continue;
    const rank = platformRank(want, manifest.platform);
    if (rank !== undefined && rank < bestRank) {
      best = manifest;
      bestRank = rank;
    }
  }
  return best;
}
