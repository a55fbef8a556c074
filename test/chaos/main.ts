// `npm run chaos`: SIGKILLs crib in the middle of runp, create, start, stop and
// remove, SIGKILLs containerd during runp, runs pods on a CNI plugin that hangs,
// and starts crib while containerd is down; then checks that every state crib
// lists is true, that everything can be removed, and that nothing is left:
// netns, IP reservations, CNI cache entries, iptables rules, snapshots,
// container records, tasks, leases, shims, state directories (checked directly
// in the private containerd, network and directories, and by crib doctor's
// audit). Prints a summary and exits 1 on any leak or wrong state.
//
//   npm run chaos -- [--crib-kills 20] [--containerd-kills 2] [--hung-pods 1] [--seed N] [--json]
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { status as grpcStatus, type ServiceError } from "@grpc/grpc-js";
import { PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import { loadConfig } from "../../cri/config.js";
import { auditLeaks, LEAK_KINDS, type LeakAudit } from "../../cri/doctor.js";
import { CNI_CACHE_DIR, shimsOf } from "../../cri/doctor-leaks.js";
import { SNAPSHOTTER } from "../../runtime/containerd/tasks.js";
import type * as cri from "../../proto/gen/cri/types.js";

const run = promisify(execFile);
const NAMESPACE = "crib-test";
const PHASES = ["runp", "create", "start", "stop", "remove"] as const;
type Phase = (typeof PHASES)[number];

export interface ChaosOptions {
  cribKills: number;
  containerdKills: number;
  hungPods: number;
  seed: number;
  /** at most this many pods at once */
  maxPods: number;
  log: (line: string) => void;
}

export interface ChaosSummary {
  kills: { crib: Record<Phase, number>; containerd: Record<"runp", number>; inFlight: number };
  hungPods: { tried: number; answeredWithinMs: number[] };
  containerdDown: { listedWhileDown: string; recoveredMs: number };
  wrongStates: string[];
  unremovable: string[];
  /** the pods listed when the audit ran with them live: it must name none of their objects */
  livePods: string[];
  /** found directly in the private containerd, network and directories */
  leaks: Record<string, string[]>;
  /** crib doctor --leaks with live pods (must be empty) and after everything was removed */
  audit: { live: LeakAudit | undefined; after: LeakAudit | undefined };
  ok: boolean;
  durationMs: number;
}

/** A small PRNG, so that a failing run can be repeated with its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

const code = (err: unknown): number | undefined => (err as ServiceError | undefined)?.code;
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);

/** A CNI plugin whose ADD never ends (it waits on a child, as a plugin stuck on a lock would); DEL passes. */
const hangPlugin = (marker: string): string => `#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then sleep ${marker}; fi
exit 0
`;

export async function runChaos(opts: ChaosOptions): Promise<ChaosSummary> {
  const started = Date.now();
  const random = rng(opts.seed);
  const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(random() * xs.length)];
  const tag = randomBytes(3).toString("hex");
  const networkName = `chaos-${tag}`;
  const marker = `${86_000 + Math.floor(random() * 400)}.${tag.length}`; // sleep argument that names our hung plugins
  const summary: ChaosSummary = {
    kills: { crib: { runp: 0, create: 0, start: 0, stop: 0, remove: 0 }, containerd: { runp: 0 }, inFlight: 0 },
    hungPods: { tried: 0, answeredWithinMs: [] },
    containerdDown: { listedWhileDown: "", recoveredMs: 0 },
    wrongStates: [], unremovable: [], livePods: [], leaks: {}, audit: { live: undefined, after: undefined }, ok: false, durationMs: 0,
  };

  // the network's files are the harness's: its own conf dir, plugin dir and host-local data
  const own = await mkdtemp("/tmp/crib-chaos-");
  const bin = join(own, "bin");
  const ipamDir = join(own, "ipam");
  await mkdir(join(own, "net.d"), { recursive: true });
  await mkdir(bin, { recursive: true });
  const env = await PodEnv.start({
    network: false,
    config: { log_level: "info", cni: { conf_dir: join(own, "net.d"), bin_dirs: ["/usr/lib/cni", "/opt/cni/bin", bin] } },
  });
  const bridge = env.bridge;
  try {
    await writeFile(join(bin, "chaos-hang"), hangPlugin(marker));
    await chmod(join(bin, "chaos-hang"), 0o755);
    const config = await loadConfig(env.crib.configPath, { required: true });
    const plugins = (hang: boolean): unknown[] => [
      { type: "bridge", bridge, isGateway: true, ipMasq: true, hairpinMode: true,
        ipam: { type: "host-local", ranges: [[{ subnet: env.subnet }]], dataDir: ipamDir, routes: [{ dst: "0.0.0.0/0" }] } },
      ...(hang ? [{ type: "chaos-hang" }] : []),
      { type: "portmap", capabilities: { portMappings: true } },
    ];
    const writeNetwork = async (hang: boolean): Promise<void> => {
      const list = { cniVersion: "1.0.0", name: hang ? `${networkName}-hang` : networkName, plugins: plugins(hang) };
      await writeFile(join(config.cni.conf_dir, "10-chaos.conflist"), JSON.stringify(list));
      // crib has loaded it once a runp would use it: the watcher reloads on change
      await sleep(1500);
    };
    await writeNetwork(false);
    await waitFor("NetworkReady", async () => {
      const s = await env.client.runtime.Status({}).catch(() => undefined);
      return s?.status?.conditions.find((c) => c.type === "NetworkReady")?.status ? true : undefined;
    }, 20_000);

    let podSeq = 0;
    const pods = new Map<string, cri.PodSandboxConfig__Input>();
    const client = () => env.client;

    /** crib answers List and reports RuntimeReady (containerd back and reconciled), as kubelet waits for it. */
    const ready = async (): Promise<void> => {
      await waitFor("crib to be ready", async () => {
        if (!(await client().runtime.ListPodSandbox({}).catch(() => undefined))) return undefined;
        const s = await client().runtime.Status({}).catch(() => undefined);
        return s?.status?.conditions.find((c) => c.type === "RuntimeReady")?.status ? true : undefined;
      }, 120_000);
    };
    const restartCrib = async (): Promise<void> => {
      await env.crib.startProcess();
      await ready();
    };

    /** How long each kind of call took when nothing killed it: kills land at a random instant within that. */
    const took = new Map<string, number>();
    const timed = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
      const t0 = Date.now();
      const result = await op();
      took.set(what, Date.now() - t0);
      return result;
    };
    /** Runs `op`; at a random instant within its usual duration SIGKILLs crib (or containerd); restarts it. */
    const withKill = async <T>(target: "crib" | "containerd", what: string, op: () => Promise<T>, defaultMs: number): Promise<{ result?: T; error?: unknown }> => {
      let settled = false;
      const pending = op().then((result) => ({ result }), (error: unknown) => ({ error }));
      void pending.then(() => { settled = true; });
      const delay = Math.floor(random() * (took.get(what) ?? defaultMs));
      await sleep(delay);
      if (!settled) summary.kills.inFlight++;
      opts.log(`  SIGKILL ${target} ${delay} ms into ${what}${settled ? " (it had already answered)" : ""}`);
      if (target === "crib") {
        await env.crib.stopProcess("SIGKILL");
        const outcome = await pending;
        await restartCrib();
        return outcome;
      }
      const pid = env.containerd.daemon.pid;
      if (pid) process.kill(pid, "SIGKILL");
      const outcome = await pending;
      // crib's fixture daemon restarts containerd by itself; start it if it did not
      await env.containerd.daemon.waitReady(15_000).catch(() => env.containerd.daemon.start());
      await ready();
      return outcome;
    };

    const newPod = (): cri.PodSandboxConfig__Input => {
      const name = `chaos-${podSeq++}`;
      return env.sandboxConfig(name);
    };
    const runPod = async (config: cri.PodSandboxConfig__Input): Promise<string> => {
      const { pod_sandbox_id } = await client().runtime.RunPodSandbox({ config });
      pods.set(pod_sandbox_id, config);
      return pod_sandbox_id;
    };
    const readyPods = async (): Promise<cri.PodSandbox[]> =>
      (await client().runtime.ListPodSandbox({})).items.filter((p) => p.state === "SANDBOX_READY");
    let containerSeq = 0;
    const createIn = async (pod: cri.PodSandbox): Promise<string> => {
      const sandboxConfig = pods.get(pod.id) ?? env.sandboxConfig(pod.metadata?.name ?? "x");
      const { container_id } = await client().runtime.CreateContainer({
        pod_sandbox_id: pod.id,
        config: { metadata: { name: `c${containerSeq++}` }, image: { image: BUSYBOX_REF }, command: ["/bin/sleep", "3600"], log_path: `c${containerSeq}.log` },
        sandbox_config: sandboxConfig,
      });
      return container_id;
    };
    /** kubelet's retry after a failed or interrupted call: the same call again, errors tolerated. */
    const retry = async (what: string, op: () => Promise<unknown>): Promise<void> => {
      await op().catch((err: unknown) => opts.log(`  retry of ${what}: ${message(err).split("\n")[0]}`));
    };

    const cribKill = async (phase: Phase): Promise<void> => {
      summary.kills.crib[phase]++;
      let live = await readyPods();
      // the other phases need a pod: one made without a kill
      if (phase !== "runp" && live.length === 0) {
        await timed("runp", () => runPod(newPod()));
        live = await readyPods();
      }
      if (phase === "runp" || live.length === 0) {
        const config = newPod();
        const { result } = await withKill("crib", "runp", () => runPod(config), 600);
        if (!result) await retry("runp", () => timed("runp", () => runPod(config)));
        return;
      }
      const pod = pick(live)!;
      const containers = (await client().runtime.ListContainers({ filter: { pod_sandbox_id: pod.id } })).containers;
      if (phase === "create") {
        const { result } = await withKill("crib", "create", () => createIn(pod), 400);
        if (!result) await retry("create", () => timed("create", () => createIn(pod)));
      } else if (phase === "start") {
        const id = await timed("create", () => createIn(pod));
        await withKill("crib", "start", () => client().runtime.StartContainer({ container_id: id }), 300);
        await retry("start", () => timed("start", () => client().runtime.StartContainer({ container_id: id })));
      } else if (phase === "stop") {
        const running = containers.filter((c) => c.state === "CONTAINER_RUNNING");
        const c = random() < 0.5 ? pick(running) : undefined;
        if (c) {
          await withKill("crib", "stop container", () => client().runtime.StopContainer({ container_id: c.id, timeout: 0 }), 300);
          await retry("stop container", () => client().runtime.StopContainer({ container_id: c.id, timeout: 0 }));
        } else {
          await withKill("crib", "stop pod", () => client().runtime.StopPodSandbox({ pod_sandbox_id: pod.id }), 400);
          await retry("stop pod", () => client().runtime.StopPodSandbox({ pod_sandbox_id: pod.id }));
        }
      } else {
        const c = random() < 0.5 ? pick(containers) : undefined;
        if (c) {
          await timed("stop container", () => client().runtime.StopContainer({ container_id: c.id, timeout: 0 })).catch(() => undefined);
          await withKill("crib", "remove container", () => client().runtime.RemoveContainer({ container_id: c.id }), 300);
          await retry("remove container", () => client().runtime.RemoveContainer({ container_id: c.id }));
        } else {
          await timed("stop pod", () => client().runtime.StopPodSandbox({ pod_sandbox_id: pod.id })).catch(() => undefined);
          await withKill("crib", "remove pod", () => client().runtime.RemovePodSandbox({ pod_sandbox_id: pod.id }), 400);
          await retry("remove pod", () => client().runtime.RemovePodSandbox({ pod_sandbox_id: pod.id }));
        }
      }
    };

    /** Keeps the node at a bounded number of pods: removes the oldest when over. */
    const trim = async (): Promise<void> => {
      const items = (await client().runtime.ListPodSandbox({})).items.sort((a, b) => Number(a.created_at) - Number(b.created_at));
      for (const pod of items.slice(0, Math.max(0, items.length - opts.maxPods))) {
        await client().runtime.StopPodSandbox({ pod_sandbox_id: pod.id }).catch(() => undefined);
        await client().runtime.RemovePodSandbox({ pod_sandbox_id: pod.id }).catch((err: unknown) => opts.log(`  cannot trim ${pod.id.slice(0, 12)}: ${message(err)}`));
      }
    };

    // 0. one pod through its whole life, timed: the kills land within each call's usual duration
    {
      const id = await timed("runp", () => runPod(newPod()));
      const pod = (await client().runtime.ListPodSandbox({ filter: { id } })).items[0]!;
      const c = await timed("create", () => createIn(pod));
      await timed("start", () => client().runtime.StartContainer({ container_id: c }));
      await timed("stop container", () => client().runtime.StopContainer({ container_id: c, timeout: 0 }));
      await timed("remove container", () => client().runtime.RemoveContainer({ container_id: c }));
      await timed("stop pod", () => client().runtime.StopPodSandbox({ pod_sandbox_id: id }));
      await timed("remove pod", () => client().runtime.RemovePodSandbox({ pod_sandbox_id: id }));
      opts.log(`call durations: ${[...took].map(([k, v]) => `${k} ${v} ms`).join(", ")}`);
    }

    // 1. crib SIGKILLs, phases in turn (interleaved with the containerd kills)
    const plan: Array<"crib" | "containerd"> = [
      ...Array.from({ length: opts.cribKills }, () => "crib" as const),
      ...Array.from({ length: opts.containerdKills }, () => "containerd" as const),
    ].sort(() => random() - 0.5);
    let n = 0;
    let cribKills = 0;
    for (const target of plan) {
      n++;
      if (target === "crib") {
        // the phases in turn, so that a short run covers each
        const phase = PHASES[cribKills++ % PHASES.length]!;
        await cribKill(phase).catch((err: unknown) => opts.log(`  ${phase}: ${message(err)}`));
      } else {
        summary.kills.containerd.runp++;
        const config = newPod();
        const { result } = await withKill("containerd", "runp", () => runPod(config), 500);
        if (!result) await retry("runp after containerd's death", () => runPod(config));
      }
      if (n % 5 === 0) {
        await trim().catch(() => undefined);
        opts.log(`${n}/${plan.length} kills`);
        summary.wrongStates.push(...(await checkStates(env, `after kill ${n}`)));
      }
    }

    // 2. pods on a hung plugin, all at once, as kubelet would ask (2 minute deadline)
    if (opts.hungPods > 0) {
      await writeNetwork(true);
      summary.hungPods.tried = opts.hungPods;
      await Promise.all(Array.from({ length: opts.hungPods }, async () => {
        const t0 = Date.now();
        const config = newPod();
        await runPod(config).then(
          (id) => summary.wrongStates.push(`a pod on a hung plugin came up: ${id}`),
          (err: unknown) => {
            // crib's own CNI deadline answers DEADLINE_EXCEEDED too, well before kubelet's
            if (code(err) === grpcStatus.DEADLINE_EXCEEDED && Date.now() - t0 >= 120_000) opts.log("  a runp on the hung plugin outlived kubelet's 2 minute deadline");
            else opts.log(`  runp on the hung plugin: ${grpcStatus[code(err) ?? 2] ?? code(err)} after ${((Date.now() - t0) / 1000).toFixed(1)} s: ${message(err).slice(0, 100)}`);
          },
        );
        summary.hungPods.answeredWithinMs.push(Date.now() - t0);
      }));
      await writeNetwork(false);
      // crib may still be undoing them: the plugin is killed when its deadline passes
      await waitFor("the hung plugins to be killed", async () => ((await processesWith(marker)).length === 0 ? true : undefined), 150_000)
        .catch(() => opts.log("  the hung plugins still run 30 s after kubelet gave up"));
    }

    // 3. crib starting while containerd is down
    {
      const before = (await client().runtime.ListPodSandbox({})).items.map((p) => p.id).sort();
      await env.crib.stopProcess("SIGKILL");
      await env.containerd.daemon.stop();
      let listed = "crib did not serve";
      try {
        await env.crib.startProcess({}, { ready: false }); // it cannot reconcile without containerd
        const got = await client().runtime.ListPodSandbox({}).then(
          (r) => r.items.map((p) => p.id).sort(),
          (err: unknown) => `error ${code(err)}: ${message(err).slice(0, 80)}`,
        );
        listed = Array.isArray(got) ? `${got.length} of ${before.length} pods` : got;
        if (Array.isArray(got) && got.join() !== before.join()) {
          summary.wrongStates.push(`with containerd down, ListPodSandbox answered ${got.length} pods; ${before.length} exist`);
        }
      } catch (err) {
        listed = `crib did not start: ${message(err).slice(0, 120)}`;
        await env.crib.stopProcess("SIGKILL");
      }
      summary.containerdDown.listedWhileDown = listed;
      const t0 = Date.now();
      await env.containerd.daemon.start();
      if (listed.startsWith("crib did not")) await env.crib.startProcess();
      await waitFor("crib to list every pod again", async () => {
        const r = await client().runtime.ListPodSandbox({}).catch(() => undefined);
        return r && r.items.length >= before.length ? true : undefined;
      }, 60_000).catch(() => summary.wrongStates.push("crib did not list every pod again within 60 s of containerd's return"));
      summary.containerdDown.recoveredMs = Date.now() - t0;
    }

    // 4. every state true; the audit finds nothing while the pods live; everything can be removed; nothing is left
    await sleep(1000);
    summary.wrongStates.push(...(await checkStates(env, "at the end")));
    summary.livePods = (await client().runtime.ListPodSandbox({})).items.map((p) => p.id);
    summary.audit.live = await auditLeaks({ config, leakAgeMs: 0 }).catch(() => undefined);
    summary.unremovable.push(...(await removeAll(env)));
    await sleep(500);
    summary.leaks = await leftovers(env, { config, ipamDir, networkName, marker, bridge });
    summary.audit.after = await auditLeaks({ config, leakAgeMs: 0 }).catch(() => undefined);
  } finally {
    await env.close().catch((err: unknown) => opts.log(`cleanup: ${message(err)}`));
    // what close() cannot know of: the hung plugins and the netns, IPs and rules of sandboxes crib lost
    await cleanupAfter({ marker, bridge: env.bridge, networkName, netnsPrefix: env.crib.netnsPrefix }).catch(() => undefined);
    await rm(own, { recursive: true, force: true });
  }
  const leakCount = Object.values(summary.leaks).reduce((a, l) => a + l.length, 0);
  const auditOk = (a: LeakAudit | undefined): boolean => a !== undefined && a.leaks.length === 0;
  summary.ok = leakCount === 0 && summary.wrongStates.length === 0 && summary.unremovable.length === 0 && auditOk(summary.audit.live) && auditOk(summary.audit.after);
  summary.durationMs = Date.now() - started;
  return summary;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * pause task running ⇔ READY, READY ⇒ its netns exists, container task running ⇔ RUNNING.
 * A mismatch is looked at again for a few seconds (a state may be changing); what stays wrong is reported.
 */
async function checkStates(env: PodEnv, when: string): Promise<string[]> {
  let wrong: string[] = [];
  for (let attempt = 0; attempt < 6; attempt++) {
    wrong = [];
    const c = env.containerd.client(NAMESPACE);
    try {
      const pods = (await env.client.runtime.ListPodSandbox({})).items;
      const containers = (await env.client.runtime.ListContainers({})).containers;
      const { tasks } = await c.tasks.List({});
      const running = new Set(tasks.filter((t) => t.status === "RUNNING").map((t) => t.id));
      for (const p of pods) {
        const ready = p.state === "SANDBOX_READY";
        if (ready !== running.has(p.id)) wrong.push(`${when}: sandbox ${p.id.slice(0, 12)} is ${p.state} but its pause task ${running.has(p.id) ? "runs" : "does not run"}`);
        if (ready && !(await exists(`/var/run/netns/${env.crib.netnsPrefix}${p.id}`))) wrong.push(`${when}: sandbox ${p.id.slice(0, 12)} is READY without its netns`);
      }
      for (const ctr of containers) {
        const isRunning = ctr.state === "CONTAINER_RUNNING";
        if (isRunning !== running.has(ctr.id) && ctr.state !== "CONTAINER_UNKNOWN") {
          wrong.push(`${when}: container ${ctr.id.slice(0, 12)} is ${ctr.state} but its task ${running.has(ctr.id) ? "runs" : "does not run"}`);
        }
      }
    } catch (err) {
      wrong.push(`${when}: cannot list: ${message(err)}`);
    } finally {
      c.close();
    }
    if (wrong.length === 0) return [];
    await sleep(1000);
  }
  return wrong;
}

/** Stops and removes every container and pod through the CRI, as kubelet would; what cannot be removed is reported. */
async function removeAll(env: PodEnv): Promise<string[]> {
  const failed: string[] = [];
  for (let round = 0; round < 3; round++) {
    failed.length = 0;
    const { containers } = await env.client.runtime.ListContainers({});
    for (const c of containers) {
      await env.client.runtime.StopContainer({ container_id: c.id, timeout: 0 }).catch(() => undefined);
      await env.client.runtime.RemoveContainer({ container_id: c.id }).catch((err: unknown) => failed.push(`container ${c.id.slice(0, 12)}: ${message(err)}`));
    }
    const { items } = await env.client.runtime.ListPodSandbox({});
    for (const p of items) {
      await env.client.runtime.StopPodSandbox({ pod_sandbox_id: p.id }).catch((err: unknown) => failed.push(`stop pod ${p.id.slice(0, 12)}: ${message(err)}`));
      await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: p.id }).catch((err: unknown) => failed.push(`pod ${p.id.slice(0, 12)}: ${message(err)}`));
    }
    const left = (await env.client.runtime.ListPodSandbox({})).items.length + (await env.client.runtime.ListContainers({})).containers.length;
    if (left === 0 && failed.length === 0) return [];
    await sleep(1000);
  }
  return failed;
}

interface Private {
  config: Awaited<ReturnType<typeof loadConfig>>;
  ipamDir: string;
  networkName: string;
  marker: string;
  bridge: string;
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

/** Everything left in the private containerd, network and directories once every pod was removed: all of it leaked. */
async function leftovers(env: PodEnv, p: Private): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  const add = (kind: string, items: string[]): void => { out[kind] = items; };
  const c = env.containerd.client(NAMESPACE);
  try {
    add("containers", (await c.containers.List({})).containers.map((x) => x.id.slice(0, 12)));
    add("tasks", (await c.tasks.List({})).tasks.map((t) => `${t.id.slice(0, 12)} ${t.status}`));
    const snaps: string[] = [];
    for await (const r of c.raw.snapshots.List({ snapshotter: SNAPSHOTTER }, c.metadata()) as AsyncIterable<{ info: { name: string; kind: string }[] }>) {
      for (const i of r.info) if (i.kind !== "COMMITTED") snaps.push(i.name.slice(0, 40));
    }
    add("snapshots", snaps);
    add("leases", (await c.leases.List({ filters: [] })).leases.map((l) => l.id));
  } finally {
    c.close();
  }
  const dataDir = join(p.ipamDir, p.networkName);
  add("ip-reservations", (await entries(dataDir)).filter((n) => n !== "lock" && !n.startsWith("last_reserved_ip")));
  add("cni-cache", await entries(join(p.config.root, CNI_CACHE_DIR)));
  const { stdout: links } = await run("ip", ["-o", "link", "show", "master", p.bridge]).catch(() => ({ stdout: "" }));
  add("veths", links.split("\n").filter(Boolean).map((l) => l.split(":")[1]?.trim() ?? l));
  const rules: string[] = [];
  for (const table of ["nat", "filter"]) {
    const { stdout } = await run("iptables-save", ["-t", table]).catch(() => ({ stdout: "" }));
    rules.push(...stdout.split("\n").filter((l) => l.includes(p.networkName)));
  }
  add("iptables", rules);
  add("shims", (await shimsOf(NAMESPACE, env.containerd.address)).map((s) => `pid ${s.pid} ${s.id.slice(0, 12)}`));
  const dirs: string[] = [];
  for (const base of [join(p.config.root, "sandboxes"), join(p.config.state, "sandboxes"), join(p.config.root, "containers"), join(p.config.state, "containers")]) {
    for (const id of await entries(base)) dirs.push(join(base, id));
  }
  add("state-dirs", dirs);
  const { stdout: netns } = await run("ip", ["netns", "list"]);
  // the test crib's netns prefix is its own: every netns with it is this run's
  const ours = netns.split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) => n.startsWith(env.crib.netnsPrefix));
  add("netns", ours);
  add("plugin-processes", await processesWith(p.marker));
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v.length > 0));
}

async function processesWith(marker: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await entries("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).split("\0").join(" ").trim();
    if (cmd.includes(marker) && !cmd.includes("chaos/main")) found.push(`${entry} ${cmd}`);
  }
  return found;
}

async function cleanupAfter(p: { marker: string; bridge: string; networkName: string; netnsPrefix: string }): Promise<void> {
  for (const line of await processesWith(p.marker)) {
    try { process.kill(Number(line.split(" ")[0]), "SIGKILL"); } catch { /* gone */ }
  }
  const { stdout: netns } = await run("ip", ["netns", "list"]);
  for (const name of netns.split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) => n.startsWith(p.netnsPrefix))) {
    await run("ip", ["netns", "delete", name]).catch(() => undefined);
  }
  await run("ip", ["link", "del", p.bridge]).catch(() => undefined);
  for (const table of ["nat", "filter"]) {
    const { stdout } = await run("iptables-save", ["-t", table]).catch(() => ({ stdout: "" }));
    for (const line of stdout.split("\n").filter((l) => l.startsWith("-A ") && l.includes(p.networkName))) {
      await run("sh", ["-c", `iptables -t ${table} ${line.replace(/^-A /, "-D ")}`]).catch(() => undefined);
    }
  }
}

export function formatSummary(s: ChaosSummary): string {
  const lines: string[] = [];
  const k = s.kills;
  lines.push(`crib SIGKILLs: ${PHASES.map((p) => `${p} ${k.crib[p]}`).join(", ")} (total ${PHASES.reduce((a, p) => a + k.crib[p], 0)}); containerd SIGKILLs during runp: ${k.containerd.runp}; in flight when killed: ${k.inFlight}`);
  lines.push(`hung-plugin pods: ${s.hungPods.tried}, runp answered after ${s.hungPods.answeredWithinMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(", ") || "-"}`);
  lines.push(`crib started with containerd down: ListPodSandbox gave ${s.containerdDown.listedWhileDown}; all listed again ${(s.containerdDown.recoveredMs / 1000).toFixed(1)} s after containerd came back`);
  lines.push(`wrong states: ${s.wrongStates.length}`);
  for (const w of s.wrongStates.slice(0, 20)) lines.push(`  ${w}`);
  lines.push(`could not remove: ${s.unremovable.length}`);
  for (const u of s.unremovable.slice(0, 20)) lines.push(`  ${u}`);
  const kinds = Object.entries(s.leaks);
  lines.push(`leaks: ${kinds.length === 0 ? "none" : kinds.map(([kind, items]) => `${kind} ${items.length}`).join(", ")}`);
  for (const [kind, items] of kinds) for (const i of items.slice(0, 5)) lines.push(`  ${kind}: ${i}`);
  const audit = (a: LeakAudit | undefined): string => (a === undefined ? "could not run" : a.leaks.length === 0 ? "none" : LEAK_KINDS.filter((x) => a.counts[x]).map((x) => `${x} ${a.counts[x]}`).join(", "));
  lines.push(`crib doctor --leaks with the pods live: ${audit(s.audit.live)}; after removing everything: ${audit(s.audit.after)}`);
  lines.push(`${s.ok ? "chaos: OK" : "chaos: FAILED"} in ${(s.durationMs / 1000).toFixed(0)} s`);
  return `${lines.join("\n")}\n`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "crib-kills": { type: "string", default: "20" },
      "containerd-kills": { type: "string", default: "2" },
      "hung-pods": { type: "string", default: "1" },
      "max-pods": { type: "string", default: "6" },
      seed: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  if (process.getuid?.() !== 0) throw new Error("the chaos harness needs root (containerd, runc, CNI)");
  const seed = values.seed ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  const summary = await runChaos({
    cribKills: Number(values["crib-kills"]), containerdKills: Number(values["containerd-kills"]), hungPods: Number(values["hung-pods"]),
    maxPods: Number(values["max-pods"]), seed, log: (l) => process.stderr.write(`${l}\n`),
  });
  process.stderr.write(`seed ${seed}\n`);
  process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
  process.exitCode = summary.ok ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(2);
  });
}
