// Containers on containerd and runc, checked from inside the container the way
// a user would: /proc/self/status, mountinfo, cgroup files, id, logs.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import type * as cri from "../../proto/gen/cri/types.js";

const run = promisify(execFile);
type Pod = { id: string; config: cri.PodSandboxConfig__Input };
const status = async (env: PodEnv, id: string) => (await env.client.runtime.ContainerStatus({ container_id: id })).status!;

async function waitState(env: PodEnv, id: string, state: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(env, id);
    if (s.state === state) return s;
    if (Date.now() > deadline) assert.fail(`container ${id.slice(0, 12)} stayed ${s.state}, expected ${state}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const procStatus = async (env: PodEnv, id: string, field: string) =>
  (await env.exec(id, ["/bin/cat", "/proc/self/status"])).stdout.split("\n").find((l) => l.startsWith(`${field}:`))?.split(/\s+/)[1];

async function logLines(path: string): Promise<{ stream: string; tag: string; text: string }[]> {
  const text = await readFile(path, "utf8");
  return text.split("\n").filter(Boolean).map((line) => {
    const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/.exec(line);
    assert.ok(m, `CRI log line: ${line.slice(0, 80)}`);
    assert.ok(!Number.isNaN(Date.parse(m[1]!)), `RFC3339 timestamp: ${m[1]}`);
    return { stream: m[2]!, tag: m[3]!, text: m[4]! };
  });
}

describe("containers", () => {
  let env: PodEnv;
  let pod: Pod;
  before(async () => {
    env = await PodEnv.start({ config: { containers: { exec_sync_max_output: "64KiB" } } });
    pod = await env.runPod("containers", { linux: { security_context: { privileged: true } } });
  });
  after(async () => { await env?.close(); });
  const logPath = (name: string) => join(env.crib.dir, "pods", "containers", `${name}.log`);

  it("runs the lifecycle with the times, exit codes and reasons kubelet reads", async () => {
    const ok = await env.runContainer(pod, "done", { command: ["/bin/true"] });
    const s = await waitState(env, ok, "CONTAINER_EXITED");
    assert.equal(s.exit_code, 0);
    assert.equal(s.reason, "Completed");
    assert.ok(BigInt(s.created_at) > 0n && BigInt(s.started_at) >= BigInt(s.created_at) && BigInt(s.finished_at) >= BigInt(s.started_at));
    assert.equal(s.image?.image, BUSYBOX_REF);
    assert.match(s.image_ref, /sha256:/);
    assert.equal(s.log_path, logPath("done"));
    // `crictl inspect --template '{{.info.pid}} {{.info.runtimeSpec…}}'` works as with containerd
    const long = await env.runContainer(pod, "inspected", { command: ["/bin/sleep", "999"] });
    const info = JSON.parse((await env.client.runtime.ContainerStatus({ container_id: long, verbose: true })).info["info"] ?? "{}") as
      { pid: number; sandboxID: string; runtimeSpec: { process: { args: string[] } } };
    assert.ok(info.pid > 0);
    assert.equal(info.sandboxID, pod.id);
    assert.deepEqual(info.runtimeSpec.process.args, ["/bin/sleep", "999"]);
    await env.client.runtime.RemoveContainer({ container_id: long });
    const bad = await env.runContainer(pod, "fails", { command: ["/bin/sh", "-c", "exit 3"] });
    const f = await waitState(env, bad, "CONTAINER_EXITED");
    assert.equal(f.exit_code, 3);
    assert.equal(f.reason, "Error");
    const listed = await env.client.runtime.ListContainers({ filter: { pod_sandbox_id: pod.id, state: { state: "CONTAINER_EXITED" } } });
    assert.ok(listed.containers.some((c) => c.id === ok) && listed.containers.some((c) => c.id === bad));
    await env.client.runtime.RemoveContainer({ container_id: ok });
    await env.client.runtime.RemoveContainer({ container_id: ok });
    await assert.rejects(status(env, ok), (e: { code: number }) => e.code === 5);
  });

  it("stops with the stop signal, then SIGKILL after the timeout", async () => {
    const c = await env.runContainer(pod, "stubborn", { command: ["/bin/sh", "-c", "trap '' TERM; touch /tmp/trapped; while true; do sleep 1; done"] });
    // StartContainer answers once the process runs, maybe before sh has set its trap
    for (let i = 0; i < 200 && (await env.exec(c, ["/bin/ls", "/tmp/trapped"])).code !== 0; i++) await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await env.client.runtime.StopContainer({ container_id: c, timeout: 1 });
    const s = await status(env, c);
    assert.equal(s.state, "CONTAINER_EXITED");
    assert.equal(s.exit_code, 137);
    assert.ok(Date.now() - t0 >= 900, "waited for the grace period");
    assert.equal(s.stop_signal, "SIGTERM", "the signal crib stops it with");
    await env.client.runtime.StopContainer({ container_id: c, timeout: 1 });
    // a stop signal from the config (kubelet's ContainerStopSignals) wins over the default
    const usr1 = await env.runContainer(pod, "stops-on-usr1", {
      command: ["/bin/sh", "-c", "trap 'exit 0' USR1; trap '' TERM; while true; do sleep 0.1; done"], stop_signal: "SIGUSR1",
    });
    await new Promise((r) => setTimeout(r, 300)); // the traps are set
    assert.equal((await status(env, usr1)).stop_signal, "SIGUSR1");
    await env.client.runtime.StopContainer({ container_id: usr1, timeout: 10 });
    assert.equal((await status(env, usr1)).exit_code, 0, "SIGUSR1 stopped it, not SIGKILL");
  });

  it("reports OOMKilled for a container over its memory limit", async () => {
    const c = await env.runContainer(pod, "oom", {
      command: ["/bin/sh", "-c", "/bin/head -c 200m /dev/zero | /bin/tail"],
      linux: { resources: { memory_limit_in_bytes: 32 * 1024 * 1024 } },
    });
    const s = await waitState(env, c, "CONTAINER_EXITED");
    assert.equal(s.reason, "OOMKilled", `exit ${s.exit_code}`);
  });

  it("refuses what kubelet must not do, naming the thing", async () => {
    await assert.rejects(env.client.runtime.CreateContainer({ pod_sandbox_id: "0".repeat(64), config: { metadata: { name: "x" }, image: { image: BUSYBOX_REF } }, sandbox_config: pod.config }),
      (e: { code: number }) => e.code === 5);
    await assert.rejects(env.client.runtime.CreateContainer({ pod_sandbox_id: pod.id, config: { metadata: { name: "x" }, image: { image: "nothere:1" } }, sandbox_config: pod.config }),
      (e: { code: number; details: string }) => e.code === 5 && e.details.includes("nothere:1"));
    const first = await env.runContainer(pod, "unique");
    await assert.rejects(env.client.runtime.CreateContainer({ pod_sandbox_id: pod.id, config: { metadata: { name: "unique" }, image: { image: BUSYBOX_REF } }, sandbox_config: pod.config }),
      (e: { code: number; details: string }) => e.code === 6 && e.details.includes(first));
    await assert.rejects(env.client.runtime.StartContainer({ container_id: first }), (e: { code: number }) => e.code === 9);
    const { container_id } = await env.client.runtime.CreateContainer({ pod_sandbox_id: pod.id, config: { metadata: { name: "nocmd" }, image: { image: BUSYBOX_REF }, command: ["/no/such/binary"] }, sandbox_config: pod.config });
    await assert.rejects(env.client.runtime.StartContainer({ container_id }));
    const s = await status(env, container_id);
    assert.equal(s.state, "CONTAINER_EXITED");
    assert.equal(s.reason, "StartError");
    assert.match(s.message, /no such file|not found/i);
    await assert.rejects(env.exec(container_id, ["/bin/true"]), (e: { code: number; details: string }) => e.code === 9 && /exited/.test(e.details));
  });

  it("writes stdout and stderr in the CRI log format, splitting long lines", async () => {
    const c = await env.runContainer(pod, "logger", {
      command: ["/bin/sh", "-c", "echo out; echo err >&2; /bin/head -c 102400 /dev/zero | /bin/tr '\\0' x; echo; echo last"],
    });
    await waitState(env, c, "CONTAINER_EXITED");
    const lines = await logLines(logPath("logger"));
    assert.deepEqual(lines.filter((l) => l.text === "out" || l.text === "err").map((l) => `${l.stream} ${l.tag} ${l.text}`).sort(), ["stderr F err", "stdout F out"]);
    const big = lines.filter((l) => l.stream === "stdout" && /^x+$/.test(l.text));
    assert.equal(big.map((l) => l.text).join("").length, 102400);
    assert.ok(big.length >= 7 && big.slice(0, -1).every((l) => l.tag === "P" && l.text.length === 16384) && big.at(-1)!.tag === "F");
    assert.equal(lines.at(-1)?.text, "last", "EXITED only after the log is flushed");
    assert.equal((await stat(logPath("logger"))).mode & 0o777, 0o640);
  });

  it("continues in a new file after ReopenContainerLog", async () => {
    const c = await env.runContainer(pod, "rotating", { command: ["/bin/sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done"] });
    await new Promise((r) => setTimeout(r, 300));
    await rename(logPath("rotating"), `${logPath("rotating")}.1`);
    await env.client.runtime.ReopenContainerLog({ container_id: c });
    await new Promise((r) => setTimeout(r, 300));
    const old = await logLines(`${logPath("rotating")}.1`);
    const now = await logLines(logPath("rotating"));
    assert.ok(old.length > 0 && now.length > 0);
    const n = (l: { text: string }) => Number(l.text.split(" ")[1]);
    assert.equal(n(now[0]!), n(old.at(-1)!) + 1, "no line lost or repeated across the rotation");
    await env.client.runtime.StopContainer({ container_id: c, timeout: 0 });
    await assert.rejects(env.client.runtime.ReopenContainerLog({ container_id: c }), (e: { code: number }) => e.code === 9);
  });

  it("ExecSync returns output and exit code, caps output and enforces the timeout", async () => {
    const c = await env.runContainer(pod, "exec-target", { envs: [{ key: "GREETING", value: Buffer.from("hi") }], working_dir: "/srv" });
    const r = await env.exec(c, ["/bin/sh", "-c", "echo $GREETING; pwd; echo oops >&2; exit 4"]);
    assert.deepEqual([r.stdout, r.stderr, r.code], ["hi\n/srv\n", "oops\n", 4]);
    const big = await env.client.runtime.ExecSync({ container_id: c, cmd: ["/bin/head", "-c", "1000000", "/dev/zero"], timeout: 10 });
    assert.ok(big.stdout.length <= 64 * 1024, `capped at 64 KiB: ${big.stdout.length}`);
    assert.match(big.stdout.subarray(-80).toString(), /truncated/);
    const t0 = Date.now();
    await assert.rejects(env.client.runtime.ExecSync({ container_id: c, cmd: ["/bin/sleep", "30"], timeout: 1 }), (e: { code: number }) => e.code === 4);
    assert.ok(Date.now() - t0 < 10_000);
    const ps = await env.exec(c, ["/bin/ps", "-o", "args"]);
    assert.ok(!ps.stdout.includes("sleep 30"), "the timed-out process was killed");
  });

  it("applies capabilities, user, no_new_privs, seccomp and a read-only rootfs", async () => {
    const plain = await env.runContainer(pod, "caps-default");
    assert.equal(await procStatus(env, plain, "CapEff"), "00000000a80425fb", "the 14 default capabilities");
    assert.equal(await procStatus(env, plain, "Seccomp"), "0", "unconfined unless asked");
    const locked = await env.runContainer(pod, "locked", {
      linux: { security_context: {
        capabilities: { drop_capabilities: ["ALL"], add_capabilities: ["NET_BIND_SERVICE"] },
        run_as_user: { value: 1000 }, run_as_group: { value: 1000 }, supplemental_groups: [3000],
        no_new_privs: true, readonly_rootfs: true, seccomp: { profile_type: "RuntimeDefault" },
      } },
    });
    assert.equal(await procStatus(env, locked, "CapEff"), "0000000000000000", "a non-root user has no effective caps");
    assert.equal(await procStatus(env, locked, "CapBnd"), "0000000000000400", "bounding set is just NET_BIND_SERVICE");
    assert.equal(await procStatus(env, locked, "NoNewPrivs"), "1");
    assert.equal(await procStatus(env, locked, "Seccomp"), "2");
    const id = (await env.exec(locked, ["/bin/id"])).stdout;
    assert.match(id, /uid=1000\(app\) gid=1000\(app\)/);
    assert.match(id, /2000/, "member of extra (from /etc/group)");
    assert.match(id, /3000/, "supplemental group from the config");
    const write = await env.exec(locked, ["/bin/touch", "/newfile"]);
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /Read-only file system/);
    const named = await env.runContainer(pod, "by-name", { linux: { security_context: { run_as_username: "app" } } });
    assert.match((await env.exec(named, ["/bin/id", "-u"])).stdout, /^1000$/m);
  });

  it("gives a privileged container all capabilities, host devices and a writable /sys", async () => {
    const c = await env.runContainer(pod, "privileged", { linux: { security_context: { privileged: true } } });
    const eff = BigInt(`0x${await procStatus(env, c, "CapEff")}`);
    assert.ok(eff > 0xa80425fbn && (eff & (1n << 21n)) !== 0n, "CAP_SYS_ADMIN held");
    const ls = await env.exec(c, ["/bin/ls", "/dev"]);
    assert.ok(ls.stdout.split("\n").length > 15, "host devices present");
    const mounts = (await env.exec(c, ["/bin/cat", "/proc/self/mounts"])).stdout;
    assert.match(mounts.split("\n").find((l) => / \/sys sysfs /.test(l)) ?? "", /\brw\b/);
  });

  it("mounts host paths read-only and with the asked propagation, creating missing dirs", async () => {
    const shared = join(env.crib.dir, "shared");
    await mkdir(shared, { recursive: true });
    await writeFile(join(shared, "f"), "from host\n");
    const missing = join(env.crib.dir, "made-by-crib");
    const c = await env.runContainer(pod, "mounts", {
      mounts: [
        { container_path: "/data", host_path: shared, readonly: true, propagation: "PROPAGATION_PRIVATE" },
        { container_path: "/slave", host_path: shared, propagation: "PROPAGATION_HOST_TO_CONTAINER" },
        { container_path: "/bidi", host_path: shared, propagation: "PROPAGATION_BIDIRECTIONAL" },
        { container_path: "/made", host_path: missing },
      ],
      linux: { security_context: { privileged: true } },
    });
    assert.equal((await env.exec(c, ["/bin/cat", "/data/f"])).stdout, "from host\n");
    assert.notEqual((await env.exec(c, ["/bin/touch", "/data/g"])).code, 0, "read-only");
    const info = (await env.exec(c, ["/bin/cat", "/proc/self/mountinfo"])).stdout.split("\n");
    const line = (p: string) => info.find((l) => l.split(" ")[4] === p) ?? "";
    assert.match(line("/slave"), /master:\d+/, "rslave gets host mounts");
    assert.match(line("/bidi"), /shared:\d+/, "rshared propagates both ways");
    assert.ok((await stat(missing)).isDirectory());
  });

  it("makes a recursive read-only mount read-only all the way down when Status says the handler can", async () => {
    const { stdout } = await run("runc", ["features"]);
    const [major = 0, minor = 0] = release().split(".").map(Number);
    const supported = (JSON.parse(stdout) as { mountOptions: string[] }).mountOptions.includes("rro") && (major > 5 || (major === 5 && minor >= 12));
    const { runtime_handlers } = await env.client.runtime.Status({});
    assert.deepEqual(runtime_handlers.map((h) => [h.name, h.features?.recursive_read_only_mounts]), [["", supported], ["runc", supported]]);
    if (!supported) return;
    const top = join(env.crib.dir, "rro");
    await mkdir(join(top, "sub"), { recursive: true });
    await run("mount", ["-t", "tmpfs", "rro-sub", join(top, "sub")]);
    try {
      const c = await env.runContainer(pod, "rro", {
        mounts: [
          { container_path: "/plain", host_path: top, readonly: true },
          { container_path: "/rro", host_path: top, readonly: true, recursive_read_only: true },
        ],
      });
      assert.equal((await env.exec(c, ["/bin/touch", "/plain/sub/f"])).code, 0, "a plain read-only bind leaves submounts writable");
      assert.notEqual((await env.exec(c, ["/bin/touch", "/rro/sub/g"])).code, 0, "rro reaches the submount");
      assert.notEqual((await env.exec(c, ["/bin/touch", "/rro/h"])).code, 0);
      await env.client.runtime.StopContainer({ container_id: c, timeout: 0 });
      await env.client.runtime.RemoveContainer({ container_id: c });
    } finally {
      await run("umount", [join(top, "sub")]);
    }
  });

  it("sets cgroup limits and updates them on the running container", async () => {
    const c = await env.runContainer(pod, "limits", { linux: { resources: { memory_limit_in_bytes: 64 * 1024 * 1024, cpu_period: 100000, cpu_quota: 50000, cpu_shares: 512 } } });
    const read = async (f: string) => (await env.exec(c, ["/bin/cat", f])).stdout.trim();
    assert.equal(await read("/sys/fs/cgroup/memory/memory.limit_in_bytes"), String(64 * 1024 * 1024));
    assert.equal(await read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "50000");
    assert.equal(await read("/sys/fs/cgroup/cpu/cpu.shares"), "512");
    await env.client.runtime.UpdateContainerResources({ container_id: c, linux: { memory_limit_in_bytes: 128 * 1024 * 1024, cpu_period: 100000, cpu_quota: 20000, cpu_shares: 256 } });
    assert.equal(await read("/sys/fs/cgroup/memory/memory.limit_in_bytes"), String(128 * 1024 * 1024));
    assert.equal(await read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "20000");
    const s = await status(env, c);
    assert.equal(s.resources?.linux?.memory_limit_in_bytes, String(128 * 1024 * 1024));
  });
});

describe("containers across a crib crash", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  it("keeps running containers running, their logs flowing, and records exits that happened meanwhile", async () => {
    const pod = await env.runPod("crash");
    const path = (n: string) => join(env.crib.dir, "pods", "crash", `${n}.log`);
    const ticker = await env.runContainer(pod, "ticker", { command: ["/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"] });
    const short = await env.runContainer(pod, "short", { command: ["/bin/sh", "-c", "sleep 1; exit 5"] });
    await new Promise((r) => setTimeout(r, 200));
    await env.crib.stopProcess("SIGKILL");
    await new Promise((r) => setTimeout(r, 1500));
    await env.crib.startProcess();
    assert.equal((await status(env, ticker)).state, "CONTAINER_RUNNING");
    const s = await waitState(env, short, "CONTAINER_EXITED", 5000);
    assert.equal(s.exit_code, 5);
    await new Promise((r) => setTimeout(r, 300));
    const ticks = (await logLines(path("ticker"))).map((l) => Number(l.text.split(" ")[1]));
    assert.ok(ticks.length > 20, "the log went on after the restart");
    // Lines crib had read but not yet written when it was SIGKILLed are lost, as
    // with containerd's own CRI (its copy loop dies with it); nothing else may be.
    assert.ok(ticks.every((t, i) => i === 0 || t > ticks[i - 1]!), `no tick repeated or reordered: ${ticks.join(",")}`);
    const lost = (ticks.at(-1)! + 1) - ticks.length;
    assert.ok(lost <= 2, `at most the lines in flight at the kill are lost, lost ${lost}: ${ticks.join(",")}`);
    assert.equal((await env.exec(ticker, ["/bin/echo", "alive"])).stdout, "alive\n");
    await env.client.runtime.StopContainer({ container_id: ticker, timeout: 0 });
    assert.equal((await status(env, ticker)).exit_code, 137);
  });

  it("stays responsive with 20 containers logging continuously", async () => {
    const pod = await env.runPod("noisy");
    for (let i = 0; i < 20; i++) {
      await env.runContainer(pod, `noisy-${i}`, { command: ["/bin/sh", "-c", "while true; do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done"] });
    }
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      await env.client.runtime.ListContainers({});
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    assert.ok(times[Math.floor(times.length * 0.9)]! < 2000, `p90 ListContainers ${times[45]?.toFixed(1)} ms while 20 containers log`);
  });
});

describe("a runtime handler whose runc cannot make recursive read-only mounts", () => {
  let env: PodEnv;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crib-old-runc-"));
    const runc = (await run("sh", ["-c", "command -v runc"])).stdout.trim();
    // a runc from before `runc features`
    await writeFile(join(dir, "old-runc"), `#!/bin/sh\n[ "$1" = features ] && { echo "unknown command features" >&2; exit 1; }\nexec ${runc} "$@"\n`, { mode: 0o755 });
    env = await PodEnv.start({
      config: { runtimes: { runc: { runtime_type: "io.containerd.runc.v2" }, old: { runtime_type: "io.containerd.runc.v2", binary_name: join(dir, "old-runc") } } },
    });
  });
  after(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("is reported without the feature, and a container asking for one is refused with INVALID_ARGUMENT", async () => {
    const { runtime_handlers } = await env.client.runtime.Status({});
    assert.equal(runtime_handlers.find((h) => h.name === "old")?.features?.recursive_read_only_mounts, false);
    const config = env.sandboxConfig("old");
    const { pod_sandbox_id } = await env.client.runtime.RunPodSandbox({ config, runtime_handler: "old" });
    await assert.rejects(
      env.runContainer({ id: pod_sandbox_id, config }, "rro", { mounts: [{ container_path: "/rro", host_path: dir, readonly: true, recursive_read_only: true }] }),
      (e: { code: number; details: string }) => e.code === 3 && /\/rro.*recursive read-only/.test(e.details),
    );
    const { containers } = await env.client.runtime.ListContainers({});
    assert.equal(containers.length, 0, "nothing half-created");
  });
});

void rm;
