// lifecycle: crib against containerd 1.6's own CRI plugin in one run, with the
// requests kubelet sends (labels, annotations, DNS, namespace options, the
// /etc/hosts and termination-log mounts, env, resources, masked paths) and the
// :authority it sends ("localhost"), every call with a deadline as kubelet sets.
// Every figure is taken through two clients, each on one connection as kubelet keeps:
// grpc-go built from Debian's packages dialling the socket by its path (kubelet's
// dial; :authority is the path), and grpc-js with :authority "localhost". Rounds run
// the four (client × runtime) sides in an order that reverses every round (A B C D,
// D C B A, …) so load on the shared machine hits both runtimes alike; the ratios
// are crib / containerd CRI through the same client in the same run.
//   per rpc     RunPodSandbox, CreateContainer, StartContainer, StopContainer+RemoveContainer
//               (a container that exits on SIGTERM, stopped with a grace period), StopPodSandbox,
//               RemovePodSandbox, and the whole pod cycle
//   concurrent  10 and 40 pods brought up at once (RunPodSandbox + CreateContainer + StartContainer each), wall time
//   pull        PullImage of a small image from a loopback registry, RemoveImage of it; a ~100 MB
//               pull against `ctr images pull` (the pull benchmark)
// BENCH_N sets the rounds per side (default 20); BENCH_CLIENTS=go,node picks the
// clients (default both); BENCH_TRACE=1 runs crib with
// CRIB_TRACE_CALLS and prints what each rpc cost it (containerd calls, execs, file syncs);
// BENCH_PROFILE=<dir> has crib write a CPU profile (node --cpu-prof) there.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import { buildImage, randomLayer } from "../fixtures/image-builder.js";
import { randomBytes } from "node:crypto";
import { CriClient } from "../fixtures/cri-client.js";
import { GoCriClient } from "../fixtures/go-client.js";
import { startRegistry } from "../fixtures/registry.js";
import { pushImage } from "../fixtures/push.js";
import { RegistryClient } from "../../runtime/image/registry.js";
import type * as cri from "../../proto/gen/cri/types.js";
import { ContainerdCri } from "./containerd-cri.js";
import { pullBenchmark } from "./pull.js";
import { median, timed, type Benchmark, type Row } from "./bench.js";

const rounds = (): number => Number(process.env["BENCH_N"] ?? 20);
const WARMUP = 2;
/** kubelet's default runtime-request-timeout */
const KUBELET_TIMEOUT_MS = 120_000;
/** as kubelet dials: its :authority is "localhost" */
const KUBELET_CHANNEL = { "grpc.default_authority": "localhost" };

/** One rpc through one client: its answer and its client-side latency. */
type Call = (method: string, request: object) => Promise<{ ms: number; response: Record<string, unknown> }>;

/** grpc-js: the wall time of the call. */
function nodeCall(client: CriClient): Call {
  const raw = { ...client.runtime, ...client.image } as unknown as Record<string, (req: object, o: { timeoutMs: number }) => Promise<Record<string, unknown>>>;
  return async (method, request) => {
    const fn = raw[method];
    if (!fn) throw new Error(`no CRI method ${method}`);
    const t = await timed(() => fn(request, { timeoutMs: KUBELET_TIMEOUT_MS }));
    return { ms: t.ms, response: t.value };
  };
}

/** Protobuf JSON for the Go client: bytes (Buffers) as base64. */
const toProtoJson = (request: object): unknown =>
  JSON.parse(JSON.stringify(request, (_k, v: unknown) =>
    v !== null && typeof v === "object" && (v as { type?: unknown }).type === "Buffer" && Array.isArray((v as { data?: unknown }).data)
      ? Buffer.from((v as { data: number[] }).data).toString("base64")
      : v));

/** grpc-go: the latency grpc-go measured around Invoke (the JSON pipe to it excluded). */
function goCall(client: GoCriClient): Call {
  return async (method, request) => {
    const a = await client.call(method, toProtoJson(request), { timeoutMs: KUBELET_TIMEOUT_MS });
    if (a.code !== 0) throw new Error(`${method} via grpc-go: code ${a.code}: ${a.message}`);
    return { ms: (a.micros[0] ?? NaN) / 1000, response: a.response ?? {} };
  };
}

type ClientKind = "go" | "node";

interface Side {
  runtime: "crib" | "containerd";
  client: ClientKind;
  call: Call;
  /** where this side's pods keep their logs and kubelet-made files */
  dir: string;
  namespace: string;
}

interface Pod {
  id: string;
  config: cri.PodSandboxConfig__Input;
}

/** A PodSandboxConfig as kubelet 1.30 sends it for a plain pod. */
export function kubeletSandboxConfig(side: Side, name: string): cri.PodSandboxConfig__Input {
  const uid = `0e5a1c2d-${name.padEnd(4, "0").slice(0, 4)}-4a6b-9c8d-${Date.now().toString(16).padStart(12, "0").slice(-12)}`;
  return {
    metadata: { name, namespace: side.namespace, uid, attempt: 0 },
    hostname: name,
    log_directory: join(side.dir, "pods", `${side.namespace}_${name}_${uid}`),
    dns_config: { servers: ["10.96.0.10"], searches: [`${side.namespace}.svc.cluster.local`, "svc.cluster.local", "cluster.local"], options: ["ndots:5"] },
    port_mappings: [],
    labels: { "io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": side.namespace, "io.kubernetes.pod.uid": uid, app: "bench" },
    annotations: { "kubernetes.io/config.seen": new Date().toISOString(), "kubernetes.io/config.source": "api" },
    linux: {
      security_context: { namespace_options: { network: "POD", pid: "CONTAINER", ipc: "POD" } },
      sysctls: {},
    },
  };
}

/** A CreateContainerRequest as kubelet sends it: a busybox that exits on SIGTERM. */
export async function kubeletContainerRequest(side: Side, pod: Pod, name: string): Promise<cri.CreateContainerRequest__Input> {
  const meta = pod.config.metadata!;
  const podDir = join(side.dir, "kubelet", meta.uid!);
  const hosts = join(podDir, "etc-hosts");
  const termination = join(podDir, "containers", name, "termination-log");
  const token = join(podDir, "volumes", "kube-api-access");
  await mkdir(join(podDir, "containers", name), { recursive: true });
  await mkdir(token, { recursive: true });
  await writeFile(hosts, "127.0.0.1 localhost\n");
  await writeFile(termination, "");
  await writeFile(join(token, "token"), "bench");
  const env = Object.entries({
    KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443", KUBERNETES_SERVICE_PORT_HTTPS: "443",
    KUBERNETES_PORT: "tcp://10.96.0.1:443", KUBERNETES_PORT_443_TCP: "tcp://10.96.0.1:443", KUBERNETES_PORT_443_TCP_PROTO: "tcp",
    KUBERNETES_PORT_443_TCP_PORT: "443", KUBERNETES_PORT_443_TCP_ADDR: "10.96.0.1",
  }).map(([key, value]) => ({ key, value: Buffer.from(value) }));
  return {
    pod_sandbox_id: pod.id,
    config: {
      metadata: { name, attempt: 0 },
      image: { image: BUSYBOX_REF, user_specified_image: BUSYBOX_REF },
      command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
      working_dir: "",
      envs: env,
      mounts: [
        { container_path: "/var/run/secrets/kubernetes.io/serviceaccount", host_path: token, readonly: true, selinux_relabel: false, propagation: "PROPAGATION_PRIVATE" },
        { container_path: "/etc/hosts", host_path: hosts, readonly: false, propagation: "PROPAGATION_PRIVATE" },
        { container_path: "/dev/termination-log", host_path: termination, readonly: false, propagation: "PROPAGATION_PRIVATE" },
      ],
      labels: { "io.kubernetes.container.name": name, "io.kubernetes.pod.name": meta.name!, "io.kubernetes.pod.namespace": meta.namespace!, "io.kubernetes.pod.uid": meta.uid! },
      annotations: {
        "io.kubernetes.container.hash": "8f3ab12c", "io.kubernetes.container.restartCount": "0",
        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log", "io.kubernetes.container.terminationMessagePolicy": "File",
        "io.kubernetes.pod.terminationGracePeriod": "30",
      },
      log_path: `${name}/0.log`,
      stdin: false, stdin_once: false, tty: false,
      linux: {
        resources: { cpu_period: 100000, cpu_quota: 0, cpu_shares: 2, memory_limit_in_bytes: 0, oom_score_adj: 1000, hugepage_limits: [], unified: {}, memory_swap_limit_in_bytes: 0 },
        security_context: {
          namespace_options: { network: "POD", pid: "CONTAINER", ipc: "POD" },
          masked_paths: ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
          readonly_paths: ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
      },
    },
    sandbox_config: pod.config,
  };
}

async function runPod(side: Side, name: string): Promise<{ ms: number; pod: Pod }> {
  const config = kubeletSandboxConfig(side, name);
  await mkdir(config.log_directory!, { recursive: true });
  const { ms, response } = await side.call("RunPodSandbox", { config, runtime_handler: "" });
  return { ms, pod: { id: String(response["pod_sandbox_id"]), config } };
}

async function podUp(side: Side, name: string): Promise<Pod> {
  const { pod } = await runPod(side, name);
  const { response } = await side.call("CreateContainer", await kubeletContainerRequest(side, pod, "app"));
  await side.call("StartContainer", { container_id: response["container_id"] });
  return pod;
}

async function podDown(side: Side, pod: Pod): Promise<void> {
  await side.call("StopPodSandbox", { pod_sandbox_id: pod.id });
  await side.call("RemovePodSandbox", { pod_sandbox_id: pod.id });
}

class Samples {
  readonly #ms = new Map<string, number[]>();
  readonly #ops: string[] = [];
  add(side: Side, op: string, ms: number): void {
    if (!this.#ops.includes(op)) this.#ops.push(op);
    const key = `${op}\0${side.client}\0${side.runtime}`;
    this.#ms.set(key, [...(this.#ms.get(key) ?? []), ms]);
  }
  rows(benchmark: string): Row[] {
    const clients = (["go", "node"] as const).filter((c) => this.#ms.has(`${this.#ops[0]}\0${c}\0crib`));
    return clients.flatMap((client) => this.#ops.map((op) => {
      const crib = this.#ms.get(`${op}\0${client}\0crib`) ?? [];
      const ctd = this.#ms.get(`${op}\0${client}\0containerd`) ?? [];
      const [a, b] = [median(crib), median(ctd)];
      const unit = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);
      return { benchmark: `${benchmark} (${client} client)`, metric: op, value: (a / b).toFixed(2), note: `crib ${unit(a)}, containerd CRI ${unit(b)} (medians, n=${crib.length}+${ctd.length})` };
    }));
  }
}

/** A B C D, then D C B A, … : `step(side, round, measured)` for every side every round. */
async function alternate(sides: Side[], n: number, warmup: number, step: (side: Side, i: number, measured: boolean) => Promise<void>): Promise<void> {
  for (let i = 0; i < warmup + n; i++) {
    const order = i % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) await step(side, i, i >= warmup);
  }
}

function clientKinds(): ClientKind[] {
  const kinds = (process.env["BENCH_CLIENTS"] ?? "go,node").split(",").filter((k): k is ClientKind => k === "go" || k === "node");
  if (kinds.length === 0) throw new Error(`BENCH_CLIENTS=${process.env["BENCH_CLIENTS"]}: name go and/or node`);
  return kinds;
}

async function withSides<T>(log: (line: string) => void, body: (sides: Side[], env: PodEnv, ctd: ContainerdCri) => Promise<T>): Promise<T> {
  if (process.env["BENCH_TRACE"]) process.env["CRIB_TRACE_CALLS"] = "1";
  // crib (a child) writes a V8 CPU profile there when it exits
  if (process.env["BENCH_PROFILE"]) process.env["CRIB_NODE_FLAGS"] = `--cpu-prof --cpu-prof-dir=${process.env["BENCH_PROFILE"]}`;
  const env = await PodEnv.start({ config: { log_level: "info" } });
  const closers: (() => Promise<void> | void)[] = [];
  try {
    const ctd = await ContainerdCri.start();
    closers.push(() => ctd.close());
    const runtimes = [
      { runtime: "crib" as const, socket: env.crib.socket, dir: env.crib.dir, namespace: "crib-bench" },
      { runtime: "containerd" as const, socket: ctd.address, dir: ctd.dir, namespace: "ctd-bench" },
    ];
    const sides: Side[] = [];
    for (const kind of clientKinds()) {
      for (const r of runtimes) {
        let call: Call;
        if (kind === "node") {
          const client = new CriClient(r.socket, KUBELET_CHANNEL);
          closers.push(() => client.close());
          call = nodeCall(client);
        } else {
          const client = await GoCriClient.connect(r.socket);
          closers.push(() => client.close());
          call = goCall(client);
        }
        sides.push({ runtime: r.runtime, client: kind, call, dir: r.dir, namespace: `${r.namespace}-${kind}` });
      }
    }
    for (const s of sides) log(`${s.runtime} via ${s.client}: ${JSON.stringify((await s.call("Version", {})).response)}`);
    return await body(sides, env, ctd);
  } finally {
    for (const close of closers.reverse()) await close();
    if (process.env["BENCH_TRACE"]) printTrace(await env.crib.log(), log);
    await env.close();
  }
}

/**
 * From crib's "rpc traced" log lines: per method, the median ms, and per kind of call inside it
 * how many per call (in how many of the calls it appeared at all) and the median ms it took where it did.
 */
function printTrace(text: string, log: (line: string) => void): void {
  const byMethod = new Map<string, { ms: number; calls: Record<string, string> }[]>();
  for (const line of text.split("\n")) {
    if (!line.includes("rpc traced")) continue;
    const r = JSON.parse(line) as { method: string; ms: number; calls: Record<string, string> };
    byMethod.set(r.method, [...(byMethod.get(r.method) ?? []), r]);
  }
  // RunPodSandbox's own timeline: when each part ended, ms after the start
  const laps = new Map<string, number[]>();
  for (const line of text.split("\n")) {
    if (!line.includes('"sandbox ready"')) continue;
    const r = JSON.parse(line) as { msSinceStart?: Record<string, number> };
    for (const [k, v] of Object.entries(r.msSinceStart ?? {})) laps.set(k, [...(laps.get(k) ?? []), v]);
  }
  if (laps.size > 0) log(`RunPodSandbox parts ended at (median ms after its start): ${[...laps].map(([k, v]) => `${k} ${median(v).toFixed(1)}`).join(", ")}`);
  for (const [method, all] of byMethod) {
    const kinds = new Map<string, { n: number[]; ms: number[] }>();
    for (const r of all) {
      for (const [k, v] of Object.entries(r.calls)) {
        const [n, ms] = [Number(v.split("×")[0]), Number(v.split(" ")[1])];
        const e = kinds.get(k) ?? { n: [], ms: [] };
        e.n.push(n);
        e.ms.push(ms);
        kinds.set(k, e);
      }
    }
    const parts = [...kinds].map(([k, e]) => {
      const where = e.n.length === all.length ? "" : ` in ${e.n.length}/${all.length} calls`;
      return `${k} ${median(e.n)}×${where} ${median(e.ms).toFixed(1)} ms`;
    });
    log(`trace ${method}: n=${all.length}, median ${median(all.map((r) => r.ms)).toFixed(1)} ms: ${parts.join("; ") || "no calls"}`);
  }
}

async function perRpc(sides: Side[], log: (line: string) => void): Promise<Row[]> {
  const s = new Samples();
  const n = rounds();
  await alternate(sides, n, WARMUP, async (side, i, measured) => {
    const runp = await runPod(side, `cycle-${i}`);
    const pod = runp.pod;
    const create = await side.call("CreateContainer", await kubeletContainerRequest(side, pod, "app"));
    const id = create.response["container_id"];
    const start = await side.call("StartContainer", { container_id: id });
    const stop = await side.call("StopContainer", { container_id: id, timeout: 10 });
    const rm = await side.call("RemoveContainer", { container_id: id });
    const stopRm = { ms: stop.ms + rm.ms };
    const stopp = await side.call("StopPodSandbox", { pod_sandbox_id: pod.id });
    const rmp = await side.call("RemovePodSandbox", { pod_sandbox_id: pod.id });
    if (!measured) return;
    s.add(side, "RunPodSandbox", runp.ms);
    s.add(side, "CreateContainer", create.ms);
    s.add(side, "StartContainer", start.ms);
    s.add(side, "StopContainer+RemoveContainer", stopRm.ms);
    s.add(side, "StopContainer", stop.ms);
    s.add(side, "RemoveContainer", rm.ms);
    s.add(side, "StopPodSandbox", stopp.ms);
    s.add(side, "RemovePodSandbox", rmp.ms);
    s.add(side, "whole pod cycle", runp.ms + create.ms + start.ms + stopRm.ms + stopp.ms + rmp.ms);
  });
  log(`per-rpc rounds done (${n} per side)`);
  return s.rows("lifecycle");
}

async function concurrent(sides: Side[], counts: number[], log: (line: string) => void): Promise<Row[]> {
  const s = new Samples();
  const reps = Number(process.env["BENCH_CONCURRENT_N"] ?? 2);
  for (const count of counts) {
    await alternate(sides, reps, 0, async (side, i) => {
      const up = await timed(() => Promise.all(Array.from({ length: count }, (_, k) => podUp(side, `c${count}-${i}-${k}`))));
      const down = await timed(() => Promise.all(up.value.map((p) => podDown(side, p))));
      s.add(side, `${count} pods at once, up`, up.ms);
      s.add(side, `${count} pods at once, down`, down.ms);
      log(`${side.runtime} via ${side.client}: ${count} pods up ${up.ms.toFixed(0)} ms, down ${down.ms.toFixed(0)} ms`);
    });
  }
  return s.rows("lifecycle");
}

async function smallPull(sides: Side[], env: PodEnv, ctd: ContainerdCri, log: (line: string) => void): Promise<Row[]> {
  await using registry = await startRegistry();
  const ref = `${registry.host}/small/data:1`;
  // one 1 MiB layer no other image shares, so every pull after a RemoveImage fetches and unpacks it again
  const image = await buildImage({ layers: [randomLayer(1 << 20, `small-${randomBytes(4).toString("hex")}`)] });
  {
    await using pusher = new RegistryClient();
    await pushImage(pusher, ref, image);
  }
  // containerd's CRI reaches a plain-HTTP registry through a hosts.toml
  const certs = join(ctd.dir, "certs.d", registry.host);
  await mkdir(certs, { recursive: true });
  await writeFile(join(certs, "hosts.toml"), `server = "http://${registry.host}"\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`);
  void env;
  const s = new Samples();
  await alternate(sides, rounds(), WARMUP, async (side, _i, measured) => {
    const pulled = await side.call("PullImage", { image: { image: ref } });
    const removed = await side.call("RemoveImage", { image: { image: ref } });
    if (!measured) return;
    s.add(side, "PullImage small (1 MiB, 1 layer)", pulled.ms);
    s.add(side, "RemoveImage", removed.ms);
  });
  log(`small pulls done: ${ref}`);
  return s.rows("lifecycle");
}

export const lifecycleBenchmark: Benchmark = {
  name: "lifecycle",
  description: "pod and container lifecycle, concurrent pods and pulls, crib vs containerd's CRI, kubelet-shaped requests (ratios: crib / containerd CRI)",
  async run({ runs, log }) {
    const only = (process.env["BENCH_ONLY"] ?? "rpc,concurrent,pull,pull100").split(",");
    const rows: Row[] = [];
    await withSides(log, async (sides, env, ctd) => {
      await ctdReady(ctd);
      if (only.includes("rpc")) rows.push(...(await perRpc(sides, log)));
      if (only.includes("concurrent")) rows.push(...(await concurrent(sides, [10, 40], log)));
      if (only.includes("pull")) rows.push(...(await smallPull(sides, env, ctd, log)));
    });
    if (only.includes("pull100")) {
      const pull = await pullBenchmark.run({ runs: Math.max(2, Math.min(runs, 3)), log });
      rows.push(...pull.filter((r) => r.metric !== "crib RSS growth (median)").map((r) => ({ ...r, benchmark: "lifecycle 100 MB pull" })));
    }
    return rows;
  },
};

/** containerd's CRI must use the hosts.toml dir the small pull writes. */
async function ctdReady(ctd: ContainerdCri): Promise<void> {
  const text = await readFile(join(ctd.dir, "config.toml"), "utf8");
  if (!text.includes("config_path")) throw new Error("containerd CRI config has no registry config_path");
}
