// ListMetricDescriptors and ListPodSandboxMetrics: the cAdvisor-named metrics
// crib can give from the same samples as the stats rpcs, for kubelet's
// /metrics/cadvisor when it takes pod and container stats from the CRI.
// Values are whole numbers (the CRI's Metric carries a UInt64Value).
import type * as cri from "../proto/gen/cri/types.js";
import type { CallContext } from "./rpc.js";
import type { Deps } from "./deps.js";
import type { ContainerSample, SandboxSample } from "./stats-collector.js";
import { PRESSURE_RESOURCES, type PressureResource } from "../runtime/cgroup-stats.js";

type Value = [value: number | bigint, extraLabels: string[]];

interface Definition<S> {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE";
  extraLabels?: string[];
  values(s: S): Value[];
}

const BASE_LABELS = ["id", "name", "image"];
const NS_PER_S = 1_000_000_000n;

const one = (v: number | bigint | undefined): Value[] => (v === undefined ? [] : [[v, []]]);

const RESOURCE_NAMES: Record<PressureResource, string> = { cpu: "CPU", memory: "memory", io: "IO" };
// cAdvisor's: "some" tasks waiting, or all of them ("full") stalled
const pressure = (resource: PressureResource, kind: "some" | "full"): Definition<ContainerSample> => ({
  name: `container_pressure_${resource}_${kind === "full" ? "stalled" : "waiting"}_seconds_total`,
  help: kind === "full"
    ? `Total time duration no tasks in the container could make progress due to ${RESOURCE_NAMES[resource]} congestion.`
    : `Total time duration tasks in the container have waited due to ${RESOURCE_NAMES[resource]} congestion.`,
  type: "COUNTER",
  values: (s) => {
    const stall = s.usage?.pressure?.[resource]?.[kind];
    return one(stall && stall.totalNs / NS_PER_S);
  },
});

const containerMetrics: Definition<ContainerSample>[] = [
  { name: "container_cpu_usage_seconds_total", help: "Cumulative CPU time consumed in seconds.", type: "COUNTER",
    values: (s) => one(s.usage?.cpu && s.usage.cpu.usageNs / NS_PER_S) },
  { name: "container_cpu_user_seconds_total", help: "Cumulative user CPU time consumed in seconds.", type: "COUNTER",
    values: (s) => one(s.usage?.cpu && s.usage.cpu.userNs / NS_PER_S) },
  { name: "container_cpu_system_seconds_total", help: "Cumulative system CPU time consumed in seconds.", type: "COUNTER",
    values: (s) => one(s.usage?.cpu && s.usage.cpu.systemNs / NS_PER_S) },
  { name: "container_memory_usage_bytes", help: "Current memory usage in bytes, including all memory regardless of when it was accessed.", type: "GAUGE",
    values: (s) => one(s.usage?.memory?.usage) },
  { name: "container_memory_working_set_bytes", help: "Current working set in bytes.", type: "GAUGE",
    values: (s) => one(s.usage?.memory?.workingSet) },
  { name: "container_memory_rss", help: "Size of RSS in bytes.", type: "GAUGE",
    values: (s) => one(s.usage?.memory?.rss) },
  { name: "container_memory_cache", help: "Number of bytes of page cache memory.", type: "GAUGE",
    values: (s) => one(s.usage?.memory?.cache) },
  { name: "container_memory_mapped_file", help: "Size of memory mapped files in bytes.", type: "GAUGE",
    values: (s) => one(s.usage?.memory?.mappedFile) },
  { name: "container_memory_total_inactive_file_bytes", help: "Current total inactive file in bytes.", type: "GAUGE",
    values: (s) => one(s.usage?.memory?.inactiveFile) },
  { name: "container_memory_swap", help: "Container swap usage in bytes.", type: "GAUGE",
    values: (s) => one(s.usage?.memory?.swap?.usage) },
  { name: "container_spec_memory_limit_bytes", help: "Memory limit for the container.", type: "GAUGE",
    values: (s) => one(s.usage?.memory ? (s.usage.memory.limit ?? 0) : undefined) },
  ...PRESSURE_RESOURCES.flatMap((r) => [pressure(r, "full"), pressure(r, "some")]),
  { name: "container_processes", help: "Number of processes running inside the container.", type: "GAUGE",
    values: (s) => one(s.usage?.processes) },
  { name: "container_fs_usage_bytes", help: "Number of bytes that are consumed by the container on this filesystem.", type: "GAUGE", extraLabels: ["device"],
    values: (s) => (s.layer ? [[s.layer.bytes, [s.layer.mountpoint]]] : []) },
  { name: "container_fs_inodes_usage", help: "Number of inodes used by the container on this filesystem.", type: "GAUGE", extraLabels: ["device"],
    values: (s) => (s.layer ? [[s.layer.inodes, [s.layer.mountpoint]]] : []) },
  { name: "container_start_time_seconds", help: "Start time of the container since unix epoch in seconds.", type: "GAUGE",
    values: (s) => one(s.container.status.startedAt !== "0" ? BigInt(s.container.status.startedAt) / NS_PER_S : undefined) },
  { name: "container_last_seen", help: "Last time a container was seen by the exporter.", type: "GAUGE",
    values: () => one(Math.floor(Date.now() / 1000)) },
];

type Counter = "rxBytes" | "rxPackets" | "rxDropped" | "rxErrors" | "txBytes" | "txPackets" | "txDropped" | "txErrors";
const network = (name: string, help: string, counter: Counter): Definition<SandboxSample> => ({
  name, help, type: "COUNTER", extraLabels: ["interface"],
  values: (s) => (s.network?.interfaces ?? []).map((i): Value => [i[counter], [i.name]]),
});

const podMetrics: Definition<SandboxSample>[] = [
  network("container_network_receive_bytes_total", "Cumulative count of bytes received.", "rxBytes"),
  network("container_network_receive_packets_total", "Cumulative count of packets received.", "rxPackets"),
  network("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", "rxDropped"),
  network("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", "rxErrors"),
  network("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", "txBytes"),
  network("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", "txPackets"),
  network("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", "txDropped"),
  network("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", "txErrors"),
];

const descriptor = (d: Definition<unknown>): cri.MetricDescriptor__Input =>
  ({ name: d.name, help: d.help, label_keys: [...BASE_LABELS, ...(d.extraLabels ?? [])] });

export async function listMetricDescriptors(_deps: Deps, _req: cri.ListMetricDescriptorsRequest, _ctx: CallContext): Promise<cri.ListMetricDescriptorsResponse__Input> {
  return { descriptors: [...containerMetrics, ...podMetrics].map((d) => descriptor(d as Definition<unknown>)) };
}

function metrics<S>(defs: Definition<S>[], sample: S, base: string[], timestamp: string): cri.Metric__Input[] {
  return defs.flatMap((d) => d.values(sample).map(([value, extra]): cri.Metric__Input => ({
    name: d.name, timestamp, metric_type: d.type, label_values: [...base, ...extra], value: { value: String(value) },
  })));
}

const nowNanos = (): string => (BigInt(Date.now()) * 1_000_000n).toString();

export async function listPodSandboxMetrics(deps: Deps, _req: cri.ListPodSandboxMetricsRequest, ctx: CallContext): Promise<cri.ListPodSandboxMetricsResponse__Input> {
  const sandboxes = deps.sandboxes.list().filter((s) => s.state === "SANDBOX_READY");
  const samples = await Promise.all(sandboxes.map((s) => deps.stats.sandbox(s, deps.containers.inSandbox(s.id), ctx.signal)));
  return {
    pod_metrics: samples.map((s): cri.PodSandboxMetrics__Input => ({
      pod_sandbox_id: s.sandbox.id,
      metrics: metrics(podMetrics, s, [s.sandbox.id, s.sandbox.config.metadata?.name ?? "", ""], String(s.network?.timestamp ?? nowNanos())),
      container_metrics: s.containers.map((c) => ({
        container_id: c.container.id,
        metrics: metrics(containerMetrics, c, [c.container.id, c.container.config.metadata?.name ?? "", c.container.imageRef], String(c.usage?.timestamp ?? nowNanos())),
      })),
    })),
  };
}
