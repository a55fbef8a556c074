// cgroup placement and limits shared by containers and sandboxes.
import type { LinuxContainerResources } from "../../proto/gen/cri/runtime/v1/LinuxContainerResources.js";
import { invalidArgument } from "../errors.js";
import { cleanPath, int64 } from "./base.js";
import type { HostFacts } from "./host.js";
import type { Resources } from "./types.js";

/** The cgroupfs parent crib uses when the CRI names none. */
export const defaultCgroupParent = "/crib";

/**
 * Where runc puts the container's cgroup: `<cgroup_parent>/<id>` for cgroupfs,
 * `<slice>:crib:<id>` for systemd (the last element of the parent must be a slice).
 */
export function cgroupsPath(parent: string, id: string, systemd: boolean): string {
  if (systemd) {
    const slice = parent === "" ? "system.slice" : (cleanPath(parent).split("/").pop() ?? "");
    if (!slice.endsWith(".slice")) {
      throw invalidArgument(`cgroup_parent "${parent}": the systemd cgroup driver needs a parent ending in a .slice`);
    }
    return `${slice}:crib:${id}`;
  }
  return cleanPath(`${parent === "" ? defaultCgroupParent : parent}/${id}`);
}

/** The oom_score_adj runc can set: within -1000..1000 and never below crib's own. */
export const clampOomScoreAdj = (requested: number, minOomScoreAdj: number): number =>
  Math.min(1000, Math.max(requested, minOomScoreAdj, -1000));

/** The CRI's resources applied to a spec's resources (zero means "not specified"). */
export function applyResources(
  base: Resources,
  res: LinuxContainerResources | null | undefined,
  host: HostFacts,
  field: string,
): Resources {
  if (res === null || res === undefined) return base;
  const resources: Resources = { ...base };
  const cpu = { ...resources.cpu };
  const period = int64(res.cpu_period, `${field}.cpu_period`);
  const quota = int64(res.cpu_quota, `${field}.cpu_quota`);
  const shares = int64(res.cpu_shares, `${field}.cpu_shares`);
  if (period !== 0) cpu.period = period;
  if (quota !== 0) cpu.quota = quota;
  if (shares !== 0) cpu.shares = shares;
  if (res.cpuset_cpus !== "") cpu.cpus = res.cpuset_cpus;
  if (res.cpuset_mems !== "") cpu.mems = res.cpuset_mems;
  if (Object.keys(cpu).length > 0) resources.cpu = cpu;

  const memory = { ...resources.memory };
  const limit = int64(res.memory_limit_in_bytes, `${field}.memory_limit_in_bytes`);
  const swap = int64(res.memory_swap_limit_in_bytes, `${field}.memory_swap_limit_in_bytes`);
  if (limit !== 0) {
    memory.limit = limit;
    // Swap equal to the limit: no swap unless asked for, as containerd does.
    if (swap === 0 && host.swapAccounting) memory.swap = limit;
  }
  if (swap !== 0 && host.swapAccounting) memory.swap = swap;
  if (Object.keys(memory).length > 0) resources.memory = memory;

  if (host.hugetlb && res.hugepage_limits.length > 0) {
    resources.hugepageLimits = res.hugepage_limits.map((h, i) => {
      if (h.page_size === "") throw invalidArgument(`${field}.hugepage_limits[${i}].page_size is required`);
      return { pageSize: h.page_size, limit: int64(h.limit, `${field}.hugepage_limits[${i}].limit`) };
    });
  }
  if (host.cgroupV2 && Object.keys(res.unified).length > 0) resources.unified = { ...res.unified };
  return resources;
}

/** What applyResources had to leave out on this node. */
export function resourceWarnings(res: LinuxContainerResources | null | undefined, host: HostFacts, field: string): string[] {
  if (res === null || res === undefined) return [];
  const warnings: string[] = [];
  if (!host.swapAccounting && int64(res.memory_swap_limit_in_bytes, `${field}.memory_swap_limit_in_bytes`) !== 0) {
    warnings.push(`${field}.memory_swap_limit_in_bytes ignored: the node does not account swap`);
  }
  if (!host.hugetlb && res.hugepage_limits.some((h) => int64(h.limit, `${field}.hugepage_limits`) !== 0)) {
    warnings.push(`${field}.hugepage_limits ignored: the node has no hugetlb cgroup controller`);
  }
  if (!host.cgroupV2 && Object.keys(res.unified).length > 0) {
    warnings.push(`${field}.unified ignored: the node uses cgroup v1`);
  }
  return warnings;
}

const EMPTY: LinuxContainerResources = {
  cpu_period: "0", cpu_quota: "0", cpu_shares: "0", memory_limit_in_bytes: "0", oom_score_adj: "0",
  cpuset_cpus: "", cpuset_mems: "", hugepage_limits: [], unified: {}, memory_swap_limit_in_bytes: "0",
};

/**
 * The CRI view of what applyResources put in force: `update` over `previous`,
 * field by field where it gives one (zero and "" leave a field as it was), and
 * nothing the node ignores (swap without swap accounting, hugepages without
 * hugetlb, unified on cgroup v1).
 */
export function resourcesInForce(
  previous: LinuxContainerResources | null | undefined,
  update: LinuxContainerResources | null | undefined,
  host: HostFacts,
): LinuxContainerResources | null {
  if (!update) return previous ?? null;
  const out: LinuxContainerResources = { ...EMPTY, ...(previous ?? {}) };
  const set = (v: string | number | undefined): boolean => v !== undefined && v !== "" && v !== "0" && v !== 0;
  for (const k of ["cpu_period", "cpu_quota", "cpu_shares", "memory_limit_in_bytes", "oom_score_adj"] as const) {
    if (set(update[k])) out[k] = String(update[k]);
  }
  if (update.cpuset_cpus !== "") out.cpuset_cpus = update.cpuset_cpus;
  if (update.cpuset_mems !== "") out.cpuset_mems = update.cpuset_mems;
  if (host.swapAccounting && set(update.memory_swap_limit_in_bytes)) out.memory_swap_limit_in_bytes = String(update.memory_swap_limit_in_bytes);
  if (host.hugetlb && update.hugepage_limits.length > 0) out.hugepage_limits = update.hugepage_limits.map((h) => ({ ...h }));
  if (host.cgroupV2 && Object.keys(update.unified).length > 0) out.unified = { ...out.unified, ...update.unified };
  return out;
}
