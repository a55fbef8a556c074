// The leak checks of `crib doctor`: what crib makes for a sandbox or container
// and should have removed with it. Live sandboxes and containers are the
// records in crib's containerd namespace (sandboxes labelled crib.kind=sandbox);
// anything younger than the leak age may belong to a RunPodSandbox in progress
// and is left alone.
import { execFile } from "node:child_process";
import { readFile, readdir, stat, unlink } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import type { Check, DoctorContext, Leak, Verdict } from "./doctor.js";
import { KIND_LABEL } from "./store/sandboxes.js";
import type { Containerd } from "../runtime/containerd/client.js";
import { removeSnapshot, SNAPSHOTTER } from "../runtime/containerd/tasks.js";
import { NetnsManager } from "../runtime/netns.js";
import { loadNetworkConfig } from "../cni/config.js";
import { imageVolumeOwner } from "../runtime/image-volume.js";
import { mountPoints } from "../runtime/mount.js";

const run = promisify(execFile);
/** host-local's default data directory; a network config's ipam.dataDir overrides it. */
export const HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks";
const TASK_DIR = "io.containerd.runtime.v2.task";

interface Known {
  sandboxes: Set<string>;
  /** every container record, sandboxes included */
  containers: Set<string>;
  snapshotKeys: Set<string>;
}

// One listing for all four checks of a run.
const knownOf = new WeakMap<Containerd, Promise<Known>>();

function known(c: Containerd): Promise<Known> {
  let k = knownOf.get(c);
  if (!k) {
    k = c.containers.List({ filters: [] }, AbortSignal.timeout(10_000)).then(({ containers }) => ({
      sandboxes: new Set(containers.filter((r) => r.labels[KIND_LABEL] === "sandbox").map((r) => r.id)),
      containers: new Set(containers.map((r) => r.id)),
      snapshotKeys: new Set(containers.map((r) => r.snapshot_key).filter(Boolean)),
    }));
    knownOf.set(c, k);
  }
  return k;
}

const short = (id: string): string => (id.length > 12 ? id.slice(0, 12) : id);

async function oldEnough(ctx: DoctorContext, path: string): Promise<boolean> {
  if (ctx.leakAgeMs <= 0) return true;
  const s = await stat(path).catch(() => undefined);
  return s !== undefined && Date.now() - Math.max(s.ctimeMs, s.mtimeMs) >= ctx.leakAgeMs;
}

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
    return fn(ctx, ctx.client, await known(ctx.client));
  };

const netnsLeaks = needsContainerd("leaked-netns", async (ctx, _c, k) => {
  const netns = new NetnsManager({ prefix: ctx.netnsPrefix });
  const leaks: Leak[] = [];
  for (const ns of await netns.list()) {
    if (k.sandboxes.has(ns.sandboxId) || !(await oldEnough(ctx, ns.path))) continue;
    leaks.push({ kind: "netns", name: ns.name, detail: `no sandbox ${short(ns.sandboxId)}`, remove: (signal) => netns.remove(ns, signal) });
  }
  return leakVerdict("leaked-netns", ["network namespace", "network namespaces"], leaks, `${ctx.netnsPrefix}* in /var/run/netns`);
});

const ipLeaks = needsContainerd("leaked-ips", async (ctx, _c, k) => {
  const load = await loadNetworkConfig(ctx.config.cni.conf_dir, ctx.log);
  if (!load.config) return { check: "leaked-ips", status: "skip", message: `no network config: ${load.reason}` };
  const dirs = new Set<string>();
  for (const plugin of load.config.plugins) {
    const ipam = plugin["ipam"] as { type?: unknown; dataDir?: unknown } | undefined;
    if (ipam?.type !== "host-local") continue;
    dirs.add(join(typeof ipam.dataDir === "string" && ipam.dataDir ? ipam.dataDir : HOST_LOCAL_DATA_DIR, load.config.name));
  }
  if (!dirs.size) return { check: "leaked-ips", status: "skip", message: `network "${load.config.name}" uses no host-local IPAM` };
  const leaks: Leak[] = [];
  for (const dir of dirs) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      // host-local's files: one per reserved address (named by it), plus its lock and cursor
      if (name === "lock" || name.startsWith("last_reserved_ip")) continue;
      const file = join(dir, name);
      const owner = ((await readFile(file, "utf8").catch(() => "")).split(/\r?\n/)[0] ?? "").trim();
      if (!owner || k.sandboxes.has(owner) || !(await oldEnough(ctx, file))) continue;
      leaks.push({ kind: "ip-reservation", name: file, detail: `${name} reserved for ${short(owner)}, no such sandbox`, remove: () => unlink(file) });
    }
  }
  return leakVerdict("leaked-ips", ["IP reservation", "IP reservations"], leaks, [...dirs].join(", "));
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

const mountLeaks = needsContainerd("leaked-mounts", async (ctx, _c, k) => {
  const leaks: Leak[] = [];
  // deepest first, so that --fix-leaks unmounts children before parents
  for (const mountPoint of (await mountPoints()).sort((a, b) => b.length - a.length)) {
    const owner = ownerOf(ctx, mountPoint);
    if (owner === undefined || k.containers.has(owner) || !(await oldEnough(ctx, mountPoint))) continue;
    leaks.push({
      kind: "mount", name: mountPoint, detail: `belongs to ${short(owner)}, which crib no longer has`,
      remove: async () => {
        await run("umount", [mountPoint]).catch(() => run("umount", ["-l", mountPoint]));
      },
    });
  }
  return leakVerdict("leaked-mounts", ["mount", "mounts"], leaks, `under ${ctx.config.root} and ${ctx.config.state}`);
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
  const stream = c.raw.snapshots.List({ snapshotter: SNAPSHOTTER, filters: [] }, c.metadata());
  const leaks: Leak[] = [];
  type Info = { name: string; kind: string; created_at: { seconds: string } | null };
  for await (const page of stream as AsyncIterable<{ info: Info[] }>) {
    for (const info of page.info) {
      // committed snapshots are image layers: containerd's garbage collector owns them
      if (info.kind === "COMMITTED" || k.snapshotKeys.has(info.name) || leased.has(info.name)) continue;
      if (k.containers.has(imageVolumeOwner(info.name) ?? "")) continue;
      const created = Number(info.created_at?.seconds ?? 0) * 1000;
      if (ctx.leakAgeMs > 0 && Date.now() - created < ctx.leakAgeMs) continue;
      leaks.push({
        kind: "snapshot", name: info.name, detail: `${info.kind.toLowerCase()} ${SNAPSHOTTER} snapshot of no container`,
        remove: (signal) => removeSnapshot(c, info.name, signal),
      });
    }
  }
  return leakVerdict("leaked-snapshots", ["snapshot", "snapshots"], leaks, `namespace ${ctx.config.containerd.namespace}`);
});

export const leakChecks: ReadonlyArray<readonly [string, Check]> = [
  ["leaked-mounts", mountLeaks], ["leaked-snapshots", snapshotLeaks], ["leaked-netns", netnsLeaks], ["leaked-ips", ipLeaks],
];
