// crib against containerd's own CRI plugin, in one run on the same machine:
// the same pause and busybox images, the same CNI plugins (a bridge and subnet
// for each side). Calls alternate between the two sides so machine noise hits
// both alike. `BENCH_N` sets the samples per call (default 30).
//   sandbox    RunPodSandbox, StopPodSandbox, RemovePodSandbox, per call
//   container  CreateContainer + StartContainer of busybox sleep in a ready pod (stop+remove between)
//   exec-sync  ExecSync of /bin/cat /etc/hostname and /bin/true
//   rss-logging  crib's VmRSS with 100 containers each logging 10 lines/s (crib only)
// (the read rpcs and the daemons' RSS with many pods: read-path.ts)
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import type { CriClient } from "../fixtures/cri-client.js";
import type * as cri from "../../proto/gen/cri/types.js";
import { ContainerdCri } from "./containerd-cri.js";
import { mb, rss, sampleRss, timed, type Benchmark, type Row } from "./bench.js";

const samples = (): number => Number(process.env["BENCH_N"] ?? 30);
const WARMUP = 2;

export interface Side {
  name: "crib" | "containerd";
  client: CriClient;
  /** the CRI socket, for a second client */
  socket: string;
  /** the process that runs the CRI (crib, or containerd with its CRI plugin) */
  pid: number;
  sandboxConfig(name: string): cri.PodSandboxConfig__Input;
}

export interface Pod {
  id: string;
  config: cri.PodSandboxConfig__Input;
}

export const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};

/** Both sides up; `body` gets them and always sees them torn down. */
export async function withSides<T>(log: (line: string) => void, body: (sides: Side[], env: PodEnv, ctd: ContainerdCri) => Promise<T>): Promise<T> {
  const env = await PodEnv.start({ config: { log_level: "info" } });
  try {
    const ctd = await ContainerdCri.start();
    try {
      const version = await ctd.client.runtime.Version({});
      log(`containerd CRI: ${version.runtime_name} ${version.runtime_version}`);
      const sides: Side[] = [
        { name: "crib", client: env.client, socket: env.crib.socket, pid: env.crib.pid ?? 0, sandboxConfig: (n) => env.sandboxConfig(n) },
        { name: "containerd", client: ctd.client, socket: ctd.address, pid: ctd.pid ?? 0, sandboxConfig: (n) => ctd.sandboxConfig(n) },
      ];
      return await body(sides, env, ctd);
    } finally {
      await ctd.close();
    }
  } finally {
    await env.close();
  }
}

export async function runPod(side: Side, name: string, extra: Partial<cri.PodSandboxConfig__Input> = {}): Promise<Pod> {
  const config = { ...side.sandboxConfig(name), ...extra };
  await mkdir(config.log_directory!, { recursive: true });
  const { pod_sandbox_id } = await side.client.runtime.RunPodSandbox({ config });
  return { id: pod_sandbox_id, config };
}

export async function removePod(side: Side, pod: Pod): Promise<void> {
  await side.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
  await side.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
}

function createRequest(pod: Pod, name: string, command: string[]): cri.CreateContainerRequest__Input {
  return {
    pod_sandbox_id: pod.id,
    config: { metadata: { name }, image: { image: BUSYBOX_REF }, command, log_path: `${name}.log` },
    sandbox_config: pod.config,
  };
}

export async function runContainer(side: Side, pod: Pod, name: string, command = ["/bin/sleep", "3600"]): Promise<string> {
  const { container_id } = await side.client.runtime.CreateContainer(createRequest(pod, name, command));
  await side.client.runtime.StartContainer({ container_id });
  return container_id;
}

/** Timings per side per operation, in ms. */
export class Samples {
  readonly #ms = new Map<string, number[]>();
  add(side: Side, op: string, ms: number): void {
    const key = `${op}\0${side.name}`;
    this.#ms.set(key, [...(this.#ms.get(key) ?? []), ms]);
  }
  rows(benchmark: string, ops: string[]): Row[] {
    const rows: Row[] = [];
    for (const op of ops) {
      const crib = this.#ms.get(`${op}\0crib`) ?? [];
      const ctd = this.#ms.get(`${op}\0containerd`) ?? [];
      for (const p of [50, 90]) {
        const [a, b] = [percentile(crib, p), percentile(ctd, p)];
        rows.push({ benchmark, metric: `${op} p${p}`, value: `${a.toFixed(1)} ms`, note: `containerd ${b.toFixed(1)} ms, crib/containerd ${(a / b).toFixed(2)} (n=${crib.length})` });
      }
    }
    return rows;
  }
}

/** Runs `step(side, i)` for every side, alternating, WARMUP unmeasured rounds first. */
export async function alternate(sides: Side[], n: number, step: (side: Side, i: number, measured: boolean) => Promise<void>): Promise<void> {
  for (let i = 0; i < WARMUP + n; i++) {
    const order = i % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) await step(side, i, i >= WARMUP);
  }
}

export const sandboxBenchmark: Benchmark = {
  name: "sandbox",
  description: "RunPodSandbox / StopPodSandbox / RemovePodSandbox, crib vs containerd's CRI",
  async run({ log }) {
    const n = samples();
    return withSides(log, async (sides) => {
      const s = new Samples();
      await alternate(sides, n, async (side, i, measured) => {
        const config = side.sandboxConfig(`sb-${i}`);
        await mkdir(config.log_directory!, { recursive: true });
        const started = await timed(() => side.client.runtime.RunPodSandbox({ config }));
        const id = started.value.pod_sandbox_id;
        const stopped = await timed(() => side.client.runtime.StopPodSandbox({ pod_sandbox_id: id }));
        const removed = await timed(() => side.client.runtime.RemovePodSandbox({ pod_sandbox_id: id }));
        if (!measured) return;
        s.add(side, "RunPodSandbox", started.ms);
        s.add(side, "StopPodSandbox", stopped.ms);
        s.add(side, "RemovePodSandbox", removed.ms);
      });
      return s.rows("sandbox", ["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"]);
    });
  },
};

export const containerBenchmark: Benchmark = {
  name: "container",
  description: "CreateContainer + StartContainer of busybox sleep in a ready pod, crib vs containerd's CRI",
  async run({ log }) {
    const n = samples();
    return withSides(log, async (sides) => {
      const pods = new Map<Side, Pod>();
      for (const side of sides) pods.set(side, await runPod(side, "ctr-bench"));
      const s = new Samples();
      await alternate(sides, n, async (side, i, measured) => {
        const pod = pods.get(side)!;
        const created = await timed(() => side.client.runtime.CreateContainer(createRequest(pod, `sleep-${i}`, ["/bin/sleep", "3600"])));
        const id = created.value.container_id;
        const started = await timed(() => side.client.runtime.StartContainer({ container_id: id }));
        const stopped = await timed(() => side.client.runtime.StopContainer({ container_id: id, timeout: 0 }));
        const removed = await timed(() => side.client.runtime.RemoveContainer({ container_id: id }));
        if (!measured) return;
        s.add(side, "CreateContainer", created.ms);
        s.add(side, "StartContainer", started.ms);
        s.add(side, "Create+Start", created.ms + started.ms);
        s.add(side, "StopContainer(0)", stopped.ms);
        s.add(side, "RemoveContainer", removed.ms);
      });
      for (const [side, pod] of pods) await removePod(side, pod);
      return s.rows("container", ["CreateContainer", "StartContainer", "Create+Start", "StopContainer(0)", "RemoveContainer"]);
    });
  },
};

export const execSyncBenchmark: Benchmark = {
  name: "exec-sync",
  description: "ExecSync round trip (cat /etc/hostname, true), crib vs containerd's CRI",
  async run({ log }) {
    const n = samples();
    return withSides(log, async (sides) => {
      const targets = new Map<Side, { pod: Pod; container: string }>();
      for (const side of sides) {
        const pod = await runPod(side, "exec-bench");
        targets.set(side, { pod, container: await runContainer(side, pod, "sleep") });
      }
      const s = new Samples();
      const cmds: [string, string[]][] = [["ExecSync cat /etc/hostname", ["/bin/cat", "/etc/hostname"]], ["ExecSync /bin/true", ["/bin/true"]]];
      await alternate(sides, n, async (side, _i, measured) => {
        const { container } = targets.get(side)!;
        for (const [op, cmd] of cmds) {
          const r = await timed(() => side.client.runtime.ExecSync({ container_id: container, cmd, timeout: 10 }));
          if (r.value.exit_code !== 0) throw new Error(`${side.name}: ${cmd.join(" ")} exited ${r.value.exit_code}: ${r.value.stderr.toString()}`);
          if (cmd[1] === "/etc/hostname" && r.value.stdout.toString().trim() !== "exec-bench") {
            throw new Error(`${side.name}: hostname is ${JSON.stringify(r.value.stdout.toString())}`);
          }
          if (measured) s.add(side, op, r.ms);
        }
      });
      for (const [side, { pod }] of targets) await removePod(side, pod);
      return s.rows("exec-sync", cmds.map(([op]) => op));
    });
  },
};

const RSS_CONTAINERS = 100;
const RSS_PODS = 5;
const RSS_SETTLE_S = 30;
const RSS_TARGET_MB = 150;

export const rssLoggingBenchmark: Benchmark = {
  name: "rss-logging",
  description: `crib's RSS with ${RSS_CONTAINERS} containers each logging 10 lines/s, after ${RSS_SETTLE_S} s`,
  async run({ log }) {
    const env = await PodEnv.start({ config: { log_level: "info" } });
    try {
      const pid = env.crib.pid;
      if (pid === undefined) throw new Error("crib has no pid");
      const idle = await rss(pid);
      const side: Side = { name: "crib", client: env.client, socket: env.crib.socket, pid, sandboxConfig: (n) => env.sandboxConfig(n) };
      const logger = ["/bin/sh", "-c", "while true; do echo line; sleep 0.1; done"];
      const pods: Pod[] = [];
      for (let p = 0; p < RSS_PODS; p++) pods.push(await runPod(side, `rss-${p}`));
      const created = await timed(async () => {
        for (let i = 0; i < RSS_CONTAINERS; i++) await runContainer(side, pods[i % RSS_PODS]!, `log-${i}`, logger);
      });
      log(`${RSS_CONTAINERS} containers in ${RSS_PODS} pods started in ${(created.ms / 1000).toFixed(1)} s`);
      const afterStart = await rss(pid);
      const sampler = sampleRss(pid, 200);
      await new Promise((r) => setTimeout(r, RSS_SETTLE_S * 1000));
      const peak = await sampler.stop();
      const settled = await rss(pid);
      const logBytes = (await stat(join(pods[0]!.config.log_directory!, "log-0.log")).catch(() => undefined))?.size ?? 0;
      const running = (await env.client.runtime.ListContainers({ filter: { state: { state: "CONTAINER_RUNNING" } } })).containers.length;
      log(`log-0.log is ${logBytes} B; ${running} containers running`);
      // Teardown is reported, not fatal: the RSS figures are already in hand.
      const removed = await timed(async () => {
        for (const pod of pods) await removePod(side, pod);
      }).then((r) => `${(r.ms / 1000).toFixed(1)} s`, (err: unknown) => `FAILED: ${err instanceof Error ? err.message : String(err)}`);
      log(`pods removed: ${removed}`);
      const verdict = settled < RSS_TARGET_MB * (1 << 20) ? "within" : "OVER";
      return [
        { benchmark: "rss", metric: "crib RSS idle", value: `${mb(idle)} MB` },
        { benchmark: "rss", metric: `crib RSS, ${RSS_CONTAINERS} containers started`, value: `${mb(afterStart)} MB` },
        { benchmark: "rss", metric: `crib RSS after ${RSS_SETTLE_S} s logging`, value: `${mb(settled)} MB`, note: `${verdict} the ${RSS_TARGET_MB} MB target; ${running} running, log-0.log ${logBytes} B` },
        { benchmark: "rss", metric: `crib RSS peak over ${RSS_SETTLE_S} s`, value: `${mb(peak)} MB` },
        { benchmark: "rss", metric: `start ${RSS_CONTAINERS} containers`, value: `${(created.ms / 1000).toFixed(1)} s`, note: `${RSS_PODS} pods, sequential` },
        { benchmark: "rss", metric: `stop+remove ${RSS_PODS} pods`, value: removed.startsWith("FAILED") ? "FAILED" : removed, note: removed.startsWith("FAILED") ? removed.slice(8) : "" },
      ];
    } finally {
      await env.close();
    }
  },
};
