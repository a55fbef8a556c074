// `crib doctor` on this machine against a test containerd, breaking one thing
// at a time, and `--fix-leaks` removing what crib's records name and no live
// sandbox has (netns, IPs through CNI DEL, cache entries, mounts, state dirs,
// snapshots, records, shims), while leaving live sandboxes' and other runtimes'
// objects alone.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { stringify } from "smol-toml";
import { TestContainerd, unmountUnder } from "../fixtures/containerd.js";
import { PAUSE_REF, importImage, pauseImage } from "../fixtures/local-images.js";
import { jsonAny } from "../../proto/load.js";
import { SPEC_TYPE, SNAPSHOTTER } from "../../runtime/containerd/tasks.js";
import { SANDBOX_EXTENSION } from "../../cri/store/sandboxes.js";
import { cniArgs } from "../../cni/network.js";

const MAIN = fileURLToPath(new URL("../../cri/main.js", import.meta.url));
const run = promisify(execFile);

interface Check { check: string; status: "pass" | "warn" | "fail" | "skip"; message: string; fix?: string; leaks?: Array<{ kind: string; name: string }> }
interface Report { ok: boolean; checks: Check[]; fixed: Array<{ leak: string; removed: boolean }> }

async function doctor(args: string[]): Promise<{ code: number; report: Report; text: string }> {
  try {
    const { stdout } = await run(process.execPath, [MAIN, "doctor", "--json", ...args], { timeout: 60_000 });
    return { code: 0, report: JSON.parse(stdout) as Report, text: stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    if (typeof e.code !== "number" || !e.stdout) throw err;
    return { code: e.code, report: JSON.parse(e.stdout) as Report, text: `${e.stdout}${e.stderr}` };
  }
}

const verdict = (report: Report, name: string): Check => {
  const v = report.checks.find((c) => c.check === name);
  assert.ok(v, `doctor reports a "${name}" check`);
  return v;
};

const LEAK_CHECKS = ["leaked-containers", "leaked-cni-cache", "leaked-ips", "leaked-iptables", "leaked-netns", "leaked-mounts", "leaked-state-dirs", "leaked-snapshots", "leaked-leases", "leaked-shims"];

const failing = (report: Report) => report.checks.filter((c) => c.status === "fail").map((c) => `${c.check}: ${c.message}`);

describe("crib doctor", () => {
  const tag = randomBytes(3).toString("hex");
  const namespace = `crib-doctor-${tag}`;
  const netnsPrefix = `crib-leaktest${tag}-`;
  const liveId = `live${tag}`;
  const leakId = `leak${tag}`;
  /** another runtime's sandbox: another crib with the same netns prefix, containerd's CRI on the same network */
  const foreignId = `foreign${tag}`;
  const strayId = `stray${tag}`;
  const fakeShims: ChildProcess[] = [];
  let containerd: TestContainerd;
  let dir: string;
  let ipamDir: string;
  const configs = new Map<string, string>();

  /** Writes a config file: the healthy one, with `patch` applied to its tables. */
  async function config(name: string, patch: (c: Record<string, Record<string, unknown>>) => void = () => {}): Promise<string> {
    const c: Record<string, Record<string, unknown>> = {
      paths: {},
      containerd: { address: containerd.address, namespace },
      cni: { conf_dir: join(dir, "net.d"), bin_dirs: ["/opt/cni/bin", "/usr/lib/cni"] },
      sandbox: { image: PAUSE_REF, image_archive: "" },
    };
    patch(c);
    const { paths, ...tables } = c;
    const file = join(dir, `${name}.toml`);
    await writeFile(file, stringify({ listen: join(dir, "run", "crib.sock"), root: join(dir, "root"), state: join(dir, "state"), ...paths, ...tables }));
    configs.set(name, file);
    return file;
  }

  const common = () => ["--netns-prefix", netnsPrefix, "--leak-age", "0s"];

  before(async () => {
    containerd = await TestContainerd.start();
    dir = await mkdtemp("/tmp/crib-doctor-");
    ipamDir = join(dir, "ipam");
    await mkdir(join(dir, "net.d"), { recursive: true });
    await mkdir(join(dir, "empty-bin"));
    await writeFile(join(dir, "net.d", "10-test.conflist"), JSON.stringify({
      cniVersion: "1.0.0", name: "doctor-test",
      plugins: [
        { type: "bridge", bridge: `cd${tag}`, ipam: { type: "host-local", ranges: [[{ subnet: "10.199.0.0/24" }]], dataDir: ipamDir } },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    }));
    await importImage(containerd.address, namespace, PAUSE_REF, await pauseImage());
    // A live sandbox as doctor sees one: a container record labelled crib.kind=sandbox.
    const c = containerd.client(namespace);
    try {
      // gc.root: containerd may collect it before the container record refers to it
      await c.snapshots.Prepare({ snapshotter: SNAPSHOTTER, key: liveId, parent: "", labels: { "containerd.io/gc.root": new Date().toISOString() } });
      await c.containers.Create({
        container: {
          id: liveId, labels: { "crib.kind": "sandbox" }, image: PAUSE_REF, extensions: { [SANDBOX_EXTENSION]: jsonAny(SANDBOX_EXTENSION, { id: liveId }) },
          runtime: { name: "io.containerd.runc.v2" }, spec: jsonAny(SPEC_TYPE, { ociVersion: "1.1.0" }),
          snapshotter: SNAPSHOTTER, snapshot_key: liveId,
        },
      });
    } finally {
      c.close();
    }
    await config("healthy");
  });

  after(async () => {
    for (const shim of fakeShims) shim.kill("SIGKILL");
    for (const id of [liveId, leakId, foreignId]) await run("ip", ["netns", "delete", `${netnsPrefix}${id}`]).catch(() => undefined);
    await unmountUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    await containerd?.close();
  });

  it("passes on a healthy node, warnings included, with exit code 0", async () => {
    const { code, report, text } = await doctor(["--config", configs.get("healthy")!, ...common()]);
    assert.deepEqual(failing(report), [], text);
    assert.equal(code, 0);
    assert.equal(report.ok, true);
    for (const name of ["kernel", "cgroup", "modules", "sysctls", "overlayfs", "runc", "shim", "containerd", "cni", "sandbox-image", "socket", "disk", "oom-score", "apparmor"]) {
      assert.ok(["pass", "warn"].includes(verdict(report, name).status), `${name}: ${verdict(report, name).message}`);
    }
    assert.match(verdict(report, "containerd").message, /the configured containerd answers/);
    assert.match(verdict(report, "sandbox-image").message, /present in containerd namespace/);
    for (const name of LEAK_CHECKS) assert.equal(verdict(report, name).status, "pass", name);
  });

  it("prints one line per check with the fix in text mode", async () => {
    const file = await config("no-plugins", (c) => { c["cni"]!["bin_dirs"] = [join(dir, "empty-bin")]; });
    const { stdout } = await run(process.execPath, [MAIN, "doctor", "--config", file, ...common()]).catch((e: { stdout: string }) => e);
    assert.match(stdout, /^FAIL {2}cni +network "doctor-test" .* needs bridge, host-local, portmap, not found in .*empty-bin — fix: apt-get install containernetworking-plugins/m);
    assert.match(stdout, /^ok {4}kernel +Linux /m);
    assert.match(stdout, /crib doctor: 1 problem found/);
  });

  it("fails the cni check when a plugin is missing from the bin dirs", async () => {
    const { code, report } = await doctor(["--config", configs.get("no-plugins")!, ...common()]);
    assert.equal(code, 1);
    const cni = verdict(report, "cni");
    assert.equal(cni.status, "fail");
    assert.match(cni.message, /needs bridge, host-local, portmap/);
    assert.deepEqual(failing(report).map((f) => f.split(":")[0]), ["cni"], "only the cni check fails");
  });

  it("fails the modules check when br_netfilter is not loaded (a host under --root-prefix)", async () => {
    const host = join(dir, "host");
    const write = async (path: string, text: string) => {
      await mkdir(join(host, path, ".."), { recursive: true });
      await writeFile(join(host, path), text);
    };
    await write("proc/modules", "overlay 151552 0 - Live 0x0000000000000000\nnf_nat 49152 1 - Live 0x0000000000000000\n");
    await write("proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n");
    await write("proc/sys/kernel/osrelease", "6.1.0-13-amd64\n");
    await write("proc/sys/net/ipv4/ip_forward", "1\n");
    await write("proc/self/status", await readFile("/proc/self/status", "utf8"));
    await write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    await write("sys/module/apparmor/parameters/enabled", "Y\n");
    await write("sys/kernel/security/apparmor/profiles", "/usr/bin/man (enforce)\n");
    const { code, report } = await doctor(["--config", configs.get("healthy")!, "--root-prefix", host, ...common()]);
    assert.equal(code, 1);
    const modules = verdict(report, "modules");
    assert.equal(modules.status, "fail");
    assert.equal(modules.message, "br_netfilter not loaded");
    assert.match(modules.fix ?? "", /modprobe br_netfilter/);
    assert.match(verdict(report, "sysctls").message, /net\.bridge\.bridge-nf-call-iptables is absent/, "its sysctl goes with it");
    assert.equal(verdict(report, "kernel").message, "Linux 6.1.0-13-amd64");
    assert.match(verdict(report, "cgroup").message, /^cgroup v2, cgroupfs driver/);
    assert.equal(verdict(report, "apparmor").status, "warn", "AppArmor on, crib's profile not loaded yet");
    assert.match(verdict(report, "apparmor").message, /crib-default not loaded yet/);
  });

  it("fails the containerd check when containerd is down and crib cannot start one, and skips the leak checks", async () => {
    const file = await config("containerd-down", (c) => {
      c["containerd"] = { address: join(dir, "dead.sock"), namespace, binary: "/nonexistent/containerd" };
    });
    const { code, report } = await doctor(["--config", file, ...common()]);
    assert.equal(code, 1);
    const ctd = verdict(report, "containerd");
    assert.equal(ctd.status, "fail");
    assert.match(ctd.message, /the configured containerd at .*dead\.sock does not answer/);
    for (const name of LEAK_CHECKS) assert.equal(verdict(report, name).status, "skip", name);

    const own = await config("no-containerd-binary", (c) => {
      c["containerd"] = { address: "", namespace, binary: "/nonexistent/containerd" };
      c["paths"] = { state: join(dir, "state-none") };
    });
    const { report: r2 } = await doctor(["--config", own, ...common()]);
    // a system containerd may answer on this machine; if none does, crib would have to start its own
    if (!/system containerd/.test(verdict(r2, "containerd").message)) {
      assert.match(verdict(r2, "containerd").message, /crib cannot start its own: "\/nonexistent\/containerd" not found/);
    }
  });

  /** A process that looks like containerd's shim for `id` in `ns` (argv as containerd starts one), with a child. */
  function fakeShim(ns: string, id: string): ChildProcess {
    const shim = spawn("bash", ["-c", `exec -a containerd-shim-runc-v2 sh -c 'sleep 600 & wait' sh -namespace ${ns} -id ${id} -address ${containerd.address}`], { stdio: "ignore" });
    fakeShims.push(shim);
    return shim;
  }

  it("finds what crib's records name and no live sandbox has, and --fix-leaks removes only that, IPs through CNI DEL", async () => {
    const network = JSON.parse(await readFile(join(dir, "net.d", "10-test.conflist"), "utf8")) as Record<string, unknown>;
    const netnsOf = (id: string) => `${netnsPrefix}${id}`;
    for (const id of [liveId, leakId, foreignId]) await run("ip", ["netns", "add", netnsOf(id)]);
    const ips = join(ipamDir, "doctor-test");
    await mkdir(ips, { recursive: true });
    await writeFile(join(ips, "10.199.0.2"), `${liveId}\r\neth0`);
    await writeFile(join(ips, "10.199.0.3"), `${leakId}\r\neth0`);
    await writeFile(join(ips, "10.199.0.4"), `${foreignId}\r\neth0`);
    await writeFile(join(ips, "last_reserved_ip.0"), "10.199.0.4");
    await writeFile(join(ips, "lock"), "");
    // crib's CNI cache names the leaked sandbox (ADD cached, then crib died): that is what makes its netns and IP crib's
    const cache = join(dir, "root", "cni-cache");
    await mkdir(cache, { recursive: true });
    await writeFile(join(cache, `${leakId}.json`), JSON.stringify({
      kind: "cribCniCacheV1", containerId: leakId, ifName: "eth0", netns: `/var/run/netns/${netnsOf(leakId)}`,
      cniArgs: cniArgs(leakId, { namespace: "ns", name: "leak", uid: "u" }), capabilityArgs: {}, config: network,
    }));
    for (const id of [liveId, leakId]) {
      const shm = join(dir, "state", "sandboxes", id, "shm");
      await mkdir(shm, { recursive: true });
      await run("mount", ["-t", "tmpfs", "-o", "size=64k", "shm", shm]);
    }
    const c = containerd.client(namespace);
    try {
      await c.snapshots.Prepare({ snapshotter: SNAPSHOTTER, key: `leaked-snapshot-${tag}`, parent: "", labels: { "containerd.io/gc.root": new Date().toISOString() } }); // as crib's own: GC keeps it
      // a record crib never lists (no crib extension): kubelet can never remove it
      await c.containers.Create({
        container: { id: strayId, labels: { "crib.kind": "sandbox" }, image: PAUSE_REF, runtime: { name: "io.containerd.runc.v2" }, spec: jsonAny(SPEC_TYPE, { ociVersion: "1.1.0" }) },
      });
    } finally {
      c.close();
    }
    const leakedShim = fakeShim(namespace, leakId);
    const liveShim = fakeShim(namespace, liveId);
    const foreignShim = fakeShim("k8s.io", foreignId);
    await new Promise((r) => setTimeout(r, 300));

    const young = await doctor(["--config", configs.get("healthy")!, "--netns-prefix", netnsPrefix]);
    assert.equal(young.code, 0, `leftovers younger than --leak-age (5m) may be a sandbox being created: not leaks\n${young.text}`);

    const found = await doctor(["--config", configs.get("healthy")!, ...common()]);
    assert.equal(found.code, 1);
    const leaks = (name: string) => (verdict(found.report, name).leaks ?? []).map((l) => l.name);
    assert.deepEqual(leaks("leaked-netns"), [netnsOf(leakId)], "another runtime's netns of the same prefix is not crib's to list");
    assert.deepEqual(leaks("leaked-ips"), [join(ips, "10.199.0.3")], "another runtime's address on the same network is not listed");
    assert.deepEqual(leaks("leaked-cni-cache"), [join(cache, `${leakId}.json`)]);
    assert.deepEqual(leaks("leaked-mounts"), [join(dir, "state", "sandboxes", leakId, "shm")]);
    assert.deepEqual(leaks("leaked-state-dirs"), [join(dir, "state", "sandboxes", leakId)]);
    assert.deepEqual(leaks("leaked-snapshots"), [`leaked-snapshot-${tag}`]);
    assert.deepEqual(leaks("leaked-containers"), [strayId]);
    assert.deepEqual(leaks("leaked-shims"), [`containerd-shim-runc-v2 pid ${leakedShim.pid}`], "only the shim of crib's namespace on crib's containerd with no container");
    assert.deepEqual(failing(found.report).map((f) => f.split(":")[0]).sort(),
      ["leaked-cni-cache", "leaked-containers", "leaked-ips", "leaked-mounts", "leaked-netns", "leaked-shims", "leaked-snapshots", "leaked-state-dirs"]);
    assert.match(verdict(found.report, "leaked-netns").fix ?? "", /crib doctor --fix-leaks/);

    // the audit as data, for the chaos harness
    const { stdout: auditJson } = await run(process.execPath, [MAIN, "doctor", "--leaks", "--json", "--config", configs.get("healthy")!, ...common()]).catch((e: { stdout: string }) => e);
    const audit = JSON.parse(auditJson) as { ok: boolean; counts: Record<string, number>; unchecked: string[] };
    assert.equal(audit.ok, false);
    assert.deepEqual(audit.unchecked, []);
    assert.deepEqual(audit.counts, { container: 1, "cni-cache": 1, "ip-reservation": 1, iptables: 0, netns: 1, mount: 1, "state-dir": 1, snapshot: 1, lease: 0, shim: 1 });

    const fixed = await doctor(["--config", configs.get("healthy")!, ...common(), "--fix-leaks"]);
    assert.equal(fixed.code, 0, fixed.text);
    assert.ok(fixed.report.fixed.every((f) => f.removed), fixed.text);
    assert.match(verdict(fixed.report, "leaked-netns").message, /removed 1 leaked netns/);

    const { stdout: netns } = await run("ip", ["netns", "list"]);
    assert.match(netns, new RegExp(`^${netnsOf(liveId)}\\b`, "m"), "the live sandbox's netns stays");
    assert.match(netns, new RegExp(`^${netnsOf(foreignId)}\\b`, "m"), "another runtime's netns stays");
    assert.doesNotMatch(netns, new RegExp(netnsOf(leakId)), "the leaked netns is gone");
    // host-local released the address itself (CNI DEL); the others' reservations are untouched
    assert.deepEqual((await readdir(ips)).sort(), ["10.199.0.2", "10.199.0.4", "last_reserved_ip.0", "lock"]);
    assert.deepEqual(await readdir(cache), [], "DEL dropped the cache entry");
    const mounts = await readFile("/proc/self/mountinfo", "utf8");
    assert.ok(mounts.includes(join(dir, "state", "sandboxes", liveId, "shm")), "the live sandbox's mount stays");
    assert.ok(!mounts.includes(join(dir, "state", "sandboxes", leakId, "shm")), "the leaked mount is gone");
    assert.deepEqual(await readdir(join(dir, "state", "sandboxes")), [liveId]);
    const c2 = containerd.client(namespace);
    try {
      await c2.snapshots.Stat({ snapshotter: SNAPSHOTTER, key: liveId });
      await assert.rejects(c2.snapshots.Stat({ snapshotter: SNAPSHOTTER, key: `leaked-snapshot-${tag}` }), /not found/);
      await assert.rejects(c2.containers.Get({ id: strayId }), /not found/);
    } finally {
      c2.close();
    }
    const alive = (p: ChildProcess) => { try { process.kill(p.pid ?? 0, 0); return true; } catch { return false; } };
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(leakedShim.exitCode !== null || leakedShim.signalCode !== null || !alive(leakedShim), true, "the leaked shim is gone");
    assert.ok(alive(liveShim) && alive(foreignShim), "the live sandbox's shim and another namespace's stay");

    const again = await doctor(["--config", configs.get("healthy")!, ...common()]);
    assert.deepEqual(failing(again.report), [], "nothing left to find");
  });
});
