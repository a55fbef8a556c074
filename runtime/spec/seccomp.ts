// Which seccomp profile a container or sandbox gets, and Localhost profiles
// (Docker's profile format, or an OCI LinuxSeccomp) turned into the spec's form.
import { readFile } from "node:fs/promises";
import { GO_ARCHITECTURES } from "../image/platform.js";
import { isAbsolute, join } from "node:path";
import type { SecurityProfile } from "../../proto/gen/cri/runtime/v1/SecurityProfile.js";
import { invalidArgument } from "../errors.js";
import { fromSecurityProfile, type ProfileChoice } from "./security-profile.js";
import { defaultSeccompProfile } from "./seccomp-default.js";
import type { Seccomp, SeccompAction, SeccompArg, SeccompOperator, SeccompSyscall } from "./types.js";

export type SeccompChoice = ProfileChoice<{ kind: "localhost"; path: string }>;

/** A Localhost profile read from disk ahead of building the spec. */
export interface LoadedSeccompProfile {
  path: string;
  profile: unknown;
}

/**
 * The profile asked for by `seccomp`, else by the deprecated
 * `seccomp_profile_path` ("runtime/default", "docker/default", "unconfined",
 * "localhost/<path>"), else `fallback`. Relative Localhost paths are taken
 * under `profileRoot`.
 */
export function seccompChoice(
  profile: SecurityProfile | null | undefined,
  legacyPath: string,
  profileRoot: string,
  fallback: "unconfined" | "runtime-default",
  field: string,
): SeccompChoice {
  const localhost = (ref: string, what: string): SeccompChoice => {
    if (ref === "") throw invalidArgument(`${what}: a Localhost seccomp profile needs a path`);
    if (isAbsolute(ref)) return { kind: "localhost", path: ref };
    if (profileRoot === "") throw invalidArgument(`${what}: seccomp profile "${ref}" is not an absolute path`);
    return { kind: "localhost", path: join(profileRoot, ref) };
  };
  const chosen = fromSecurityProfile(profile, (ref) => localhost(ref, `${field}.seccomp.localhost_ref`));
  if (chosen) return chosen;
  switch (legacyPath) {
    case "":
      return { kind: fallback };
    case "runtime/default":
    case "docker/default":
      return { kind: "runtime-default" };
    case "unconfined":
      return { kind: "unconfined" };
  }
  if (legacyPath.startsWith("localhost/")) {
    return localhost(legacyPath.slice("localhost/".length), `${field}.seccomp_profile_path`);
  }
  throw invalidArgument(`${field}.seccomp_profile_path: unknown seccomp profile "${legacyPath}"`);
}

/** Reads a Localhost profile (the one async part of seccomp). */
export async function readSeccompProfile(path: string): Promise<LoadedSeccompProfile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw invalidArgument(`seccomp profile "${path}": ${(err as Error).message}`);
  }
  try {
    return { path, profile: JSON.parse(text) as unknown };
  } catch (err) {
    throw invalidArgument(`seccomp profile "${path}": not JSON: ${(err as Error).message}`);
  }
}

/** The spec's seccomp for a choice, given the container's bounding set and a Localhost profile read beforehand. */
export function seccompFor(
  choice: SeccompChoice,
  bounding: readonly string[],
  arch: string,
  loaded: LoadedSeccompProfile | undefined,
): Seccomp | undefined {
  switch (choice.kind) {
    case "unconfined":
      return undefined;
    case "runtime-default":
      return defaultSeccompProfile(bounding, arch);
    case "localhost":
      if (loaded === undefined || loaded.path !== choice.path) {
        throw invalidArgument(`seccomp profile "${choice.path}" was not loaded before building the spec`);
      }
      return seccompFromProfile(loaded.profile, loaded.path, bounding, arch);
  }
}

const actions = new Set<string>([
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_LOG",
  "SCMP_ACT_NOTIFY",
]);
const operators = new Set<string>([
  "SCMP_CMP_NE",
  "SCMP_CMP_LT",
  "SCMP_CMP_LE",
  "SCMP_CMP_EQ",
  "SCMP_CMP_GE",
  "SCMP_CMP_GT",
  "SCMP_CMP_MASKED_EQ",
]);

// Docker profiles name architectures by Go's GOARCH in includes/excludes.
const goArch = GO_ARCHITECTURES;
const nativeScmpArch: Readonly<Record<string, string>> = {
  x64: "SCMP_ARCH_X86_64",
  ia32: "SCMP_ARCH_X86",
  arm64: "SCMP_ARCH_AARCH64",
  arm: "SCMP_ARCH_ARM",
  ppc64: "SCMP_ARCH_PPC64LE",
  s390x: "SCMP_ARCH_S390X",
  riscv64: "SCMP_ARCH_RISCV64",
};

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : []);

/**
 * A Localhost profile in Docker's format (archMap, syscalls with
 * includes/excludes by capability and architecture) or already an OCI
 * LinuxSeccomp, as the spec's seccomp. Kernel-version conditions are taken as met.
 */
export function seccompFromProfile(profile: unknown, path: string, bounding: readonly string[], arch: string): Seccomp {
  const bad = (what: string) => invalidArgument(`seccomp profile "${path}": ${what}`);
  if (!isObject(profile)) throw bad("not a JSON object");
  const action = (v: unknown, where: string): SeccompAction => {
    if (typeof v !== "string" || !actions.has(v)) throw bad(`${where}: unknown action ${JSON.stringify(v)}`);
    return v as SeccompAction;
  };
  const errno = (v: unknown, where: string): number | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw bad(`${where}: errnoRet must be a non-negative integer`);
    return v;
  };

  const seccomp: Seccomp = { defaultAction: action(profile.defaultAction, "defaultAction") };
  const defaultErrnoRet = errno(profile.defaultErrnoRet, "defaultErrnoRet");
  if (defaultErrnoRet !== undefined) seccomp.defaultErrnoRet = defaultErrnoRet;

  const architectures = strings(profile.architectures);
  const archMap = Array.isArray(profile.archMap) ? profile.archMap.filter(isObject) : [];
  if (architectures.length > 0 && archMap.length > 0) throw bad("both architectures and archMap are set");
  if (architectures.length > 0) seccomp.architectures = architectures;
  const native = archMap.find((m) => m.architecture === nativeScmpArch[arch]);
  if (native !== undefined) seccomp.architectures = [String(native.architecture), ...strings(native.subArchitectures)];

  const flags = strings(profile.flags);
  if (flags.length > 0) seccomp.flags = flags;
  if (typeof profile.listenerPath === "string" && profile.listenerPath !== "") seccomp.listenerPath = profile.listenerPath;
  if (typeof profile.listenerMetadata === "string" && profile.listenerMetadata !== "") {
    seccomp.listenerMetadata = profile.listenerMetadata;
  }

  const go = goArch[arch] ?? arch;
  const applies = (entry: Json): boolean => {
    const includes = isObject(entry.includes) ? entry.includes : {};
    const excludes = isObject(entry.excludes) ? entry.excludes : {};
    if (strings(excludes.arches).includes(go)) return false;
    if (strings(excludes.caps).some((c) => bounding.includes(c))) return false;
    const arches = strings(includes.arches);
    if (arches.length > 0 && !arches.includes(go)) return false;
    if (!strings(includes.caps).every((c) => bounding.includes(c))) return false;
    return true;
  };

  const syscalls: SeccompSyscall[] = [];
  const entries = profile.syscalls === undefined || profile.syscalls === null ? [] : profile.syscalls;
  if (!Array.isArray(entries)) throw bad("syscalls must be a list");
  entries.forEach((entry: unknown, i) => {
    const where = `syscalls[${i}]`;
    if (!isObject(entry)) throw bad(`${where} is not an object`);
    if (!applies(entry)) return;
    const names = strings(entry.names);
    if (typeof entry.name === "string" && entry.name !== "") {
      if (names.length > 0) throw bad(`${where}: both name and names are set`);
      names.push(entry.name);
    }
    if (names.length === 0) throw bad(`${where}: no syscall names`);
    const syscall: SeccompSyscall = { names, action: action(entry.action, `${where}.action`) };
    const errnoRet = errno(entry.errnoRet, `${where}.errnoRet`);
    if (errnoRet !== undefined) syscall.errnoRet = errnoRet;
    if (Array.isArray(entry.args) && entry.args.length > 0) {
      syscall.args = entry.args.map((arg: unknown, j): SeccompArg => {
        const at = `${where}.args[${j}]`;
        if (!isObject(arg)) throw bad(`${at} is not an object`);
        const { index, value, valueTwo, op } = arg;
        if (typeof index !== "number" || typeof value !== "number") throw bad(`${at}: index and value must be numbers`);
        if (typeof op !== "string" || !operators.has(op)) throw bad(`${at}: unknown operator ${JSON.stringify(op)}`);
        const out: SeccompArg = { index, value, op: op as SeccompOperator };
        if (typeof valueTwo === "number" && valueTwo !== 0) out.valueTwo = valueTwo;
        return out;
      });
    }
    syscalls.push(syscall);
  });
  if (syscalls.length > 0) seccomp.syscalls = syscalls;
  return seccomp;
}
