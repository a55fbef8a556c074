import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { CgroupStats, oomKills, parentDirs, parseMountinfo, parseProcCgroup } from "./cgroup-stats.js";
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
