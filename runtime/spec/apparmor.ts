// AppArmor for containers, on nodes whose kernel has it (Debian and Ubuntu
// enable it by default). As containerd's CRI plugin does: a container that asks
// for nothing or RuntimeDefault runs under crib's default profile, loaded with
// apparmor_parser when crib starts; Localhost names a profile the operator
// loaded (an unloaded one fails CreateContainer); privileged containers and
// Unconfined run unconfined. On nodes without AppArmor nothing is applied.
import { spawn } from "node:child_process";
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { SecurityProfile } from "../../proto/gen/cri/runtime/v1/SecurityProfile.js";
import { invalidArgument } from "../errors.js";
import { fromSecurityProfile, type ProfileChoice } from "./security-profile.js";

export const DEFAULT_APPARMOR_PROFILE = "crib-default";

export type AppArmorChoice = ProfileChoice<{ kind: "localhost"; name: string }>;

/** What the node's AppArmor can do for containers. */
export interface AppArmorSupport {
  /** the kernel enforces AppArmor */
  enabled: boolean;
  /** the profile RuntimeDefault means, when crib could load it */
  defaultProfile?: string;
}

/**
 * The profile asked for by `apparmor`, else by the deprecated
 * `apparmor_profile` ("runtime/default", "unconfined", "localhost/<name>"),
 * else RuntimeDefault, as the CRI says for an unset profile.
 */
export function appArmorChoice(profile: SecurityProfile | null | undefined, legacy: string, field: string): AppArmorChoice {
  const localhost = (ref: string, what: string): AppArmorChoice => {
    const name = ref.startsWith("localhost/") ? ref.slice("localhost/".length) : ref;
    if (name === "") throw invalidArgument(`${what}: a Localhost AppArmor profile needs a name`);
    return { kind: "localhost", name };
  };
  const chosen = fromSecurityProfile(profile, (ref) => localhost(ref, `${field}.apparmor.localhost_ref`));
  if (chosen) return chosen;
  if (legacy === "" || legacy === "runtime/default") return { kind: "runtime-default" };
  if (legacy === "unconfined") return { kind: "unconfined" };
  if (legacy.startsWith("localhost/")) return localhost(legacy, `${field}.apparmor_profile`);
  throw invalidArgument(`${field}.apparmor_profile: unknown AppArmor profile "${legacy}"`);
}

/** The spec's process.apparmorProfile for a choice; undefined runs unconfined. */
export function appArmorProfileFor(choice: AppArmorChoice, privileged: boolean, support: AppArmorSupport): string | undefined {
  if (!support.enabled) return undefined;
  switch (choice.kind) {
    case "unconfined":
      return undefined;
    case "runtime-default":
      return privileged ? undefined : support.defaultProfile;
    case "localhost":
      return choice.name;
  }
}

/** Whether the kernel has AppArmor on (as runc and containerd decide it). `sys` is /sys. */
export async function appArmorEnabled(sys = "/sys"): Promise<boolean> {
  const securityfs = await access(join(sys, "kernel/security/apparmor")).then(() => true, () => false);
  if (!securityfs) return false;
  const enabled = await readFile(join(sys, "module/apparmor/parameters/enabled"), "utf8").catch(() => "");
  return enabled.startsWith("Y");
}

/** The names of the profiles loaded in the kernel ("name (mode)" lines). */
export async function loadedProfiles(sys = "/sys"): Promise<Set<string>> {
  const text = await readFile(join(sys, "kernel/security/apparmor/profiles"), "utf8").catch(() => "");
  return new Set(text.split("\n").filter(Boolean).map((line) => line.replace(/ \([^)]*\)$/, "")));
}

/** Fails CreateContainer for a Localhost profile the kernel does not have. */
export async function requireLoaded(choice: AppArmorChoice, support: AppArmorSupport, sys = "/sys"): Promise<void> {
  if (!support.enabled || choice.kind !== "localhost") return;
  if (!(await loadedProfiles(sys)).has(choice.name)) {
    throw invalidArgument(`AppArmor profile "${choice.name}" is not loaded (load it with apparmor_parser; see ${join(sys, "kernel/security/apparmor/profiles")})`);
  }
}

/**
 * crib's default profile: what a container normally does is allowed; mounting,
 * writing kernel settings under /proc and /sys, reading kernel memory and
 * security state, and signalling or tracing processes outside the profile are not.
 */
export function defaultProfileText(name = DEFAULT_APPARMOR_PROFILE): string {
  return `#include <tunables/global>

profile ${name} flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  deny mount,

  # signals and ptrace only among processes of this profile (and from the node)
  signal (receive) peer=unconfined,
  signal (send,receive) peer=${name},
  ptrace (trace,read,tracedby,readby) peer=${name},

  # /proc: no writes to its top-level files or to anything but the process
  # directories (/proc/<pid>, /proc/self) and /proc/sys/kernel/shm*
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}/** w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,

  # /sys: read-only but for the cgroup file system
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
`;
}

/**
 * Runs apparmor_parser on `text`: `replace` loads it into the kernel (or
 * replaces it), otherwise it is only compiled (a syntax check).
 */
export function apparmorParser(text: string, opts: { replace: boolean; parser?: string }): Promise<void> {
  const args = opts.replace ? ["--replace", "--skip-cache"] : ["--skip-kernel-load", "--skip-cache"];
  return new Promise((resolve, reject) => {
    const child = spawn(opts.parser ?? "apparmor_parser", args, { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`apparmor_parser exited ${code}: ${stderr.trim()}`))));
    child.stdin.end(text);
  });
}

/** Loads crib's default profile unless the kernel has it; returns its name, or undefined (with why) when it cannot. */
export async function ensureDefaultProfile(sys = "/sys"): Promise<{ name?: string; error?: string }> {
  if ((await loadedProfiles(sys)).has(DEFAULT_APPARMOR_PROFILE)) return { name: DEFAULT_APPARMOR_PROFILE };
  try {
    await apparmorParser(defaultProfileText(), { replace: true });
    return { name: DEFAULT_APPARMOR_PROFILE };
  } catch (err) {
    return { error: (err as Error).message };
  }
}
