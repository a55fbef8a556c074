// Container output under load, crib against containerd's own CRI in one run:
// one container writing flat out (`yes`) for `--seconds=N` (default 60) next to
// 20 containers writing 10 lines/s each. A second client calls Version,
// ContainerStatus and ListContainers every 20 ms meanwhile. Reported per side:
// those calls' latency, the CRI process's RSS growth, the flood's throughput
// into its log file, how long a slow container's line takes to reach its file,
// and every line checked (malformed, lost or repeated). Then the same with
// ReopenContainerLog every 5 s (the flood's file renamed first, as kubelet
// rotates). Runs go crib, containerd, containerd, crib.
//   npm run bench logs -- --seconds=10
import { open, readFile, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { CriClient } from "../fixtures/cri-client.js";
import { mb, rss, type Benchmark, type Row } from "./bench.js";
import { percentile, removePod, runContainer, runPod, withSides, type Side } from "./cri-compare.js";

const SLOW_CONTAINERS = 20;
const PROBE_EVERY_MS = 20;
const REOPEN_EVERY_S = 5;
const LINE = "the quick brown fox jumps over the lazy dog 0123456789";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function seconds(): number {
  const flag = process.argv.find((a) => a.startsWith("--seconds="));
  const s = Number(flag?.slice("--seconds=".length) ?? process.env["BENCH_LOGS_SECONDS"] ?? 60);
  if (!(s > 0)) throw new Error(`--seconds must be a positive number, not ${flag}`);
  return s;
}

/** CLOCK_BOOTTIME in seconds, the clock the slow containers stamp their lines with (/proc/uptime is not namespaced). */
const uptime = async (): Promise<number> => Number((await readFile("/proc/uptime", "utf8")).split(" ")[0]);

interface Result {
  latencies: number[];
  rssGrowth: number;
  floodBytes: number;
  floodSeconds: number;
  delays: number[];
  malformed: number;
  lost: number;
  repeated: number;
  floodLines: number;
  reopens: number;
}

/** Follows the slow containers' files, timing each new line from its stamp to its arrival. */
class SlowFollower {
  readonly #offsets = new Map<string, number>();
  readonly #rest = new Map<string, string>();
  readonly #next = new Map<string, number>();
  readonly delays: number[] = [];
  malformed = 0;
  lost = 0;
  repeated = 0;

  async poll(paths: string[]): Promise<void> {
    const now = await uptime();
    for (const path of paths) {
      const file = await open(path, "r").catch(() => undefined);
      if (!file) continue;
      try {
        const offset = this.#offsets.get(path) ?? 0;
        const { size } = await file.stat();
        if (size <= offset) continue;
        const buf = Buffer.alloc(size - offset);
        const { bytesRead } = await file.read(buf, 0, buf.length, offset);
        this.#offsets.set(path, offset + bytesRead);
        const lines = ((this.#rest.get(path) ?? "") + buf.subarray(0, bytesRead).toString()).split("\n");
        this.#rest.set(path, lines.pop()!);
        for (const line of lines) this.#line(path, line, now);
      } finally {
        await file.close();
      }
    }
  }

  #line(path: string, line: string, now: number): void {
    const m = /^\S+ stdout F slow (\d+) (\d+\.\d+)$/.exec(line);
    if (!m) {
      this.malformed++;
      return;
    }
    const n = Number(m[1]);
    const expected = this.#next.get(path);
    if (expected !== undefined && n > expected) this.lost += n - expected;
    if (expected !== undefined && n < expected) this.repeated++;
    this.#next.set(path, n + 1);
    this.delays.push(Math.max(0, (now - Number(m[2])) * 1000));
  }
}

/** Checks every flood entry (`<timestamp> stdout F <LINE>`; the last may be a P piece: yes is killed mid-line). */
async function checkFlood(paths: string[]): Promise<{ bytes: number; lines: number; malformed: number }> {
  const want = Buffer.from(` stdout F ${LINE}`);
  let bytes = 0;
  let lines = 0;
  let malformed = 0;
  for (const path of paths) {
    const file = await open(path, "r").catch(() => undefined);
    if (!file) continue;
    try {
      bytes += (await file.stat()).size;
      const buf = Buffer.alloc(8 << 20);
      let carry = Buffer.alloc(0);
      let last = "";
      for (;;) {
        const { bytesRead } = await file.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        const data = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
        let start = 0;
        for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
          const space = data.indexOf(32, start);
          const stampLength = space - start;
          const ok = stampLength >= 20 && stampLength <= 35 && data[start + 10] === 0x54 && nl - space === want.length && data.compare(want, 0, want.length, space, nl) === 0;
          if (!ok) {
            if (malformed === 0) last = data.subarray(start, Math.min(nl, start + 120)).toString();
            malformed++;
          }
          lines++;
          start = nl + 1;
        }
        carry = Buffer.from(data.subarray(start));
      }
      if (carry.length > 0) malformed++;
      if (malformed > 1) process.stderr.write(`[logs] ${path}: ${malformed} malformed flood entries, the first ${JSON.stringify(last)}\n`);
    } finally {
      await file.close();
    }
  }
  // yes is killed mid-line: one P piece at the end is expected
  return { bytes, lines, malformed: Math.max(0, malformed - 1) };
}

async function floodRun(side: Side, tag: string, floodSeconds: number, reopen: boolean, log: (line: string) => void): Promise<Result> {
  const pod = await runPod(side, `logs-${tag}`);
  const dir = pod.config.log_directory!;
  try {
    const slowCommand = ["/bin/sh", "-c", "i=0; while true; do read up rest < /proc/uptime; echo \"slow $i $up\"; i=$((i+1)); sleep 0.1; done"];
    const slowPaths: string[] = [];
    let statusTarget = "";
    for (let i = 0; i < SLOW_CONTAINERS; i++) {
      const id = await runContainer(side, pod, `slow-${i}`, slowCommand);
      statusTarget ||= id;
      slowPaths.push(join(dir, `slow-${i}.log`));
    }
    const follower = new SlowFollower();
    await sleep(1000);
    await follower.poll(slowPaths);
    follower.delays.length = 0;
    const idle = await rss(side.pid);
    let peak = idle;
    const floodPath = join(dir, "flood.log");
    const flood = await runContainer(side, pod, "flood", ["/bin/sh", "-c", `/bin/yes '${LINE}' & sleep ${floodSeconds}; kill $!`]);
    const started = Date.now();
    const probe = new CriClient(side.socket);
    const latencies: number[] = [];
    const rotated: string[] = [];
    const running = () => Date.now() - started < floodSeconds * 1000;
    try {
      const calls = [
        () => probe.runtime.Version({}),
        () => probe.runtime.ContainerStatus({ container_id: statusTarget }),
        () => probe.runtime.ListContainers({}),
      ];
      const probing = (async () => {
        for (let i = 0; running(); i++) {
          const t0 = performance.now();
          await calls[i % calls.length]!();
          latencies.push(performance.now() - t0);
          await sleep(PROBE_EVERY_MS);
        }
      })();
      const sampling = (async () => {
        while (running()) {
          peak = Math.max(peak, await rss(side.pid).catch(() => 0));
          await follower.poll(slowPaths);
          await sleep(50);
        }
      })();
      const rotating = (async () => {
        if (!reopen) return;
        for (let i = 0; ; i++) {
          await sleep(REOPEN_EVERY_S * 1000);
          if (!running()) return;
          const to = `${floodPath}.${i}`;
          await rename(floodPath, to);
          rotated.push(to);
          await side.client.runtime.ReopenContainerLog({ container_id: flood });
        }
      })();
      await Promise.all([probing, sampling, rotating]);
    } finally {
      probe.close();
    }
    // the flood's end: its shell kills yes; the file is complete once the container has exited
    for (const deadline = Date.now() + 60_000; ;) {
      const s = await side.client.runtime.ContainerStatus({ container_id: flood });
      if (s.status?.state === "CONTAINER_EXITED") break;
      if (Date.now() > deadline) throw new Error(`${side.name}: the flood container did not exit`);
      await sleep(100);
    }
    await follower.poll(slowPaths);
    const checked = await checkFlood([...rotated, floodPath]);
    log(`${side.name}${reopen ? " +reopen" : ""}: ${latencies.length} calls, flood ${mb(checked.bytes)} MB in ${checked.lines} lines, ${rotated.length} rotations, ${follower.delays.length} slow lines`);
    return {
      latencies, rssGrowth: peak - idle, floodBytes: checked.bytes, floodSeconds, delays: follower.delays,
      malformed: checked.malformed + follower.malformed, lost: follower.lost, repeated: follower.repeated, floodLines: checked.lines, reopens: rotated.length,
    };
  } finally {
    await removePod(side, pod).catch((err: unknown) => log(`${side.name}: removing the pod: ${String(err)}`));
    for (const f of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, f), { force: true });
  }
}

function rows(variant: string, results: Map<string, Result>): Row[] {
  const crib = results.get("crib")!;
  const ctd = results.get("containerd")!;
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const stats = (xs: number[]) => ({ p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs) });
  const [lc, lk] = [stats(crib.latencies), stats(ctd.latencies)];
  const [dc, dk] = [stats(crib.delays), stats(ctd.delays)];
  const mbs = (r: Result) => r.floodBytes / (1 << 20) / r.floodSeconds;
  const checks = (r: Result) => `${r.malformed} malformed, ${r.lost} lost, ${r.repeated} repeated`;
  const b = `logs${variant}`;
  return [
    { benchmark: b, metric: "CRI calls during flood p50", value: ms(lc.p50), note: `containerd ${ms(lk.p50)} (n=${crib.latencies.length}/${ctd.latencies.length}); target p99 < 20 ms, max < 100 ms` },
    { benchmark: b, metric: "CRI calls during flood p99", value: ms(lc.p99), note: `containerd ${ms(lk.p99)}` },
    { benchmark: b, metric: "CRI calls during flood max", value: ms(lc.max), note: `containerd ${ms(lk.max)}` },
    { benchmark: b, metric: "RSS growth", value: `${mb(crib.rssGrowth)} MB`, note: `containerd (its CRI plugin in-process) ${mb(ctd.rssGrowth)} MB; target < 30 MB` },
    { benchmark: b, metric: "flood into the file", value: `${mbs(crib).toFixed(1)} MB/s`, note: `containerd ${mbs(ctd).toFixed(1)} MB/s, crib/containerd ${(mbs(crib) / mbs(ctd)).toFixed(2)}; ${crib.floodLines}/${ctd.floodLines} lines` },
    { benchmark: b, metric: "slow line delay p50", value: ms(dc.p50), note: `containerd ${ms(dk.p50)} (polled every 50 ms; n=${crib.delays.length}/${ctd.delays.length})` },
    { benchmark: b, metric: "slow line delay p99", value: ms(dc.p99), note: `containerd ${ms(dk.p99)}` },
    { benchmark: b, metric: "slow line delay max", value: ms(dc.max), note: `containerd ${ms(dk.max)}; target < 1000 ms` },
    { benchmark: b, metric: "lines checked", value: crib.malformed + crib.lost + crib.repeated === 0 ? "ok" : "BAD", note: `crib ${checks(crib)}; containerd ${checks(ctd)}${variant ? `; ${crib.reopens}/${ctd.reopens} reopens` : ""}` },
  ];
}

export const logsBenchmark: Benchmark = {
  name: "logs",
  description: `one container flooding its log + ${SLOW_CONTAINERS} writing 10 lines/s, plain and with ReopenContainerLog every ${REOPEN_EVERY_S} s, crib vs containerd's CRI`,
  async run({ log }) {
    const s = seconds();
    return withSides(log, async (sides) => {
      const out: Row[] = [];
      let i = 0;
      for (const reopen of [false, true]) {
        const results = new Map<string, Result>();
        // crib, containerd, then containerd, crib: neither side always goes first
        for (const side of reopen ? [...sides].reverse() : sides) {
          log(`${side.name}${reopen ? " with reopen" : ""}: ${s} s flood`);
          results.set(side.name, await floodRun(side, String(i++), s, reopen, log));
        }
        out.push(...rows(reopen ? ` +reopen/${REOPEN_EVERY_S}s` : "", results));
      }
      return out;
    });
  },
};

