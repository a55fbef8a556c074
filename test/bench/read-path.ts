// The read side as kubelet uses it, crib against containerd's own CRI plugin
// in one run, on a node with many pods (host-network pods of busybox sleeps,
// and distinct images, so the answers have the size they have on a busy node).
//   rpc  Version, Status, ListPodSandbox, PodSandboxStatus, ListContainers,
//        ContainerStatus, ListImages, ImageStatus, ImageFsInfo: per call, the
//        two sides alternating call by call (ABAB), with the grpc-js client and
//        with the grpc-go one (test/go/cri-go-client) in the same loop. BENCH_N samples (default 300),
//        BENCH_PODS pods (default 100) of 3 containers, BENCH_IMAGES images (default 50).
//   rss  the daemons' VmRSS idle, with 10 pods and with 100 pods of 3 containers:
//        crib + its containerd (no CRI plugin) against containerd with its CRI plugin.
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import { loadavg } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { buildImage, writeOciLayout, type BuiltImage } from "../fixtures/image-builder.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import { MediaType } from "../../runtime/image/oci.js";
import type { CriClient } from "../fixtures/cri-client.js";
import { percentile, removePod, runContainer, runPod, withSides, type Pod, type Side } from "./cri-compare.js";
import { mb, rss, timed, type Benchmark, type Row } from "./bench.js";
import { GoCriClient } from "../fixtures/go-client.js";

const run = promisify(execFile);
const CONTAINERS_PER_POD = 3;
const SETUP_CONCURRENCY = 4;
/** the target: crib's p50 at most containerd's + this */
const TARGET_MS = 0.3;
/** both clients, interleaved in the same loop: grpc-js, and grpc-go dialling the socket by path */
const CLIENTS = ["node", "go"] as const;

const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);

/** Host-network pods (no hostname of their own): no CNI work, which is not what these benchmarks measure. */
const HOST_NETWORK = { hostname: "", linux: { security_context: { namespace_options: { network: "NODE" as const, pid: "CONTAINER" as const } } } };

async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

interface Node {
  pods: Pod[];
  containers: string[];
}

/** Adds pods (each with CONTAINERS_PER_POD running containers) until `node` has `count`. */
async function growTo(side: Side, node: Node, count: number): Promise<void> {
  const names = Array.from({ length: Math.max(0, count - node.pods.length) }, (_, i) => `bench-${node.pods.length + i}`);
  await inParallel(names, SETUP_CONCURRENCY, async (name) => {
    const pod = await runPod(side, name, HOST_NETWORK);
    node.pods.push(pod);
    for (let c = 0; c < CONTAINERS_PER_POD; c++) node.containers.push(await runContainer(side, pod, `c${c}`));
  });
}

async function removeAll(side: Side, node: Node): Promise<void> {
  await inParallel(node.pods.splice(0), SETUP_CONCURRENCY, (pod) => removePod(side, pod).catch(() => undefined));
}

/** `count` images that differ in their config only (one busybox layer for all). */
async function distinctImages(count: number): Promise<Array<[string, BuiltImage]>> {
  const images: Array<[string, BuiltImage]> = [];
  for (let i = 0; i < count; i++) {
    images.push([`docker.io/library/bench-image-${i}:v1`, await buildImage({ config: { Env: [`PATH=/bin`, `BENCH_IMAGE=${i}`], Labels: { "org.crib.bench": String(i) } } })]);
  }
  return images;
}

/** One `ctr images import` of an OCI layout holding every image. */
async function importAll(address: string, namespace: string, images: Array<[string, BuiltImage]>): Promise<void> {
  if (images.length === 0) return;
  const dir = await mkdtemp("/tmp/crib-bench-import-");
  try {
    const layout = join(dir, "layout");
    for (const [name, image] of images) await writeOciLayout(image, layout, name);
    const manifests = images.map(([name, image]) => ({ ...image.target, annotations: { "org.opencontainers.image.ref.name": name } }));
    await writeFile(join(layout, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }));
    await run("tar", ["-C", layout, "-cf", join(dir, "images.tar"), "."]);
    await run("ctr", ["-a", address, "-n", namespace, "images", "import", "--snapshotter", "overlayfs", join(dir, "images.tar")], { maxBuffer: 16 << 20 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

type Call = (client: CriClient) => Promise<unknown>;

/** One read rpc: how the Node client makes it, and the method and request the Go client sends. */
interface Read {
  name: string;
  node: Call;
  go: unknown;
}

function reads(node: Node): Read[] {
  const pod = node.pods[0]!.id;
  const container = node.containers[0]!;
  return [
    { name: "Version", node: (c) => c.runtime.Version({}), go: {} },
    { name: "Status", node: (c) => c.runtime.Status({}), go: {} },
    { name: "ListPodSandbox", node: (c) => c.runtime.ListPodSandbox({}), go: {} },
    { name: "PodSandboxStatus", node: (c) => c.runtime.PodSandboxStatus({ pod_sandbox_id: pod }), go: { pod_sandbox_id: pod } },
    { name: "ListContainers", node: (c) => c.runtime.ListContainers({}), go: {} },
    { name: "ContainerStatus", node: (c) => c.runtime.ContainerStatus({ container_id: container }), go: { container_id: container } },
    { name: "ListImages", node: (c) => c.image.ListImages({}), go: {} },
    { name: "ImageStatus", node: (c) => c.image.ImageStatus({ image: { image: BUSYBOX_REF } }), go: { image: { image: BUSYBOX_REF } } },
    { name: "ImageFsInfo", node: (c) => c.image.ImageFsInfo({}), go: {} },
  ];
}

/** One Go call's latency as grpc-go measured it (JSON and the pipe excluded). */
async function goMs(go: GoCriClient, read: Read): Promise<number> {
  const a = await go.call(read.name, read.go, { timeoutMs: 60_000 });
  if (a.code !== 0 || a.micros.length !== 1) throw new Error(`${read.name} via grpc-go: code ${a.code}: ${a.message}`);
  return a.micros[0]! / 1000;
}

const fmt = (ms: number): string => `${ms.toFixed(2)} ms`;

export const rpcBenchmark: Benchmark = {
  name: "rpc",
  description: "the read-only rpcs with many pods, containers and images, crib vs containerd's CRI, call by call",
  async run({ log }) {
    const n = env("BENCH_N", 300);
    const podCount = env("BENCH_PODS", 100);
    const imageCount = env("BENCH_IMAGES", 50);
    return withSides(log, async (sides, podEnv, ctd) => {
      const images = await distinctImages(imageCount);
      await importAll(podEnv.containerd.address, "crib-test", images); // PodEnv's namespace
      await importAll(ctd.address, "k8s.io", images);
      const nodes = new Map<Side, Node>(sides.map((s) => [s, { pods: [], containers: [] }]));
      try {
        for (const side of sides) {
          const took = await timed(() => growTo(side, nodes.get(side)!, podCount));
          log(`${side.name}: ${podCount} pods, ${podCount * CONTAINERS_PER_POD} containers in ${(took.ms / 1000).toFixed(1)} s`);
        }
        for (const side of sides) {
          const [pods, containers, listed] = await Promise.all([
            side.client.runtime.ListPodSandbox({}), side.client.runtime.ListContainers({}), side.client.image.ListImages({}),
          ]);
          log(`${side.name} lists ${pods.items.length} pods, ${containers.containers.length} containers, ${listed.images.length} images`);
        }
        const calls = new Map(sides.map((s) => [s, reads(nodes.get(s)!)] as const));
        // one grpc-go connection per side, dialled by path as kubelet does
        const goClients = new Map<Side, GoCriClient>();
        for (const side of sides) goClients.set(side, await GoCriClient.connect(side.socket));
        const ms = new Map<string, number[]>();
        const add = (key: string, v: number): void => {
          const xs = ms.get(key);
          if (xs) xs.push(v);
          else ms.set(key, [v]);
        };
        const warmup = 20;
        try {
          for (let i = 0; i < warmup + n; i++) {
            const order = i % 2 === 0 ? sides : [...sides].reverse();
            const clients = i % 4 < 2 ? CLIENTS : [...CLIENTS].reverse();
            for (let r = 0; r < calls.get(sides[0]!)!.length; r++) {
              for (const client of clients) {
                for (const side of order) {
                  const read = calls.get(side)![r]!;
                  const took = client === "node" ? (await timed(() => read.node(side.client))).ms : await goMs(goClients.get(side)!, read);
                  if (i >= warmup) add(`${client}\0${read.name}\0${side.name}`, took);
                }
              }
            }
          }
        } finally {
          for (const go of goClients.values()) await go.close();
        }
        const rows: Row[] = [];
        for (const client of CLIENTS) {
          for (const { name } of calls.get(sides[0]!)!) {
            const crib = ms.get(`${client}\0${name}\0crib`) ?? [];
            const ctdMs = ms.get(`${client}\0${name}\0containerd`) ?? [];
            const [a50, b50, a90, b90] = [percentile(crib, 50), percentile(ctdMs, 50), percentile(crib, 90), percentile(ctdMs, 90)];
            const verdict = a50 <= b50 + TARGET_MS ? "met" : "NOT met";
            const diff = a50 - b50;
            rows.push({ benchmark: "rpc", metric: `${client}: ${name} p50`, value: fmt(a50), note: `containerd ${fmt(b50)}, crib/containerd ${(a50 / b50).toFixed(2)}, ${diff < 0 ? "" : "+"}${diff.toFixed(2)} ms (target +${TARGET_MS}: ${verdict})` });
            rows.push({ benchmark: "rpc", metric: `${client}: ${name} p90`, value: fmt(a90), note: `containerd ${fmt(b90)}, crib/containerd ${(a90 / b90).toFixed(2)} (n=${crib.length})` });
          }
        }
        const [load1] = loadavg();
        rows.push({ benchmark: "rpc", metric: "load average", value: load1!.toFixed(2), note: "1-minute, at the end of the run (2 cores)" });
        rows.push({ benchmark: "rpc", metric: "node present", value: `${podCount} pods`, note: `${podCount * CONTAINERS_PER_POD} containers, ${imageCount + 2} images, host network` });
        return rows;
      } finally {
        for (const [side, node] of nodes) await removeAll(side, node);
      }
    });
  },
};

/** The shims a containerd started (they name its socket in their arguments), and their RSS summed. */
async function shims(address: string): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const args = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (!args[0]?.includes("containerd-shim") || !args.includes(address)) continue;
    count++;
    bytes += await rss(Number(entry)).catch(() => 0);
  }
  return { count, bytes };
}

/** As kubelet does between measurements: relist every second, image and fs stats. */
async function kubeletReads(sides: Side[], seconds: number): Promise<void> {
  for (let s = 0; s < seconds; s++) {
    for (const side of sides) {
      await side.client.runtime.ListPodSandbox({});
      await side.client.runtime.ListContainers({});
      await side.client.image.ListImages({});
      await side.client.image.ImageFsInfo({});
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const RSS_IDLE_TARGET_MB = 60;
const RSS_FULL_TARGET_MB = 90;

export const rssBenchmark: Benchmark = {
  name: "rss",
  description: "daemons' RSS idle, with 10 and with 100 pods of 3 containers: crib + containerd vs containerd with its CRI plugin",
  async run({ log }) {
    const settle = env("BENCH_SETTLE_S", 10);
    return withSides(log, async (sides, podEnv, ctd) => {
      const cribPid = podEnv.crib.pid;
      const cribContainerdPid = podEnv.containerd.daemon.pid;
      const ctdPid = ctd.pid;
      if (cribPid === undefined || cribContainerdPid === undefined || ctdPid === undefined) throw new Error("a daemon has no pid");
      const nodes = new Map<Side, Node>(sides.map((s) => [s, { pods: [], containers: [] }]));
      const rows: Row[] = [];
      const measure = async (stage: string, target?: number): Promise<void> => {
        await kubeletReads(sides, settle);
        const [crib, cribCtd, withCri] = await Promise.all([rss(cribPid), rss(cribContainerdPid), rss(ctdPid)]);
        const [cribShims, ctdShims] = await Promise.all([shims(podEnv.containerd.address), shims(ctd.address)]);
        const verdict = target === undefined ? "" : `; crib ${mb(crib)} MB ${crib <= target * (1 << 20) ? "within" : "OVER"} the ${target} MB target`;
        rows.push({ benchmark: "rss", metric: `${stage}: crib + containerd`, value: `${mb(crib + cribCtd)} MB`, note: `crib ${mb(crib)} + containerd ${mb(cribCtd)}${verdict}` });
        rows.push({ benchmark: "rss", metric: `${stage}: containerd with CRI`, value: `${mb(withCri)} MB`, note: `(crib + containerd)/containerd-with-CRI ${((crib + cribCtd) / withCri).toFixed(2)}` });
        rows.push({ benchmark: "rss", metric: `${stage}: shims`, value: `${cribShims.count} vs ${ctdShims.count}`, note: `crib's ${mb(cribShims.bytes)} MB, containerd CRI's ${mb(ctdShims.bytes)} MB` });
        log(`${stage}: crib ${mb(crib)} MB + containerd ${mb(cribCtd)} MB; containerd with CRI ${mb(withCri)} MB`);
      };
      try {
        await measure("idle", RSS_IDLE_TARGET_MB);
        for (const count of [10, 100]) {
          for (const side of sides) await growTo(side, nodes.get(side)!, count);
          await measure(`${count} pods`, count === 100 ? RSS_FULL_TARGET_MB : undefined);
        }
        return rows;
      } finally {
        for (const [side, node] of nodes) await removeAll(side, node);
      }
    });
  },
};
