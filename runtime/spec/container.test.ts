import assert from "node:assert/strict";
import { test } from "node:test";
import { isKind } from "../errors.js";
import { defaultCapabilities } from "./capabilities.js";
import { buildContainerSpec, processArgs, stopSignal } from "./container.js";
import { cloneNamespaceFlags } from "./seccomp-default.js";
import { containerId, containerInput, host, pausePid, sandboxId } from "./testing.js";
import type { Mount, Spec } from "./types.js";

const build = (...args: Parameters<typeof containerInput>): Spec => buildContainerSpec(containerInput(...args)).spec;
const invalid = (message: RegExp) => (err: unknown) => isKind(err, "invalid-argument") && message.test((err as Error).message);
const mountAt = (spec: Spec, destination: string): Mount | undefined => spec.mounts.find((m) => m.destination === destination);

test("args follow the Kubernetes rules for command and args against the image's Entrypoint and Cmd", () => {
  const image = { Entrypoint: ["/ep"], Cmd: ["cmd-arg"] };
  const cases: Array<[string, string[], string[], string[]]> = [
    ["neither: Entrypoint + Cmd", [], [], ["/ep", "cmd-arg"]],
    ["command only: Cmd is not used", ["/cmd"], [], ["/cmd"]],
    ["args only: Entrypoint + args", [], ["a1", "a2"], ["/ep", "a1", "a2"]],
    ["both: command + args", ["/cmd"], ["a1"], ["/cmd", "a1"]],
  ];
  for (const [name, command, args, want] of cases) {
    assert.deepEqual(processArgs({ command, args }, image), want, name);
  }
  assert.deepEqual(processArgs({ command: [], args: [] }, { Cmd: ["sh"] }), ["sh"], "no Entrypoint: Cmd alone");
  assert.deepEqual(processArgs({ command: [], args: [] }, { Entrypoint: [""], Cmd: ["sh"] }), ["sh"], "Entrypoint [\"\"] resets it");
});

test("a container with no command anywhere is refused", () => {
  assert.throws(() => build({}, { image: { name: "scratch", config: {} } }), invalid(/no command specified/));
});

test("env is PATH and HOSTNAME, then the image's, then the config's, later ones replacing earlier", () => {
  const spec = build(
    { envs: [{ key: "FOO", value: Buffer.from("from-config") }, { key: "EXTRA", value: Buffer.from("1") }] },
    { image: { name: "img", config: { Cmd: ["x"], Env: ["FOO=from-image", "PATH=/image/bin"] } } },
  );
  assert.deepEqual(spec.process.env, ["PATH=/image/bin", "HOSTNAME=nginx", "FOO=from-config", "EXTRA=1"]);
  const noPath = build({}, { image: { name: "img", config: { Cmd: ["x"] } } });
  assert.equal(noPath.process.env[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
});

test("cwd comes from the config, else the image, else /", () => {
  const image = (WorkingDir?: string) => ({ image: { name: "img", config: { Cmd: ["x"], ...(WorkingDir ? { WorkingDir } : {}) } } });
  assert.equal(build({ working_dir: "/srv" }, image("/app")).process.cwd, "/srv");
  assert.equal(build({}, image("/app")).process.cwd, "/app");
  assert.equal(build({}, image()).process.cwd, "/");
});

test("tty makes a terminal; no rlimits are set", () => {
  assert.equal(build({ tty: true }).process.terminal, true);
  assert.equal(build({}).process.terminal, undefined);
  assert.equal(build({}).process.rlimits, undefined);
});

test("oom_score_adj is kept within crib's own and 1000", () => {
  const adj = (value: number, minOomScoreAdj: number) =>
    build({ linux: { resources: { oom_score_adj: value } } }, { host: host({ minOomScoreAdj }) }).process.oomScoreAdj;
  assert.equal(adj(-997, 0), 0, "a negative adjustment would need CAP_SYS_RESOURCE");
  assert.equal(adj(-997, -999), -997);
  assert.equal(adj(1000, 0), 1000);
  assert.equal(adj(500, 800), 800);
  assert.equal(build({}).process.oomScoreAdj, 0);
});

test("the resolved user becomes the process's uid, gid and groups", () => {
  const spec = build({}, { user: { uid: 1000, gid: 3000, additionalGids: [3000, 4000], username: "app" } });
  assert.deepEqual(spec.process.user, { uid: 1000, gid: 3000, additionalGids: [3000, 4000] });
});

test("without a capabilities request a container has the 14 default capabilities", () => {
  const caps = build({}).process.capabilities;
  assert.equal(caps.bounding.length, 14);
  assert.deepEqual(caps.bounding, [...defaultCapabilities]);
  assert.deepEqual(caps.effective, caps.bounding);
  assert.deepEqual(caps.permitted, caps.bounding);
  assert.equal(caps.ambient, undefined);
});

test("capabilities are added and dropped by their CRI names", () => {
  const caps = build({
    linux: { security_context: { capabilities: { add_capabilities: ["NET_ADMIN", "sys_time"], drop_capabilities: ["KILL", "CAP_MKNOD"] } } },
  }).process.capabilities;
  assert.ok(caps.bounding.includes("CAP_NET_ADMIN") && caps.bounding.includes("CAP_SYS_TIME"));
  assert.ok(!caps.bounding.includes("CAP_KILL") && !caps.bounding.includes("CAP_MKNOD"));
  assert.deepEqual(caps.effective, caps.bounding);
});

test("drop ALL then add one leaves only that one; add ALL then drop one leaves all of crib's but that one", () => {
  const only = build({ linux: { security_context: { capabilities: { drop_capabilities: ["ALL"], add_capabilities: ["NET_BIND_SERVICE"] } } } });
  assert.deepEqual(only.process.capabilities.bounding, ["CAP_NET_BIND_SERVICE"]);
  const none = build({ linux: { security_context: { capabilities: { drop_capabilities: ["all"] } } } });
  assert.deepEqual(none.process.capabilities.bounding, []);
  const most = build({ linux: { security_context: { capabilities: { add_capabilities: ["ALL"], drop_capabilities: ["SYS_ADMIN"] } } } });
  assert.deepEqual(most.process.capabilities.bounding, host().capabilities.filter((c) => c !== "CAP_SYS_ADMIN"));
});

test("ambient capabilities are also inheritable and in every other set", () => {
  const caps = build({ linux: { security_context: { capabilities: { add_ambient_capabilities: ["NET_BIND_SERVICE", "NET_ADMIN"] } } } })
    .process.capabilities;
  assert.deepEqual(caps.ambient, ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]);
  assert.deepEqual(caps.inheritable, ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]);
  assert.ok(caps.bounding.includes("CAP_NET_ADMIN") && caps.permitted.includes("CAP_NET_ADMIN") && caps.effective.includes("CAP_NET_ADMIN"));
});

test("an unknown capability is refused by name", () => {
  assert.throws(
    () => build({ linux: { security_context: { capabilities: { add_capabilities: ["FLY"] } } } }),
    invalid(/unknown capability "FLY"/),
  );
});

test("adding a capability crib lacks is reported as a warning", () => {
  const { warnings } = buildContainerSpec(containerInput({ linux: { security_context: { capabilities: { add_capabilities: ["SYS_RESOURCE"] } } } }));
  assert.ok(warnings.some((w) => w.includes("CAP_SYS_RESOURCE")), warnings.join("; "));
});

const privilegedInput = () =>
  containerInput(
    { linux: { security_context: { privileged: true, seccomp: { profile_type: "RuntimeDefault" } } } },
    {
      sandbox: { linux: { cgroup_parent: "/kubepods", security_context: { privileged: true } } },
      hostDevices: [{ path: "/dev/sda", type: "b", major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 }],
    },
  );

test("a privileged container gets every capability crib holds, no masked paths, writable /sys and cgroups, all devices, no seccomp", () => {
  const { spec } = buildContainerSpec(privilegedInput());
  assert.deepEqual(spec.process.capabilities.bounding, [...host().capabilities]);
  assert.deepEqual(spec.process.capabilities.effective, [...host().capabilities]);
  assert.equal(spec.linux.maskedPaths, undefined);
  assert.equal(spec.linux.readonlyPaths, undefined);
  assert.ok(mountAt(spec, "/sys")?.options?.includes("rw") && !mountAt(spec, "/sys")?.options?.includes("ro"));
  assert.ok(mountAt(spec, "/sys/fs/cgroup")?.options?.includes("rw"));
  assert.deepEqual(spec.linux.devices?.map((d) => d.path), ["/dev/sda"]);
  assert.deepEqual(spec.linux.resources.devices, [{ allow: true, access: "rwm" }]);
  assert.equal(spec.linux.seccomp, undefined);
});

test("a privileged container in a sandbox not marked privileged is refused", () => {
  assert.throws(
    () => build({ linux: { security_context: { privileged: true } } }),
    invalid(/privileged container in a sandbox not marked privileged/),
  );
});

test("no_new_privs sets noNewPrivileges", () => {
  assert.equal(build({ linux: { security_context: { no_new_privs: true } } }).process.noNewPrivileges, true);
  assert.equal(build({}).process.noNewPrivileges, false);
});

test("seccomp: unset and Unconfined mean none, RuntimeDefault means crib's default profile", () => {
  assert.equal(build({}).linux.seccomp, undefined);
  assert.equal(build({ linux: { security_context: { seccomp: { profile_type: "Unconfined" } } } }).linux.seccomp, undefined);
  const seccomp = build({ linux: { security_context: { seccomp: { profile_type: "RuntimeDefault" } } } }).linux.seccomp;
  assert.equal(seccomp?.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(seccomp?.defaultErrnoRet, 1);
  assert.deepEqual(seccomp?.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  const clone = seccomp?.syscalls?.find((s) => s.names.includes("clone"));
  assert.deepEqual(clone?.args, [{ index: 0, value: cloneNamespaceFlags, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }], "clone may not make namespaces");
  assert.ok(!seccomp?.syscalls?.some((s) => s.names.includes("mount") && s.action === "SCMP_ACT_ALLOW"), "mount needs CAP_SYS_ADMIN");
});

test("RuntimeDefault follows the capabilities: SYS_ADMIN allows mount and unrestricted clone", () => {
  const seccomp = build({
    linux: { security_context: { seccomp: { profile_type: "RuntimeDefault" }, capabilities: { add_capabilities: ["SYS_ADMIN"] } } },
  }).linux.seccomp;
  assert.ok(seccomp?.syscalls?.some((s) => s.names.includes("mount") && s.action === "SCMP_ACT_ALLOW" && s.args === undefined));
  assert.ok(!seccomp?.syscalls?.some((s) => s.names.includes("clone") && s.args !== undefined));
});

test("the deprecated seccomp_profile_path forms are understood", () => {
  const path = (seccomp_profile_path: string) => build({ linux: { security_context: { seccomp_profile_path } } }).linux.seccomp;
  assert.equal(path("runtime/default")?.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(path("docker/default")?.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(path("unconfined"), undefined);
  assert.throws(() => path("bogus"), invalid(/unknown seccomp profile "bogus"/));
  const profile = { defaultAction: "SCMP_ACT_LOG" };
  const local = buildContainerSpec(
    containerInput(
      { linux: { security_context: { seccomp_profile_path: "localhost/profiles/log.json" } } },
      { seccompProfileRoot: "/var/lib/kubelet/seccomp", seccompProfile: { path: "/var/lib/kubelet/seccomp/profiles/log.json", profile } },
    ),
  ).spec;
  assert.deepEqual(local.linux.seccomp, { defaultAction: "SCMP_ACT_LOG" });
});

test("a Localhost profile must have been read beforehand", () => {
  const config = { linux: { security_context: { seccomp: { profile_type: "Localhost" as const, localhost_ref: "/etc/seccomp/audit.json" } } } };
  assert.throws(() => build(config), invalid(/seccomp profile "\/etc\/seccomp\/audit.json" was not loaded/));
  const spec = build(config, { seccompProfile: { path: "/etc/seccomp/audit.json", profile: { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["acct"], action: "SCMP_ACT_ERRNO" }] } } });
  assert.deepEqual(spec.linux.seccomp, { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["acct"], action: "SCMP_ACT_ERRNO" }] });
});

test("kernel file systems, then the sandbox's files; masked and read-only paths by default", () => {
  const spec = build({});
  assert.deepEqual(spec.mounts.map((m) => m.destination), [
    "/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
    "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm",
  ]);
  assert.deepEqual(mountAt(spec, "/etc/hosts"), {
    destination: "/etc/hosts", type: "bind", source: `/var/lib/crib/sandboxes/${sandboxId}/hosts`, options: ["rbind", "rprivate", "rw"],
  });
  assert.equal(mountAt(spec, "/dev/shm")?.source, `/run/crib/sandboxes/${sandboxId}/shm`);
  assert.deepEqual(mountAt(spec, "/sys/fs/cgroup")?.options, ["nosuid", "noexec", "nodev", "relatime", "ro"]);
  assert.deepEqual(mountAt(spec, "/sys")?.options, ["nosuid", "noexec", "nodev", "ro"]);
  assert.deepEqual(spec.linux.maskedPaths, [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
  ]);
  assert.deepEqual(spec.linux.readonlyPaths, ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]);
  assert.equal(spec.linux.rootfsPropagation, undefined);
});

test("the container's masked and read-only paths replace the defaults", () => {
  const spec = build({ linux: { security_context: { masked_paths: ["/proc/kcore"], readonly_paths: ["/proc/sys"] } } });
  assert.deepEqual(spec.linux.maskedPaths, ["/proc/kcore"]);
  assert.deepEqual(spec.linux.readonlyPaths, ["/proc/sys"]);
});

test("a CRI mount on /etc/hosts replaces the sandbox's", () => {
  const spec = build({ mounts: [{ container_path: "/etc/hosts", host_path: "/var/lib/kubelet/pods/x/etc-hosts" }] });
  const hosts = spec.mounts.filter((m) => m.destination === "/etc/hosts");
  assert.equal(hosts.length, 1);
  assert.equal(hosts[0]?.source, "/var/lib/kubelet/pods/x/etc-hosts");
});

test("CRI mounts bind with their propagation and access, sorted so that parents come first", () => {
  const spec = build({
    mounts: [
      { container_path: "/data/cache/inner", host_path: "/h/inner", propagation: "PROPAGATION_PRIVATE" },
      { container_path: "/data", host_path: "/h/data", readonly: true, propagation: "PROPAGATION_HOST_TO_CONTAINER" },
      { container_path: "/data/cache", host_path: "/h/cache", propagation: "PROPAGATION_BIDIRECTIONAL", selinux_relabel: true },
    ],
  });
  const binds = spec.mounts.filter((m) => m.source?.startsWith("/h/"));
  assert.deepEqual(binds, [
    { destination: "/data", type: "bind", source: "/h/data", options: ["rbind", "rslave", "ro"] },
    { destination: "/data/cache", type: "bind", source: "/h/cache", options: ["rbind", "rshared", "rw"] },
    { destination: "/data/cache/inner", type: "bind", source: "/h/inner", options: ["rbind", "rprivate", "rw"] },
  ]);
  assert.equal(spec.linux.rootfsPropagation, "rshared");
  const slave = build({ mounts: [{ container_path: "/d", host_path: "/h", propagation: "PROPAGATION_HOST_TO_CONTAINER" }] });
  assert.equal(slave.linux.rootfsPropagation, "rslave");
});

test("a recursive read-only mount is rro and must be read-only and private", () => {
  const spec = build({ mounts: [{ container_path: "/ro", host_path: "/h", readonly: true, recursive_read_only: true }] });
  assert.deepEqual(mountAt(spec, "/ro")?.options, ["rbind", "rprivate", "rro"]);
  assert.throws(() => build({ mounts: [{ container_path: "/ro", host_path: "/h", recursive_read_only: true }] }), invalid(/needs readonly/));
});

test("an image volume binds the host path its image is mounted on, read-only and private", () => {
  const volume = { container_path: "/vol", readonly: true, image: { image: "sha256:abc" }, image_sub_path: "etc" };
  const spec = build({ mounts: [{ container_path: "/h", host_path: "/h" }, volume] }, { imageVolumes: new Map([[1, "/var/lib/crib/containers/c/image-volumes/1/etc"]]) });
  assert.deepEqual(mountAt(spec, "/vol"), { destination: "/vol", type: "bind", source: "/var/lib/crib/containers/c/image-volumes/1/etc", options: ["rbind", "rprivate", "ro"] });
  assert.throws(() => build({ mounts: [volume] }), invalid(/mounts\[0\]: image volume "sha256:abc" was not prepared/));
});

test("a relative container path or a missing host path is refused", () => {
  assert.throws(() => build({ mounts: [{ container_path: "data", host_path: "/h" }] }), invalid(/must be an absolute path/));
  assert.throws(() => build({ mounts: [{ container_path: "/data", host_path: "" }] }), invalid(/host_path is required/));
});

test("a CRI mount on /dev replaces every kernel mount beneath it", () => {
  const spec = build({ mounts: [{ container_path: "/dev", host_path: "/dev" }] });
  assert.ok(!spec.mounts.some((m) => m.destination.startsWith("/dev/") && m.type !== "bind"), JSON.stringify(spec.mounts));
});

test("readonly_rootfs makes the root and the sandbox's files read-only", () => {
  const spec = build({ linux: { security_context: { readonly_rootfs: true } } });
  assert.deepEqual(spec.root, { path: "rootfs", readonly: true });
  assert.ok(mountAt(spec, "/etc/resolv.conf")?.options?.includes("ro"));
  assert.ok(mountAt(spec, "/dev/shm")?.options?.includes("rw"), "/dev/shm stays writable");
  assert.deepEqual(build({}, { rootfs: "/run/bundle/rootfs" }).root, { path: "/run/bundle/rootfs" });
});

test("a host-IPC pod's containers bind the node's /dev/shm", () => {
  const input = containerInput({ linux: { security_context: { namespace_options: { ipc: "NODE" } } } });
  input.sandbox.files.shmPath = "";
  assert.equal(mountAt(buildContainerSpec(input).spec, "/dev/shm")?.source, "/dev/shm");
});

test("namespaces: the pod's network, IPC, UTS and pid through the pause process, a new mount namespace", () => {
  assert.deepEqual(build({}).linux.namespaces, [
    { type: "pid", path: `/proc/${pausePid}/ns/pid` },
    { type: "ipc", path: `/proc/${pausePid}/ns/ipc` },
    { type: "uts", path: `/proc/${pausePid}/ns/uts` },
    { type: "mount" },
    { type: "network", path: "/var/run/netns/cni-1234" },
  ]);
});

test("namespaces per mode: pid CONTAINER is new, NODE absent, TARGET the target's", () => {
  const pid = (mode: "CONTAINER" | "NODE" | "TARGET", targetPid?: number) =>
    build(
      { linux: { security_context: { namespace_options: { pid: mode, target_id: "t" } } } },
      targetPid === undefined ? {} : { targetPid },
    ).linux.namespaces.find((n) => n.type === "pid");
  assert.deepEqual(pid("CONTAINER"), { type: "pid" });
  assert.equal(pid("NODE"), undefined);
  assert.deepEqual(pid("TARGET", 777), { type: "pid", path: "/proc/777/ns/pid" });
  assert.throws(() => pid("TARGET"), invalid(/pid namespace of target "t"/));
});

test("a host-network container has neither network nor UTS namespace, nor a hostname; host IPC no IPC namespace", () => {
  const spec = build({ linux: { security_context: { namespace_options: { network: "NODE", ipc: "NODE" } } } });
  assert.deepEqual(spec.linux.namespaces.map((n) => n.type), ["pid", "mount"]);
  assert.equal(spec.hostname, undefined);
  assert.equal(build({}).hostname, "nginx");
});

test("the sandbox's namespace options apply when the container sends none", () => {
  const spec = build({}, { sandbox: { linux: { security_context: { namespace_options: { network: "NODE" } } } } });
  assert.ok(!spec.linux.namespaces.some((n) => n.type === "network"));
});

test("cgroup v2 adds a cgroup namespace, except for privileged containers", () => {
  assert.ok(build({}, { host: host({ cgroupV2: true }) }).linux.namespaces.some((n) => n.type === "cgroup"));
  assert.ok(!build({}).linux.namespaces.some((n) => n.type === "cgroup"));
  const privileged = privilegedInput();
  privileged.host = host({ cgroupV2: true });
  assert.ok(!buildContainerSpec(privileged).spec.linux.namespaces.some((n) => n.type === "cgroup"));
});

test("a user namespace request is refused", () => {
  assert.throws(
    () => build({ linux: { security_context: { namespace_options: { userns_options: { mode: "POD", uids: [{ host_id: 100000, container_id: 0, length: 65536 }] } } } } }),
    invalid(/user namespaces/),
  );
});

test("cgroupsPath is the pod's cgroup and the container id; with systemd slice:crib:id", () => {
  assert.equal(build({}).linux.cgroupsPath, `/kubepods/besteffort/podpod-uid-1/${containerId}`);
  const systemd = build(
    {},
    { host: host({ systemdCgroup: true }), sandbox: { linux: { cgroup_parent: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice" } } },
  );
  assert.equal(systemd.linux.cgroupsPath, `kubepods-besteffort-podx.slice:crib:${containerId}`);
  assert.throws(() => build({}, { host: host({ systemdCgroup: true }) }), invalid(/needs a parent ending in a .slice/));
});

test("resources: CPU, cpusets, memory with swap equal to the limit, hugepages", () => {
  const spec = build({
    linux: {
      resources: {
        cpu_shares: 512, cpu_quota: 50000, cpu_period: 100000, cpuset_cpus: "0-1", cpuset_mems: "0",
        memory_limit_in_bytes: 268435456, hugepage_limits: [{ page_size: "2MB", limit: 0 }],
      },
    },
  });
  assert.deepEqual(spec.linux.resources.cpu, { period: 100000, quota: 50000, shares: 512, cpus: "0-1", mems: "0" });
  assert.deepEqual(spec.linux.resources.memory, { limit: 268435456, swap: 268435456 });
  assert.deepEqual(spec.linux.resources.hugepageLimits, [{ pageSize: "2MB", limit: 0 }]);
  const swap = build({ linux: { resources: { memory_limit_in_bytes: 100, memory_swap_limit_in_bytes: 300 } } });
  assert.deepEqual(swap.linux.resources.memory, { limit: 100, swap: 300 });
  assert.equal(build({}).linux.resources.cpu, undefined);
  assert.equal(build({}).linux.resources.memory, undefined);
});

test("unified only on cgroup v2; swap only where the node accounts it — otherwise warnings", () => {
  const config = { linux: { resources: { unified: { "memory.high": "1000000" }, memory_limit_in_bytes: 100, memory_swap_limit_in_bytes: 300 } } };
  const v1 = buildContainerSpec(containerInput(config, { host: host({ swapAccounting: false }) }));
  assert.equal(v1.spec.linux.resources.unified, undefined);
  assert.deepEqual(v1.spec.linux.resources.memory, { limit: 100 });
  assert.equal(v1.warnings.length, 2, v1.warnings.join("; "));
  const v2 = buildContainerSpec(containerInput(config, { host: host({ cgroupV2: true }) }));
  assert.deepEqual(v2.spec.linux.resources.unified, { "memory.high": "1000000" });
});

test("the device cgroup denies all but the standard devices, then allows the CRI's devices", () => {
  const spec = build({}, { devices: [{ path: "/dev/fuse", hostPath: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0, permissions: "rw" }] });
  const rules = spec.linux.resources.devices;
  assert.deepEqual(rules[0], { allow: false, access: "rwm" });
  assert.ok(rules.some((r) => r.allow && r.type === "c" && r.major === 1 && r.minor === 3), "/dev/null");
  assert.ok(rules.some((r) => r.allow && r.type === "c" && r.major === 136 && r.minor === undefined), "/dev/pts/*");
  assert.deepEqual(rules.at(-1), { allow: true, type: "c", major: 10, minor: 229, access: "rw" });
  assert.deepEqual(spec.linux.devices, [{ path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }]);
});

test("namespaced sysctls are set; node-wide ones are refused by name", () => {
  const spec = build({}, { sandbox: { linux: { sysctls: { "net.core.somaxconn": "1024", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20" } } } });
  assert.deepEqual(spec.linux.sysctl, { "net.core.somaxconn": "1024", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20" });
  assert.throws(() => build({}, { sandbox: { linux: { sysctls: { "kernel.panic": "1" } } } }), invalid(/sysctl "kernel.panic" is not namespaced/));
  assert.throws(
    () => build({ linux: { security_context: { namespace_options: { network: "NODE" } } } }, { sandbox: { linux: { sysctls: { "net.ipv4.ip_forward": "1" } } } }),
    invalid(/sysctl "net.ipv4.ip_forward" is in the network namespace/),
  );
  assert.throws(
    () => build({ linux: { security_context: { namespace_options: { ipc: "NODE" } } } }, { sandbox: { linux: { sysctls: { "kernel.sem": "1 2 3 4" } } } }),
    invalid(/sysctl "kernel.sem" is in the IPC namespace/),
  );
});

test("annotations name the container, its image and its sandbox as containerd's do", () => {
  assert.deepEqual(build({}).annotations, {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.sandbox-id": sandboxId,
    "io.kubernetes.cri.sandbox-namespace": "default",
    "io.kubernetes.cri.sandbox-uid": "pod-uid-1",
    "io.kubernetes.cri.sandbox-name": "nginx",
    "io.kubernetes.cri.container-name": "web",
    "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.25",
  });
});

test("AppArmor and SELinux requests are warnings, not errors", () => {
  const { warnings } = buildContainerSpec(
    containerInput({ linux: { security_context: { apparmor: { profile_type: "Localhost", localhost_ref: "k8s-nginx" }, selinux_options: { type: "spc_t" } } } }),
  );
  assert.equal(warnings.length, 2, warnings.join("; "));
});

test("the spec survives JSON as runc reads it: no undefined or null left behind", () => {
  const { spec } = buildContainerSpec(privilegedInput());
  const json = JSON.stringify(spec);
  assert.ok(!json.includes("null"), json);
  assert.deepEqual(JSON.parse(json), JSON.parse(JSON.stringify(JSON.parse(json))));
  assert.equal(spec.ociVersion, "1.0.2-dev");
});

test("steps do not share arrays with the base spec between builds", () => {
  const a = build({ linux: { security_context: { capabilities: { drop_capabilities: ["ALL"] } } } });
  const b = build({});
  assert.equal(a.process.capabilities.bounding.length, 0);
  assert.equal(b.process.capabilities.bounding.length, 14);
});

test("the stop signal is the CRI's, else the image's, else SIGTERM", () => {
  assert.equal(stopSignal({ stop_signal: "SIGUSR1" }, { StopSignal: "SIGQUIT" }), "SIGUSR1");
  assert.equal(stopSignal({ stop_signal: "RUNTIME_DEFAULT" }, { StopSignal: "SIGQUIT" }), "SIGQUIT");
  assert.equal(stopSignal({ stop_signal: "RUNTIME_DEFAULT" }, { StopSignal: "quit" }), "SIGQUIT");
  assert.equal(stopSignal({ stop_signal: "RUNTIME_DEFAULT" }, { StopSignal: "3" }), "3");
  assert.equal(stopSignal({ stop_signal: "RUNTIME_DEFAULT" }, {}), "SIGTERM");
});

test("a sysctl value the kernel refused, in runc's words, becomes INVALID_ARGUMENT naming the request's key", async () => {
  const { refusedSysctl } = await import("./sysctls.js");
  const runc = new Error("containerd tasks.Create: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: write /proc/sys/net/ipv4/ip_unprivileged_port_start: invalid argument: unknown");
  const err = refusedSysctl(runc, { "net/ipv4/ip_unprivileged_port_start": "-1" }, "config.linux.sysctls") as Error & { kind?: string };
  assert.equal(err.kind, "invalid-argument");
  assert.equal(err.message, 'config.linux.sysctls["net/ipv4/ip_unprivileged_port_start"]: "-1" is refused by the kernel (invalid argument)');
  assert.equal(refusedSysctl(new Error("runc create failed: exec: no such file"), {}, "f"), undefined);
});
