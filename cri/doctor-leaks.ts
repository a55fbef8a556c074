// The leak audit of `crib doctor`: what crib made for a sandbox or container and
// should have removed with it. Only crib's own objects are ever listed: those its
// containerd namespace, its CNI cache (<root>/cni-cache), its intent journal and
// its state directories name. A shared node has other runtimes on it (another
// crib with another root or namespace, containerd's own CRI on the same CNI
// network), and a netns or an IP reservation that none of crib's records names
// is theirs, however much it looks like crib's.
//
// A leak is an object named by crib's records that belongs to no live sandbox or
// container: live ones are the records crib lists (crib.kind label and crib's
// extension). Anything younger than the leak age may belong to a call in
// progress and is left alone. IPs go back through CNI DEL with the cached config
// and args (host-local's files are never unlinked: that would free an address
// host-local can hand out twice).
import { execFile } from "node:child_process";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import type { Check, DoctorContext, Leak, Verdict } from "./doctor.js";
import { KIND_LABEL, SANDBOX_EXTENSION } from "./store/sandboxes.js";
import { CONTAINER_EXTENSION } from "./store/containers.js";
import type { Containerd } from "../runtime/containerd/client.js";
import { deleteContainer, deleteTask, killTask, removeSnapshot, SNAPSHOTTER, taskState } from "../runtime/containerd/tasks.js";
import { NetnsManager } from "../runtime/netns.js";
import { loadNetworkConfig, type NetworkConfigList } from "../cni/config.js";
import { CniNetwork, type CachedAttachment } from "../cni/network.js";
import { imageVolumeOwner } from "../runtime/image-volume.js";
import { mountPoints } from "../runtime/mount.js";
import { listShims } from "../runtime/containerd/shims.js";

const run = promisify(execFile);
/** host-local's default data directory; a network config's ipam.dataDir overrides it. */
export const HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks";
const TASK_DIR = "io.containerd.runtime.v2.task";
const EXPIRE_LABEL = "containerd.io/gc.expire";
/** crib's CNI cache and intent journal, under `root` */
export const CNI_CACHE_DIR = "cni-cache";
export const INTENTS_DIR = "intents";

interface Record_ {
  id: string;
  labels: Record<string, string>;
  extensions: Record<string, unknown>;
  snapshot_key: string;
  created_at: { seconds: string } | null;
}

/** What crib has and what its files name, read once per run. */
interface Known {
  /** sandboxes crib lists */
  sandboxes: Set<string>;
  /** every container record in crib's namespace, sandboxes included */
  containers: Set<string>;
  /** records crib never lists (no crib.kind label or no crib extension) */
  strays: Record_[];
  snapshotKeys: Set<string>;
  /** CNI cache entries by sandbox id */
  cache: Map<string, CachedAttachment>;
  /** ids the intent journal names, with the netns it recorded */
  journal: Map<string, { netnsPath: string }>;
  /** per-sandbox and per-container directories by id */
  dirs: Map<string, string[]>;
  /** every id crib's records name: the only ones whose netns, IPs and rules can be crib's */
  owned: Set<string>;
}

const knownOf = new WeakMap<DoctorContext, Promise<Known>>();

const listable = (r: Record_): boolean =>
  (r.labels[KIND_LABEL] === "sandbox" && SANDBOX_EXTENSION in r.extensions) || (r.labels[KIND_LABEL] === "container" && CONTAINER_EXTENSION in r.extensions);

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

/** The per-object directories crib makes: <root>/sandboxes, <state>/sandboxes, <root>/containers, <state>/containers. */
export function stateDirBases(ctx: DoctorContext): Array<{ base: string; of: "sandbox" | "container" }> {
  const { root, state } = ctx.config;
  return [
    { base: join(root, "sandboxes"), of: "sandbox" }, { base: join(state, "sandboxes"), of: "sandbox" },
    { base: join(root, "containers"), of: "container" }, { base: join(state, "containers"), of: "container" },
  ];
}

async function readKnown(ctx: DoctorContext, c: Containerd): Promise<Known> {
  const { containers } = await c.containers.List({ filters: [] }, AbortSignal.timeout(10_000));
  const records = containers as unknown as Record_[];
  const cache = new Map<string, CachedAttachment>();
  const cacheDir = join(ctx.config.root, CNI_CACHE_DIR);
  for (const name of await entries(cacheDir)) {
    if (!name.endsWith(".json")) continue;
    const entry = await readJson<CachedAttachment>(join(cacheDir, name));
    if (entry?.kind === "cribCniCacheV1" && entry.containerId) cache.set(entry.containerId, entry);
  }
  const journal = new Map<string, { netnsPath: string }>();
  const journalDir = join(ctx.config.root, INTENTS_DIR);
  for (const name of await entries(journalDir)) {
    if (!name.endsWith(".json")) continue;
    const intent = await readJson<{ sandbox?: { id?: string; netnsPath?: string }; container?: { id?: string } }>(join(journalDir, name));
    const id = intent?.sandbox?.id ?? intent?.container?.id;
    if (id) journal.set(id, { netnsPath: intent?.sandbox?.netnsPath ?? "" });
  }
  const dirs = new Map<string, string[]>();
  for (const { base } of stateDirBases(ctx)) {
    for (const id of await entries(base)) dirs.set(id, [...(dirs.get(id) ?? []), join(base, id)]);
  }
  const ids = records.map((r) => r.id);
  return {
    sandboxes: new Set(records.filter((r) => listable(r) && r.labels[KIND_LABEL] === "sandbox").map((r) => r.id)),
    containers: new Set(ids),
    strays: records.filter((r) => !listable(r)),
    snapshotKeys: new Set(records.map((r) => r.snapshot_key).filter(Boolean)),
    cache, journal, dirs,
    owned: new Set([...ids, ...cache.keys(), ...journal.keys(), ...dirs.keys()]),
  };
}

function known(ctx: DoctorContext, c: Containerd): Promise<Known> {
  let k = knownOf.get(ctx);
  if (!k) {
    k = readKnown(ctx, c);
    knownOf.set(ctx, k);
  }
  return k;
}

const short = (id: string): string => (id.length > 12 ? id.slice(0, 12) : id);

async function oldEnough(ctx: DoctorContext, path: string): Promise<boolean> {
  if (ctx.leakAgeMs <= 0) return true;
  const s = await stat(path).catch(() => undefined);
  return s !== undefined && Date.now() - Math.max(s.ctimeMs, s.mtimeMs) >= ctx.leakAgeMs;
}

const olderThan = (ctx: DoctorContext, seconds: string | undefined): boolean =>
  ctx.leakAgeMs <= 0 || Date.now() - Number(seconds ?? 0) * 1000 >= ctx.leakAgeMs;

function leakVerdict(check: string, [one, many]: [string, string], leaks: Leak[], scope: string): Verdict {
  if (!leaks.length) return { check, status: "pass", message: `no leaked ${many} (${scope})` };
  return {
    check, status: "fail", leaks,
    message: `${leaks.length} leaked ${leaks.length === 1 ? one : many}: ${leaks.slice(0, 3).map((l) => l.name).join(", ")}${leaks.length > 3 ? ", …" : ""}`,
    fix: "crib doctor --fix-leaks",
  };
}

/** Runs `check` only when containerd answers: without it, a live sandbox cannot be told from a leak. */
const needsContainerd = (check: string, fn: (ctx: DoctorContext, c: Containerd, k: Known) => Promise<Verdict>): Check =>
  async (ctx) => {
    if (!ctx.client) return { check, status: "skip", message: "containerd is not reachable: cannot tell leftovers from live sandboxes" };
    return fn(ctx, ctx.client, await known(ctx, ctx.client));
  };

/** A sandbox id crib's records name that is no live sandbox: its network parts are leaks. */
const goneSandbox = (k: Known, id: string): boolean => k.owned.has(id) && !k.sandboxes.has(id);

// --- CNI: one DEL per sandbox, shared by the cache, IP and iptables leaks it removes ---

const dels = new WeakMap<DoctorContext, Map<string, Promise<void>>>();

function cniDel(ctx: DoctorContext, k: Known, id: string, ifName: string | undefined, signal: AbortSignal): Promise<void> {
  const byId = dels.get(ctx) ?? new Map<string, Promise<void>>();
  dels.set(ctx, byId);
  let del = byId.get(id);
  if (!del) {
    del = (async () => {
      const current = await loadNetworkConfig(ctx.config.cni.conf_dir, ctx.log);
      const cached = k.cache.get(id);
      if (!cached && !current.config) throw new Error(`sandbox ${short(id)}: no CNI cache entry and no network config to run DEL with`);
      // DEL reads the cache entry (config, args, result) itself when there is one
      const network = new CniNetwork({
        config: () => current, binDirs: ctx.config.cni.bin_dirs, cacheDir: join(ctx.config.root, CNI_CACHE_DIR), log: ctx.log,
      });
      const netns = cached?.netns ?? "";
      const present = netns !== "" && (await stat(netns).then(() => true, () => false));
      await network.del({ id, netns: present ? netns : "", pod: { namespace: "", name: "", uid: "" }, ...(ifName ? { ifName } : {}) }, signal);
    })();
    byId.set(id, del);
  }
  return del;
}

const cacheLeaks = needsContainerd("leaked-cni-cache", async (ctx, _c, k) => {
  const dir = join(ctx.config.root, CNI_CACHE_DIR);
  const leaks: Leak[] = [];
  for (const [id, entry] of k.cache) {
    const file = join(dir, `${id}.json`);
    if (k.sandboxes.has(id) || !(await oldEnough(ctx, file))) continue;
    leaks.push({
      kind: "cni-cache", name: file, detail: `network "${entry.config?.name ?? "?"}" attachment of ${short(id)}, no such sandbox`,
      remove: (signal) => cniDel(ctx, k, id, entry.ifName, signal),
    });
  }
  return leakVerdict("leaked-cni-cache", ["CNI cache entry", "CNI cache entries"], leaks, dir);
});

/** host-local data directories of the current config and of every cached one. */
function hostLocalDirs(lists: NetworkConfigList[]): Set<string> {
  const dirs = new Set<string>();
  for (const list of lists) {
    for (const plugin of list.plugins) {
      const ipam = plugin["ipam"] as { type?: unknown; dataDir?: unknown } | undefined;
      if (ipam?.type !== "host-local") continue;
      dirs.add(join(typeof ipam.dataDir === "string" && ipam.dataDir ? ipam.dataDir : HOST_LOCAL_DATA_DIR, list.name));
    }
  }
  return dirs;
}

const ipLeaks = needsContainerd("leaked-ips", async (ctx, _c, k) => {
  const load = await loadNetworkConfig(ctx.config.cni.conf_dir, ctx.log);
  const lists = [...(load.config ? [load.config] : []), ...[...k.cache.values()].map((e) => e.config).filter((l): l is NetworkConfigList => !!l?.plugins)];
  const dirs = hostLocalDirs(lists);
  if (!dirs.size) return { check: "leaked-ips", status: "skip", message: load.config ? `network "${load.config.name}" uses no host-local IPAM` : `no network config: ${load.reason}` };
  const leaks: Leak[] = [];
  for (const dir of dirs) {
    for (const name of await entries(dir)) {
      // host-local's files: one per reserved address (named by it), plus its lock and cursor
      if (name === "lock" || name.startsWith("last_reserved_ip")) continue;
      const file = join(dir, name);
      const [owner = "", ifName = ""] = (await readFile(file, "utf8").catch(() => "")).split(/\r?\n/).map((s) => s.trim());
      // an address of another runtime's sandbox is none of crib's business
      if (!owner || !goneSandbox(k, owner) || !(await oldEnough(ctx, file))) continue;
      leaks.push({
        kind: "ip-reservation", name: file, detail: `${name} reserved for ${short(owner)}, no such sandbox (released by CNI DEL)`,
        remove: (signal) => cniDel(ctx, k, owner, ifName || undefined, signal),
      });
    }
  }
  return leakVerdict("leaked-ips", ["IP reservation", "IP reservations"], leaks, [...dirs].join(", "));
});

/** iptables rules the CNI plugins (portmap, bridge's ipMasq) tagged with a container id. */
async function taggedRules(): Promise<Array<{ table: string; rule: string; id: string }>> {
  const rules: Array<{ table: string; rule: string; id: string }> = [];
  for (const table of ["nat", "filter"]) {
    const { stdout } = await run("iptables-save", ["-t", table]).catch(() => ({ stdout: "" }));
    for (const line of stdout.split("\n")) {
      const id = /\bid: \\?"([A-Za-z0-9_.-]+)\\?"/.exec(line)?.[1];
      if (id) rules.push({ table, rule: line, id });
    }
  }
  return rules;
}

const iptablesLeaks = needsContainerd("leaked-iptables", async (ctx, _c, k) => {
  const leaks: Leak[] = [];
  const byId = new Map<string, string[]>();
  for (const r of await taggedRules()) if (goneSandbox(k, r.id)) byId.set(r.id, [...(byId.get(r.id) ?? []), `${r.table}: ${r.rule}`]);
  for (const [id, rules] of byId) {
    leaks.push({
      kind: "iptables", name: `${rules.length} rule${rules.length === 1 ? "" : "s"} of ${short(id)}`, detail: rules[0] ?? "",
      remove: (signal) => cniDel(ctx, k, id, k.cache.get(id)?.ifName, signal),
    });
  }
  return leakVerdict("leaked-iptables", ["set of iptables rules", "sets of iptables rules"], leaks, "nat and filter rules tagged with a sandbox id");
});

const netnsLeaks = needsContainerd("leaked-netns", async (ctx, _c, k) => {
  const netns = new NetnsManager({ prefix: ctx.netnsPrefix });
  const leaks: Leak[] = [];
  for (const ns of await netns.list()) {
    // a namespace that no record of crib's names may be another crib's with the same prefix
    if (!goneSandbox(k, ns.sandboxId) || !(await oldEnough(ctx, ns.path))) continue;
    leaks.push({ kind: "netns", name: ns.name, detail: `no sandbox ${short(ns.sandboxId)}`, remove: (signal) => netns.remove(ns, signal) });
  }
  return leakVerdict("leaked-netns", ["network namespace", "network namespaces"], leaks, `${ctx.netnsPrefix}* in /var/run/netns named by crib's records`);
});

/** The sandbox or container a mount under crib's directories belongs to, if it is one crib makes. */
function ownerOf(ctx: DoctorContext, mountPoint: string): string | undefined {
  for (const base of [ctx.config.state, ctx.config.root]) {
    const rel = relative(base, mountPoint);
    if (rel.startsWith("..") || rel === "" || rel.startsWith("/")) continue;
    const parts = rel.split("/");
    if (parts[0] === "sandboxes" && parts[1]) return parts[1];
    if (parts[0] === "containers" && parts[1]) return parts[1]; // image volumes
    // <state>/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/rootfs: crib's own containerd
    const task = parts.indexOf(TASK_DIR);
    if (task >= 0 && parts[task + 1] === ctx.config.containerd.namespace && parts[task + 2]) return parts[task + 2];
  }
  return undefined;
}

const unmount = async (mountPoint: string): Promise<void> => {
  await run("umount", [mountPoint]).catch(() => run("umount", ["-l", mountPoint]));
};

const mountLeaks = needsContainerd("leaked-mounts", async (ctx, _c, k) => {
  const leaks: Leak[] = [];
  // deepest first, so that --fix-leaks unmounts children before parents
  for (const mountPoint of (await mountPoints()).sort((a, b) => b.length - a.length)) {
    const owner = ownerOf(ctx, mountPoint);
    if (owner === undefined || k.containers.has(owner) || !(await oldEnough(ctx, mountPoint))) continue;
    leaks.push({ kind: "mount", name: mountPoint, detail: `belongs to ${short(owner)}, which crib no longer has`, remove: () => unmount(mountPoint) });
  }
  return leakVerdict("leaked-mounts", ["mount", "mounts"], leaks, `under ${ctx.config.root} and ${ctx.config.state}`);
});

const stateDirLeaks = needsContainerd("leaked-state-dirs", async (ctx, _c, k) => {
  const leaks: Leak[] = [];
  for (const { base, of } of stateDirBases(ctx)) {
    for (const id of await entries(base)) {
      const dir = join(base, id);
      const live = of === "sandbox" ? k.sandboxes.has(id) : k.containers.has(id) && !k.strays.some((r) => r.id === id);
      if (live || !(await oldEnough(ctx, dir))) continue;
      leaks.push({
        kind: "state-dir", name: dir, detail: `directory of ${of} ${short(id)}, which crib no longer has`,
        remove: async () => {
          for (const m of (await mountPoints()).filter((p) => p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length)) await unmount(m);
          await rm(dir, { recursive: true, force: true });
        },
      });
    }
  }
  return leakVerdict("leaked-state-dirs", ["state directory", "state directories"], leaks, stateDirBases(ctx).map((b) => b.base).join(", "));
});

const containerLeaks = needsContainerd("leaked-containers", async (ctx, c, k) => {
  const leaks: Leak[] = [];
  for (const r of k.strays) {
    if (!olderThan(ctx, r.created_at?.seconds)) continue;
    const task = await taskState(c, r.id, AbortSignal.timeout(10_000)).catch(() => undefined);
    leaks.push({
      kind: "container", name: r.id, detail: `a record crib never lists${task ? `, with a ${task.status.toLowerCase()} task (pid ${task.pid})` : ""}`,
      remove: async (signal) => {
        await killTask(c, r.id, 9, { all: true }, signal);
        for (let i = 0; i < 100; i++) {
          const t = await taskState(c, r.id, signal);
          if (!t || t.status === "STOPPED" || t.status === "CREATED") break;
          await new Promise((res) => setTimeout(res, 100));
        }
        await deleteTask(c, r.id, signal);
        await deleteContainer(c, r.id, signal);
        if (r.snapshot_key && r.snapshot_key !== r.id) await removeSnapshot(c, r.snapshot_key, signal);
      },
    });
  }
  return leakVerdict("leaked-containers", ["container record", "container records"], leaks, `namespace ${ctx.config.containerd.namespace}`);
});

async function leasedSnapshots(c: Containerd): Promise<Set<string>> {
  const keys = new Set<string>();
  const { leases } = await c.leases.List({ filters: [] }, AbortSignal.timeout(10_000));
  for (const lease of leases) {
    const { resources } = await c.leases.ListResources({ id: lease.id }, AbortSignal.timeout(10_000));
    for (const r of resources) if (r.type === `snapshots/${SNAPSHOTTER}`) keys.add(r.id);
  }
  return keys;
}

const snapshotLeaks = needsContainerd("leaked-snapshots", async (ctx, c, k) => {
  const leased = await leasedSnapshots(c);
  const stray = new Set(k.strays.flatMap((r) => [r.id, r.snapshot_key]));
  const stream = c.raw.snapshots.List({ snapshotter: SNAPSHOTTER, filters: [] }, c.metadata());
  const leaks: Leak[] = [];
  type Info = { name: string; kind: string; created_at: { seconds: string } | null };
  for await (const page of stream as AsyncIterable<{ info: Info[] }>) {
    for (const info of page.info) {
      // committed snapshots are image layers: containerd's garbage collector owns them;
      // a stray record's snapshot goes with the record (leaked-containers)
      if (info.kind === "COMMITTED" || k.snapshotKeys.has(info.name) || leased.has(info.name) || stray.has(info.name)) continue;
      if (k.containers.has(imageVolumeOwner(info.name) ?? "")) continue;
      if (!olderThan(ctx, info.created_at?.seconds)) continue;
      leaks.push({
        kind: "snapshot", name: info.name, detail: `${info.kind.toLowerCase()} ${SNAPSHOTTER} snapshot of no container`,
        remove: (signal) => removeSnapshot(c, info.name, signal),
      });
    }
  }
  return leakVerdict("leaked-snapshots", ["snapshot", "snapshots"], leaks, `namespace ${ctx.config.containerd.namespace}`);
});

const leaseLeaks = needsContainerd("leaked-leases", async (ctx, c) => {
  const { leases } = await c.leases.List({ filters: [] }, AbortSignal.timeout(10_000));
  const leaks: Leak[] = [];
  for (const lease of leases as Array<{ id: string; labels: Record<string, string>; created_at: { seconds: string } | null }>) {
    // crib's leases expire (image pulls); one that never does, or expired long ago, holds content for nobody
    const expire = lease.labels[EXPIRE_LABEL];
    const expired = expire !== undefined && Date.parse(expire) + ctx.leakAgeMs <= Date.now();
    if ((expire !== undefined && !expired) || !olderThan(ctx, lease.created_at?.seconds)) continue;
    leaks.push({
      kind: "lease", name: lease.id, detail: expire ? `expired at ${expire}` : "a lease that never expires",
      remove: async (signal) => {
        await c.leases.Delete({ id: lease.id, sync: false }, signal);
      },
    });
  }
  return leakVerdict("leaked-leases", ["lease", "leases"], leaks, `namespace ${ctx.config.containerd.namespace}`);
});

/** containerd-shim-runc-v2 processes of crib's namespace on crib's containerd (a shim of another containerd may serve a namespace of the same name). */
export async function shimsOf(namespace: string, address: string): Promise<Array<{ pid: number; id: string; name: string }>> {
  return (await listShims()).filter((s) => s.namespace === namespace && s.address === address).map((s) => ({ pid: s.pid, id: s.id, name: "containerd-shim-runc-v2" }));
}

async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await entries("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const s = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const ppid = Number(/\) \S (\d+)/.exec(s)?.[1] ?? 0);
    if (ppid === pid) found.push(Number(entry), ...(await childrenOf(Number(entry))));
  }
  return found;
}

const kill = (pid: number): void => {
  try {
    process.kill(pid, "SIGKILL");
  } catch { /* gone */ }
};

const shimLeaks = needsContainerd("leaked-shims", async (ctx, _c, k) => {
  const address = ctx.containerd?.address ?? "";
  const leaks: Leak[] = [];
  for (const shim of await shimsOf(ctx.config.containerd.namespace, address)) {
    if (k.containers.has(shim.id) && !k.strays.some((r) => r.id === shim.id)) continue;
    const started = await stat(`/proc/${shim.pid}`).catch(() => undefined);
    if (ctx.leakAgeMs > 0 && (!started || Date.now() - started.ctimeMs < ctx.leakAgeMs)) continue;
    const children = await childrenOf(shim.pid);
    leaks.push({
      kind: "shim", name: `${shim.name} pid ${shim.pid}`, detail: `shim of ${short(shim.id)}, which crib no longer has${children.length ? `; ${children.length} processes under it` : ""}`,
      remove: async () => {
        // what runs under it first, so that nothing is reparented and lives on
        for (const pid of (await childrenOf(shim.pid)).reverse()) kill(pid);
        kill(shim.pid);
      },
    });
  }
  return leakVerdict("leaked-shims", ["shim", "shims"], leaks, `namespace ${ctx.config.containerd.namespace} on ${address}`);
});

/** In the order --fix-leaks removes them: records and their tasks, the network (DEL), then files and what is left. */
export const leakChecks: ReadonlyArray<readonly [string, Check]> = [
  ["leaked-containers", containerLeaks],
  ["leaked-cni-cache", cacheLeaks], ["leaked-ips", ipLeaks], ["leaked-iptables", iptablesLeaks], ["leaked-netns", netnsLeaks],
  ["leaked-mounts", mountLeaks], ["leaked-state-dirs", stateDirLeaks], ["leaked-snapshots", snapshotLeaks],
  ["leaked-leases", leaseLeaks], ["leaked-shims", shimLeaks],
];
