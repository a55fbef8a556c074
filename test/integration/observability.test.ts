// What kubelet and an operator see of running pods: stats from the cgroups and
// the pod's network namespace, container events in order (and a client that
// stops reading hurting nobody), the pod CIDR from UpdateRuntimeConfig, and
// crib's own Prometheus metrics.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rmdir } from "node:fs/promises";
import { connect as http2Connect, constants as http2 } from "node:http2";
import { connect as netConnect } from "node:net";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import type * as cri from "../../proto/gen/cri/types.js";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const num = (v: { value: string } | null | undefined): number => Number(v?.value ?? Number.NaN);
const CGROUP_V2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
const MiB = 1024 * 1024;
/** A pressure file's "some" stall time, in microseconds as the kernel counts it. */
const someTotal = (text: string): number => Number(/^some .*total=(\d+)/m.exec(text)?.[1] ?? Number.NaN);


async function freeSubnet(prefix: string): Promise<string> {
  const { stdout } = await run("ip", ["-4", "route"]);
  for (;;) {
    const net = `${prefix}.${1 + Math.floor(Math.random() * 250)}.`;
    if (!stdout.includes(net)) return `${net}0/24`;
  }
}

describe("observability", () => {
  let env: PodEnv;
  let metricsUrl: string;
  const cgroupParent = `/crib-test-${randomBytes(3).toString("hex")}`;

  before(async () => {
    // port 0, and the port crib logs once it listens: no port to race for on a shared node
    env = await PodEnv.start({ config: { metrics: { address: "127.0.0.1:0" } } });
    // (crib opens it just after its CRI socket)
    const deadline = Date.now() + 10_000;
    let served: string | undefined;
    while (!served && Date.now() < deadline) {
      served = (await env.crib.log()).split("\n").map((l) => /"address":"(127\.0\.0\.1:\d+)".*serving Prometheus metrics/.exec(l)?.[1]).find(Boolean);
      if (!served) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(served, "crib logs the address it serves metrics on");
    metricsUrl = `http://${served}/metrics`;
  });
  after(async () => {
    await env?.close();
    // runc leaves the pods' parent cgroups (kubelet owns them in a cluster)
    for (const controller of ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "unified", ""]) {
      for (const dir of [`${cgroupParent}/pod-cpu`, cgroupParent]) await rmdir(`/sys/fs/cgroup/${controller}${dir}`).catch(() => undefined);
    }
  });

  const scrape = async (): Promise<string> => (await fetch(metricsUrl)).text();
  const metricValue = (text: string, line: RegExp): number => Number(new RegExp(`^${line.source} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);

  it("shows a CPU-burning container's usage_nano_cores rising, an idle one's near zero, and the pod's from its cgroup", async () => {
    const pod = await env.runPod("cpu", { linux: { cgroup_parent: `${cgroupParent}/pod-cpu` }, labels: { app: "cpu" } });
    const burner = await env.runContainer(pod, "burner", { command: ["/bin/sha256sum", "/dev/zero"], labels: { role: "burner" } });
    const idle = await env.runContainer(pod, "idle", { labels: { role: "idle" } });
    await sleep(300);
    const first = (await env.client.runtime.ContainerStats({ container_id: burner })).stats!;
    await sleep(1500);
    const second = (await env.client.runtime.ContainerStats({ container_id: burner })).stats!;
    assert.equal(second.attributes?.metadata?.name, "burner");
    assert.ok(num(second.cpu?.usage_core_nano_seconds) > num(first.cpu?.usage_core_nano_seconds), "cumulative CPU grows");
    // the rate is the cumulative usage over the window between the two samples
    // (on a loaded 2-core machine a busy loop may get well under a core)
    const used = num(second.cpu?.usage_core_nano_seconds) - num(first.cpu?.usage_core_nano_seconds);
    const window = Number(second.cpu?.timestamp) - Number(first.cpu?.timestamp);
    const rate = num(second.cpu?.usage_nano_cores);
    // a node busy with other work (CPU hogs on every core) may leave it a tenth of a core
    assert.ok(rate > 0.02e9, `a busy loop shows up, got ${rate} nano-cores`);
    assert.ok(Math.abs(rate - (used / window) * 1e9) < 0.05e9, `usage_nano_cores ${rate} is the usage over the window, ${(used / window) * 1e9}`);
    assert.ok(num(second.writable_layer?.used_bytes) >= 0 && second.writable_layer?.fs_id?.mountpoint, "the writable layer is measured");
    // pressure stall times where the kernel keeps them (cgroup v2, or a hybrid host's unified hierarchy), in nanoseconds
    const pressureFile = `${(await cgroupOf(burner)).unified}/cpu.pressure`;
    const hasPressure = existsSync(pressureFile);
    if (hasPressure) {
      const before = someTotal(await readFile(pressureFile, "utf8"));
      const withPsi = (await env.client.runtime.ContainerStats({ container_id: burner })).stats!;
      const after = someTotal(await readFile(pressureFile, "utf8"));
      const waited = Number(withPsi.cpu?.psi?.Some?.Total);
      assert.ok(waited >= before * 1000 && waited <= after * 1000, `CPU pressure ${waited} ns is the kernel's ${before}…${after} µs`);
      assert.ok(withPsi.memory?.psi?.Some && withPsi.io?.psi?.Some, "memory and IO pressure too");
    } else {
      assert.equal(second.cpu?.psi, null, "no pressure without cgroup v2");
      assert.equal(second.io, null);
    }

    const idleStats = (await env.client.runtime.ContainerStats({ container_id: idle })).stats!;
    assert.ok(num(idleStats.cpu?.usage_nano_cores) < 0.1e9, `sleep uses no CPU, got ${num(idleStats.cpu?.usage_nano_cores)}`);
    assert.ok(num(idleStats.cpu?.usage_nano_cores) < rate, `sleep uses less CPU than a busy loop: ${num(idleStats.cpu?.usage_nano_cores)} vs ${rate}`);
    assert.ok(num(idleStats.memory?.working_set_bytes) > 0);

    const byPod = await env.client.runtime.ListContainerStats({ filter: { pod_sandbox_id: pod.id } });
    assert.deepEqual(byPod.stats.map((s) => s.attributes?.id).sort(), [burner, idle].sort());
    const byLabel = await env.client.runtime.ListContainerStats({ filter: { label_selector: { role: "idle" } } });
    assert.deepEqual(byLabel.stats.map((s) => s.attributes?.id), [idle]);
    const byId = await env.client.runtime.ListContainerStats({ filter: { id: burner.slice(0, 12) } });
    assert.deepEqual(byId.stats.map((s) => s.attributes?.id), [burner]);

    await sleep(1100);
    const podStats = (await env.client.runtime.PodSandboxStats({ pod_sandbox_id: pod.id })).stats!;
    assert.equal(podStats.attributes?.id, pod.id);
    const burnerNow = podStats.linux?.containers.find((c) => c.attributes?.id === burner);
    // read a moment apart: the container's counter may run a few ms ahead of the pod's
    assert.ok(num(podStats.linux?.cpu?.usage_core_nano_seconds) >= num(burnerNow?.cpu?.usage_core_nano_seconds) - 50e6, "the pod's CPU includes its burner's");
    assert.ok(num(podStats.linux?.cpu?.usage_nano_cores) > 0.1e9, "and the pod is busy");
    assert.ok(num(podStats.linux?.process?.process_count) >= 3, "pause, sha256sum and sleep");
    if (hasPressure) assert.ok(podStats.linux?.cpu?.psi?.Some && podStats.linux.io?.psi?.Some, "the pod's pressure, from its cgroup");
    assert.equal(podStats.linux?.containers.length, 2);
    const listed = await env.client.runtime.ListPodSandboxStats({ filter: { label_selector: { app: "cpu" } } });
    assert.deepEqual(listed.stats.map((s) => s.attributes?.id), [pod.id]);

    const metrics = await env.client.runtime.ListPodSandboxMetrics({});
    const mine = metrics.pod_metrics.find((m) => m.pod_sandbox_id === pod.id);
    const cpuMetric = mine?.container_metrics.find((c) => c.container_id === burner)?.metrics.find((m) => m.name === "container_cpu_usage_seconds_total");
    assert.equal(cpuMetric?.metric_type, "COUNTER");
    assert.deepEqual(cpuMetric?.label_values, [burner, "burner", BUSYBOX_REF]);
    const { descriptors } = await env.client.runtime.ListMetricDescriptors({});
    const names = descriptors.map((d) => d.name);
    for (const name of ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_network_receive_bytes_total"]) assert.ok(names.includes(name), name);
    assert.deepEqual(descriptors.find((d) => d.name === "container_cpu_usage_seconds_total")?.label_keys, ["id", "name", "image"]);

    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    const stopped = (await env.client.runtime.ContainerStats({ container_id: burner })).stats!;
    assert.equal(stopped.cpu, null, "an exited container has no CPU figures");
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    const gone = await env.client.runtime.ListContainerStats({ filter: { pod_sandbox_id: pod.id } });
    assert.deepEqual(gone.stats, [], "removed containers are absent, not errors");
    await assert.rejects(env.client.runtime.ContainerStats({ container_id: burner }), (e: { code: number }) => e.code === 5);
  });

  it("counts 64 MB held by a process in the container's working set", async () => {
    const pod = await env.runPod("memory");
    const c = await env.runContainer(pod, "hog", {
      // tail keeps a line without end in memory; the sleep keeps its input open
      command: ["/bin/sh", "-c", "{ /bin/head -c 67108864 /dev/zero; exec /bin/sleep 3600; } | /bin/tail"],
    });
    let stats: cri.ContainerStats | undefined;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      stats = (await env.client.runtime.ContainerStats({ container_id: c })).stats!;
      if (num(stats.memory?.working_set_bytes) >= 64 * 1024 * 1024 && num(stats.memory?.rss_bytes) >= 64 * 1024 * 1024) break;
      await sleep(200);
    }
    assert.ok(num(stats?.memory?.working_set_bytes) >= 64 * 1024 * 1024, `working set ${num(stats?.memory?.working_set_bytes)} bytes`);
    assert.ok(num(stats?.memory?.rss_bytes) >= 64 * 1024 * 1024, `rss ${num(stats?.memory?.rss_bytes)} bytes`);
    assert.ok(num(stats?.memory?.usage_bytes) >= num(stats?.memory?.working_set_bytes));
    assert.ok(num(stats?.memory?.page_faults) > 0);
    const podStats = (await env.client.runtime.PodSandboxStats({ pod_sandbox_id: pod.id })).stats!;
    assert.ok(num(podStats.linux?.memory?.working_set_bytes) >= 64 * 1024 * 1024, "the pod's working set includes it");
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
  });

  it("shows a container's swap in use and the swap left under its limit, as its cgroup counts them", async () => {
    const pod = await env.runPod("swap");
    const limited = await env.runContainer(pod, "limited", {
      linux: { resources: { memory_limit_in_bytes: 64 * MiB, memory_swap_limit_in_bytes: 96 * MiB } },
    });
    const unlimited = await env.runContainer(pod, "unlimited");
    const stats = (await env.client.runtime.ContainerStats({ container_id: limited })).stats!;
    const { memory } = await cgroupOf(limited);
    const read = async (file: string) => (await readFile(`${memory}/${file}`, "utf8")).trim();
    if (existsSync(`${memory}/${CGROUP_V2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes"}`)) {
      // what the kernel says: v1 limits memory and swap together, v2 swap alone
      const [swapLimit, swapUsed] = CGROUP_V2
        ? [Number(await read("memory.swap.max")), Number(await read("memory.swap.current"))]
        : [Number(await read("memory.memsw.limit_in_bytes")) - Number(await read("memory.limit_in_bytes")),
          Number(/^total_swap (\d+)$/m.exec(await read("memory.stat"))?.[1])];
      assert.equal(swapLimit, 32 * MiB, "96 MiB of memory and swap is 32 MiB of swap");
      assert.equal(num(stats.swap?.swap_usage_bytes), swapUsed, "the kernel's swap in use");
      assert.equal(num(stats.swap?.swap_available_bytes), swapLimit - swapUsed);
      assert.ok(BigInt(stats.swap?.timestamp ?? 0) > 0n);
      const other = (await env.client.runtime.ContainerStats({ container_id: unlimited })).stats!;
      assert.ok(num(other.swap?.swap_usage_bytes) >= 0);
      assert.equal(other.swap?.swap_available_bytes, null, "no limit, so nothing to say is left");
      const metric = (await env.client.runtime.ListPodSandboxMetrics({})).pod_metrics.find((m) => m.pod_sandbox_id === pod.id)
        ?.container_metrics.find((c) => c.container_id === limited)?.metrics.find((m) => m.name === "container_memory_swap");
      assert.equal(num(metric?.value), swapUsed);
    } else {
      assert.equal(stats.swap, null, "no swap figures when the kernel does not account swap");
    }
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
  });

  it("shows a pod's network rx/tx bytes growing with traffic between two pods", async () => {
    const server = await env.runPod("net-server");
    const client = await env.runPod("net-client");
    await env.runContainer(server, "httpd", {
      command: ["/bin/sh", "-c", "/bin/dd if=/dev/zero of=/srv/big bs=1024 count=1024 && exec /bin/httpd -f -p 8080 -h /srv"],
    });
    const ip = (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: server.id })).status?.network?.ip ?? "";
    const eth0 = async (id: string) => (await env.client.runtime.PodSandboxStats({ pod_sandbox_id: id })).stats?.linux?.network?.default_interface;
    const [serverBefore, clientBefore] = [await eth0(server.id), await eth0(client.id)];
    assert.equal(serverBefore?.name, "eth0");
    // the client fetches 1 MiB once the server answers
    await env.runContainer(client, "wget", {
      command: ["/bin/sh", "-c", `until /bin/wget -q -O /dev/null http://${ip}:8080/big; do /bin/sleep 0.1; done; exec /bin/sleep 3600`],
    });
    let serverAfter: cri.NetworkInterfaceUsage | null | undefined = serverBefore;
    let clientAfter: cri.NetworkInterfaceUsage | null | undefined = clientBefore;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && num(clientAfter?.rx_bytes) - num(clientBefore?.rx_bytes) < 1024 * 1024) {
      await sleep(200);
      [serverAfter, clientAfter] = [await eth0(server.id), await eth0(client.id)];
    }
    assert.ok(num(clientAfter?.rx_bytes) - num(clientBefore?.rx_bytes) >= 1024 * 1024, "the client received 1 MiB");
    assert.ok(num(serverAfter?.tx_bytes) - num(serverBefore?.tx_bytes) >= 1024 * 1024, "the server sent 1 MiB");
    assert.equal(num(clientAfter?.rx_errors), 0);
    const metrics = await env.client.runtime.ListPodSandboxMetrics({});
    const rx = metrics.pod_metrics.find((m) => m.pod_sandbox_id === client.id)?.metrics
      .find((m) => m.name === "container_network_receive_bytes_total" && m.label_values.at(-1) === "eth0");
    assert.ok(num(rx?.value) >= 1024 * 1024);
    for (const pod of [server, client]) {
      await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
      await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    }
  });

  it("streams CREATED, STARTED, STOPPED and DELETED events in order, with the pod's and containers' statuses", async () => {
    const events: cri.ContainerEventResponse[] = [];
    const stream = env.client.rawRuntime.GetContainerEvents({});
    stream.on("data", (e: cri.ContainerEventResponse) => events.push(e));
    stream.on("error", () => undefined);
    await waitForClients(1);
    const pod = await env.runPod("events");
    const c = await env.runContainer(pod, "main");
    await env.client.runtime.StopContainer({ container_id: c, timeout: 0 });
    await env.client.runtime.RemoveContainer({ container_id: c });
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !events.some((e) => e.container_id === pod.id && e.container_event_type === "CONTAINER_DELETED_EVENT")) await sleep(50);
    stream.cancel();
    const seen = events.map((e) => `${e.container_id === pod.id ? "pod" : e.container_id === c ? "container" : "other"} ${e.container_event_type}`);
    assert.deepEqual(seen, [
      "pod CONTAINER_CREATED_EVENT", "pod CONTAINER_STARTED_EVENT",
      "container CONTAINER_CREATED_EVENT", "container CONTAINER_STARTED_EVENT",
      "container CONTAINER_STOPPED_EVENT", "container CONTAINER_DELETED_EVENT",
      "pod CONTAINER_STOPPED_EVENT", "pod CONTAINER_DELETED_EVENT",
    ]);
    for (const e of events) {
      assert.equal(e.pod_sandbox_status?.metadata?.name, "events", "every event names the pod, as the evented PLEG requires");
      assert.ok(BigInt(e.created_at) > 0n);
    }
    const started = events.find((e) => e.container_id === c && e.container_event_type === "CONTAINER_STARTED_EVENT");
    assert.deepEqual(started?.containers_statuses.map((s) => [s.id, s.state]), [[c, "CONTAINER_RUNNING"]]);
    const stopped = events.find((e) => e.container_id === c && e.container_event_type === "CONTAINER_STOPPED_EVENT");
    assert.equal(stopped?.containers_statuses[0]?.state, "CONTAINER_EXITED");
    assert.equal(events.at(-1)?.pod_sandbox_status?.state, "SANDBOX_NOTREADY");
    await waitForClients(0);
  });

  it("keeps answering promptly while a subscribed client reads no events", async () => {
    // a raw HTTP/2 client with a zero receive window: crib can send it nothing
    const session = http2Connect("http://localhost", { createConnection: () => netConnect(env.crib.socket), settings: { initialWindowSize: 0 } });
    session.on("error", () => undefined);
    const stuck = session.request({
      [http2.HTTP2_HEADER_METHOD]: "POST", [http2.HTTP2_HEADER_PATH]: "/runtime.v1.RuntimeService/GetContainerEvents",
      "content-type": "application/grpc", te: "trailers",
    });
    stuck.on("error", () => undefined);
    stuck.end(Buffer.alloc(5)); // one empty GetEventsRequest
    stuck.pause();
    const events: cri.ContainerEventResponse[] = [];
    const reader = env.client.rawRuntime.GetContainerEvents({});
    reader.on("data", (e: cri.ContainerEventResponse) => events.push(e));
    reader.on("error", () => undefined);
    await waitForClients(2);

    const latencies: number[] = [];
    let producing = true;
    const probe = (async () => {
      while (producing) {
        const t = performance.now();
        await env.client.runtime.Version({});
        latencies.push(performance.now() - t);
        await sleep(10);
      }
    })();
    const pod = await env.runPod("busy");
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await env.runContainer(pod, `c${i}`));
    await Promise.all(ids.map((id) => env.client.runtime.StopContainer({ container_id: id, timeout: 0 })));
    for (const id of ids) await env.client.runtime.RemoveContainer({ container_id: id });
    producing = false;
    await probe;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && events.filter((e) => e.container_event_type === "CONTAINER_DELETED_EVENT").length < ids.length) await sleep(50);
    assert.equal(events.filter((e) => ids.includes(e.container_id)).length, ids.length * 4, "the reading client got every event");
    latencies.sort((a, b) => a - b);
    const p95 = latencies[Math.floor(latencies.length * 0.95)] ?? Infinity;
    // a stuck client would stall every call for good; a busy node makes them slow, not stalled
    assert.ok(p95 < 2000, `Version took ${p95.toFixed(1)} ms (p95 of ${latencies.length}) while a client was stuck`);
    reader.cancel();
    stuck.close();
    session.destroy();
    await waitForClients(0);
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
  });

  it("serves crib's Prometheus metrics: rpc latency and errors, containers by state, CNI operations", async () => {
    await env.client.runtime.Version({});
    await assert.rejects(env.client.runtime.ContainerStatus({ container_id: "no-such-container" }), (e: { code: number }) => e.code === 5);
    const pod = await env.runPod("metrics");
    await env.runContainer(pod, "main");
    const text = await scrape();
    assert.match(text, /^crib_cri_request_duration_seconds_bucket\{le="0\.1",method="RuntimeService\/Version"\} [1-9]/m);
    assert.ok(metricValue(text, /crib_cri_request_errors_total\{method="RuntimeService\/ContainerStatus",code="NOT_FOUND"\}/) >= 1);
    const running = (await env.client.runtime.ListContainers({ filter: { state: { state: "CONTAINER_RUNNING" } } })).containers.length;
    const ready = (await env.client.runtime.ListPodSandbox({ filter: { state: { state: "SANDBOX_READY" } } })).items.length;
    assert.ok(running >= 1);
    assert.equal(metricValue(text, /crib_containers\{state="running"\}/), running);
    assert.equal(metricValue(text, /crib_sandboxes\{state="ready"\}/), ready);
    assert.ok(metricValue(text, /crib_cni_operation_duration_seconds_count\{operation="ADD",outcome="ok"\}/) >= 1);
    assert.match(text, /^process_cpu_user_seconds_total /m);
    assert.equal((await fetch(metricsUrl.replace("/metrics", "/other"))).status, 404);
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
  });

  it("gives new pods addresses from the pod CIDR of UpdateRuntimeConfig, also after a restart", async () => {
    const update = (pod_cidr: string) => env.client.runtime.UpdateRuntimeConfig({ runtime_config: { network_config: { pod_cidr } } });
    await assert.rejects(update("10.300.0.0/24"), (e: { code: number; details: string }) => e.code === 3 && e.details.includes('"10.300.0.0/24"'));
    await assert.rejects(update("10.1.0.0/24,10.2.0.0/24"), (e: { code: number; details: string }) => e.code === 3 && /more than one IPv4/.test(e.details));
    await env.writeNetwork([
      // no gateway: the bridge already has one address of its own family
      { type: "bridge", bridge: env.bridge, isGateway: false, capabilities: { ipRanges: true },
        ipam: { type: "host-local", ranges: [[{ subnet: env.subnet }]], dataDir: env.ipamDir } },
    ]);
    // writeNetwork returns as soon as the network is ready, which the old config already was
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const { info } = await env.client.runtime.Status({ verbose: true });
      if ((JSON.parse(info["cni"] ?? "{}") as { plugins?: string[] }).plugins?.join() === "bridge") break;
      await sleep(100);
    }
    const cidr = await freeSubnet("10.198");
    await update(cidr);
    const prefix = cidr.replace(/0\/24$/, "");
    const ipOf = async (id: string) => (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.network?.ip ?? "";
    const first = await env.runPod("cidr-1");
    assert.ok((await ipOf(first.id)).startsWith(prefix), `pod IP ${await ipOf(first.id)} is from ${cidr}`);
    const { info } = await env.client.runtime.Status({ verbose: true });
    const cni = JSON.parse(info["cni"] ?? "{}") as { podCidrs: string[]; configFile: string; missingPlugins: string[] };
    assert.deepEqual(cni.podCidrs, [cidr]);
    assert.match(cni.configFile, /10-test\.conflist$/);
    assert.deepEqual(cni.missingPlugins, []);

    await env.crib.restart("SIGKILL");
    const second = await env.runPod("cidr-2");
    assert.ok((await ipOf(second.id)).startsWith(prefix), "the CIDR survived the restart");
    await update("");
    const third = await env.runPod("cidr-3");
    assert.ok((await ipOf(third.id)).startsWith(prefix), "an empty pod_cidr changes nothing");
  });

  /** A running container's cgroup directories: its memory cgroup, and its cgroup in the unified hierarchy when it has one. */
  async function cgroupOf(containerId: string): Promise<{ memory: string; unified?: string }> {
    const { info } = await env.client.runtime.ContainerStatus({ container_id: containerId, verbose: true });
    const { pid } = JSON.parse(info["info"] ?? "{}") as { pid: number };
    const paths = new Map((await readFile(`/proc/${pid}/cgroup`, "utf8")).trim().split("\n").flatMap((line) => {
      const [id, controllers = "", path = ""] = line.split(":");
      return id === "0" ? [["", path] as const] : controllers.split(",").map((c) => [c, path] as const);
    }));
    const unified = paths.get("");
    return {
      memory: CGROUP_V2 ? `/sys/fs/cgroup${unified}` : `/sys/fs/cgroup/memory${paths.get("memory")}`,
      ...(unified && unified !== "/" ? { unified: `${CGROUP_V2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified"}${unified}` } : {}),
    };
  }

  async function waitForClients(n: number): Promise<void> {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (metricValue(await scrape(), /crib_container_event_clients/) === n) return;
      await sleep(50);
    }
    assert.fail(`crib_container_event_clients did not become ${n}`);
  }
});
