// Facts about the node that shape every spec. Read once at start (readHostFacts)
// and passed in, so that the spec builders stay pure.
import { access, readFile } from "node:fs/promises";
import { allCapabilities, capabilitiesFromMask } from "./capabilities.js";
import { appArmorEnabled, type AppArmorSupport } from "./apparmor.js";

export interface HostFacts {
  /** The unified hierarchy is mounted at /sys/fs/cgroup. */
  cgroupV2: boolean;
  /** crib's cgroup driver is systemd (cgroupsPath "slice:prefix:name"). */
  systemdCgroup: boolean;
  /**
   * crib's own oom_score_adj. Without CAP_SYS_RESOURCE runc cannot go below
   * it, so every process's adjustment is raised to at least this.
   */
  minOomScoreAdj: number;
  /** The memory controller accounts swap (memory.memsw.* on v1, memory.swap.max on v2). */
  swapAccounting: boolean;
  /** The hugetlb controller is available. */
  hugetlb: boolean;
  /** The capabilities crib holds; a privileged container gets exactly these. */
  capabilities: readonly string[];
  /** Node's process.arch of the machine, for the seccomp architectures. */
  arch: string;
  /** The node's hostname, for HOSTNAME when a sandbox has none. */
  nodeHostname: string;
  /** AppArmor on the node, and the default profile crib loaded. */
  apparmor: AppArmorSupport;
  /** The online CPUs and memory nodes ("0-3"), for cpuset checks; undefined when unreadable. */
  onlineCpus?: string;
  onlineMems?: string;
}

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined;
  }
}

export interface HostFactsOptions {
  systemdCgroup: boolean;
  nodeHostname: string;
  /** Where procfs and the cgroup file system are mounted (tests point these elsewhere). */
  proc?: string;
  cgroupRoot?: string;
  sys?: string;
}

export async function readHostFacts(options: HostFactsOptions): Promise<HostFacts> {
  const proc = options.proc ?? "/proc";
  const cgroupRoot = options.cgroupRoot ?? "/sys/fs/cgroup";
  const cgroupV2 = await exists(`${cgroupRoot}/cgroup.controllers`);
  const status = (await readText(`${proc}/self/status`)) ?? "";
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const oomScoreAdj = Number.parseInt((await readText(`${proc}/self/oom_score_adj`)) ?? "0", 10);
  let swapAccounting: boolean;
  let hugetlb: boolean;
  if (cgroupV2) {
    const controllers = ((await readText(`${cgroupRoot}/cgroup.controllers`)) ?? "").split(/\s+/);
    hugetlb = controllers.includes("hugetlb");
    // The root cgroup has no memory.swap.max; look at crib's own cgroup.
    const own = /^0::(.*)$/m.exec((await readText(`${proc}/self/cgroup`)) ?? "")?.[1] ?? "/";
    swapAccounting = own !== "/" && (await exists(`${cgroupRoot}${own}/memory.swap.max`));
  } else {
    hugetlb = await exists(`${cgroupRoot}/hugetlb`);
    swapAccounting = await exists(`${cgroupRoot}/memory/memory.memsw.limit_in_bytes`);
  }
  const sys = options.sys ?? "/sys";
  const online = {
    cpus: (await readText(`${sys}/devices/system/cpu/online`))?.trim(),
    mems: (await readText(`${sys}/devices/system/node/online`))?.trim(),
  };
  return {
    cgroupV2,
    systemdCgroup: options.systemdCgroup,
    minOomScoreAdj: Number.isNaN(oomScoreAdj) ? 0 : oomScoreAdj,
    swapAccounting,
    hugetlb,
    capabilities: capEff === undefined ? allCapabilities : capabilitiesFromMask(capEff),
    arch: process.arch,
    nodeHostname: options.nodeHostname,
    apparmor: { enabled: await appArmorEnabled(options.sys) },
    ...(online.cpus ? { onlineCpus: online.cpus } : {}),
    ...(online.mems ? { onlineMems: online.mems } : {}),
  };
}
