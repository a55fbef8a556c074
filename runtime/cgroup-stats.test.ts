import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { CgroupStats, oomKills, parentDirs, parseMountinfo, parsePressure, parseProcCgroup } from "./cgroup-stats.js";
import { parseNetDev } from "./net-dev.js";

/** Runs `check` on CgroupStats over a fake tree: `proc/…` and the cgroup mounts under `cg` (its path given to `tree`). */
async function withTree(tree: (cg: string) => Record<string, string>, check: (stats: CgroupStats, cg: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "crib-cgroup-"));
  try {
    const cg = join(root, "cg");
    for (const [path, text] of Object.entries(tree(cg))) {
      await mkdir(join(root, path, ".."), { recursive: true });
      await writeFile(join(root, path), text);
    }
    await check(new CgroupStats({ proc: join(root, "proc") }), cg);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The memory figures of the cgroup at `path` (the cgroupfs driver's naming). */
const memoryAt = async (stats: CgroupStats, path: string) => (await stats.read(await stats.ofPath(path))).memory;

test("mountinfo: v1 hierarchies by controller (joint ones too), and the unified mount", () => {
  const { v1, unified } = parseMountinfo([
    "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755",
    "33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup rw,cpu,cpuacct",
    "34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:16 - cgroup cgroup rw,memory",
    "35 30 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:17 - cgroup2 cgroup2 rw,nsdelegate",
  ].join("\n"));
  assert.deepEqual(v1.get("cpuacct"), { version: 1, mount: "/sys/fs/cgroup/cpu,cpuacct", root: "/" });
  assert.deepEqual(v1.get("memory"), { version: 1, mount: "/sys/fs/cgroup/memory", root: "/" });
  assert.equal(v1.has("pids"), false);
  assert.deepEqual(unified, { version: 2, mount: "/sys/fs/cgroup/unified", root: "/" });
});

test("/proc/<pid>/cgroup: v1 controllers and the unified path", () => {
  const paths = parseProcCgroup("4:memory:/kubepods/pod1/abc\n2:cpu,cpuacct:/kubepods/pod1/abc\n0::/system.slice/x\n");
  assert.equal(paths.get("memory"), "/kubepods/pod1/abc");
  assert.equal(paths.get("cpuacct"), "/kubepods/pod1/abc");
  assert.equal(paths.get(""), "/system.slice/x");
});

test("cgroup v1: CPU, working set (usage less total_inactive_file), RSS, faults, limit and pids", () =>
  withTree((cg) => ({
    "proc/self/mountinfo": [
      `1 0 0:1 / ${cg}/cpuacct rw - cgroup cgroup rw,cpuacct`,
      `2 0 0:2 / ${cg}/memory rw - cgroup cgroup rw,memory`,
      `3 0 0:3 / ${cg}/pids rw - cgroup cgroup rw,pids`,
    ].join("\n"),
    "proc/42/cgroup": "3:pids:/crib/c1\n2:memory:/crib/c1\n1:cpuacct:/crib/c1\n",
    "cg/cpuacct/crib/c1/cpuacct.usage": "2500000000\n",
    "cg/cpuacct/crib/c1/cpuacct.stat": "user 200\nsystem 50\n",
    "cg/memory/crib/c1/memory.usage_in_bytes": "104857600\n",
    "cg/memory/crib/c1/memory.limit_in_bytes": "9223372036854771712\n",
    "cg/memory/crib/c1/memory.stat": "cache 1\nrss 2\ntotal_cache 20971520\ntotal_rss 73400320\ntotal_inactive_file 10485760\ntotal_pgfault 1000\ntotal_pgmajfault 3\ntotal_mapped_file 4096\n",
    "cg/pids/crib/c1/pids.current": "3\n",
  }), async (stats, cg) => {
    const dirs = await stats.ofPid(42, "c1");
    assert.deepEqual(dirs?.memory, { version: 1, dir: `${cg}/memory/crib/c1` });
    const usage = await stats.read(dirs!);
    assert.deepEqual(usage.cpu, { usageNs: 2_500_000_000n, userNs: 2_000_000_000n, systemNs: 500_000_000n });
    assert.deepEqual(usage.memory, {
      usage: 104857600, workingSet: 104857600 - 10485760, rss: 73400320, cache: 20971520, mappedFile: 4096,
      inactiveFile: 10485760, pageFaults: 1000, majorPageFaults: 3,
    });
    assert.equal(usage.processes, 3);
    assert.equal(parentDirs(dirs!).memory?.dir, `${cg}/memory/crib`);
    assert.equal(await stats.ofPid(42, "another-container"), undefined, "a reused pid in someone else's cgroup");
    assert.equal(await stats.ofPid(43), undefined, "a process that is gone");
  }));

test("cgroup v2: cpu.stat in microseconds, memory.current less inactive_file, memory.max, pids.current", () =>
  withTree((cg) => ({
    "proc/self/mountinfo": `1 0 0:1 / ${cg} rw - cgroup2 cgroup2 rw,nsdelegate`,
    "proc/7/cgroup": "0::/kubepods.slice/pod.slice/crib-c2.scope\n",
    "cg/kubepods.slice/pod.slice/crib-c2.scope/cpu.stat": "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
    "cg/kubepods.slice/pod.slice/crib-c2.scope/memory.current": "67108864\n",
    "cg/kubepods.slice/pod.slice/crib-c2.scope/memory.max": "134217728\n",
    "cg/kubepods.slice/pod.slice/crib-c2.scope/memory.stat": "anon 50000000\nfile 1000\ninactive_file 8388608\npgfault 10\npgmajfault 1\nfile_mapped 0\n",
    "cg/kubepods.slice/pod.slice/crib-c2.scope/pids.current": "1\n",
  }), async (stats) => {
    const usage = await stats.read((await stats.ofPid(7, "c2"))!);
    assert.equal(usage.cpu?.usageNs, 1_500_000_000n);
    assert.equal(usage.memory?.workingSet, 67108864 - 8388608);
    assert.equal(usage.memory?.rss, 50000000);
    assert.equal(usage.memory?.limit, 134217728);
    assert.equal(usage.processes, 1);
  }));

test("cgroup v1 swap: memory.stat's total_swap in use, the limit memsw less memory, none without swap accounting", () =>
  withTree((cg) => ({
    "proc/self/mountinfo": `1 0 0:1 / ${cg}/memory rw - cgroup cgroup rw,memory`,
    // limited: 64 MiB of memory, 96 MiB of memory and swap together
    "cg/memory/crib/c1/memory.usage_in_bytes": "33554432\n",
    "cg/memory/crib/c1/memory.limit_in_bytes": "67108864\n",
    "cg/memory/crib/c1/memory.memsw.limit_in_bytes": "100663296\n",
    "cg/memory/crib/c1/memory.memsw.usage_in_bytes": "37748736\n",
    "cg/memory/crib/c1/memory.stat": "swap 0\ntotal_swap 4194304\ntotal_inactive_file 0\n",
    // memory limited, swap not: no limit to swap
    "cg/memory/crib/c2/memory.usage_in_bytes": "4096\n",
    "cg/memory/crib/c2/memory.limit_in_bytes": "67108864\n",
    "cg/memory/crib/c2/memory.memsw.limit_in_bytes": "9223372036854771712\n",
    "cg/memory/crib/c2/memory.memsw.usage_in_bytes": "4096\n",
    "cg/memory/crib/c2/memory.stat": "total_swap 0\n",
    // a kernel booted without swap accounting has no memsw files and no total_swap
    "cg/memory/crib/c3/memory.usage_in_bytes": "4096\n",
    "cg/memory/crib/c3/memory.limit_in_bytes": "67108864\n",
    "cg/memory/crib/c3/memory.stat": "total_rss 4096\n",
  }), async (stats) => {
    assert.deepEqual((await memoryAt(stats, "/crib/c1"))?.swap, { usage: 4194304, limit: 100663296 - 67108864 });
    assert.deepEqual((await memoryAt(stats, "/crib/c2"))?.swap, { usage: 0 });
    assert.equal((await memoryAt(stats, "/crib/c3"))?.swap, undefined);
    assert.equal((await stats.read(await stats.ofPath("/crib/c1"))).pressure, undefined, "v1 has no pressure files");
  }));

test("cgroup v2 swap: memory.swap.current, and memory.swap.max as the limit unless \"max\"", () =>
  withTree((cg) => ({
    "proc/self/mountinfo": `1 0 0:1 / ${cg} rw - cgroup2 cgroup2 rw,nsdelegate`,
    "cg/crib/c1/memory.current": "67108864\n",
    "cg/crib/c1/memory.max": "134217728\n",
    "cg/crib/c1/memory.stat": "anon 1\n",
    "cg/crib/c1/memory.swap.current": "8388608\n",
    "cg/crib/c1/memory.swap.max": "33554432\n",
    "cg/crib/c2/memory.current": "4096\n",
    "cg/crib/c2/memory.max": "max\n",
    "cg/crib/c2/memory.stat": "anon 1\n",
    "cg/crib/c2/memory.swap.current": "0\n",
    "cg/crib/c2/memory.swap.max": "max\n",
  }), async (stats) => {
    assert.deepEqual((await memoryAt(stats, "/crib/c1"))?.swap, { usage: 8388608, limit: 33554432 });
    assert.deepEqual((await memoryAt(stats, "/crib/c2"))?.swap, { usage: 0 });
  }));

test("pressure files: some and full lines, total from microseconds to nanoseconds", () => {
  assert.deepEqual(parsePressure("some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"), {
    some: { totalNs: 123_456_000n, avg10: 1.5, avg60: 0.25, avg300: 0 },
    full: { totalNs: 7000n, avg10: 0, avg60: 0, avg300: 0 },
  });
  assert.deepEqual(parsePressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"), { some: { totalNs: 0n, avg10: 0, avg60: 0, avg300: 0 } }, "an old kernel's cpu.pressure has no full line");
  assert.deepEqual(parsePressure(""), {});
});

test("cgroup v2 pressure: cpu, memory and io of the container and of its pod, absent files left out", () =>
  withTree((cg) => ({
    "proc/self/mountinfo": `1 0 0:1 / ${cg} rw - cgroup2 cgroup2 rw,nsdelegate`,
    "proc/7/cgroup": "0::/kubepods/pod1/c1\n",
    "cg/kubepods/pod1/c1/cpu.stat": "usage_usec 10\n",
    "cg/kubepods/pod1/c1/cpu.pressure": "some avg10=12.00 avg60=3.00 avg300=1.00 total=2000000\nfull avg10=2.00 avg60=0.50 avg300=0.10 total=500000\n",
    "cg/kubepods/pod1/c1/memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=30\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10\n",
    // no io.pressure: the kernel's PSI is off for it, or the file is unreadable
    "cg/kubepods/pod1/cpu.pressure": "some avg10=20.00 avg60=5.00 avg300=2.00 total=3000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=600000\n",
  }), async (stats, cg) => {
    const dirs = (await stats.ofPid(7, "c1"))!;
    assert.equal(dirs.unified, `${cg}/kubepods/pod1/c1`);
    const { pressure } = await stats.read(dirs);
    assert.deepEqual(pressure?.cpu, {
      some: { totalNs: 2_000_000_000n, avg10: 12, avg60: 3, avg300: 1 },
      full: { totalNs: 500_000_000n, avg10: 2, avg60: 0.5, avg300: 0.1 },
    });
    assert.equal(pressure?.memory?.full?.totalNs, 10_000n);
    assert.equal(pressure?.io, undefined);
    const pod = await stats.read(parentDirs(dirs));
    assert.equal(pod.pressure?.cpu?.some?.totalNs, 3_000_000_000n, "the pod's own cgroup");
    assert.equal((await stats.read({})).pressure, undefined);
  }));

test("hybrid host: pressure from the unified hierarchy, only when the process has its own cgroup there", () =>
  withTree((cg) => ({
    "proc/self/mountinfo": [
      `1 0 0:1 / ${cg}/memory rw - cgroup cgroup rw,memory`,
      `2 0 0:2 / ${cg}/unified rw - cgroup2 cgroup2 rw`,
    ].join("\n"),
    "proc/42/cgroup": "4:memory:/crib/c1\n0::/crib/c1\n",
    "proc/43/cgroup": "4:memory:/crib/c2\n0::/\n",
    "cg/unified/cpu.pressure": "some avg10=50.00 avg60=50.00 avg300=50.00 total=999999999\n",
    "cg/unified/crib/c1/cpu.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
  }), async (stats, cg) => {
    const c1 = (await stats.ofPid(42, "c1"))!;
    assert.deepEqual([c1.memory, c1.unified], [{ version: 1, dir: `${cg}/memory/crib/c1` }, `${cg}/unified/crib/c1`]);
    assert.equal((await stats.read(c1)).pressure?.cpu?.some?.totalNs, 5000n);
    const c2 = (await stats.ofPid(43, "c2"))!;
    assert.equal(c2.unified, undefined, "not the whole host's pressure for a process at the unified root");
  }));

test("OOM kills counted by the kernel in a cgroup found by its path (v1 memory.oom_control, v2 memory.events)", () =>
  withTree((cg) => ({
    "proc/self/mountinfo": `1 0 0:1 / ${cg}/memory rw - cgroup cgroup rw,memory`,
    "cg/memory/crib/c1/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    "cg/memory/crib/c2/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    "cg/v2/crib/c3/memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\n",
  }), async (stats, cg) => {
    const memory = async (path: string) => (await stats.ofPath(path)).memory!;
    assert.deepEqual(await memory("/crib/c1"), { version: 1, dir: `${cg}/memory/crib/c1` });
    assert.deepEqual([await oomKills(await memory("/crib/c1")), await oomKills(await memory("/crib/c2"))], [1, 0]);
    assert.equal(await oomKills(await memory("/crib/gone")), 0, "a cgroup already removed");
    assert.equal(await oomKills({ version: 2, dir: `${cg}/v2/crib/c3` }), 2);
  }));

test("/proc/net/dev: receive and transmit counters per interface, loopback left out", () => {
  const text = [
    "Inter-|   Receive                                                |  Transmit",
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
    "    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0",
    "  eth0:    5000      40    2    1    0     0          0         0     3000      30    4    3    0     0       0          0",
  ].join("\n");
  assert.deepEqual(parseNetDev(text), [{ name: "eth0", rxBytes: 5000, rxPackets: 40, rxErrors: 2, rxDropped: 1, txBytes: 3000, txPackets: 30, txErrors: 4, txDropped: 3 }]);
});
