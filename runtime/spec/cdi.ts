// CDI, the Container Device Interface (github.com/cncf-tags/container-device-interface):
// vendors describe devices in spec files as edits to a container's OCI spec;
// kubelet names the devices a container gets. This file parses and checks spec
// files, picks the devices asked for and applies their edits. All of it is pure:
// runtime/cdi-registry.ts reads the files and stats the host's device nodes.
import { extname } from "node:path";
import { createRequire } from "node:module";
import type { ContainerConfig } from "../../proto/gen/cri/runtime/v1/ContainerConfig.js";
import { invalidArgument } from "../errors.js";
import type { BuiltSpec } from "./base.js";
import { cleanPath, mergeEnv } from "./base.js";
import type { DeviceCgroupRule, DeviceType, LinuxDevice, Mount, Spec } from "./types.js";

/** Older kubelets (before CDI_devices) and device plugins name devices in annotations `cdi.k8s.io/<key>: vendor.com/gpu=0,vendor.com/gpu=1`. */
// yaml is loaded with the first YAML spec file: most nodes have none
const require = createRequire(import.meta.url);
let yaml: typeof import("yaml") | undefined;
const parseYaml = (text: string, options: { version: "1.1" }): unknown => (yaml ??= require("yaml") as typeof import("yaml")).parse(text, options);

export const CDI_ANNOTATION_PREFIX = "cdi.k8s.io/";
export const CDI_SPEC_EXTENSIONS: readonly string[] = [".json", ".yaml", ".yml"];

export const hookNames = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] as const;
export type HookName = (typeof hookNames)[number];

/** An OCI hook; crib's Spec type leaves hooks out, so CDI adds them here. */
export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}
export type Hooks = Partial<Record<HookName, Hook[]>>;
export type SpecWithHooks = Spec & { hooks?: Hooks };

export interface CdiDeviceNode {
  /** In the container. */
  path: string;
  /** On the host; `path` when absent. */
  hostPath?: string;
  type?: DeviceType;
  major?: number;
  minor?: number;
  fileMode?: number;
  /** Some of "rwm", or "none" for no device cgroup rule; "rwm" when absent. */
  permissions?: string;
  uid?: number;
  gid?: number;
}

export interface CdiMount {
  hostPath: string;
  containerPath: string;
  type?: string;
  options?: string[];
}

export interface CdiHook extends Hook {
  hookName: HookName;
}

export interface CdiEdits {
  env: string[];
  deviceNodes: CdiDeviceNode[];
  mounts: CdiMount[];
  hooks: CdiHook[];
  additionalGids: number[];
  /** Present in the file; crib does not apply it. */
  intelRdt: boolean;
  netDevices: boolean;
}

export interface CdiSpec {
  file: string;
  version: string;
  /** vendor/class */
  kind: string;
  edits: CdiEdits;
  /** By unqualified name. */
  devices: ReadonlyMap<string, CdiEdits>;
}

export class CdiSpecError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`CDI spec ${file}: ${problem}`);
    this.name = "CdiSpecError";
  }
}

// The spec's versions in order; 0.1 and 0.2 had another format.
const versions = ["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"];
// The parser's names: a vendor or class starts with a letter; a device may start with a digit and hold colons.
const VENDOR_OR_CLASS = /^[A-Za-z](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const DEVICE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?$/;
const PERMISSIONS = /^(?!.*(.).*\1)[rwm]+$/;

type Obj = Record<string, unknown>;
const isObject = (value: unknown): value is Obj => typeof value === "object" && value !== null && !Array.isArray(value);

/** Reads the fields of one object of a spec file; what it throws names the file and the field. */
class Fields {
  constructor(readonly file: string, readonly at: string, readonly obj: Obj, known?: readonly string[]) {
    const unknown = known && Object.keys(obj).find((k) => !known.includes(k));
    if (unknown) this.fail(unknown, "unknown field");
  }

  fail(key: string, problem: string): never {
    throw new CdiSpecError(this.file, `${this.at}${key}: ${problem}`);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  string(key: string): string | undefined {
    const v = this.obj[key];
    if (!this.has(key)) return undefined;
    if (typeof v !== "string") this.fail(key, `expected a string, got ${JSON.stringify(v)}`);
    return v;
  }

  required(key: string): string {
    const v = this.string(key);
    if (v === undefined || v === "") this.fail(key, "is required");
    return v;
  }

  #list(key: string): unknown[] {
    const v = this.obj[key] ?? [];
    if (!Array.isArray(v)) this.fail(key, "expected a list");
    return v;
  }

  strings(key: string, check: (s: string) => boolean = () => true, want = "a string"): string[] {
    return this.#list(key).map((s, i) => {
      if (typeof s !== "string" || !check(s)) this.fail(`${key}[${i}]`, `expected ${want}, got ${JSON.stringify(s)}`);
      return s;
    });
  }

  uint(key: string): number | undefined {
    return this.has(key) ? this.#uint(key, this.obj[key]) : undefined;
  }

  uints(key: string): number[] {
    return this.#list(key).map((n, i) => this.#uint(`${key}[${i}]`, n));
  }

  #uint(key: string, v: unknown): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff) this.fail(key, `expected an integer from 0 to 4294967295, got ${JSON.stringify(v)}`);
    return v;
  }

  objects(key: string, known?: readonly string[]): Fields[] {
    return this.#list(key).map((o, i) => this.object(`${key}[${i}]`, known, o));
  }

  object(key: string, known?: readonly string[], value: unknown = this.obj[key]): Fields {
    if (!isObject(value)) this.fail(key, "expected an object");
    return new Fields(this.file, `${this.at}${key}.`, value, known);
  }

  /** The number of annotations. */
  annotations(key: string): number {
    const v = this.obj[key] ?? {};
    if (!isObject(v) || Object.values(v).some((s) => typeof s !== "string")) this.fail(key, "expected a map of strings");
    return Object.keys(v).length;
  }
}

const isEnv = (s: string): boolean => s.indexOf("=") > 0;

function parseEdits(parent: Fields, key: string): CdiEdits {
  // Go's decoder matches names regardless of case: the spec's additionalGids is its additionalGIDs
  const f = parent.has(key)
    ? parent.object(key, ["env", "deviceNodes", "mounts", "hooks", "additionalGids", "additionalGIDs", "intelRdt", "netDevices"])
    : new Fields(parent.file, `${parent.at}${key}.`, {});
  const deviceNodes = f.objects("deviceNodes", ["path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"]).map((d) => {
    const node: CdiDeviceNode = { path: d.required("path") };
    const hostPath = d.string("hostPath");
    if (hostPath) node.hostPath = hostPath;
    const type = d.string("type");
    if (type && !["b", "c", "u", "p"].includes(type)) d.fail("type", `"${type}" is not one of b, c, u, p`);
    if (type) node.type = type as DeviceType;
    for (const field of ["major", "minor", "fileMode", "uid", "gid"] as const) {
      const n = d.uint(field);
      if (n !== undefined) node[field] = n;
    }
    const permissions = d.string("permissions");
    if (permissions && permissions !== "none" && !PERMISSIONS.test(permissions)) d.fail("permissions", `"${permissions}" must be letters of "rwm" or "none"`);
    if (permissions) node.permissions = permissions;
    return node;
  });
  const mounts = f.objects("mounts", ["hostPath", "containerPath", "type", "options"]).map((d) => {
    const mount: CdiMount = { hostPath: d.required("hostPath"), containerPath: d.required("containerPath") };
    const type = d.string("type");
    if (type) mount.type = type;
    if (d.has("options")) mount.options = d.strings("options");
    return mount;
  });
  const hooks = f.objects("hooks", ["hookName", "path", "args", "env", "timeout"]).map((d) => {
    const hookName = d.required("hookName");
    if (!(hookNames as readonly string[]).includes(hookName)) d.fail("hookName", `"${hookName}" is not one of ${hookNames.join(", ")}`);
    const path = d.required("path");
    if (!path.startsWith("/")) d.fail("path", `"${path}" must be absolute`);
    const hook: CdiHook = { hookName: hookName as HookName, path };
    if (d.has("args")) hook.args = d.strings("args");
    if (d.has("env")) hook.env = d.strings("env", isEnv, "NAME=value");
    const timeout = d.uint("timeout");
    if (timeout === 0) d.fail("timeout", "must be greater than zero");
    if (timeout !== undefined) hook.timeout = timeout;
    return hook;
  });
  if (f.has("intelRdt")) f.object("intelRdt");
  return {
    env: f.strings("env", isEnv, "NAME=value"),
    deviceNodes,
    mounts,
    hooks,
    additionalGids: f.uints(f.has("additionalGIDs") ? "additionalGIDs" : "additionalGids"),
    intelRdt: f.has("intelRdt"),
    netDevices: f.objects("netDevices").length > 0,
  };
}

const isEmpty = (e: CdiEdits): boolean =>
  e.env.length + e.deviceNodes.length + e.mounts.length + e.hooks.length + e.additionalGids.length === 0 && !e.intelRdt && !e.netDevices;

/** The earliest spec version that has every feature the file uses, as the reference library checks. */
function requiredVersion(kind: string, annotations: number, edits: CdiEdits[], names: string[]): string {
  if (edits.some((e) => e.netDevices)) return "1.1.0";
  if (edits.some((e) => e.intelRdt || e.additionalGids.length > 0)) return "0.7.0";
  if (annotations > 0 || kind.slice(kind.indexOf("/") + 1).includes(".")) return "0.6.0";
  if (names.some((n) => /^[0-9]/.test(n)) || edits.some((e) => e.deviceNodes.some((n) => n.hostPath !== undefined))) return "0.5.0";
  if (edits.some((e) => e.mounts.some((m) => m.type !== undefined))) return "0.4.0";
  return "0.3.0";
}

/** Parses and checks one spec file (JSON, or YAML by its extension); throws CdiSpecError naming the file and the field. */
export function parseCdiSpec(file: string, text: string): CdiSpec {
  let raw: unknown;
  try {
    // YAML 1.1 like the Go parser the reference library uses: `fileMode: 0666` is octal
    raw = extname(file) === ".json" ? JSON.parse(text) : parseYaml(text, { version: "1.1" });
  } catch (err) {
    throw new CdiSpecError(file, `not valid ${extname(file) === ".json" ? "JSON" : "YAML"}: ${(err as Error).message.split("\n")[0]}`);
  }
  if (!isObject(raw)) throw new CdiSpecError(file, "expected an object");
  const f = new Fields(file, "", raw, ["cdiVersion", "kind", "annotations", "devices", "containerEdits"]);
  const version = f.required("cdiVersion");
  if (!versions.includes(version)) f.fail("cdiVersion", `"${version}" is not a CDI version crib knows (${versions.join(", ")})`);
  const kind = f.required("kind");
  const slash = kind.indexOf("/");
  if (slash < 0 || !VENDOR_OR_CLASS.test(kind.slice(0, slash)) || !VENDOR_OR_CLASS.test(kind.slice(slash + 1))) {
    f.fail("kind", `"${kind}" is not vendor/class (e.g. vendor.com/gpu)`);
  }
  let annotations = f.annotations("annotations");
  const edits = parseEdits(f, "containerEdits");
  const devices = new Map<string, CdiEdits>();
  const rawDevices = f.objects("devices", ["name", "annotations", "containerEdits"]);
  if (rawDevices.length === 0) f.fail("devices", "at least one device is required");
  for (const device of rawDevices) {
    const name = device.required("name");
    if (!DEVICE_NAME.test(name)) device.fail("name", `"${name}" is not a valid device name`);
    if (devices.has(name)) device.fail("name", `device "${name}" is defined twice`);
    annotations += device.annotations("annotations");
    const deviceEdits = parseEdits(device, "containerEdits");
    if (isEmpty(deviceEdits)) device.fail("containerEdits", `device "${name}" has no edits`);
    devices.set(name, deviceEdits);
  }
  const needed = requiredVersion(kind, annotations, [edits, ...devices.values()], [...devices.keys()]);
  if (versions.indexOf(needed) > versions.indexOf(version)) f.fail("cdiVersion", `"${version}" is too old for the fields used: they need ${needed}`);
  return { file, version, kind, edits, devices };
}

/** `vendor.com/class=name` split in kind and name; undefined when it is not fully qualified. */
export function parseQualifiedName(qualified: string): { kind: string; name: string } | undefined {
  const eq = qualified.indexOf("=");
  const slash = qualified.indexOf("/");
  if (eq < 0 || slash < 0 || slash > eq) return undefined;
  const [vendor, cls, name] = [qualified.slice(0, slash), qualified.slice(slash + 1, eq), qualified.slice(eq + 1)];
  if (!VENDOR_OR_CLASS.test(vendor) || !VENDOR_OR_CLASS.test(cls) || !DEVICE_NAME.test(name)) return undefined;
  return { kind: `${vendor}/${cls}`, name };
}

/** The devices a container asks for, from CDI_devices and then the cdi.k8s.io/ annotations, each once. */
export function requestedCdiDevices(config: Pick<ContainerConfig, "CDI_devices" | "annotations">): string[] {
  const annotations = config.annotations ?? {};
  const fromAnnotations = Object.keys(annotations)
    .filter((key) => key.startsWith(CDI_ANNOTATION_PREFIX))
    .sort()
    .flatMap((key) => (annotations[key] ?? "").split(","));
  // `?? []`: a config recovered from an older record may lack the field
  const names = [...(config.CDI_devices ?? []).map((d) => d.name), ...fromAnnotations].map((n) => n.trim()).filter((n) => n !== "");
  return [...new Set(names)];
}

/** A loaded spec file with the priority of its directory (later directories win). */
export interface LoadedCdiSpec {
  spec: CdiSpec;
  priority: number;
}

export interface CdiIndex {
  /** Fully-qualified name → the spec and device that define it. */
  devices: ReadonlyMap<string, { spec: CdiSpec; edits: CdiEdits }>;
  /** Names defined by more than one file of one directory: the files, as the spec says, none wins. */
  conflicts: ReadonlyMap<string, string[]>;
}

/** Every device of the specs: a later directory overrides an earlier one; two files of one directory conflict. */
export function indexCdiSpecs(specs: readonly LoadedCdiSpec[]): CdiIndex {
  const best = new Map<string, { priority: number; defs: { spec: CdiSpec; edits: CdiEdits }[] }>();
  for (const { spec, priority } of specs) {
    for (const [name, edits] of spec.devices) {
      const qualified = `${spec.kind}=${name}`;
      const held = best.get(qualified);
      if (held === undefined || priority > held.priority) best.set(qualified, { priority, defs: [{ spec, edits }] });
      else if (priority === held.priority) held.defs.push({ spec, edits });
    }
  }
  const devices = new Map<string, { spec: CdiSpec; edits: CdiEdits }>();
  const conflicts = new Map<string, string[]>();
  for (const [name, { defs }] of best) {
    if (defs.length === 1) devices.set(name, defs[0]!);
    else conflicts.set(name, defs.map((d) => d.spec.file));
  }
  return { devices, conflicts };
}

/** A device node with what the host's node tells filled in (runtime/cdi-registry.ts). */
export interface ResolvedCdiNode {
  device: LinuxDevice;
  /** "" for no device cgroup rule. */
  access: string;
  /** The host node's owner, used when neither the spec nor the process user gives one. */
  hostOwner?: { uid: number; gid: number };
}

/** Edits and the device that brought them (for a spec's own edits, the first of its devices asked for). */
export type DeviceEdits = CdiEdits & { device: string };

export interface ResolvedCdiEdits extends Omit<DeviceEdits, "deviceNodes"> {
  deviceNodes: ResolvedCdiNode[];
}

export interface CdiResolution {
  /** The fully-qualified names, in the order asked. */
  devices: string[];
  /** Spec-level edits of each spec the first time one of its devices comes, then the device's own. */
  edits: ResolvedCdiEdits[];
}

/** Where crib looked, for messages. */
export interface CdiSearch {
  dirs: readonly string[];
  /** Spec files skipped as invalid. */
  skipped: readonly string[];
}

/** The edits of each device asked for; INVALID_ARGUMENT naming the first that is malformed or unknown, and where crib looked. */
export function cdiEditsFor(index: CdiIndex, names: readonly string[], search: CdiSearch): DeviceEdits[] {
  const edits: DeviceEdits[] = [];
  const seen = new Set<CdiSpec>();
  for (const name of names) {
    if (parseQualifiedName(name) === undefined) {
      throw invalidArgument(`CDI device "${name}" is not a fully-qualified name like vendor.com/class=name`);
    }
    const found = index.devices.get(name);
    if (found === undefined) {
      const conflict = index.conflicts.get(name);
      if (conflict) throw invalidArgument(`CDI device "${name}" is defined by more than one spec file of one directory: ${conflict.join(", ")}`);
      const skipped = search.skipped.length > 0 ? `; invalid spec files skipped: ${search.skipped.join(", ")}` : "";
      throw invalidArgument(`unknown CDI device "${name}": no CDI spec in ${search.dirs.join(", ") || "(no spec_dirs)"} defines it${skipped}`);
    }
    if (!seen.has(found.spec)) {
      seen.add(found.spec);
      if (!isEmpty(found.spec.edits)) edits.push({ ...found.spec.edits, device: name });
    }
    edits.push({ ...found.edits, device: name });
  }
  return edits;
}

/** Whether the host's node must be read: the type, numbers or mode are not all given. */
export const needsHostNode = (node: CdiDeviceNode): boolean =>
  node.type === undefined || (node.type !== "p" && !node.major) || node.fileMode === undefined;

/**
 * A node as the spec gives it, completed from the host's node at its hostPath
 * (undefined when that could not be read). The type and numbers are required
 * from one or the other; a type differing from the host's is an error.
 */
export function resolveCdiNode(device: string, node: CdiDeviceNode, host: LinuxDevice | undefined): ResolvedCdiNode {
  const hostPath = node.hostPath ?? node.path;
  const where = `CDI device "${device}": device node "${node.path}"`;
  let type = node.type;
  let major = node.major ?? 0;
  let minor = node.minor ?? 0;
  if (type === undefined || (type !== "p" && major === 0)) {
    if (host === undefined) throw invalidArgument(`${where}: host device "${hostPath}" is missing or not a device`);
    // "u" is an unbuffered character device: the host's node says "c"
    if (type !== undefined && (type === "u" ? "c" : type) !== host.type) {
      throw invalidArgument(`${where}: type "${type}" but host device "${hostPath}" is "${host.type}"`);
    }
    type ??= host.type;
    if (type !== "p") [major, minor] = [host.major, host.minor];
  }
  const fileMode = node.fileMode ?? host?.fileMode;
  const resolved: ResolvedCdiNode = {
    device: {
      path: node.path, type, major, minor,
      ...(fileMode === undefined ? {} : { fileMode }),
      ...(node.uid === undefined ? {} : { uid: node.uid }),
      ...(node.gid === undefined ? {} : { gid: node.gid }),
    },
    access: node.permissions === "none" ? "" : node.permissions ?? "rwm",
  };
  if (host?.uid !== undefined && host.gid !== undefined) resolved.hostOwner = { uid: host.uid, gid: host.gid };
  return resolved;
}

const depth = (path: string): number => cleanPath(path).split("/").length;

/**
 * The CDI edits applied to a built spec in order: env appended (a later value
 * replaces an earlier one), device nodes replacing any at the same path with a
 * device cgroup rule each, mounts replacing any at the same destination (then
 * every mount sorted by depth, as the reference library does), hooks,
 * additional groups. Intel RDT and network devices are warned about and left out.
 */
export function withCdiEdits(built: BuiltSpec, resolution: CdiResolution | undefined): BuiltSpec {
  if (resolution === undefined || resolution.edits.length === 0) return built;
  const spec: SpecWithHooks = structuredClone(built.spec);
  const warnings = [...built.warnings];
  const user = spec.process.user;
  for (const edits of resolution.edits) {
    spec.process.env = mergeEnv(spec.process.env, edits.env);
    for (const node of edits.deviceNodes) {
      // a node owned by the container's user, as the reference library does, so that a non-root container can open it
      const uid = node.device.uid ?? (user.uid > 0 ? user.uid : node.hostOwner?.uid);
      const gid = node.device.gid ?? (user.gid > 0 ? user.gid : node.hostOwner?.gid);
      const device: LinuxDevice = { ...node.device, ...(uid === undefined ? {} : { uid }), ...(gid === undefined ? {} : { gid }) };
      spec.linux.devices = [...(spec.linux.devices ?? []).filter((d) => d.path !== device.path), device];
      if ((device.type === "c" || device.type === "b" || device.type === "u") && node.access !== "") {
        const rule: DeviceCgroupRule = { allow: true, type: device.type === "b" ? "b" : "c", major: device.major, minor: device.minor, access: node.access };
        spec.linux.resources.devices.push(rule);
      }
    }
    for (const m of edits.mounts) {
      const mount: Mount = { destination: m.containerPath, source: m.hostPath, ...(m.type ? { type: m.type } : {}), ...(m.options ? { options: [...m.options] } : {}) };
      spec.mounts = [...spec.mounts.filter((x) => cleanPath(x.destination) !== cleanPath(mount.destination)), mount];
    }
    for (const { hookName, ...hook } of edits.hooks) {
      spec.hooks = { ...spec.hooks, [hookName]: [...(spec.hooks?.[hookName] ?? []), hook] };
    }
    const gids = [...new Set([...(user.additionalGids ?? []), ...edits.additionalGids.filter((g) => g !== 0)])];
    if (gids.length > 0) user.additionalGids = gids;
    if (edits.intelRdt) warnings.push(`CDI device "${edits.device}": intelRdt ignored: crib does not set Intel RDT`);
    if (edits.netDevices) warnings.push(`CDI device "${edits.device}": netDevices ignored: crib does not move network devices`);
  }
  spec.mounts.sort((a, b) => depth(a.destination) - depth(b.destination)); // stable: equal depths keep their order
  return { spec, warnings: [...new Set(warnings)] };
}
