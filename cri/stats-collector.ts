// Samples of containers and pods for the stats and metrics rpcs: cgroup CPU,
// memory, swap, process and pressure figures (runtime/cgroup-stats.ts), the
// pod's interface counters (runtime/net-dev.ts) and the writable layer's usage
// as containerd measures it. CPU usage in nano-cores needs two samples: the
// previous one of each container and pod is kept, and a window is at least
// MIN_WINDOW long so that kubelet's back-to-back calls do not measure noise.
import type * as cri from "../proto/gen/cri/types.js";
import type { Containerd } from "../runtime/containerd/client.js";
import type { ImageFsUsage } from "../runtime/image/usage.js";
import type { Container } from "./store/containers.js";
import type { Sandbox } from "./store/sandboxes.js";
import { CgroupStats, parentDirs, type CgroupUsage, type MemoryUsage, type PsiData, type PsiStats } from "../runtime/cgroup-stats.js";
import { readNetDev, type InterfaceCounters } from "../runtime/net-dev.js";
import { SNAPSHOTTER } from "../runtime/containerd/tasks.js";
import { isNotFound } from "../runtime/containerd/errors.js";
import { DEFAULT_IFNAME } from "../cni/network.js";

const MIN_WINDOW_NS = 1_000_000_000n;
const LAYER_TTL_MS = 5000;
const FORGET_AFTER_MS = 10 * 60_000;

export interface LayerUsage {
  timestamp: bigint;
  mountpoint: string;
  bytes: number;
  inodes: number;
}

export interface ContainerSample {
  container: Container;
  /** absent unless the container is running */
  usage?: CgroupUsage;
  nanoCores?: number;
  layer?: LayerUsage;
}

export interface SandboxSample {
  sandbox: Sandbox;
  /** absent unless the sandbox is ready */
  usage?: CgroupUsage;
  nanoCores?: number;
  network?: { timestamp: bigint; interfaces: InterfaceCounters[] };
  containers: ContainerSample[];
}

interface CpuWindow {
  base: { at: bigint; usage: bigint };
  nanoCores: number;
  touched: number;
}

const nowNanos = (): bigint => BigInt(Date.now()) * 1_000_000n;

export class StatsCollector {
  readonly #containerd: Containerd;
  readonly #imageFs: ImageFsUsage;
  readonly #cgroups: CgroupStats;
  readonly #cpu = new Map<string, CpuWindow>();
  readonly #layers = new Map<string, { at: number; usage: Promise<LayerUsage | undefined> }>();

  constructor(options: { containerd: Containerd; imageFs: ImageFsUsage; proc?: string }) {
    this.#containerd = options.containerd;
    this.#imageFs = options.imageFs;
    this.#cgroups = new CgroupStats(options.proc === undefined ? {} : { proc: options.proc });
  }

  async container(c: Container, signal?: AbortSignal): Promise<ContainerSample> {
    this.#forgetOld();
    const sample: ContainerSample = { container: c };
    const [usage, layer] = await Promise.all([
      c.status.state === "CONTAINER_RUNNING" ? this.#usageOf(c.status.pid, c.id) : undefined,
      this.#layer(c.id, signal),
    ]);
    if (usage) {
      sample.usage = usage;
      if (usage.cpu) sample.nanoCores = this.#nanoCores(c.id, usage.cpu.usageNs, usage.timestamp, BigInt(c.status.startedAt || "0"));
    }
    if (layer) sample.layer = layer;
    return sample;
  }

  /** The pod: its cgroup when kubelet gave one, else the sum of its containers and pause. */
  async sandbox(s: Sandbox, containers: Container[], signal?: AbortSignal): Promise<SandboxSample> {
    const samples = await Promise.all(containers.map((c) => this.container(c, signal)));
    const sample: SandboxSample = { sandbox: s, containers: samples };
    if (s.state !== "SANDBOX_READY") return sample;
    const pause = await this.#cgroups.ofPid(s.pid, s.id);
    let usage: CgroupUsage | undefined;
    if (pause && s.config.linux?.cgroup_parent) {
      usage = await this.#cgroups.read(parentDirs(pause));
    } else if (pause) {
      usage = sumUsage([await this.#cgroups.read(pause), ...samples.flatMap((x) => (x.usage ? [x.usage] : []))]);
    }
    if (usage) {
      sample.usage = usage;
      if (usage.cpu) sample.nanoCores = this.#nanoCores(`${s.id}/pod`, usage.cpu.usageNs, usage.timestamp, BigInt(s.createdAt || "0"));
    }
    if (s.netnsPath) {
      const interfaces = await readNetDev(s.pid);
      if (interfaces) sample.network = { timestamp: nowNanos(), interfaces };
    }
    return sample;
  }

  async #usageOf(pid: number, id: string): Promise<CgroupUsage | undefined> {
    const dirs = await this.#cgroups.ofPid(pid, id);
    return dirs ? this.#cgroups.read(dirs) : undefined;
  }

  // The first sample of a container has no window yet: its average since it started.
  #nanoCores(key: string, usage: bigint, at: bigint, startedAt: bigint): number {
    const w = this.#cpu.get(key);
    if (!w) {
      const since = at - startedAt;
      const nanoCores = startedAt > 0n && since > 0n ? Number((usage * 1_000_000_000n) / since) : 0;
      this.#cpu.set(key, { base: { at, usage }, nanoCores, touched: Date.now() });
      return nanoCores;
    }
    w.touched = Date.now();
    const window = at - w.base.at;
    if (window >= MIN_WINDOW_NS && usage >= w.base.usage) {
      w.nanoCores = Number(((usage - w.base.usage) * 1_000_000_000n) / window);
      w.base = { at, usage };
    }
    return w.nanoCores;
  }

  // containerd measures an active overlay snapshot by walking it: kept for a few seconds.
  #layer(id: string, signal?: AbortSignal): Promise<LayerUsage | undefined> {
    const cached = this.#layers.get(id);
    if (cached && Date.now() - cached.at < LAYER_TTL_MS) return cached.usage;
    const usage = (async (): Promise<LayerUsage | undefined> => {
      try {
        const [u, mountpoint] = await Promise.all([
          this.#containerd.snapshots.Usage({ snapshotter: SNAPSHOTTER, key: id }, signal),
          this.#imageFs.root(signal),
        ]);
        return { timestamp: nowNanos(), mountpoint, bytes: Number(u.size), inodes: Number(u.inodes) };
      } catch (err) {
        // gone, or containerd cannot say now: the other figures still count
        if (!isNotFound(err)) this.#layers.delete(id);
        return undefined;
      }
    })();
    this.#layers.set(id, { at: Date.now(), usage });
    return usage;
  }

  #forgetOld(): void {
    const now = Date.now();
    for (const [key, w] of this.#cpu) if (now - w.touched > FORGET_AFTER_MS) this.#cpu.delete(key);
    for (const [key, l] of this.#layers) if (now - l.at > FORGET_AFTER_MS) this.#layers.delete(key);
  }
}

// Pressure does not add up: a pod without a cgroup of its own has none.
function sumUsage(all: CgroupUsage[]): CgroupUsage {
  const out: CgroupUsage = { timestamp: all[0]?.timestamp ?? nowNanos() };
  const cpus = all.flatMap((u) => (u.cpu ? [u.cpu] : []));
  if (cpus.length > 0) {
    out.cpu = cpus.reduce((a, b) => ({ usageNs: a.usageNs + b.usageNs, userNs: a.userNs + b.userNs, systemNs: a.systemNs + b.systemNs }));
  }
  const mems = all.flatMap((u) => (u.memory ? [u.memory] : []));
  if (mems.length > 0) {
    const keys = ["usage", "workingSet", "rss", "cache", "mappedFile", "inactiveFile", "pageFaults", "majorPageFaults"] as const;
    const memory = Object.fromEntries(keys.map((k) => [k, mems.reduce((n, m) => n + m[k], 0)])) as unknown as MemoryUsage;
    out.memory = memory;
  }
  const procs = all.flatMap((u) => (u.processes === undefined ? [] : [u.processes]));
  if (procs.length > 0) out.processes = procs.reduce((a, b) => a + b, 0);
  return out;
}

// --- the CRI's messages ---

const u64 = (n: number | bigint): cri.UInt64Value__Input => ({ value: String(n) });

export function containerAttributes(c: Container): cri.ContainerAttributes__Input {
  return { id: c.id, metadata: c.config.metadata, labels: c.config.labels, annotations: c.config.annotations };
}

const psiData = (d: PsiData | undefined): cri.PsiData__Input | null =>
  (d ? { Total: String(d.totalNs), Avg10: d.avg10, Avg60: d.avg60, Avg300: d.avg300 } : null);

const psi = (p: PsiStats | undefined): { psi?: cri.PsiStats__Input } => (p ? { psi: { Full: psiData(p.full), Some: psiData(p.some) } } : {});

export function cpuUsage(usage: CgroupUsage, nanoCores: number | undefined): cri.CpuUsage__Input | null {
  if (!usage.cpu) return null;
  return {
    timestamp: String(usage.timestamp),
    usage_core_nano_seconds: u64(usage.cpu.usageNs),
    ...(nanoCores === undefined ? {} : { usage_nano_cores: u64(Math.round(nanoCores)) }),
    ...psi(usage.pressure?.cpu),
  };
}

export function memoryUsage(usage: CgroupUsage): cri.MemoryUsage__Input | null {
  const m = usage.memory;
  if (!m) return null;
  return {
    timestamp: String(usage.timestamp),
    working_set_bytes: u64(m.workingSet),
    ...(m.limit === undefined ? {} : { available_bytes: u64(Math.max(0, m.limit - m.workingSet)) }),
    usage_bytes: u64(m.usage),
    rss_bytes: u64(m.rss),
    page_faults: u64(m.pageFaults),
    major_page_faults: u64(m.majorPageFaults),
    ...psi(usage.pressure?.memory),
  };
}

function swapUsage(usage: CgroupUsage): cri.SwapUsage__Input | null {
  const s = usage.memory?.swap;
  if (!s) return null;
  return {
    timestamp: String(usage.timestamp),
    swap_usage_bytes: u64(s.usage),
    // as kubelet does from cAdvisor: none when swap is unlimited
    ...(s.limit === undefined ? {} : { swap_available_bytes: u64(Math.max(0, s.limit - s.usage)) }),
  };
}

/** The CRI's IoUsage holds only pressure. */
function ioUsage(usage: CgroupUsage): cri.IoUsage__Input | null {
  return usage.pressure?.io ? { timestamp: String(usage.timestamp), ...psi(usage.pressure.io) } : null;
}

export function containerStats(s: ContainerSample): cri.ContainerStats__Input {
  const out: cri.ContainerStats__Input = { attributes: containerAttributes(s.container) };
  if (s.usage) {
    out.cpu = cpuUsage(s.usage, s.nanoCores);
    out.memory = memoryUsage(s.usage);
    out.swap = swapUsage(s.usage);
    out.io = ioUsage(s.usage);
  }
  if (s.layer) {
    out.writable_layer = {
      timestamp: String(s.layer.timestamp),
      fs_id: { mountpoint: s.layer.mountpoint },
      used_bytes: u64(s.layer.bytes),
      inodes_used: u64(s.layer.inodes),
    };
  }
  return out;
}

const interfaceUsage = (i: InterfaceCounters): cri.NetworkInterfaceUsage__Input => ({
  name: i.name, rx_bytes: u64(i.rxBytes), rx_errors: u64(i.rxErrors), tx_bytes: u64(i.txBytes), tx_errors: u64(i.txErrors),
});

export function sandboxStats(s: SandboxSample): cri.PodSandboxStats__Input {
  const { sandbox } = s;
  const linux: cri.LinuxPodSandboxStats__Input = { containers: s.containers.map(containerStats) };
  if (s.usage) {
    linux.cpu = cpuUsage(s.usage, s.nanoCores);
    linux.memory = memoryUsage(s.usage);
    linux.io = ioUsage(s.usage);
    if (s.usage.processes !== undefined) linux.process = { timestamp: String(s.usage.timestamp), process_count: u64(s.usage.processes) };
  }
  if (s.network) {
    const eth0 = s.network.interfaces.find((i) => i.name === DEFAULT_IFNAME);
    linux.network = {
      timestamp: String(s.network.timestamp),
      ...(eth0 ? { default_interface: interfaceUsage(eth0) } : {}),
      interfaces: s.network.interfaces.map(interfaceUsage),
    };
  }
  return {
    attributes: { id: sandbox.id, metadata: sandbox.config.metadata, labels: sandbox.config.labels, annotations: sandbox.config.annotations },
    linux,
  };
}
