import assert from "node:assert/strict";
import { test } from "node:test";
import { isKind } from "../errors.js";
import { buildSandboxSpec } from "./sandbox.js";
import { host, sandboxId, sandboxInput } from "./testing.js";
import type { Spec } from "./types.js";

const build = (...args: Parameters<typeof sandboxInput>): Spec => buildSandboxSpec(sandboxInput(...args)).spec;
const invalid = (message: RegExp) => (err: unknown) => isKind(err, "invalid-argument") && message.test((err as Error).message);

test("pause runs the image's command read-only, as root, without capabilities or new privileges", () => {
  const spec = build();
  assert.deepEqual(spec.process.args, ["/pause"]);
  assert.deepEqual(spec.root, { path: "rootfs", readonly: true });
  assert.deepEqual(spec.process.user, { uid: 0, gid: 0 });
  assert.deepEqual(spec.process.capabilities, { bounding: [], effective: [], permitted: [] });
  assert.equal(spec.process.noNewPrivileges, true);
  assert.equal(spec.linux.seccomp, undefined, "unset seccomp is unconfined, as the CRI says");
  assert.ok(!spec.mounts.some((m) => m.destination === "/dev/shm"), "pause needs no /dev/shm");
  assert.ok(spec.linux.maskedPaths?.includes("/proc/kcore"));
});

test("an image without Entrypoint and Cmd runs /pause; one with them runs them", () => {
  assert.deepEqual(build({}, { image: { config: {} } }).process.args, ["/pause"]);
  assert.deepEqual(build({}, { image: { config: { Entrypoint: ["/bin/pause"], Cmd: ["-v"] } } }).process.args, ["/bin/pause", "-v"]);
});

test("the sandbox's seccomp settings choose the profile", () => {
  assert.equal(build({ linux: { security_context: { seccomp: { profile_type: "Unconfined" } } } }).linux.seccomp, undefined);
  assert.equal(build({ linux: { security_context: { seccomp_profile_path: "unconfined" } } }).linux.seccomp, undefined);
  assert.equal(build({ linux: { security_context: { seccomp: { profile_type: "RuntimeDefault" } } } }).linux.seccomp?.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(build({ linux: { security_context: { seccomp_profile_path: "runtime/default" } } }).linux.seccomp?.defaultAction, "SCMP_ACT_ERRNO");
});

test("run_as_user, run_as_group and supplemental_groups set the pause user; a group without a user is refused", () => {
  const spec = build({ linux: { security_context: { run_as_user: { value: 65535 }, run_as_group: { value: 65535 }, supplemental_groups: [5, 5, 6] } } });
  assert.deepEqual(spec.process.user, { uid: 65535, gid: 65535, additionalGids: [5, 6] });
  assert.throws(() => build({ linux: { security_context: { run_as_group: { value: 1 } } } }), invalid(/run_as_group \(1\) is set without run_as_user/));
});

test("new pid, IPC and UTS namespaces and the pinned network namespace", () => {
  const spec = build();
  assert.deepEqual(spec.linux.namespaces, [
    { type: "pid" },
    { type: "ipc" },
    { type: "uts" },
    { type: "mount" },
    { type: "network", path: "/var/run/netns/cni-1234" },
  ]);
  assert.equal(spec.hostname, "nginx");
});

test("NODE namespaces are the node's: host network also shares UTS and the hostname", () => {
  const spec = build(
    { linux: { security_context: { namespace_options: { network: "NODE", pid: "NODE", ipc: "NODE" } } } },
    { netnsPath: "" },
  );
  assert.deepEqual(spec.linux.namespaces, [{ type: "mount" }]);
  assert.equal(spec.hostname, undefined);
  assert.equal(spec.linux.sysctl, undefined, "no unprivileged-port sysctls in the node's network namespace");
});

test("a pod network without a network namespace path is refused", () => {
  assert.throws(() => build({}, { netnsPath: "" }), invalid(/network namespace path is required/));
});

test("cgroupsPath is the pod's cgroup and the sandbox id", () => {
  assert.equal(build().linux.cgroupsPath, `/kubepods/besteffort/podpod-uid-1/${sandboxId}`);
  assert.equal(build({ linux: { cgroup_parent: "" } }).linux.cgroupsPath, `/crib/${sandboxId}`);
});

test("sysctls are checked and set, with containerd's unprivileged port and ICMP defaults", () => {
  const spec = build({ linux: { sysctls: { "net.ipv4.ip_unprivileged_port_start": "80", "kernel.msgmax": "8192" } } });
  assert.deepEqual(spec.linux.sysctl, {
    "net.ipv4.ip_unprivileged_port_start": "80",
    "kernel.msgmax": "8192",
    "net.ipv4.ping_group_range": "0 2147483647",
  });
  assert.equal(build({}, { unprivilegedPortsAndIcmp: false }).linux.sysctl, undefined);
  assert.throws(() => build({ linux: { sysctls: { "vm.swappiness": "1" } } }), invalid(/sysctl "vm.swappiness" is not namespaced/));
});

test("two CPU shares, unless the pod's overhead or resources say otherwise", () => {
  assert.deepEqual(build().linux.resources.cpu, { shares: 2 });
  const withResources = build({ linux: { resources: { cpu_shares: 1024, cpu_quota: 20000, cpu_period: 100000, memory_limit_in_bytes: 1 << 26 } } });
  assert.deepEqual(withResources.linux.resources.cpu, { shares: 1024, quota: 20000, period: 100000 });
  assert.equal(withResources.linux.resources.memory?.limit, 1 << 26);
  const overhead = build({ linux: { overhead: { cpu_shares: 10 }, resources: { cpu_shares: 1024 } } });
  assert.deepEqual(overhead.linux.resources.cpu, { shares: 10 });
});

test("oom_score_adj is containerd's -998, raised to crib's own", () => {
  assert.equal(build({}, { host: host({ minOomScoreAdj: -999 }) }).process.oomScoreAdj, -998);
  assert.equal(build({}, { host: host({ minOomScoreAdj: 0 }) }).process.oomScoreAdj, 0);
});

test("annotations mark the sandbox", () => {
  assert.deepEqual(build().annotations, {
    "io.kubernetes.cri.container-type": "sandbox",
    "io.kubernetes.cri.sandbox-id": sandboxId,
    "io.kubernetes.cri.sandbox-name": "nginx",
    "io.kubernetes.cri.sandbox-namespace": "default",
    "io.kubernetes.cri.sandbox-uid": "pod-uid-1",
    "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/default_nginx_pod-uid-1",
  });
});

test("a privileged pod's pause mounts /sys writable, since the pod's later sysfs mounts share its read-only flag", () => {
  const sysfs = (privileged: boolean) => build({ linux: { security_context: { privileged } } }).mounts.find((m) => m.type === "sysfs")?.options;
  assert.deepEqual(sysfs(true), ["nosuid", "noexec", "nodev", "rw"]);
  assert.deepEqual(sysfs(false), ["nosuid", "noexec", "nodev", "ro"]);
});
