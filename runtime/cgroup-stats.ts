// CPU, memory, swap, process and pressure (PSI) figures of a cgroup, read
// from the cgroup file system. The cgroup is found from a process in it
// (/proc/<pid>/cgroup), so the cgroupfs and systemd drivers are alike (or, for
// the cgroupfs driver, by its path, once the process is gone); each controller
// is read from its v1 hierarchy when it has one, else from the unified (v2)
// one, so v1, v2 and hybrid hosts all work. Pressure is a cgroup v2 figure: it
// is read from the cgroup's directory in the unified hierarchy, also on a
// hybrid host.
import { readFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";

export type CgroupVersion = 1 | 2;

/** Where one controller's files of a cgroup are. */
export interface ControllerDir {
  version: CgroupVersion;
  dir: string;
}

/** The directories of one cgroup, by the controllers crib reads. */
export interface CgroupDirs {
  cpu?: ControllerDir;
  memory?: ControllerDir;
  pids?: ControllerDir;
  /** the cgroup's directory in the unified hierarchy, where the kernel keeps its pressure (PSI) files */
  unified?: string;
}

export interface CpuUsage {
  /** cumulative, nanoseconds */
  usageNs: bigint;
  userNs: bigint;
  systemNs: bigint;
}

export interface MemoryUsage {
  usage: number;
  /** usage less inactive file pages, as kubelet evicts by */
  workingSet: number;
  rss: number;
  cache: number;
  mappedFile: number;
  inactiveFile: number;
  pageFaults: number;
  majorPageFaults: number;
  /** undefined when unlimited */
  limit?: number;
  /** absent when the host does not account swap */
  swap?: SwapUsage;
}

export interface SwapUsage {
  usage: number;
  /** the swap the cgroup may use besides its memory; undefined when unlimited */
  limit?: number;
}

/** One line of a pressure file: the share of time (%) tasks stalled over 10 s, 60 s and 300 s, and in all. */
export interface PsiData {
  totalNs: bigint;
  avg10: number;
  avg60: number;
  avg300: number;
}

/** Pressure on a resource: "some" tasks stalled, or "full"y (all of them). */
export interface PsiStats {
  some?: PsiData;
  full?: PsiData;
}

export const PRESSURE_RESOURCES = ["cpu", "memory", "io"] as const;
export type PressureResource = (typeof PRESSURE_RESOURCES)[number];

export interface CgroupUsage {
  /** when read, Unix nanoseconds */
  timestamp: bigint;
  cpu?: CpuUsage;
  memory?: MemoryUsage;
  processes?: number;
  /** cgroup v2 only, and when the kernel has PSI */
  pressure?: Partial<Record<PressureResource, PsiStats>>;
}

interface Hierarchy {
  version: CgroupVersion;
  /** the mount point */
  mount: string;
  /** the cgroup mounted there ("/" unless a subtree is bind-mounted) */
  root: string;
}

/** The cgroup mounts of a mountinfo table: v1 hierarchies by controller, and the unified one. */
export function parseMountinfo(text: string): { v1: Map<string, Hierarchy>; unified?: Hierarchy } {
  const v1 = new Map<string, Hierarchy>();
  let unified: Hierarchy | undefined;
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 0) continue;
    const fsType = fields[dash + 1];
    const root = unescape(fields[3] ?? "/");
    const mount = unescape(fields[4] ?? "");
    if (fsType === "cgroup2") {
      unified ??= { version: 2, mount, root };
    } else if (fsType === "cgroup") {
      for (const option of (fields[dash + 3] ?? "").split(",")) {
        // a hierarchy mounted twice (bind mounts): the first mount of its root wins
        const known = v1.get(option);
        if (!known || (known.root !== "/" && root === "/")) v1.set(option, { version: 1, mount, root });
      }
    }
  }
  return unified ? { v1, unified } : { v1 };
}

/** Where cgroup `path` (as /proc/<pid>/cgroup names it) is in hierarchy `h`'s mount. */
const dirIn = (h: Hierarchy, path: string): string => join(h.mount, h.root === "/" ? path : `/${relative(h.root, path)}`);

// mountinfo escapes space, tab, newline and backslash as octal
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** A process's cgroup paths: by v1 controller, and its unified path under "". */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, controllers, path] = m as unknown as [string, string, string, string];
    if (id === "0" && controllers === "") out.set("", path);
    else for (const c of controllers.split(",")) out.set(c, path);
  }
  return out;
}

/** A pressure file (cpu.pressure, memory.pressure, io.pressure): "some avg10=0.12 avg60=0.05 avg300=0.01 total=1234" lines, total in microseconds. */
export function parsePressure(text: string): PsiStats {
  const out: PsiStats = {};
  for (const line of text.split("\n")) {
    const [kind, ...pairs] = line.trim().split(/\s+/);
    if (kind !== "some" && kind !== "full") continue;
    const fields = new Map(pairs.map((p) => p.split("=") as [string, string | undefined]));
    const total = fields.get("total");
    if (total === undefined || !/^\d+$/.test(total)) continue;
    const avg = (k: string): number => Number(fields.get(k) ?? 0) || 0;
    out[kind] = { totalNs: BigInt(total) * 1000n, avg10: avg("avg10"), avg60: avg("avg60"), avg300: avg("avg300") };
  }
  return out;
}

/** "key value" lines (memory.stat, cpu.stat, cpuacct.stat) as numbers. */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return undefined;
  }
}

const readNumber = async (path: string): Promise<number | undefined> => {
  const text = (await readText(path))?.trim();
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
};

const readBigint = async (path: string): Promise<bigint | undefined> => {
  const text = (await readText(path))?.trim();
  return text !== undefined && /^\d+$/.test(text) ? BigInt(text) : undefined;
};

// v1's "unlimited" is the largest page-aligned int64; anything this large is no limit
const UNLIMITED = 2 ** 62;
// cpuacct.stat counts USER_HZ ticks, which is 100 on every Linux architecture
const NS_PER_TICK = 10_000_000n;

const nowNanos = (): bigint => BigInt(Date.now()) * 1_000_000n;

export interface CgroupStatsOptions {
  /** procfs (tests point it elsewhere) */
  proc?: string;
}

export class CgroupStats {
  readonly #proc: string;
  #mounts: ReturnType<typeof parseMountinfo> | undefined;

  constructor(options: CgroupStatsOptions = {}) {
    this.#proc = options.proc ?? "/proc";
  }

  async #hierarchies(): Promise<ReturnType<typeof parseMountinfo>> {
    this.#mounts ??= parseMountinfo((await readText(join(this.#proc, "self", "mountinfo"))) ?? "");
    return this.#mounts;
  }

  /**
   * The cgroup of process `pid`; undefined when the process is gone, or when
   * `mustContain` (the container id, against a reused pid) is not in its path.
   */
  async ofPid(pid: number, mustContain?: string): Promise<CgroupDirs | undefined> {
    if (!(pid > 0)) return undefined;
    const text = await readText(join(this.#proc, String(pid), "cgroup"));
    if (text === undefined) return undefined;
    const dirs = await this.#locate(parseProcCgroup(text));
    if (mustContain !== undefined && ![dirs.cpu, dirs.memory, dirs.pids].some((d) => d?.dir.includes(mustContain))) return undefined;
    return dirs;
  }

  /** The cgroup at `path` in every hierarchy, as the cgroupfs driver names it (runc's cgroupsPath). */
  async ofPath(path: string): Promise<CgroupDirs> {
    const { v1 } = await this.#hierarchies();
    return this.#locate(new Map(["", ...v1.keys()].map((controller) => [controller, path])));
  }

  async #locate(paths: ReadonlyMap<string, string>): Promise<CgroupDirs> {
    const { v1, unified } = await this.#hierarchies();
    // "" is the unified hierarchy
    const locate = (controller: string): ControllerDir | undefined => {
      const h = v1.get(controller);
      const path = h ? paths.get(controller) : paths.get("");
      const hierarchy = h ?? unified;
      if (path === undefined || hierarchy === undefined) return undefined;
      return { version: hierarchy.version, dir: dirIn(hierarchy, path) };
    };
    const dirs: CgroupDirs = {};
    const cpu = locate("cpuacct") ?? locate("cpu");
    const memory = locate("memory");
    const pids = locate("pids");
    if (cpu) dirs.cpu = cpu;
    if (memory) dirs.memory = memory;
    if (pids) dirs.pids = pids;
    // On a hybrid host, a process left at the unified root would give the whole
    // host's pressure: only a unified cgroup at the same path as the v1 ones counts.
    const v1Path = paths.get("memory") ?? paths.get("cpuacct");
    const unifiedDir = locate("");
    if (unifiedDir && (v1Path === undefined || v1Path === paths.get(""))) dirs.unified = unifiedDir.dir;
    return dirs;
  }

  async read(dirs: CgroupDirs): Promise<CgroupUsage> {
    const [cpu, memory, processes, pressure] = await Promise.all([
      dirs.cpu ? readCpu(dirs.cpu) : undefined,
      dirs.memory ? readMemory(dirs.memory) : undefined,
      readProcesses(dirs.pids ?? dirs.memory ?? dirs.cpu),
      dirs.unified === undefined ? undefined : readPressure(dirs.unified),
    ]);
    const usage: CgroupUsage = { timestamp: nowNanos() };
    if (cpu) usage.cpu = cpu;
    if (memory) usage.memory = memory;
    if (processes !== undefined) usage.processes = processes;
    if (pressure) usage.pressure = pressure;
    return usage;
  }
}

/** The enclosing cgroup of each controller: the pod's, for a sandbox's pause process. */
export function parentDirs(dirs: CgroupDirs): CgroupDirs {
  const up = (d: ControllerDir | undefined): ControllerDir | undefined => (d ? { version: d.version, dir: dirname(d.dir) } : undefined);
  const out: CgroupDirs = {};
  const cpu = up(dirs.cpu), memory = up(dirs.memory), pids = up(dirs.pids);
  if (cpu) out.cpu = cpu;
  if (memory) out.memory = memory;
  if (pids) out.pids = pids;
  if (dirs.unified !== undefined) out.unified = dirname(dirs.unified);
  return out;
}

async function readCpu({ version, dir }: ControllerDir): Promise<CpuUsage | undefined> {
  if (version === 2) {
    const text = await readText(join(dir, "cpu.stat"));
    if (text === undefined) return undefined;
    const stat = parseFlatKeyed(text);
    const us = (k: string) => BigInt(stat.get(k) ?? 0) * 1000n;
    return { usageNs: us("usage_usec"), userNs: us("user_usec"), systemNs: us("system_usec") };
  }
  const usageNs = await readBigint(join(dir, "cpuacct.usage"));
  if (usageNs === undefined) return undefined;
  const stat = parseFlatKeyed((await readText(join(dir, "cpuacct.stat"))) ?? "");
  return { usageNs, userNs: BigInt(stat.get("user") ?? 0) * NS_PER_TICK, systemNs: BigInt(stat.get("system") ?? 0) * NS_PER_TICK };
}

async function readMemory({ version, dir }: ControllerDir): Promise<MemoryUsage | undefined> {
  const v2 = version === 2;
  const [usage, statText, limitText, swapUsage, swapLimitText] = await Promise.all([
    readNumber(join(dir, v2 ? "memory.current" : "memory.usage_in_bytes")),
    readText(join(dir, "memory.stat")),
    readText(join(dir, v2 ? "memory.max" : "memory.limit_in_bytes")),
    v2 ? readNumber(join(dir, "memory.swap.current")) : undefined,
    readText(join(dir, v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes")),
  ]);
  if (usage === undefined || statText === undefined) return undefined;
  const stat = parseFlatKeyed(statText);
  // v1's total_* include the cgroup's descendants, as v2's figures always do
  const get = (v1: string, v2name: string): number => stat.get(v2 ? v2name : v1) ?? 0;
  const inactiveFile = get("total_inactive_file", "inactive_file");
  const limit = parseLimit(limitText);
  const out: MemoryUsage = {
    usage,
    workingSet: Math.max(0, usage - inactiveFile),
    rss: get("total_rss", "anon"),
    cache: get("total_cache", "file"),
    mappedFile: get("total_mapped_file", "file_mapped"),
    inactiveFile,
    pageFaults: get("total_pgfault", "pgfault"),
    majorPageFaults: get("total_pgmajfault", "pgmajfault"),
  };
  if (limit !== undefined) out.limit = limit;
  // The files exist only when the kernel accounts swap. v1's swap in use is
  // memory.stat's, as cAdvisor reads it (memsw.usage less usage, but read at once).
  const swap = v2 ? swapUsage : stat.get("total_swap");
  if (swap !== undefined && swapLimitText !== undefined) {
    out.swap = { usage: swap };
    let swapLimit = parseLimit(swapLimitText);
    // v1's is of memory and swap together
    if (!v2 && swapLimit !== undefined) swapLimit = limit === undefined ? undefined : Math.max(0, swapLimit - limit);
    if (swapLimit !== undefined) out.swap.limit = swapLimit;
  }
  return out;
}

/** A limit file's value; undefined for "max" (v2), v1's huge "unlimited", or no file. */
function parseLimit(text: string | undefined): number | undefined {
  const value = text?.trim();
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return n < UNLIMITED ? n : undefined;
}

async function readPressure(dir: string): Promise<CgroupUsage["pressure"]> {
  const texts = await Promise.all(PRESSURE_RESOURCES.map((r) => readText(join(dir, `${r}.pressure`))));
  const out: NonNullable<CgroupUsage["pressure"]> = {};
  PRESSURE_RESOURCES.forEach((r, i) => {
    const text = texts[i];
    if (text !== undefined) out[r] = parsePressure(text);
  });
  return Object.keys(out).length > 0 ? out : undefined;
}

/** How many processes the kernel's OOM killer has killed in the memory cgroup; 0 when unknown. */
export async function oomKills({ version, dir }: ControllerDir): Promise<number> {
  const text = await readText(join(dir, version === 2 ? "memory.events" : "memory.oom_control"));
  return parseFlatKeyed(text ?? "").get("oom_kill") ?? 0;
}

async function readProcesses(d: ControllerDir | undefined): Promise<number | undefined> {
  if (!d) return undefined;
  const current = await readNumber(join(d.dir, "pids.current"));
  if (current !== undefined) return current;
  // no pids controller: count the processes of the cgroup itself
  const procs = await readText(join(d.dir, "cgroup.procs"));
  return procs === undefined ? undefined : procs.split("\n").filter(Boolean).length;
}

/** Every directory of process `pid`'s cgroup, one per hierarchy (none when the process is gone). */
export async function cgroupDirsOf(pid: number, proc = "/proc"): Promise<string[]> {
  const text = await readText(join(proc, String(pid), "cgroup"));
  if (text === undefined) return [];
  const { v1, unified } = parseMountinfo((await readText(join(proc, "self", "mountinfo"))) ?? "");
  const dirs = new Set<string>();
  for (const [controller, path] of parseProcCgroup(text)) {
    const h = controller === "" ? unified : v1.get(controller);
    if (!h || path === "/") continue;
    dirs.add(dirIn(h, path));
  }
  return [...dirs];
}
