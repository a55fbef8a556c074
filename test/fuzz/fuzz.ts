// The CRI fuzzer (issue 13): valid requests of every unary rpc, mutated field by
// field (empty, huge, negative, NUL, enum numbers out of range, unicode,
// relative and ".." paths, newlines, wrong ids), sent to a crib on the real
// stack (test/fixtures/pod-env.ts). It checks that no answer is UNKNOWN or
// INTERNAL (nor a hang), that crib stays up, that nothing is leaked afterwards
// (containers, tasks, snapshots, IPs, veths, mounts, netns of the pods it made,
// state dirs), and that no file named by a mutation appears outside crib's dirs
// and the requests' own log directories.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { leftovers, type PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import { CriClient } from "../fixtures/cri-client.js";

const run = promisify(execFile);
/**
 * Every path-like mutation carries this, so that a file it made can be found. One
 * of its own per run: another fuzzer on the node (a suite's, someone's
 * `npm run fuzz`) makes files with its own marker in its own crib's dirs.
 */
export const MARKER = `crib-fuzz-${randomBytes(3).toString("hex")}`;
const CANCELLED = 1;
const UNKNOWN = 2;
const DEADLINE_EXCEEDED = 4;
const INTERNAL = 13;
const UNAVAILABLE = 14;
const MiB = 1024 * 1024;

type Value = unknown;
type Json = Record<string, Value>;

export interface FuzzCase {
  rpc: string;
  /** the mutated field, as a path into the request */
  field: string;
  mutation: string;
}

export interface FuzzResult extends FuzzCase {
  code: number;
  details: string;
}

export interface FuzzReport {
  cases: number;
  /** answers by gRPC code name */
  codes: Record<string, number>;
  /** what a user would call a bug: UNKNOWN/INTERNAL answers, hangs, a crash, leaks, stray files */
  failures: string[];
  ms: number;
}

export interface FuzzOptions {
  /** how many cases to run; the first are one mutation each of every field, then two at once */
  cases: number;
  /** run only every n-th of the single-field cases (a bounded sample); default 1 */
  stride?: number;
  seed?: number;
  /** per call; generous, so that only a stall trips it (default 60 s) */
  callTimeoutMs?: number;
  progress?: (line: string) => void;
  /** each failure as it is found (an interrupted run still tells what it found) */
  onFailure?: (line: string) => void;
  /** every case's answer */
  onAnswer?: (line: string) => void;
  /**
   * an error-level line in crib's log is a failure (default); false: only reported
   * through `progress`. A rollback step that timed out on a loaded node is retried
   * by crib, and what it would leave the leak audit finds.
   */
  logErrorsFail?: boolean;
}

interface Ctx {
  env: PodEnv;
  n: number;
  podId: string;
  podConfig: Json;
  containerId: string;
  hostDir: string;
}

interface Template {
  rpc: string;
  service: "runtime" | "image";
  /** a server-streaming rpc: read until it ends, or for a moment if it never does (GetContainerEvents) */
  stream?: boolean;
  /** CreateContainer, then StartContainer of what it made: the answer is the start's when the create is OK */
  start?: boolean;
  build(ctx: Ctx): Json;
  /** what a successful call made, to remove at once */
  cleanup?(ctx: Ctx, res: Json): Promise<void>;
}

const sandboxConfig = (ctx: Ctx, name: string): Json => ({
  metadata: { name, namespace: "crib-fuzz-ns", uid: `uid-${name}`, attempt: 0 },
  hostname: name,
  log_directory: join(ctx.env.crib.dir, "pods", name),
  dns_config: { servers: ["10.96.0.10"], searches: ["svc.cluster.local"], options: ["ndots:5"] },
  port_mappings: [{ protocol: "TCP", container_port: 80, host_port: 0, host_ip: "" }],
  labels: { app: "fuzz" },
  annotations: { note: "fuzz" },
  linux: {
    cgroup_parent: "",
    sysctls: { "net.ipv4.ip_unprivileged_port_start": "0" },
    security_context: {
      namespace_options: { network: "POD", pid: "CONTAINER", ipc: "POD" }, run_as_user: { value: 0 }, run_as_group: { value: 0 }, supplemental_groups: [1000],
      readonly_rootfs: false, privileged: false, seccomp: { profile_type: "RuntimeDefault", localhost_ref: "" }, selinux_options: { user: "", role: "", type: "", level: "" },
    },
    overhead: { cpu_shares: 2, memory_limit_in_bytes: 0 },
    resources: { cpu_period: 100000, cpu_quota: 50000, cpu_shares: 512, memory_limit_in_bytes: 256 * MiB },
  },
});

/** A container that uses every ContainerConfig field crib acts on here (windows and CDI devices aside), each with a valid value. */
const containerConfig = (ctx: Ctx, name: string, started = false): Json => ({
  metadata: { name, attempt: 0 },
  image: { image: BUSYBOX_REF },
  command: ["/bin/sleep"], args: ["3600"], working_dir: "/",
  envs: [{ key: "A", value: Buffer.from("b") }],
  mounts: [{ container_path: "/data", host_path: join(ctx.hostDir, `m${ctx.n}`), readonly: false, propagation: "PROPAGATION_PRIVATE", selinux_relabel: false, recursive_read_only: false }],
  devices: [{ container_path: "/dev/fuzz-null", host_path: "/dev/null", permissions: "rwm" }],
  labels: { app: "fuzz" }, annotations: { note: "fuzz" },
  log_path: `${name}.log`,
  stdin: false, stdin_once: false, tty: false,
  stop_signal: "SIGTERM",
  linux: {
    // a started one gets a limit it can live with, and swap only where the node accounts it (not known here: none)
    resources: started ? { ...resources(), memory_limit_in_bytes: 64 * MiB } : { ...resources(), memory_swap_limit_in_bytes: 128 * MiB, hugepage_limits: [{ page_size: "2MB", limit: 0 }] },
    security_context: {
      namespace_options: { pid: "CONTAINER", network: "POD", ipc: "POD" },
      run_as_user: { value: 0 }, run_as_group: { value: 0 }, run_as_username: "", supplemental_groups: [1000], supplemental_groups_policy: "Merge",
      readonly_rootfs: false, no_new_privs: true, privileged: false,
      capabilities: { add_capabilities: ["CAP_NET_RAW"], drop_capabilities: ["CAP_MKNOD"], add_ambient_capabilities: [] },
      selinux_options: { user: "", role: "", type: "", level: "" },
      seccomp: { profile_type: "RuntimeDefault", localhost_ref: "" },
      masked_paths: ["/proc/kcore"], readonly_paths: ["/proc/sys"],
    },
  },
});

const resources = (): Json => ({ cpu_period: 100000, cpu_quota: 50000, cpu_shares: 512, memory_limit_in_bytes: 64 * MiB, oom_score_adj: 0, cpuset_cpus: "0", cpuset_mems: "0" });

const removePod = async (ctx: Ctx, id: string): Promise<void> => {
  await ctx.env.client.runtime.StopPodSandbox({ pod_sandbox_id: id });
  await ctx.env.client.runtime.RemovePodSandbox({ pod_sandbox_id: id });
};

/**
 * An id no object has, that no prefix of it names either: its digit begins
 * neither the base pod's id nor the base container's. crib resolves unique id
 * prefixes, as containerd does; a Stop/Remove of "0" would otherwise remove the
 * base pod one run in sixteen, and every later case would test NOT_FOUND.
 */
const missingId = (ctx: Ctx): string => ([..."0123456789abcdef"].find((d) => !ctx.podId.startsWith(d) && !ctx.containerId.startsWith(d)) ?? "0").repeat(64);

const templates: Template[] = [
  { rpc: "Version", service: "runtime", build: () => ({ version: "v1" }) },
  { rpc: "Status", service: "runtime", build: () => ({ verbose: true }) },
  { rpc: "RuntimeConfig", service: "runtime", build: () => ({}) },
  {
    rpc: "RunPodSandbox", service: "runtime",
    build: (ctx) => ({ config: sandboxConfig(ctx, `fz-${ctx.n}`), runtime_handler: "" }),
    cleanup: (ctx, res) => removePod(ctx, String(res["pod_sandbox_id"])),
  },
  { rpc: "StopPodSandbox", service: "runtime", build: (ctx) => ({ pod_sandbox_id: missingId(ctx) }) },
  { rpc: "RemovePodSandbox", service: "runtime", build: (ctx) => ({ pod_sandbox_id: missingId(ctx) }) },
  { rpc: "PodSandboxStatus", service: "runtime", build: (ctx) => ({ pod_sandbox_id: ctx.podId, verbose: true }) },
  { rpc: "ListPodSandbox", service: "runtime", build: (ctx) => ({ filter: { id: ctx.podId, state: { state: "SANDBOX_READY" }, label_selector: { app: "fuzz" } } }) },
  {
    rpc: "CreateContainer", service: "runtime",
    build: (ctx) => ({ pod_sandbox_id: ctx.podId, config: containerConfig(ctx, `fz-${ctx.n}`), sandbox_config: ctx.podConfig }),
    cleanup: async (ctx, res) => { await ctx.env.client.runtime.RemoveContainer({ container_id: String(res["container_id"]) }); },
  },
  {
    // what runc is given only shows at start: the same request, created and then started
    rpc: "CreateContainer", service: "runtime", start: true,
    build: (ctx) => ({ pod_sandbox_id: ctx.podId, config: containerConfig(ctx, `fz-${ctx.n}`, true), sandbox_config: ctx.podConfig }),
    cleanup: async (ctx, res) => { await ctx.env.client.runtime.RemoveContainer({ container_id: String(res["container_id"]) }); },
  },
  {
    // an image volume: the image's files mounted read-only in the container, from a sub path
    rpc: "CreateContainer", service: "runtime", start: true,
    build: (ctx) => ({
      pod_sandbox_id: ctx.podId, sandbox_config: ctx.podConfig,
      config: {
        metadata: { name: `fz-${ctx.n}`, attempt: 0 }, image: { image: BUSYBOX_REF }, command: ["/bin/sleep", "3600"], log_path: `fz-${ctx.n}.log`,
        mounts: [{ container_path: "/image", image: { image: BUSYBOX_REF }, image_sub_path: "bin", readonly: true, propagation: "PROPAGATION_PRIVATE" }],
      },
    }),
    cleanup: async (ctx, res) => { await ctx.env.client.runtime.RemoveContainer({ container_id: String(res["container_id"]) }); },
  },
  { rpc: "StartContainer", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId }) },
  { rpc: "StopContainer", service: "runtime", build: (ctx) => ({ container_id: missingId(ctx), timeout: 1 }) },
  { rpc: "RemoveContainer", service: "runtime", build: (ctx) => ({ container_id: missingId(ctx) }) },
  { rpc: "ContainerStatus", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId, verbose: true }) },
  { rpc: "ListContainers", service: "runtime", build: (ctx) => ({ filter: { id: ctx.containerId, state: { state: "CONTAINER_RUNNING" }, pod_sandbox_id: ctx.podId, label_selector: { app: "fuzz" } } }) },
  { rpc: "ExecSync", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId, cmd: ["/bin/echo", "hi"], timeout: 5 }) },
  { rpc: "Exec", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId, cmd: ["/bin/sh"], tty: false, stdin: true, stdout: true, stderr: true }) },
  { rpc: "Attach", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId, stdin: true, tty: false, stdout: true, stderr: true }) },
  { rpc: "PortForward", service: "runtime", build: (ctx) => ({ pod_sandbox_id: ctx.podId, port: [8080] }) },
  { rpc: "UpdateContainerResources", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId, linux: resources(), annotations: { a: "b" } }) },
  { rpc: "ReopenContainerLog", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId }) },
  { rpc: "ContainerStats", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId }) },
  { rpc: "ListContainerStats", service: "runtime", build: (ctx) => ({ filter: { id: ctx.containerId, pod_sandbox_id: ctx.podId, label_selector: { app: "fuzz" } } }) },
  { rpc: "PodSandboxStats", service: "runtime", build: (ctx) => ({ pod_sandbox_id: ctx.podId }) },
  { rpc: "ListPodSandboxStats", service: "runtime", build: (ctx) => ({ filter: { id: ctx.podId, label_selector: { app: "fuzz" } } }) },
  { rpc: "ListMetricDescriptors", service: "runtime", build: () => ({}) },
  { rpc: "ListPodSandboxMetrics", service: "runtime", build: () => ({}) },
  { rpc: "UpdatePodSandboxResources", service: "runtime", build: (ctx) => ({ pod_sandbox_id: ctx.podId, overhead: resources(), resources: resources() }) },
  { rpc: "ImageStatus", service: "image", build: () => ({ image: { image: BUSYBOX_REF }, verbose: true }) },
  { rpc: "ListImages", service: "image", build: () => ({ filter: { image: { image: BUSYBOX_REF } } }) },
  // names a closed loopback port: a mutation must never send crib to a real registry
  { rpc: "PullImage", service: "image", build: () => ({ image: { image: "127.0.0.1:9/crib-fuzz:1" }, auth: { username: "u", password: "p" } }) },
  { rpc: "RemoveImage", service: "image", build: () => ({ image: { image: "127.0.0.1:9/crib-fuzz-none:1" } }) },
  { rpc: "ImageFsInfo", service: "image", build: () => ({}) },
  // the env's own subnet: this CNI config does not take ipRanges, and a valid case changes nothing for later pods
  { rpc: "UpdateRuntimeConfig", service: "runtime", build: (ctx) => ({ runtime_config: { network_config: { pod_cidr: ctx.env.subnet } } }) },
  // crib does not implement it: UNIMPLEMENTED, and nothing written at `location`
  { rpc: "CheckpointContainer", service: "runtime", build: (ctx) => ({ container_id: ctx.containerId, location: join(ctx.hostDir, "checkpoint.tar"), timeout: 5 }) },
  { rpc: "GetContainerEvents", service: "runtime", stream: true, build: () => ({}) },
  { rpc: "StreamPodSandboxes", service: "runtime", stream: true, build: (ctx) => ({ filter: { id: ctx.podId, state: { state: "SANDBOX_READY" }, label_selector: { app: "fuzz" } } }) },
  { rpc: "StreamContainers", service: "runtime", stream: true, build: (ctx) => ({ filter: { id: ctx.containerId, state: { state: "CONTAINER_RUNNING" }, pod_sandbox_id: ctx.podId, label_selector: { app: "fuzz" } } }) },
  { rpc: "StreamContainerStats", service: "runtime", stream: true, build: (ctx) => ({ filter: { id: ctx.containerId, pod_sandbox_id: ctx.podId, label_selector: { app: "fuzz" } } }) },
  { rpc: "StreamPodSandboxStats", service: "runtime", stream: true, build: (ctx) => ({ filter: { id: ctx.podId, label_selector: { app: "fuzz" } } }) },
  { rpc: "StreamPodSandboxMetrics", service: "runtime", stream: true, build: () => ({}) },
  { rpc: "StreamImages", service: "image", stream: true, build: () => ({ filter: { image: { image: BUSYBOX_REF } } }) },
];

interface Answer { code: number; details: string; res?: Json }

const answerOf = (err: unknown): Answer => {
  const e = err as { code?: number; details?: string; message?: string };
  return { code: e.code ?? UNKNOWN, details: e.details ?? e.message ?? String(err) };
};

/** One call of a unary rpc, or a server-streaming one read to its end (or for `openMs`, if it never ends). */
async function call(env: PodEnv, t: Template, request: Json, timeoutMs: number, openMs = 300): Promise<Answer> {
  if (!t.stream) {
    const api = (t.service === "runtime" ? env.client.runtime : env.client.image) as unknown as Record<string, (r: Json, o: { timeoutMs: number }) => Promise<Json>>;
    const answer = await api[t.rpc]!(request, { timeoutMs }).then((res): Answer => ({ code: 0, details: "", res }), answerOf);
    if (!t.start || !answer.res) return answer;
    const started = await env.client.runtime.StartContainer({ container_id: String(answer.res["container_id"]) }, { timeoutMs }).then((): Answer => ({ code: 0, details: "" }), answerOf);
    return { ...started, res: answer.res };
  }
  const raw = (t.service === "runtime" ? env.client.rawRuntime : env.client.rawImage) as unknown as Record<string, (r: Json, o: { deadline: Date }) => NodeJS.ReadableStream & { cancel(): void }>;
  const stream = raw[t.rpc]!.call(t.service === "runtime" ? env.client.rawRuntime : env.client.rawImage, request, { deadline: new Date(Date.now() + timeoutMs) });
  return new Promise<Answer>((resolve) => {
    let settled = false;
    const settle = (a: Answer): void => { if (!settled) { settled = true; clearTimeout(open); resolve(a); } };
    // still open after the list was sent: a watch (GetContainerEvents); that it serves is the answer
    const open = setTimeout(() => { settle({ code: 0, details: "" }); stream.cancel(); }, openMs);
    stream.on("data", () => undefined);
    stream.on("end", () => settle({ code: 0, details: "" }));
    stream.on("error", (err: unknown) => settle(answerOf(err)));
  }).then(async (a) => {
    // a watch cancelled by us ends with CANCELLED; wait for the call to close so that it does not count against the next case
    await new Promise((r) => setImmediate(r));
    return a;
  });
}

interface Mutation {
  name: string;
  apply(value: Value, key: string, rpc: string): Value | typeof SKIP;
}
const SKIP = Symbol("skip");

// enum names are upper case in the CRI, but for these two
const MIXED_CASE_ENUMS = new Set(["Merge", "RuntimeDefault"]);
const isEnumName = (v: Value): boolean =>
  typeof v === "string" && ((/^[A-Z][A-Z0-9_]+$/.test(v) && v !== "CAP_NET_RAW" && v !== "CAP_MKNOD") || MIXED_CASE_ENUMS.has(v));
const isId = (key: string): boolean => key === "id" || key.endsWith("_id");
// PullImage of a mutated name must stay on loopback: a relative name would go to docker.io
const image = (rpc: string, key: string, v: string): string => (rpc === "PullImage" && key === "image" && v !== "" ? `127.0.0.1:9/${v}` : v);

const stringMutations: Mutation[] = [
  { name: "empty", apply: () => "" },
  { name: "huge", apply: () => "x".repeat(100_000) },
  { name: "NUL", apply: (v, k, r) => image(r, k, `${String(v)}\0${MARKER}`) },
  { name: "newline", apply: (v, k, r) => image(r, k, `${String(v)}\n${MARKER} 6.6.6.6`) },
  { name: "unicode", apply: (_v, k, r) => image(r, k, `ü\u202e💥\uFFFD${MARKER}`) },
  { name: "relative path", apply: (_v, k, r) => image(r, k, `${MARKER}-rel/x`) },
  { name: "dot-dot path", apply: (_v, k, r) => image(r, k, `../../${MARKER}-dotdot`) },
  { name: "absolute dot-dot path", apply: (_v, k, r) => image(r, k, `/tmp/../${MARKER}-abs`) },
  // a value that reaches a shell, or a command line as an option, makes a file named by the marker
  { name: "shell", apply: (_v, k, r) => image(r, k, `$(touch /tmp/${MARKER}-sh);\`touch /tmp/${MARKER}-bt\``) },
  { name: "leading dash", apply: (_v, k, r) => image(r, k, `--output=/tmp/${MARKER}-dash`) },
];
const idMutations: Mutation[] = [
  { name: "wrong id: another id", apply: () => "f".repeat(64) },
  { name: "wrong id: a path", apply: () => `../../${MARKER}` },
  { name: "wrong id: a prefix of one", apply: (v) => String(v).slice(0, 1) },
];
const enumMutations: Mutation[] = [
  { name: "enum out of range", apply: () => 99 },
  { name: "enum negative", apply: () => -1 },
  { name: "enum lowercase", apply: (v) => String(v).toLowerCase() },
];
const numberMutations: Mutation[] = [
  { name: "zero", apply: () => 0 },
  { name: "negative", apply: () => -1 },
  { name: "very negative", apply: () => -2147483648 },
  { name: "huge", apply: () => 2147483647 },
  // seconds whose milliseconds overflow a timer (> 24.8 days), yet within every range crib checks
  { name: "a month", apply: () => 31 * 24 * 3600 },
  { name: "int64 max", apply: () => "9223372036854775807" },
  { name: "int64 min", apply: () => "-9223372036854775808" },
];
const listMutations: Mutation[] = [
  { name: "empty list", apply: () => [] },
  { name: "long list", apply: (v) => ((v as Value[]).length === 0 ? SKIP : Array.from({ length: 200 }, () => (v as Value[])[0])) },
];
const mapMutations: Mutation[] = [
  { name: "empty map", apply: () => ({}) },
  { name: "empty key", apply: () => ({ "": "v" }) },
  { name: "NUL in key", apply: () => ({ [`k\0${MARKER}`]: "v" }) },
  // the value of the map's own first key (a real sysctl, label, annotation), so that it reaches what uses it
  { name: "newline in value", apply: (v) => ({ ...(v as Json), [firstKey(v)]: `v\n${MARKER}` }) },
  { name: "huge value", apply: (v) => ({ ...(v as Json), [firstKey(v)]: "x".repeat(100_000) }) },
  { name: "unicode value", apply: (v) => ({ ...(v as Json), [firstKey(v)]: `ü\u202e💥\uFFFD${MARKER}` }) },
  { name: "negative value", apply: (v) => ({ ...(v as Json), [firstKey(v)]: "-1" }) },
];
const messageMutations: Mutation[] = [{ name: "absent", apply: () => null }];
const boolMutations: Mutation[] = [{ name: "flipped", apply: (v) => !v }];
const bytesMutations: Mutation[] = [
  { name: "empty bytes", apply: () => Buffer.alloc(0) },
  { name: "huge bytes", apply: () => Buffer.alloc(100_000, 0x78) },
  { name: "NUL bytes", apply: () => Buffer.from(`a\0${MARKER}`) },
  { name: "newline bytes", apply: () => Buffer.from(`a\n${MARKER}=1`) },
];

const firstKey = (v: Value): string => Object.keys((v ?? {}) as Json)[0] ?? "k";
const MAP_FIELDS = new Set(["labels", "annotations", "sysctls", "label_selector", "unified"]);

/** Every (path, mutation) of a request. */
function fieldCases(rpc: string, request: Json): { path: string[]; mutation: Mutation }[] {
  const out: { path: string[]; mutation: Mutation }[] = [];
  const walk = (value: Value, path: string[]): void => {
    const key = path.at(-1) ?? "";
    const at = (list: Mutation[]) => list.forEach((mutation) => out.push({ path, mutation }));
    if (Buffer.isBuffer(value)) at(bytesMutations);
    else if (typeof value === "string") {
      if (isEnumName(value)) at(enumMutations);
      else if (isId(key)) at([...idMutations, ...stringMutations.slice(0, 3)]);
      else at(stringMutations);
    } else if (typeof value === "number") at(numberMutations);
    else if (typeof value === "boolean") at(boolMutations);
    else if (Array.isArray(value)) {
      at(listMutations);
      value.forEach((item, i) => walk(item, [...path, String(i)]));
    } else if (value !== null && typeof value === "object") {
      if (MAP_FIELDS.has(key)) { at(mapMutations); return; }
      // a list item cannot be absent on the wire (the client refuses null): only a field can
      if (path.length > 0 && !/^\d+$/.test(key)) at(messageMutations);
      for (const [k, v] of Object.entries(value as Json)) walk(v, [...path, k]);
    }
  };
  walk(request, []);
  void rpc;
  return out;
}

function mutate(request: Json, path: string[], mutation: Mutation, rpc: string): Json | undefined {
  const copy = structuredClone(request);
  let parent: Record<string, Value> | Value[] = copy;
  for (const p of path.slice(0, -1)) {
    parent = (parent as Record<string, Value>)[p] as Record<string, Value>;
    if (typeof parent !== "object" || parent === null) return undefined; // an earlier step made it absent
  }
  const last = path.at(-1)!;
  const next = mutation.apply((parent as Record<string, Value>)[last], last, rpc);
  if (next === SKIP) return undefined;
  (parent as Record<string, Value>)[last] = next;
  return copy;
}

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const codeName = (code: number): string =>
  ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"][code] ?? String(code);

const sorted = (r: Record<string, string[]>): Record<string, string[]> =>
  Object.fromEntries(Object.entries(r).filter(([k]) => k !== "netns").map(([k, v]) => [k, [...v].sort()]));

async function stateDirs(env: PodEnv): Promise<string[]> {
  const dirs = ["root/sandboxes", "root/containers", "state/sandboxes", "state/containers"];
  const out: string[] = [];
  for (const d of dirs) for (const e of await readdir(join(env.crib.dir, d)).catch(() => [])) out.push(`${d}/${e}`);
  return out.sort();
}

/** Files a mutation named, anywhere crib could have been led to make them (its cwd, /, /tmp, /etc, /var, /run). */
async function strayFiles(env: PodEnv): Promise<string[]> {
  const roots = [process.cwd(), "/", "/tmp", "/etc", "/var", "/run", "/root"];
  const { stdout } = await run("find", [...roots, "-xdev", "-maxdepth", "4", "-name", `*${MARKER}*`, "-not", "-path", `${env.crib.dir}*`, "-not", "-path", `${env.containerd.dir}*`], { maxBuffer: 16 << 20 })
    .catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? "" }));
  return [...new Set(stdout.split("\n").filter(Boolean))].sort();
}

/** Runs the fuzzer against the crib of `env`. */
export async function fuzz(env: PodEnv, options: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const progress = options.progress ?? (() => undefined);
  const random = prng(options.seed ?? 13);
  const hostDir = join(env.crib.dir, "fuzz-host");
  await mkdir(hostDir, { recursive: true });
  const pod = await env.runPod("fuzz-base", { labels: { app: "fuzz" } });
  const containerId = await env.runContainer(pod, "fuzz-base", { labels: { app: "fuzz" } });
  const ctx: Ctx = { env, n: 0, podId: pod.id, podConfig: pod.config as Json, containerId, hostDir };

  const logFrom = (await env.crib.log()).length;
  const baseline = sorted(await leftovers(env));
  const dirsBefore = await stateDirs(env);
  const strayBefore = await strayFiles(env);
  const createdPods: string[] = [];
  const basePods = [pod.id];

  // one mutation of each field of each rpc, then two at once, seeded
  const single = singleCases(ctx);
  const stride = Math.max(1, options.stride ?? 1);
  const plan = single.filter((_, i) => i % stride === 0);
  while (plan.length < options.cases) {
    const a = single[Math.floor(random() * single.length)]!;
    // two different fields, neither inside the other (a mutation of the outer one would leave no inner one)
    const inside = (x: string[], y: string[]): boolean => x.length <= y.length && x.every((p, i) => y[i] === p);
    const same = single.filter((c) => c.template === a.template && !inside(c.steps[0]!.path, a.steps[0]!.path) && !inside(a.steps[0]!.path, c.steps[0]!.path));
    const b = same[Math.floor(random() * same.length)];
    plan.push(b ? { template: a.template, steps: [a.steps[0]!, b.steps[0]!] } : a);
  }
  plan.length = Math.min(plan.length, options.cases);

  const codes: Record<string, number> = {};
  const failures: string[] = [];
  const fail = (line: string): void => { failures.push(line); options.onFailure?.(line); };
  const timeoutMs = options.callTimeoutMs ?? 60_000;
  let ran = 0;
  for (const [i, c] of plan.entries()) {
    ctx.n = i;
    let request: Json | undefined = c.template.build(ctx);
    for (const s of c.steps) request = request && mutate(request, s.path, s.mutation, c.template.rpc);
    if (!request) continue;
    ran++;
    const label = `${c.template.rpc}${c.template.start ? "+StartContainer" : ""} ${c.steps.map((s) => `${s.path.join(".")}: ${s.mutation.name}`).join(" + ")}`;
    const caseStarted = Date.now();
    const { code, details, res } = await call(env, c.template, request, timeoutMs);
    if (res) {
      if (c.template.rpc === "RunPodSandbox") createdPods.push(String(res["pod_sandbox_id"]));
      await c.template.cleanup?.(ctx, res).catch((err: Error) => fail(`${label}: cleanup failed: ${err.message}`));
    }
    if (code === INTERNAL && details.startsWith("Request message serialization failure")) {
      // the client could not encode it (a value the wire cannot carry): crib never saw it
      codes["NOT_SENT"] = (codes["NOT_SENT"] ?? 0) + 1;
      continue;
    }
    codes[codeName(code)] = (codes[codeName(code)] ?? 0) + 1;
    options.onAnswer?.(`${i} ${label}: ${codeName(code)} ${details.slice(0, 200)}`);
    if (code === UNKNOWN || code === INTERNAL || code === DEADLINE_EXCEEDED || (code === CANCELLED && !c.template.stream) || (code === UNAVAILABLE && c.template.rpc !== "PullImage")) {
      let why = `${label}: ${codeName(code)} after ${Date.now() - caseStarted} ms: ${details.slice(0, 300)}`;
      if (code === DEADLINE_EXCEEDED || code === UNAVAILABLE || code === CANCELLED) {
        // crib stalled, or only this connection? A new one tells; later cases use it
        why += `; ${await answersOnNewConnection(env)}`;
      }
      fail(why);
    }
    const pid = env.crib.pid;
    let alive = pid !== undefined;
    try { if (pid !== undefined) process.kill(pid, 0); } catch { alive = false; }
    if (!alive) { fail(`${label}: crib is gone`); break; }
    // every later case mutates a request about the base pod and container: they must still be there
    const base = await env.client.runtime.ContainerStatus({ container_id: ctx.containerId }, { timeoutMs: timeoutMs }).then((r) => r.status?.state ?? "none", (e: Error) => e.message);
    if (base !== "CONTAINER_RUNNING") {
      fail(`${label}: the base container is no longer running (${base}); starting a new base pod and container`);
      const again = await env.runPod(`fuzz-base-${i}`, { labels: { app: "fuzz" } });
      Object.assign(ctx, { podId: again.id, podConfig: again.config as Json, containerId: await env.runContainer(again, `fuzz-base-${i}`, { labels: { app: "fuzz" } }) });
      basePods.push(again.id);
    }
    if (i % 100 === 99) progress(`${i + 1}/${plan.length} cases, ${failures.length} failures, ${Math.round((Date.now() - started) / 1000)} s; ${JSON.stringify(codes)}`);
  }

  // crib still answers, and after removing what the cases made nothing is left
  await env.client.runtime.Version({}).catch((err: Error) => fail(`Version after the cases: ${err.message}`));
  for (const p of (await env.client.runtime.ListPodSandbox({})).items) {
    if (!basePods.includes(p.id)) { fail(`pod sandbox ${p.id.slice(0, 12)} (${p.metadata?.name}) left after its case's cleanup`); await removePod(ctx, p.id); }
  }
  for (const k of (await env.client.runtime.ListContainers({})).containers) {
    if (!k.metadata?.name.startsWith("fuzz-base")) { fail(`container ${k.id.slice(0, 12)} (${k.metadata?.name}) left after its case's cleanup`); await env.client.runtime.RemoveContainer({ container_id: k.id }); }
  }
  const after = sorted(await leftovers(env));
  for (const [what, items] of Object.entries(after)) {
    const extra = items.filter((x) => !(baseline[what] ?? []).includes(x));
    if (extra.length > 0) fail(`leak: ${what}: ${extra.slice(0, 5).join(", ")}${extra.length > 5 ? ` and ${extra.length - 5} more` : ""}`);
  }
  const { stdout: netns } = await run("ip", ["netns", "list"]);
  const leakedNetns = createdPods.filter((id) => netns.includes(`crib-${id}`));
  if (leakedNetns.length > 0) fail(`leak: netns of removed pods: ${leakedNetns.map((id) => id.slice(0, 12)).join(", ")}`);
  const dirsAfter = await stateDirs(env);
  const extraDirs = dirsAfter.filter((d) => !dirsBefore.includes(d));
  if (extraDirs.length > 0) fail(`leak: state dirs ${extraDirs.slice(0, 5).join(", ")}`);
  // a failed rollback step, a log file that cannot be written…: crib said something went wrong
  for (const line of await loggedErrors(env, logFrom)) {
    if (options.logErrorsFail === false) progress(`crib logged an error: ${line}`);
    else fail(`crib logged an error: ${line}`);
  }
  const stray = (await strayFiles(env)).filter((f) => !strayBefore.includes(f));
  if (stray.length > 0) fail(`files outside crib's dirs: ${stray.slice(0, 10).join(", ")}`);

  for (const id of basePods) await removePod(ctx, id);
  return { cases: ran, codes, failures, ms: Date.now() - started };
}

/** The distinct error-level (pino 50+) lines of crib's log after `from`. */
async function loggedErrors(env: PodEnv, from: number): Promise<string[]> {
  const seen = new Set<string>();
  for (const line of (await env.crib.log()).slice(from).split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line) as { level?: number; msg?: string; err?: unknown; method?: string; step?: string };
    if ((entry.level ?? 0) < 50) continue;
    const err = typeof entry.err === "string" ? entry.err : JSON.stringify(entry.err ?? "");
    seen.add(`${entry.msg}${entry.method ? ` (${entry.method})` : ""}${entry.step ? ` step ${entry.step}` : ""}: ${err.slice(0, 200)}`);
  }
  return [...seen].slice(0, 20);
}

/** Whether crib answers Version on a connection of its own; the env's client is replaced by it. */
async function answersOnNewConnection(env: PodEnv): Promise<string> {
  const started = Date.now();
  const fresh = new CriClient(env.crib.socket, { "grpc.use_local_subchannel_pool": 1 });
  const ok = await fresh.runtime.Version({}, { timeoutMs: 10_000 }).then(() => true, () => false);
  if (!ok) { fresh.close(); return "crib does not answer a new connection within 10 s either"; }
  env.crib.client.close();
  env.crib.client = fresh;
  return `crib answers a new connection in ${Date.now() - started} ms (only the old one was stuck)`;
}

/** How many single-field cases there are (for the report). */
export function singleFieldCases(): number {
  const fake = { env: { crib: { dir: "/x" }, subnet: "10.0.0.0/24" } as PodEnv, n: 0, podId: "p", podConfig: {}, containerId: "c", hostDir: "/x" };
  return singleCases(fake).length;
}

/** One mutation of each field of each rpc (those that apply: a long list needs an item to repeat). */
function singleCases(ctx: Ctx): { template: Template; steps: { path: string[]; mutation: Mutation }[] }[] {
  return templates.flatMap((t) => fieldCases(t.rpc, t.build(ctx)).map((c) => ({ template: t, steps: [c] })))
    .filter((c) => mutate(c.template.build(ctx), c.steps[0]!.path, c.steps[0]!.mutation, c.template.rpc) !== undefined);
}
