// Container output under load, as a node operator sees it: a container that
// writes flat out must not stall crib's other calls, must reach its log file as
// it goes, must not grow crib's memory, and must not starve its neighbours; an
// exec client that stops reading stops the process, not crib's memory.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { PodEnv } from "../fixtures/pod-env.js";
import { CriClient } from "../fixtures/cri-client.js";
import { SpdyClient } from "../fixtures/stream-clients.js";
import { READ_BYTES } from "../../runtime/container-io.js";

const run = promisify(execFile);
const FLOOD_S = 10;
const LINE = "the quick brown fox jumps over the lazy dog 0123456789";
const ENTRY = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) ([PF]) (.*)$/s;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rss(pid: number): Promise<number> {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb) * 1024;
}

/** Samples `pid`'s RSS until stopped; resolves with the peak. */
function peakRss(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await rss(pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, 100).unref());
    }
  })();
  return { stop: async () => { running = false; await loop; return peak; } };
}

/**
 * Reads `stream` for a second, then stops reading the client's socket (TCP
 * fills, and crib must stop reading the FIFO behind it); after a settling
 * second (`settled` runs then), samples crib's RSS for `ms`.
 */
async function stopReading(client: SpdyClient, stream: NodeJS.ReadableStream, pid: number, ms: number, settled?: () => Promise<void>): Promise<{ received: number; growth: number }> {
  let received = 0;
  stream.on("data", (chunk: Buffer) => { received += chunk.length; });
  await sleep(1000);
  client.socket.pause();
  await sleep(1500);
  await settled?.();
  const before = await rss(pid);
  const peak = peakRss(pid);
  await sleep(ms);
  return { received, growth: (await peak.stop()) - before };
}

async function waitExited(env: PodEnv, id: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await env.client.runtime.ContainerStatus({ container_id: id })).status?.state !== "CONTAINER_EXITED") {
    if (Date.now() > deadline) assert.fail(`container ${id.slice(0, 12)} did not exit within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Checks every entry of a (large) log file with `each`, reading it in pieces; `tolerate` malformed lines are skipped. */
async function scanLog(path: string, each: (entry: RegExpExecArray, line: string) => void, tolerate = 0): Promise<number> {
  const file = await open(path, "r");
  let count = 0;
  try {
    let rest = "";
    const buf = Buffer.alloc(4 << 20);
    for (;;) {
      const { bytesRead } = await file.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      const lines = (rest + buf.subarray(0, bytesRead).toString("latin1")).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        const m = ENTRY.exec(line);
        if (!m && tolerate-- > 0) continue;
        assert.ok(m, `malformed log entry ${JSON.stringify(line.slice(0, 120))}`);
        each(m, line);
        count++;
      }
    }
    assert.equal(rest, "", "the file ends with a whole entry");
  } finally {
    await file.close();
  }
  return count;
}

describe("container output under load", () => {
  let env: PodEnv;
  let pod: Awaited<ReturnType<PodEnv["runPod"]>>;
  const logPath = (name: string) => join(env.crib.dir, "pods", "output", `${name}.log`);
  before(async () => {
    env = await PodEnv.start({ config: { log_level: "info" } });
    pod = await env.runPod("output");
  });
  after(async () => { await env?.close(); });

  it(`keeps Version and ContainerStatus answering while a container floods its log for ${FLOOD_S} s`, async () => {
    const pid = env.crib.pid!;
    const slow = await env.runContainer(pod, "neighbour", { command: ["/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"] });
    await sleep(500);
    const idle = await rss(pid);
    const peak = peakRss(pid);
    const flood = await env.runContainer(pod, "flood", { command: ["/bin/sh", "-c", `/bin/yes '${LINE}' & sleep ${FLOOD_S}; kill $!`] });
    const floodStart = Date.now();
    const probe = new CriClient(env.crib.socket);
    const latencies: number[] = [];
    const sizes: number[] = [];
    let peakBytes = 0;
    try {
      let sampledAt = 0;
      while (Date.now() - floodStart < FLOOD_S * 1000) {
        let t0 = performance.now();
        await probe.runtime.Version({});
        latencies.push(performance.now() - t0);
        t0 = performance.now();
        await probe.runtime.ContainerStatus({ container_id: slow });
        latencies.push(performance.now() - t0);
        if (Date.now() - sampledAt >= 1000) {
          sampledAt = Date.now();
          sizes.push((await stat(logPath("flood")).catch(() => undefined))?.size ?? 0);
        }
        await sleep(50);
      }
      await waitExited(env, flood, 30_000);
    } finally {
      probe.close();
      peakBytes = await peak.stop();
    }
    const growth = peakBytes - idle;
    const worst = Math.max(...latencies);
    const sorted = [...latencies].sort((a, b) => a - b);
    process.stderr.write(`flood: ${latencies.length} calls, p50 ${sorted[sorted.length >> 1]!.toFixed(1)} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)]!.toFixed(1)} ms, max ${worst.toFixed(1)} ms; RSS +${(growth / (1 << 20)).toFixed(1)} MB; log sizes ${sizes.join(", ")}\n`);
    assert.ok(worst < 1000, `Version/ContainerStatus took up to ${worst.toFixed(0)} ms during the flood (${latencies.length} calls)`);
    const growing = sizes.filter((s, i) => i > 0 && s > sizes[i - 1]!).length;
    assert.ok(growing >= sizes.length / 2, `the log file grows during the flood, not after it: sizes each second ${sizes.join(", ")}`);
    assert.ok(growth < 100 * (1 << 20), `crib's RSS grew by ${(growth / (1 << 20)).toFixed(1)} MB during the flood`);

    let cut: string | undefined; // yes is killed mid-line: the last entry may be a P piece
    const floodLines = await scanLog(logPath("flood"), (m, line) => {
      assert.equal(cut, undefined, `only the last entry is cut short, not ${JSON.stringify(cut)}`);
      if (m[2] === "P" && LINE.startsWith(m[3]!)) cut = line;
      else assert.ok(m[1] === "stdout" && m[2] === "F" && m[3] === LINE, `flood entry ${JSON.stringify(line.slice(0, 120))}`);
    });
    assert.ok(floodLines > 1000, `${floodLines} flood lines logged`);
    const ticks: { n: number; at: number }[] = [];
    await scanLog(logPath("neighbour"), (m) => void ticks.push({ n: Number(m[3]!.split(" ")[1]), at: Date.parse(m[0].slice(0, 30)) }));
    assert.ok(ticks.every((t, i) => t.n === i), "the neighbour's lines are all there, in order");
    const during = ticks.filter((t) => t.at >= floodStart && t.at <= floodStart + FLOOD_S * 1000);
    assert.ok(during.length >= FLOOD_S * 3, `the neighbour's lines kept arriving during the flood: ${during.length} in ${FLOOD_S} s`);
    const gaps = during.slice(1).map((t, i) => t.at - during[i]!.at);
    assert.ok(Math.max(...gaps) < 2000, `no neighbour line waited 2 s behind the flood: longest gap ${Math.max(...gaps)} ms`);
    await env.client.runtime.StopContainer({ container_id: slow, timeout: 0 });
  });

  it("on a full disk: says so once in crib's log, drains the output, and logs again once there is room", async () => {
    const dir = join(env.crib.dir, "pods", "full-disk");
    await mkdir(dir, { recursive: true });
    await run("mount", ["-t", "tmpfs", "-o", "size=64k", "crib-test-full", dir]);
    try {
      const full = await env.runPod("full-disk");
      // fill it: the log file can be made, but nothing more can be written
      const filler = join(dir, "filler");
      const chunk = Buffer.alloc(1024, 120);
      const f = await open(filler, "w");
      try {
        for (;;) await f.write(chunk);
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
      } finally {
        await f.close();
      }
      const c = await env.runContainer(full, "ticker", { command: ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done"] });
      await sleep(2000);
      assert.equal((await env.client.runtime.ContainerStatus({ container_id: c })).status?.state, "CONTAINER_RUNNING", "the container is not blocked");
      assert.equal((await stat(join(dir, "ticker.log"))).size, 0, "nothing could be written");
      const failed = () => env.crib.log().then((l) => l.split("\n").filter((x) => x.includes("cannot write the container's log file") && x.includes(c.slice(0, 12))));
      assert.equal((await failed()).length, 1, "one error line, not one per batch");
      assert.match((await failed())[0]!, /ENOSPC/);
      await rm(filler);
      const deadline = Date.now() + 10_000;
      while ((await stat(join(dir, "ticker.log"))).size === 0) {
        assert.ok(Date.now() < deadline, "the log is written again within 10 s of there being room");
        await sleep(100);
      }
      await sleep(500);
      const ticks: number[] = [];
      await scanLog(join(dir, "ticker.log"), (m) => void ticks.push(Number(m[3]!.split(" ")[1])));
      assert.ok(ticks.length >= 3, `new lines arrive: ${ticks.length}`);
      for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i], ticks[i - 1]! + 1, "in order, none lost once writing works");
      assert.ok((await env.crib.log()).includes("the container's log file is written again"));
      await env.client.runtime.StopPodSandbox({ pod_sandbox_id: full.id });
      await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: full.id });
    } finally {
      await run("umount", [dir]).catch(() => undefined);
    }
  });

  it("logs \\r\\n line endings as containerd does", async () => {
    const c = await env.runContainer(pod, "crlf", { command: ["/bin/printf", "red\\r\\ngreen\\rblue\\n\\r\\nno newline\\r"] });
    await waitExited(env, c, 15_000);
    const entries: string[] = [];
    await scanLog(logPath("crlf"), (m) => void entries.push(`${m[2]} ${m[3]}`));
    assert.deepEqual(entries, ["F red", "F green\rblue", "F ", "P no newline\r"]);
  });

  it("loses and repeats no line when the log is rotated every 300 ms during a flood", async () => {
    const total = 2_000_000;
    const c = await env.runContainer(pod, "rotated", { command: ["/bin/seq", "1", String(total)] });
    const rotated: string[] = [];
    for (let i = 0; (await env.client.runtime.ContainerStatus({ container_id: c })).status?.state === "CONTAINER_RUNNING"; i++) {
      await sleep(300);
      const to = `${logPath("rotated")}.${i}`;
      if (await rename(logPath("rotated"), to).then(() => true, () => false)) {
        rotated.push(to);
        await env.client.runtime.ReopenContainerLog({ container_id: c }).catch(() => undefined); // it may have just exited
      }
    }
    await waitExited(env, c, 60_000);
    let next = 1;
    for (const file of [...rotated, logPath("rotated")]) {
      await scanLog(file, (m) => {
        assert.equal(m[3], String(next), `line ${next} in ${file}`);
        next++;
      }).catch((err: unknown) => { if ((err as { code?: string }).code !== "ENOENT") throw err; });
    }
    assert.equal(next - 1, total, "every number once, in order");
    assert.ok(rotated.length >= 2, `rotated ${rotated.length} times during the flood`);
  });

  it("an exec client that stops reading stops the process's output, not crib's memory", async () => {
    const pid = env.crib.pid!;
    const c = await env.runContainer(pod, "exec-target");
    const { url } = await env.client.runtime.Exec({ container_id: c, cmd: ["/bin/yes", LINE], stdout: true, stderr: false });
    const client = await SpdyClient.connect(url);
    try {
      await client.openStream({ streamType: "error" });
      const stdout = await client.openStream({ streamType: "stdout" });
      const { received, growth } = await stopReading(client, stdout, pid, 5000);
      assert.ok(received > 0, "output flowed while the client read");
      assert.ok(growth < 30 * (1 << 20), `crib's RSS grew by ${(growth / (1 << 20)).toFixed(1)} MB while the exec client did not read`);
      const t0 = performance.now();
      await env.client.runtime.Version({});
      assert.ok(performance.now() - t0 < 1000, "crib still answers");
    } finally {
      client.destroy();
    }
  });

  it("an attach client that stops reading holds the output without growing crib, and the log goes on once it leaves", async () => {
    const pid = env.crib.pid!;
    const c = await env.runContainer(pod, "attached", { command: ["/bin/yes", LINE] });
    const { url } = await env.client.runtime.Attach({ container_id: c, stdout: true, stderr: true });
    const client = await SpdyClient.connect(url);
    const size = async () => (await stat(logPath("attached"))).size;
    try {
      await client.openStream({ streamType: "error" });
      const stdout = await client.openStream({ streamType: "stdout" });
      await client.openStream({ streamType: "stderr" });
      const { received, growth } = await stopReading(client, stdout, pid, 3000);
      assert.ok(received > 0, "the client got output while it read");
      // As under containerd's CRI (a blocking writer group), the client's backpressure reaches the
      // container: once the socket buffers are full, the log stands still (a busy node fills them slowly).
      const sizes = [await size()];
      for (let i = 0; i < 20 && (sizes.length < 2 || sizes.at(-1) !== sizes.at(-2)); i++) {
        await sleep(1000);
        sizes.push(await size());
      }
      assert.equal(sizes.at(-1), sizes.at(-2), `the log stood still while the attached client did not read: sizes each second ${sizes.join(", ")}`);
      assert.ok(growth < 30 * (1 << 20), `crib's RSS grew by ${(growth / (1 << 20)).toFixed(1)} MB while the attach client did not read`);
    } finally {
      client.destroy();
    }
    const after = await size();
    await sleep(1000);
    assert.ok((await size()) > after + (1 << 20), "the log goes on once the client has gone");
    await env.client.runtime.StopContainer({ container_id: c, timeout: 0 });
  });

  it("carries on where the FIFO is after a SIGKILL during a flood, losing at most one read", async () => {
    const c = await env.runContainer(pod, "counted", { command: ["/bin/seq", "1", "1000000000"] });
    await sleep(1500);
    await env.crib.stopProcess("SIGKILL");
    await sleep(500);
    await env.crib.startProcess();
    await sleep(1500);
    await env.client.runtime.StopContainer({ container_id: c, timeout: 0 });
    const numbers: number[] = [];
    // What a SIGKILL can tear: the write in flight (the kernel ends a write at a fatal
    // signal, so its last entry may be cut short, even inside its header), and the line
    // crib had begun reading, whose tail comes back as a shorter (smaller) number.
    await scanLog(logPath("counted"), (m) => void numbers.push(Number(m[3])), 1);
    assert.ok(numbers.length > 100_000, `the flood was logged: ${numbers.length} lines`);
    let top = 0;
    const broken: number[] = [];
    const clean = numbers.filter((n) => (n > top ? ((top = n), true) : (broken.push(n), false)));
    assert.ok(broken.length <= 2, `nothing repeated: ${JSON.stringify(broken.slice(0, 5))}`);
    const gaps = clean.flatMap((n, i) => (i > 0 && n !== clean[i - 1]! + 1 ? [[clean[i - 1]!, n]] : []));
    assert.ok(gaps.length <= 1, `one gap at the kill, no other: ${JSON.stringify(gaps)}`);
    const lost = clean.at(-1)! - clean.length;
    const perRead = Math.ceil(READ_BYTES / String(clean.at(-1)!).length) + 1;
    process.stderr.write(`SIGKILL during a flood: ${lost} of ${clean.at(-1)} lines lost (one read is ~${perRead} lines), gap ${JSON.stringify(gaps)}\n`);
    assert.ok(lost <= perRead, `lost ${lost} lines across the kill, more than one read (~${perRead} lines): ${JSON.stringify(gaps)}`);
  });
});
