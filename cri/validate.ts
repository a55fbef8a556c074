// Validation at the door: every request is checked here before its handler makes
// any side effect. Bad input is INVALID_ARGUMENT naming the field and the value.
// Two layers: a walk over the wire message by its proto descriptor (NUL bytes in
// any string, enum numbers outside their range, for every rpc), then the rules
// of each rpc's fields (paths, ports, addresses, names, resources in the kernel's range).
import { stat } from "node:fs/promises";
import { isIP } from "node:net";
import type { MessageTypeDefinition, PackageDefinition } from "@grpc/proto-loader";
import type * as cri from "../proto/gen/cri/types.js";
import { invalidArgument } from "../runtime/errors.js";
import { cleanPath, int64 } from "../runtime/spec/base.js";
import { allCapabilities } from "../runtime/spec/capabilities.js";
import type { HostFacts } from "../runtime/spec/host.js";
import { isDigest, parseNormalized } from "../runtime/image/reference.js";

/** A value as it appears in an error: JSON, cut to 64 characters. */
export function shown(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : String(value);
  return text.length > 64 ? `${text.slice(0, 60)}…${text.slice(-1)}` : text;
}

const bad = (field: string, value: unknown, why: string): never => {
  throw invalidArgument(`${field}: ${shown(value)} ${why}`);
};

// ---- the wire walk -------------------------------------------------------

interface FieldDescriptor { name: string; label: string; type: string; typeName: string }
interface DescriptorProto { name: string; field: FieldDescriptor[]; nestedType?: DescriptorProto[]; options?: { mapEntry?: boolean } | null }
interface EnumDescriptor { value: { name: string; number: number }[] }

/**
 * Checks a decoded request against its message type: no string holds a NUL
 * byte (it would be cut short or refused by the kernel, CNI or containerd, far
 * from here), and no enum holds a number the proto does not define (the loader
 * hands those out as numbers instead of names).
 */
export class WireCheck {
  readonly #defs: PackageDefinition;
  readonly #package: string;
  constructor(defs: PackageDefinition, pkg: string) {
    this.#defs = defs;
    this.#package = pkg;
  }

  #type(name: string, parent: DescriptorProto | undefined): DescriptorProto | EnumDescriptor | undefined {
    const nested = parent?.nestedType?.find((n) => n.name === name);
    if (nested) return nested;
    const def = this.#defs[name.includes(".") ? name : `${this.#package}.${name}`] as { type?: unknown } | undefined;
    return def?.type as DescriptorProto | EnumDescriptor | undefined;
  }

  /** Throws INVALID_ARGUMENT naming the first field at fault. */
  check(message: DescriptorProto, value: unknown, path = ""): void {
    if (typeof value !== "object" || value === null) return;
    const record = value as Record<string, unknown>;
    for (const f of message.field) {
      const v = record[f.name];
      if (v === undefined || v === null) continue;
      const field = path === "" ? f.name : `${path}.${f.name}`;
      const type = f.type === "TYPE_MESSAGE" || f.type === "TYPE_ENUM" ? this.#type(f.typeName, message) : undefined;
      if (f.type === "TYPE_MESSAGE" && type && "field" in type && type.options?.mapEntry) {
        const valueField = type.field.find((x) => x.name === "value");
        for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
          noNul(`${field}[${shown(k)}]`, k);
          if (valueField) this.#one(valueField, this.#type(valueField.typeName, type), item, `${field}[${shown(k)}]`, type);
        }
        continue;
      }
      if (f.label === "LABEL_REPEATED" && Array.isArray(v)) {
        v.forEach((item, i) => this.#one(f, type, item, `${field}[${i}]`, message));
        continue;
      }
      this.#one(f, type, v, field, message);
    }
  }

  #one(f: FieldDescriptor, type: DescriptorProto | EnumDescriptor | undefined, v: unknown, field: string, _parent: DescriptorProto): void {
    if (f.type === "TYPE_STRING" && typeof v === "string") noNul(field, v);
    else if (f.type === "TYPE_ENUM" && typeof v === "number") {
      const names = type && "value" in type ? type.value.map((x) => x.name) : [];
      bad(field, v, `is not a valid ${f.typeName}${names.length > 0 ? ` (one of ${names.slice(0, 6).join(", ")}${names.length > 6 ? ", …" : ""})` : ""}`);
    } else if (f.type === "TYPE_MESSAGE" && type && "field" in type) this.check(type, v, field);
  }

  /** The descriptor of each method's request, by method name, of a service in the definitions. */
  requestTypes(service: string): Map<string, DescriptorProto> {
    const out = new Map<string, DescriptorProto>();
    const svc = this.#defs[`${this.#package}.${service}`] as Record<string, { requestType?: MessageTypeDefinition<unknown, unknown> }> | undefined;
    for (const [name, method] of Object.entries(svc ?? {})) {
      const t = method.requestType?.type as DescriptorProto | undefined;
      if (t) out.set(name, t);
    }
    return out;
  }
}

// ---- field rules ---------------------------------------------------------

export function noNul(field: string, value: string): void {
  if (value.includes("\0")) bad(field, value, "contains a NUL byte");
}

/** Control characters (newlines above all) would split the line a value is written on. */
function noControl(field: string, value: string): void {
  if (/[\x00-\x1f\x7f]/.test(value)) bad(field, value, "contains a control character");
}

const PATH_MAX = 4096;
const NAME_MAX = 255;

/** What the kernel takes: a path under PATH_MAX bytes, each name at most NAME_MAX (else ENAMETOOLONG, far from here). */
function pathLength(field: string, value: string): void {
  if (Buffer.byteLength(value) >= PATH_MAX) bad(field, value, `is too long for a path (${Buffer.byteLength(value)} bytes; the kernel takes ${PATH_MAX - 1})`);
  const name = value.split("/").find((n) => Buffer.byteLength(n) > NAME_MAX);
  if (name !== undefined) bad(field, value, `has a name of ${Buffer.byteLength(name)} bytes (the kernel takes ${NAME_MAX})`);
}

function absolutePath(field: string, value: string): void {
  if (!value.startsWith("/")) bad(field, value, "must be an absolute path");
  pathLength(field, value);
}

/** Host paths as Kubernetes validates them: absolute, and no '..' element that would lead elsewhere than it reads. */
function hostPath(field: string, value: string): void {
  absolutePath(field, value);
  if (value.split("/").includes("..")) bad(field, value, "must not contain '..'");
}

function range(field: string, value: number, min: number, max: number, unset?: number): void {
  if (value === unset) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    bad(field, value, `is out of range (${min}–${max}${unset === undefined ? "" : `, or ${unset} for unset`})`);
  }
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** RFC 1123: dot-separated labels of letters, digits and inner hyphens; at most 64 bytes, the kernel's limit for a hostname. */
export function hostname(field: string, value: string): void {
  if (value === "") return;
  if (value.length > 64 || !value.split(".").every((l) => LABEL.test(l))) {
    bad(field, value, "is not a valid hostname (RFC 1123: letters, digits, inner '-', labels separated by '.', at most 64 characters)");
  }
}

function ipAddress(field: string, value: string): void {
  if (isIP(value) === 0) bad(field, value, "is not an IP address");
}

// kubelet's limits since Kubernetes 1.28 (expanded DNS config, which glibc ≥ 2.26 and musl read): 32 search domains, 2048 characters.
export const MAX_DNS_SEARCHES = 32;
export const MAX_DNS_SEARCH_CHARS = 2048;
const DNS_TOKEN = /^[\x21-\x7e]+$/;

export function dnsConfig(dns: cri.DNSConfig | null | undefined, field: string): void {
  if (!dns) return;
  dns.servers.forEach((s, i) => ipAddress(`${field}.servers[${i}]`, s));
  dns.searches.forEach((s, i) => {
    if (!DNS_TOKEN.test(s) || s.length > 253) bad(`${field}.searches[${i}]`, s, "is not a single search domain (no spaces or control characters, at most 253 characters)");
  });
  if (dns.searches.length > MAX_DNS_SEARCHES) bad(`${field}.searches`, dns.searches.length, `search domains are more than resolv.conf takes (${MAX_DNS_SEARCHES})`);
  const chars = dns.searches.join(" ").length;
  if (chars > MAX_DNS_SEARCH_CHARS) bad(`${field}.searches`, chars, `characters are more than resolv.conf takes (${MAX_DNS_SEARCH_CHARS})`);
  dns.options.forEach((o, i) => {
    if (!DNS_TOKEN.test(o) || o.length > 64) bad(`${field}.options[${i}]`, o, "is not a single resolv.conf option (no spaces or control characters)");
  });
}

const PROTOCOLS = new Set(["TCP", "UDP", "SCTP"]);

export function portMappings(list: readonly cri.PortMapping[], field: string): void {
  list.forEach((p, i) => {
    const at = `${field}[${i}]`;
    if (!PROTOCOLS.has(p.protocol as string)) bad(`${at}.protocol`, p.protocol, "is not TCP, UDP or SCTP");
    range(`${at}.host_port`, p.host_port, 0, 65535);
    range(`${at}.container_port`, p.container_port, p.host_port > 0 ? 1 : 0, 65535);
    if (p.host_ip !== "") ipAddress(`${at}.host_ip`, p.host_ip);
  });
}

// kubelet's names are DNS labels and subdomains, the uid a UUID; crictl users
// pick their own. What matters here: CNI_ARGS is "K=V;K=V", so neither ';' nor
// '=' may appear, and nothing that splits a line.
function metadataName(field: string, value: string, max: number): void {
  noControl(field, value);
  if (/[;=]/.test(value)) bad(field, value, "must not contain ';' or '='");
  if (value.length > max) bad(field, value, `is longer than ${max} characters`);
}

// kubelet sends "/kubepods/burstable/pod<uid>" to cgroupfs, "kubepods-burstable-pod<uid>.slice" to systemd
// (a relative or 100 kB parent left RunPodSandbox hanging in runc)
function cgroupParent(field: string, value: string, systemd: boolean): void {
  if (value === "") return;
  noControl(field, value);
  if (value.split("/").includes("..")) bad(field, value, "must not contain '..'");
  if (value.length > 1024 || value.split("/").some((c) => c.length > 255)) bad(field, value, "is longer than a cgroup path can be");
  if (systemd) {
    if (!value.split("/").pop()!.endsWith(".slice")) bad(field, value, "must name a systemd slice (…​.slice) with the systemd cgroup driver");
  } else if (!value.startsWith("/")) bad(field, value, "must be an absolute cgroup path with the cgroupfs driver");
}

function int64Of(field: string, value: string | number | undefined): number {
  return int64(value, field);
}

const CPU_LIST = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/** Parses a cpuset list ("0-3,6"); throws naming the field when it is not one. */
export function cpuList(field: string, value: string): number[] {
  if (!CPU_LIST.test(value)) bad(field, value, "is not a CPU or memory-node list like \"0-3,6\"");
  const out: number[] = [];
  for (const part of value.split(",")) {
    const [a, b] = part.split("-").map(Number) as [number, number | undefined];
    const hi = b ?? a;
    if (hi < a) bad(field, value, `has a range ${part} that runs backwards`);
    if (hi > 8191) bad(field, value, "names an index above 8191");
    for (let n = a; n <= hi; n++) out.push(n);
  }
  return out;
}

function within(field: string, value: string, online: string | undefined, what: string): void {
  if (value === "") return;
  const asked = cpuList(field, value);
  if (online === undefined || online.trim() === "") return;
  const have = new Set(cpuList("node", online.trim()));
  const missing = asked.filter((n) => !have.has(n));
  if (missing.length > 0) bad(field, value, `names ${what} the node does not have (it has ${online.trim()})`);
}

const PAGE_SIZE = /^\d+(KB|MB|GB|TB|PB)$/;
const UNIFIED_KEY = /^[a-z][a-z0-9_]*\.[a-z0-9_.]+$/;

/**
 * What the kernel accepts: shares 2–262144, a period of 1 ms–1 s, a quota of
 * at least 1 ms (or -1, none), no negative memory. Zero means "not set" for each.
 */
export function linuxResources(res: cri.LinuxContainerResources | null | undefined, host: HostFacts, field: string): void {
  if (!res) return;
  range(`${field}.cpu_shares`, int64Of(`${field}.cpu_shares`, res.cpu_shares), 2, 262144, 0);
  range(`${field}.cpu_period`, int64Of(`${field}.cpu_period`, res.cpu_period), 1000, 1_000_000, 0);
  const quota = int64Of(`${field}.cpu_quota`, res.cpu_quota);
  if (quota !== -1) range(`${field}.cpu_quota`, quota, 1000, Number.MAX_SAFE_INTEGER, 0);
  const memory = int64Of(`${field}.memory_limit_in_bytes`, res.memory_limit_in_bytes);
  range(`${field}.memory_limit_in_bytes`, memory, 0, Number.MAX_SAFE_INTEGER);
  const swap = int64Of(`${field}.memory_swap_limit_in_bytes`, res.memory_swap_limit_in_bytes);
  if (swap !== -1) range(`${field}.memory_swap_limit_in_bytes`, swap, 0, Number.MAX_SAFE_INTEGER);
  if (swap > 0 && memory > 0 && swap < memory) {
    bad(`${field}.memory_swap_limit_in_bytes`, swap, `is below memory_limit_in_bytes ${memory} (it is memory plus swap)`);
  }
  range(`${field}.oom_score_adj`, int64Of(`${field}.oom_score_adj`, res.oom_score_adj), -1000, 1000);
  within(`${field}.cpuset_cpus`, res.cpuset_cpus, host.onlineCpus, "CPUs");
  within(`${field}.cpuset_mems`, res.cpuset_mems, host.onlineMems, "memory nodes");
  res.hugepage_limits.forEach((h, i) => {
    if (!PAGE_SIZE.test(h.page_size)) bad(`${field}.hugepage_limits[${i}].page_size`, h.page_size, "is not a page size like \"2MB\" or \"1GB\"");
    range(`${field}.hugepage_limits[${i}].limit`, int64Of(`${field}.hugepage_limits[${i}].limit`, h.limit), 0, Number.MAX_SAFE_INTEGER);
  });
  const unified = Object.entries(res.unified);
  // runc refuses unified on cgroup v1 when the container starts; say so now, as the request's answer
  if (unified.length > 0 && !host.cgroupV2) {
    bad(`${field}.unified`, unified.map(([k]) => k).join(","), "cannot be applied: the node uses cgroup v1");
  }
  for (const [k, v] of unified) {
    if (!UNIFIED_KEY.test(k)) bad(`${field}.unified`, k, "is not a cgroup v2 file name like \"memory.high\"");
    noControl(`${field}.unified[${shown(k)}]`, v);
  }
}

function ids(field: string, value: cri.Int64Value | null | undefined): void {
  if (!value) return;
  range(`${field}.value`, int64Of(`${field}.value`, value.value), 0, 4294967294);
}

function namespaceModes(ns: cri.NamespaceOption | null | undefined, field: string, allowTarget: boolean): void {
  if (!ns) return;
  if (!allowTarget && ns.pid === "TARGET") bad(`${field}.pid`, ns.pid, "is for containers; a pod sandbox's PID namespace is POD, CONTAINER or NODE");
  if (ns.network === "TARGET" || ns.network === "CONTAINER") bad(`${field}.network`, ns.network, "is not supported: network is POD or NODE");
  if (ns.ipc === "TARGET" || ns.ipc === "CONTAINER") bad(`${field}.ipc`, ns.ipc, "is not supported: IPC is POD or NODE");
}

type SecurityIds = Pick<cri.LinuxContainerSecurityContext, "namespace_options" | "run_as_user" | "run_as_group" | "supplemental_groups">;

function securityContext(sc: SecurityIds, field: string, container: boolean): void {
  namespaceModes(sc.namespace_options, `${field}.namespace_options`, container);
  ids(`${field}.run_as_user`, sc.run_as_user);
  ids(`${field}.run_as_group`, sc.run_as_group);
  sc.supplemental_groups.forEach((g, i) => range(`${field}.supplemental_groups[${i}]`, int64Of(`${field}.supplemental_groups[${i}]`, g), 0, 4294967294));
}

// crib keeps CRI labels as containerd labels, which containerd limits to 4096 bytes of key and value
const MAX_LABEL = 4096;

function labels(field: string, map: Readonly<Record<string, string>>): void {
  for (const [k, v] of Object.entries(map)) {
    if (k === "") bad(field, k, "is not a label key: keys must not be empty");
    const size = Buffer.byteLength(k) + Buffer.byteLength(v);
    if (size > MAX_LABEL) bad(`${field}[${shown(k)}]`, v, `is too long: key and value take ${size} bytes, at most ${MAX_LABEL}`);
  }
}

export function podSandboxConfig(config: cri.PodSandboxConfig, host: HostFacts, field = "config"): void {
  labels(`${field}.labels`, config.labels);
  const m = config.metadata;
  if (m) {
    metadataName(`${field}.metadata.name`, m.name, 253);
    metadataName(`${field}.metadata.namespace`, m.namespace, 253);
    metadataName(`${field}.metadata.uid`, m.uid, 253);
    range(`${field}.metadata.attempt`, m.attempt, 0, 4294967295);
  }
  hostname(`${field}.hostname`, config.hostname);
  if (config.log_directory !== "") hostPath(`${field}.log_directory`, config.log_directory);
  dnsConfig(config.dns_config, `${field}.dns_config`);
  portMappings(config.port_mappings, `${field}.port_mappings`);
  const linux = config.linux;
  if (linux) {
    cgroupParent(`${field}.linux.cgroup_parent`, linux.cgroup_parent, host.systemdCgroup);
    for (const [k, v] of Object.entries(linux.sysctls)) {
      if (!/^[a-zA-Z0-9_./-]+$/.test(k) || k.split(/[./]/).includes("..")) bad(`${field}.linux.sysctls`, k, "is not a sysctl name");
      noControl(`${field}.linux.sysctls[${shown(k)}]`, v);
    }
    if (linux.security_context) securityContext(linux.security_context, `${field}.linux.security_context`, false);
    linuxResources(linux.overhead, host, `${field}.linux.overhead`);
    linuxResources(linux.resources, host, `${field}.linux.resources`);
  }
}

/** The CRI lets an image be named by reference, image ID, or digest. */
export function imageReference(field: string, ref: string): void {
  if (ref === "" || isDigest(ref) || /^[a-f0-9]{64}$/.test(ref)) return;
  try {
    parseNormalized(ref.startsWith("sha256:") ? ref : ref);
  } catch (err) {
    throw invalidArgument(`${field}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** log_path is relative to the sandbox's log_directory and names a file in it. */
export function logPath(field: string, value: string): void {
  if (value === "") return;
  pathLength(field, value);
  const clean = cleanPath(value.replace(/^\/+/, ""));
  if (clean === "." || clean === ".." || clean.startsWith("../") || value.endsWith("/")) {
    bad(field, value, "must name a file inside the pod's log_directory");
  }
}

export function containerConfig(config: cri.ContainerConfig, host: HostFacts, field = "config"): void {
  labels(`${field}.labels`, config.labels);
  if (config.metadata) {
    metadataName(`${field}.metadata.name`, config.metadata.name, 253);
    range(`${field}.metadata.attempt`, config.metadata.attempt, 0, 4294967295);
  }
  if (config.image) imageReference(`${field}.image.image`, config.image.image);
  if (config.working_dir !== "") absolutePath(`${field}.working_dir`, config.working_dir);
  argv(`${field}.command`, config.command);
  argv(`${field}.args`, config.args, false);
  config.envs.forEach((kv, i) => {
    if (kv.key === "" || kv.key.includes("=")) bad(`${field}.envs[${i}].key`, kv.key, "must be a non-empty name without '='");
    if (Buffer.from(kv.value as unknown as Uint8Array).includes(0)) bad(`${field}.envs[${i}].value`, kv.value.toString(), "contains a NUL byte");
  });
  config.mounts.forEach((m, i) => {
    const at = `${field}.mounts[${i}]`;
    absolutePath(`${at}.container_path`, m.container_path);
    if (m.image && m.image.image !== "") {
      imageReference(`${at}.image.image`, m.image.image); // image_sub_path: cri/image-volumes.ts, with the message critest expects
    } else {
      if (m.host_path === "") bad(`${at}.host_path`, m.host_path, "is required");
      hostPath(`${at}.host_path`, m.host_path);
    }
  });
  config.devices.forEach((d, i) => {
    const at = `${field}.devices[${i}]`;
    absolutePath(`${at}.container_path`, d.container_path);
    absolutePath(`${at}.host_path`, d.host_path);
    if (d.permissions !== "" && !/^[rwm]{1,3}$/.test(d.permissions)) bad(`${at}.permissions`, d.permissions, "is not a combination of r, w and m");
  });
  logPath(`${field}.log_path`, config.log_path);
  const linux = config.linux;
  if (linux) {
    linuxResources(linux.resources, host, `${field}.linux.resources`);
    const sc = linux.security_context;
    if (sc) {
      securityContext(sc, `${field}.linux.security_context`, true);
      capabilities(sc.capabilities, `${field}.linux.security_context.capabilities`);
      sc.masked_paths.forEach((p, i) => absolutePath(`${field}.linux.security_context.masked_paths[${i}]`, p));
      sc.readonly_paths.forEach((p, i) => absolutePath(`${field}.linux.security_context.readonly_paths[${i}]`, p));
    }
  }
}

const CAPABILITIES = new Set(allCapabilities);

/** Names the kernel knows ("NET_ADMIN", "CAP_NET_ADMIN", any case), or "ALL"; anything else would reach runc, or the error, verbatim. */
function capabilities(caps: cri.Capability | null | undefined, field: string): void {
  if (!caps) return;
  for (const list of ["add_capabilities", "drop_capabilities", "add_ambient_capabilities"] as const) {
    caps[list].forEach((name, i) => {
      if (name.toUpperCase() === "ALL") return;
      const upper = name.trim().toUpperCase();
      if (!CAPABILITIES.has(upper.startsWith("CAP_") ? upper : `CAP_${upper}`)) bad(`${field}.${list}[${i}]`, name, "is not a Linux capability");
    });
  }
}

export interface StoredSandbox {
  id: string;
  config: cri.PodSandboxConfig;
}

/**
 * A container stays inside its pod: the namespaces it shares with the node are
 * the ones its stored sandbox already shares, and a TARGET PID namespace is
 * that of a container of the same pod. Never the request's sandbox_config copy.
 */
export function containerInSandbox(config: cri.ContainerConfig, sandbox: StoredSandbox, targetSandboxId?: string): void {
  const sc = config.linux?.security_context;
  const podNs = sandbox.config.linux?.security_context?.namespace_options;
  const ns = sc?.namespace_options;
  const field = "config.linux.security_context";
  if (ns) {
    for (const kind of ["pid", "network", "ipc"] as const) {
      if (ns[kind] === "NODE" && podNs?.[kind] !== "NODE") {
        bad(`${field}.namespace_options.${kind}`, "NODE", `is not allowed: pod sandbox ${sandbox.id.slice(0, 12)} does not use the node's ${kind === "pid" ? "PID" : kind === "ipc" ? "IPC" : "network"} namespace`);
      }
    }
    if (ns.pid === "TARGET" && targetSandboxId !== undefined && targetSandboxId !== sandbox.id) {
      bad(`${field}.namespace_options.target_id`, ns.target_id, `is a container of another pod sandbox, not of ${sandbox.id.slice(0, 12)}`);
    }
  }
  if (sc?.privileged && sandbox.config.linux?.security_context?.privileged !== true) {
    bad(`${field}.privileged`, true, `is not allowed: pod sandbox ${sandbox.id.slice(0, 12)} is not privileged`);
  }
}

// execve(2)'s limits: a program path of at most PATH_MAX bytes, each argument under MAX_ARG_STRLEN
// (runc exec of a 100 kB program name hung instead of failing)
const MAX_ARG_STRLEN = 131072;

function argv(field: string, list: readonly string[], program = true): void {
  if (program && list[0] !== undefined && Buffer.byteLength(list[0]) >= PATH_MAX) bad(`${field}[0]`, list[0], `is longer than a program path can be (${PATH_MAX - 1} bytes)`);
  list.forEach((a, i) => { if (Buffer.byteLength(a) >= MAX_ARG_STRLEN) bad(`${field}[${i}]`, a, `is longer than an argument can be (${MAX_ARG_STRLEN - 1} bytes)`); });
}

export function execCommand(field: string, cmd: readonly string[]): void {
  if (cmd.length === 0) bad(field, "[]", "is required");
  if (cmd[0] === "") bad(`${field}[0]`, "", "must name the program to run");
  argv(field, cmd);
}

export function timeoutSeconds(field: string, value: string | number): void {
  range(field, int64Of(field, value), 0, 365 * 24 * 3600);
}

export function ports(field: string, list: readonly number[]): void {
  list.forEach((p, i) => range(`${field}[${i}]`, p, 1, 65535));
}

type Rule = (req: never, host: HostFacts) => void;

/** The field rules of each rpc that has any, run before its handler. */
export const requestRules: Readonly<Record<string, Rule>> = {
  RunPodSandbox: (req: cri.RunPodSandboxRequest, host) => { if (req.config) podSandboxConfig(req.config, host); },
  CreateContainer: (req: cri.CreateContainerRequest, host) => { if (req.config) containerConfig(req.config, host); },
  UpdateContainerResources: (req: cri.UpdateContainerResourcesRequest, host) => linuxResources(req.linux, host, "linux"),
  UpdatePodSandboxResources: (req: cri.UpdatePodSandboxResourcesRequest, host) => {
    linuxResources(req.overhead, host, "overhead");
    linuxResources(req.resources, host, "resources");
  },
  StopContainer: (req: cri.StopContainerRequest) => timeoutSeconds("timeout", req.timeout),
  ExecSync: (req: cri.ExecSyncRequest) => { execCommand("cmd", req.cmd); timeoutSeconds("timeout", req.timeout); },
  Exec: (req: cri.ExecRequest) => execCommand("cmd", req.cmd),
  PortForward: (req: cri.PortForwardRequest) => ports("port", req.port),
  PullImage: (req: cri.PullImageRequest, host) => {
    if (req.image) imageReference("image.image", req.image.image);
    if (req.sandbox_config) podSandboxConfig(req.sandbox_config, host, "sandbox_config");
  },
};

/** The checks of one service: the wire walk, then the rpc's rules. */
export function requestChecker(wire: WireCheck, service: string, host: HostFacts): (method: string, req: unknown) => void {
  const types = wire.requestTypes(service);
  return (method, req) => {
    const type = types.get(method);
    if (type) wire.check(type, req);
    (requestRules[method] as ((req: unknown, host: HostFacts) => void) | undefined)?.(req, host);
  };
}

/** A log directory must be one (or not exist yet), and a log file not a directory: checked before anything is made. */
export async function logTarget(field: string, directory: string, file?: string): Promise<void> {
  const kind = async (p: string): Promise<"dir" | "other" | "none"> =>
    stat(p).then((st) => (st.isDirectory() ? "dir" : "other"), () => "none");
  if (file !== undefined) pathLength("config.log_path", file);
  if (directory !== "" && (await kind(directory)) === "other") bad(field, directory, "exists and is not a directory");
  if (file !== undefined && file !== "" && (await kind(file)) === "dir") bad("config.log_path", file, "is a directory");
}
