import assert from "node:assert/strict";
import { test } from "node:test";
import { criDefinitions } from "../proto/load.js";
import { WireCheck, cpuList, dnsConfig, execCommand, hostname, linuxResources, logPath, portMappings } from "./validate.js";
import { host } from "../runtime/spec/testing.js";
import type * as cri from "../proto/gen/cri/types.js";

const invalid = (fn: () => void, field: string) =>
  assert.throws(fn, (e: Error & { kind?: string }) => e.kind === "invalid-argument" && e.message.includes(field), `INVALID_ARGUMENT naming ${field}`);

test("the wire walk finds a NUL byte or an unknown enum number in any field, maps included", () => {
  const wire = new WireCheck(criDefinitions(), "runtime.v1");
  const run = wire.requestTypes("RuntimeService").get("RunPodSandbox")!;
  invalid(() => wire.check(run, { config: { metadata: { name: "a\0b" } } }), "config.metadata.name");
  invalid(() => wire.check(run, { config: { labels: { k: "v\0" } } }), "config.labels[\"k\"]");
  invalid(() => wire.check(run, { config: { port_mappings: [{ protocol: 7 }] } }), "config.port_mappings[0].protocol");
  invalid(() => wire.check(run, { config: { linux: { security_context: { namespace_options: { pid: 9 } } } } }), "namespace_options.pid");
  wire.check(run, { config: { metadata: { name: "ok" }, port_mappings: [{ protocol: "UDP" }], labels: { a: "b" } } });
  const exec = wire.requestTypes("RuntimeService").get("ExecSync")!;
  invalid(() => wire.check(exec, { cmd: ["/bin/echo", "a\0"] }), "cmd[1]");
});

test("resources within the kernel's range; zero is unset; what kubelet sends passes", () => {
  const base = { cpu_period: "0", cpu_quota: "0", cpu_shares: "0", memory_limit_in_bytes: "0", oom_score_adj: "0", cpuset_cpus: "", cpuset_mems: "", hugepage_limits: [], unified: {}, memory_swap_limit_in_bytes: "0" };
  const r = (x: Partial<cri.LinuxContainerResources>) => ({ ...base, ...x }) as cri.LinuxContainerResources;
  const h = host({ onlineCpus: "0-3" });
  linuxResources(r({ cpu_shares: "2", cpu_quota: "-1", cpu_period: "100000", memory_limit_in_bytes: "67108864", cpuset_cpus: "0-1,3" }), h, "r");
  for (const [x, f] of [[{ cpu_shares: "-5" }, "cpu_shares"], [{ cpu_shares: "262145" }, "cpu_shares"], [{ cpu_period: "1" }, "cpu_period"],
    [{ cpu_quota: "999" }, "cpu_quota"], [{ memory_limit_in_bytes: "-2" }, "memory_limit_in_bytes"], [{ cpuset_cpus: "0-999,abc" }, "cpuset_cpus"],
    [{ cpuset_cpus: "2-8" }, "cpuset_cpus"], [{ cpuset_cpus: "3-1" }, "cpuset_cpus"], [{ unified: { "memory.max": "1" } }, "unified"],
    [{ hugepage_limits: [{ page_size: "2M", limit: "1" }] }, "hugepage_limits[0].page_size"]] as const) {
    invalid(() => linuxResources(r(x as Partial<cri.LinuxContainerResources>), h, "r"), `r.${f}`);
  }
  linuxResources(r({ unified: { "memory.high": "1000000" } }), host({ cgroupV2: true }), "r");
  invalid(() => linuxResources(r({ unified: { "../../x": "1" } }), host({ cgroupV2: true }), "r"), "r.unified");
  assert.deepEqual(cpuList("c", "0-2,5"), [0, 1, 2, 5]);
});

test("resolv.conf, hostname and port fields admit single tokens and addresses only", () => {
  dnsConfig({ servers: ["10.0.0.1", "::1"], searches: Array.from({ length: 32 }, (_, i) => `d${i}.local`), options: ["ndots:5"] }, "dns");
  invalid(() => dnsConfig({ servers: ["10.0.0.1 6.6.6.6"], searches: [], options: [] }, "dns"), "dns.servers[0]");
  invalid(() => dnsConfig({ servers: [], searches: ["a b"], options: [] }, "dns"), "dns.searches[0]");
  invalid(() => dnsConfig({ servers: [], searches: ["x".repeat(200), ...Array.from({ length: 10 }, () => "y".repeat(200))], options: [] }, "dns"), "dns.searches");
  invalid(() => dnsConfig({ servers: [], searches: [], options: ["a\nb"] }, "dns"), "dns.options[0]");
  hostname("h", "node-1.example.com");
  hostname("h", "");
  invalid(() => hostname("h", "a_b"), "h");
  invalid(() => hostname("h", "a\nb"), "h");
  portMappings([{ protocol: "TCP", container_port: 80, host_port: 0, host_ip: "" }, { protocol: "UDP", container_port: 53, host_port: 53, host_ip: "::" }], "p");
  invalid(() => portMappings([{ protocol: "TCP", container_port: 0, host_port: 80, host_ip: "" }], "p"), "p[0].container_port");
  logPath("l", "c/0.log");
  invalid(() => execCommand("cmd", ["x".repeat(100_000)]), "cmd[0]");
  invalid(() => execCommand("cmd", [""]), "cmd[0]");
  execCommand("cmd", ["/bin/echo", "y".repeat(100_000)]);
  for (const bad of [".", "..", "../x", "a/../../x", "dir/"]) invalid(() => logPath("l", bad), "l");
});

test("cgroup_parent as kubelet sends it for each driver; relative, '..' and huge ones refused", async () => {
  const { podSandboxConfig } = await import("./validate.js");
  const cfg = (cgroup_parent: string) => ({ metadata: null, hostname: "", log_directory: "", dns_config: null, port_mappings: [], labels: {}, annotations: {},
    linux: { cgroup_parent, sysctls: {}, security_context: null, overhead: null, resources: null }, windows: null }) as unknown as cri.PodSandboxConfig;
  podSandboxConfig(cfg("/kubepods/burstable/pod1"), host());
  podSandboxConfig(cfg("kubepods-burstable-pod1.slice"), host({ systemdCgroup: true }));
  for (const bad of ["relative/x", "/a/../b", `/${"x".repeat(300)}`]) invalid(() => podSandboxConfig(cfg(bad), host()), "config.linux.cgroup_parent");
  invalid(() => podSandboxConfig(cfg("/kubepods"), host({ systemdCgroup: true })), "config.linux.cgroup_parent");
});

test("capabilities are names the kernel knows; labels fit containerd's 4096 bytes; paths fit PATH_MAX and NAME_MAX", async () => {
  const { containerConfig: check, podSandboxConfig } = await import("./validate.js");
  const { containerConfig, sandboxConfig } = await import("../runtime/spec/testing.js");
  const caps = (c: cri.Capability__Input) => containerConfig({ linux: { security_context: { capabilities: c } } });
  check(caps({ add_capabilities: ["NET_ADMIN", "cap_sys_time", "ALL"], drop_capabilities: ["all", "CAP_MKNOD"], add_ambient_capabilities: ["NET_BIND_SERVICE"] }), host());
  invalid(() => check(caps({ add_capabilities: ["NET_ADMIN", "x".repeat(100_000)] }), host()), "config.linux.security_context.capabilities.add_capabilities[1]");
  invalid(() => check(caps({ drop_capabilities: ["CAP_NOPE"] }), host()), "capabilities.drop_capabilities[0]");
  invalid(() => check(caps({ add_ambient_capabilities: ["nope"] }), host()), "capabilities.add_ambient_capabilities[0]");
  assert.throws(() => check(caps({ add_capabilities: ["x".repeat(100_000)] }), host()), (e: Error) => e.message.length < 200, "the value is shortened in the message");

  check(containerConfig({ labels: { app: "x".repeat(4000) } }), host());
  invalid(() => check(containerConfig({ labels: { "": "v" } }), host()), "config.labels");
  invalid(() => check(containerConfig({ labels: { k: "x".repeat(5000) } }), host()), "config.labels[\"k\"]");
  invalid(() => podSandboxConfig(sandboxConfig({ labels: { "": "v" } }), host()), "config.labels");

  invalid(() => check(containerConfig({ log_path: "x".repeat(300) }), host()), "config.log_path");
  invalid(() => check(containerConfig({ working_dir: `/${"d/".repeat(2100)}` }), host()), "config.working_dir");
  invalid(() => check(containerConfig({ mounts: [{ container_path: "/data", host_path: `/${"h".repeat(256)}` }] }), host()), "config.mounts[0].host_path");
  invalid(() => podSandboxConfig(sandboxConfig({ log_directory: `/var/log/${"p".repeat(256)}` }), host()), "config.log_directory");
  check(containerConfig({ log_path: `c/${"x".repeat(250)}.log`, working_dir: `/${"w".repeat(255)}` }), host());
});
