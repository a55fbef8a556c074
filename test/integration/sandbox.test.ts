// Pod sandboxes on the real stack: pause in a CNI-wired netns, shared
// namespaces, DNS/hosts/hostname files, errors, retries, restarts and leaks.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PodEnv, leftovers } from "../fixtures/pod-env.js";
import { pauseImage } from "../fixtures/local-images.js";
import { writeOciLayout } from "../fixtures/image-builder.js";
import type * as cri from "../../proto/gen/cri/types.js";
import { SANDBOX_EXTENSION, type SandboxMeta } from "../../cri/store/sandboxes.js";
import { extensionOf, updateExtension } from "../../runtime/containerd/tasks.js";

const run = promisify(execFile);

describe("pod sandboxes", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  it("runs a pod: READY with an IP from host-local, listed and inspectable", async () => {
    const pod = await env.runPod("web", { labels: { app: "web" }, annotations: { note: "x" } });
    const { status, info } = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id, verbose: true });
    assert.equal(status?.state, "SANDBOX_READY");
    assert.match(status?.network?.ip ?? "", /^10\.197\.\d+\.\d+$/);
    assert.equal(status?.labels["app"], "web");
    assert.equal(status?.annotations["note"], "x");
    assert.equal(status?.metadata?.name, "web");
    const verbose = JSON.parse(info["info"] ?? "{}") as { pid: number; netnsPath: string; runtimeSpec: { process: { args: string[] }; linux: { namespaces: { type: string; path?: string }[] } } };
    assert.ok(verbose.pid > 0);
    assert.ok(verbose.netnsPath.startsWith(`/var/run/netns/${env.crib.netnsPrefix}`), verbose.netnsPath);
    assert.deepEqual(verbose.runtimeSpec.process.args, ["/pause"], "crictl inspectp shows the spec, as with containerd");
    assert.equal(verbose.runtimeSpec.linux.namespaces.find((n) => n.type === "network")?.path, verbose.netnsPath);
    const listed = await env.client.runtime.ListPodSandbox({ filter: { label_selector: { app: "web" } } });
    assert.deepEqual(listed.items.map((i) => i.id), [pod.id]);
    const none = await env.client.runtime.ListPodSandbox({ filter: { label_selector: { app: "db" } } });
    assert.equal(none.items.length, 0);
    const byPrefix = await env.client.runtime.ListPodSandbox({ filter: { id: pod.id.slice(0, 8) } });
    assert.equal(byPrefix.items[0]?.id, pod.id);
    const streamed: string[] = [];
    for await (const res of env.client.rawRuntime.StreamPodSandboxes({ filter: { label_selector: { app: "web" } } }) as AsyncIterable<{ pod_sandboxes: { id: string }[] }>) {
      streamed.push(...res.pod_sandboxes.map((p) => p.id));
    }
    assert.deepEqual(streamed, [pod.id], "StreamPodSandboxes sends what ListPodSandbox lists");
  });

  it("connects two pods over the bridge, and the host to a pod (HTTP)", async () => {
    const a = await env.runPod("server");
    const b = await env.runPod("client");
    const server = await env.runContainer(a, "httpd", { command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/srv"] });
    const client = await env.runContainer(b, "sleeper");
    const ip = (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: a.id })).status?.network?.ip ?? "";
    let body = "";
    for (let i = 0; i < 20 && !body.includes("hello"); i++) {
      body = (await env.exec(client, ["/bin/wget", "-q", "-O", "-", `http://${ip}:8080/index.html`])).stdout;
      if (!body.includes("hello")) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(body, "hello from crib\n", "pod to pod");
    const fromHost = await run("/bin/busybox", ["wget", "-q", "-O", "-", `http://${ip}:8080/index.html`], { timeout: 5000 });
    assert.equal(fromHost.stdout, "hello from crib\n", "host to pod");
    void server;
  });

  it("writes the hostname, DNS config and hosts file the pod asked for", async () => {
    const pod = await env.runPod("dns", {
      hostname: "dns-host",
      dns_config: { servers: ["10.96.0.10"], searches: ["crib-test.svc.cluster.local", "svc.cluster.local"], options: ["ndots:5"] },
    });
    const c = await env.runContainer(pod, "main");
    assert.equal((await env.exec(c, ["/bin/hostname"])).stdout.trim(), "dns-host");
    const resolv = (await env.exec(c, ["/bin/cat", "/etc/resolv.conf"])).stdout;
    assert.match(resolv, /^nameserver 10\.96\.0\.10$/m);
    assert.match(resolv, /^search crib-test\.svc\.cluster\.local svc\.cluster\.local$/m);
    assert.match(resolv, /^options ndots:5$/m);
    const ip = (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id })).status?.network?.ip;
    const hosts = (await env.exec(c, ["/bin/cat", "/etc/hosts"])).stdout;
    assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
    assert.ok(hosts.includes(`${ip}\tdns-host`), hosts);
  });

  it("shares the pause's PID namespace when namespace_options.pid is POD", async () => {
    const pod = await env.runPod("shared-pid", { linux: { security_context: { namespace_options: { pid: "POD" } } } });
    const c = await env.runContainer(pod, "main");
    assert.equal((await env.exec(c, ["/bin/cat", "/proc/1/cmdline"])).stdout.replace(/\0/g, " ").trim(), "/pause");
    const own = await env.runPod("own-pid", { linux: { security_context: { namespace_options: { pid: "CONTAINER" } } } });
    const c2 = await env.runContainer(own, "main");
    assert.equal((await env.exec(c2, ["/bin/cat", "/proc/1/cmdline"])).stdout.replace(/\0/g, " ").trim(), "/bin/sleep 3600");
  });

  it("refuses bad metadata, a duplicate name and an unknown runtime handler", async () => {
    await assert.rejects(env.client.runtime.RunPodSandbox({ config: { metadata: { name: "", namespace: "n", uid: "u" } } }),
      (e: { code: number; details: string }) => e.code === 3 && /metadata\.name/.test(e.details));
    await assert.rejects(env.client.runtime.RunPodSandbox({ config: { metadata: { name: "x", namespace: "n", uid: "" } } }),
      (e: { code: number; details: string }) => e.code === 3 && /metadata\.uid/.test(e.details));
    const pod = await env.runPod("dup");
    await assert.rejects(env.client.runtime.RunPodSandbox({ config: env.sandboxConfig("dup") }),
      (e: { code: number; details: string }) => e.code === 6 && e.details.includes(pod.id));
    await assert.rejects(env.client.runtime.RunPodSandbox({ config: env.sandboxConfig("handler"), runtime_handler: "kata" }),
      (e: { code: number; details: string }) => e.code === 3 && /kata/.test(e.details));
  });

  it("stop and remove are idempotent and succeed for unknown sandboxes", async () => {
    const pod = await env.runPod("idem");
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    const { status } = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id });
    assert.equal(status?.state, "SANDBOX_NOTREADY");
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: "f".repeat(64) });
    await assert.rejects(env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id }), (e: { code: number }) => e.code === 5);
  });

  it("gives a kubelet retry the sandbox its timed-out call created", async () => {
    const config = env.sandboxConfig("retry");
    await assert.rejects(env.client.runtime.RunPodSandbox({ config }, { timeoutMs: 5 }), (e: { code: number }) => e.code === 4);
    const { pod_sandbox_id } = await env.client.runtime.RunPodSandbox({ config });
    const { items } = await env.client.runtime.ListPodSandbox({});
    assert.equal(items.filter((i) => i.metadata?.name === "retry").length, 1, "one sandbox, not two");
    assert.ok(items.some((i) => i.id === pod_sandbox_id));
  });

  it("keeps every sandbox across a crib crash and restart", async () => {
    const pod = await env.runPod("survivor");
    const before = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id });
    // a resize kubelet made: recorded in the sandbox, kept across the restart
    await env.client.runtime.UpdatePodSandboxResources({ pod_sandbox_id: pod.id, resources: { cpu_shares: 1536, memory_limit_in_bytes: 256 << 20 } });
    await assert.rejects(env.client.runtime.UpdatePodSandboxResources({ pod_sandbox_id: "nope", resources: { cpu_shares: 2 } }), (e: { code: number; details: string }) => e.code === 5 && /nope/.test(e.details));
    await env.crib.restart("SIGKILL");
    const after = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id, verbose: true });
    const resources = (JSON.parse(after.info["info"] ?? "{}") as { config: cri.PodSandboxConfig }).config.linux?.resources;
    assert.equal(resources?.cpu_shares, "1536");
    assert.equal(resources?.memory_limit_in_bytes, String(256 << 20));
    assert.equal(after.status?.state, "SANDBOX_READY");
    assert.equal(after.status?.network?.ip, before.status?.network?.ip);
    assert.equal(after.status?.created_at, before.status?.created_at);
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    const files: string[] = await readdir(join(env.ipamDir, "crib-test")).catch(() => []);
    assert.ok(!files.includes(before.status?.network?.ip ?? "-"), "its IP was released");
  });
});

describe("a crib crash between the CNI ADD and recording the pod IPs", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  it("gives the pod its IP back from the CNI result cache", async () => {
    const pod = await env.runPod("unrecorded");
    const ip = (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id })).status?.network?.ip;
    assert.ok(ip);
    await env.crib.stopProcess("SIGKILL");
    // the record as it is before RunPodSandbox writes the IPs into it
    const ctd = env.containerd.client("crib-test");
    try {
      const { container } = await ctd.containers.Get({ id: pod.id });
      const meta = extensionOf<SandboxMeta>(container!, SANDBOX_EXTENSION)!;
      await updateExtension(ctd, pod.id, SANDBOX_EXTENSION, { ...meta, ips: [] });
    } finally {
      ctd.close();
    }
    await env.crib.startProcess();
    assert.equal((await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id })).status?.network?.ip, ip);
  });
});

describe("a node whose sandbox image comes from the local archive", () => {
  const ARCHIVED = "registry.k8s.io/pause:archived";
  let env: PodEnv;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "crib-archive-"));
    await writeOciLayout(await pauseImage(), join(dir, "layout"), ARCHIVED);
    await run("tar", ["-C", join(dir, "layout"), "-cf", join(dir, "pause.tar"), "."]);
    env = await PodEnv.start({ config: { sandbox: { image: ARCHIVED, image_archive: join(dir, "pause.tar") } } });
  });
  after(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("imports it for the first pod and pins it, so kubelet's image GC leaves it alone", async () => {
    const before = await env.client.image.ListImages({});
    assert.ok(!before.images.some((i) => i.repo_tags.includes(ARCHIVED)), "not there before the first pod");
    const pod = await env.runPod("from-archive");
    assert.equal((await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id })).status?.state, "SANDBOX_READY");
    const { images } = await env.client.image.ListImages({});
    assert.equal(images.find((i) => i.repo_tags.includes(ARCHIVED))?.pinned, true);
  });
});

describe("sandbox leaks", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  it("leaves nothing after 50 run/stop/remove cycles, some failing mid-way", async () => {
    const netnsBefore: string[] = (await run("ip", ["netns", "list"])).stdout.split("\n").map((l) => l.split(" ")[0] ?? "");
    for (let i = 0; i < 50; i++) {
      const failing = i % 10 === 9;
      if (failing) {
        await env.writeNetwork([{ type: "bridge", bridge: env.bridge, isGateway: true, ipam: { type: "host-local", ranges: [[{ subnet: env.subnet }]], dataDir: env.ipamDir } }, { type: "no-such-plugin" }], (net) => net.message.includes("no-such-plugin"));
        await assert.rejects(env.client.runtime.RunPodSandbox({ config: env.sandboxConfig(`leak-${i}`) }), /no-such-plugin/);
        await env.writeNetwork();
        continue;
      }
      const pod = await env.runPod(`leak-${i}`);
      if (i % 5 === 0) await env.runContainer(pod, "c");
      await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
      await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    }
    const left = await leftovers(env);
    // other test files run pods at the same time: a netns with a process in it is a live pod's
    const empty = async (n: string) => (await run("ip", ["netns", "pids", n]).then((r) => r.stdout.trim(), () => "")) === "";
    // ... and one that goes within 10 s is another crib's being reconciled after a crash (test/integration/recover.test.ts)
    const stays = async (n: string) => {
      for (let i = 0; i < 20; i++) {
        if (!(await run("ip", ["netns", "list"])).stdout.includes(n) || !(await empty(n))) return false;
        await new Promise((r) => setTimeout(r, 500));
      }
      return true;
    };
    const isLeak = async (n: string) => !netnsBefore.includes(n) && (await stays(n));
    const candidates = left["netns"] ?? [];
    left["netns"] = [];
    for (const n of candidates) if (await isLeak(n)) left["netns"].push(n);
    assert.deepEqual(left, { netns: [], veths: [], ipam: [], mounts: [], containers: [], tasks: [], snapshots: [] });
  });

  it("runs 12 pods of 2 containers at once, as kubelet does after a node boots, and removes them at once, leaving nothing", async () => {
    const pods = await Promise.all(Array.from({ length: 12 }, async (_, i) => {
      const pod = await env.runPod(`burst-${i}`);
      const containers = await Promise.all(["a", "b"].map((n) => env.runContainer(pod, n)));
      return { pod, containers };
    }));
    const ips = await Promise.all(pods.map(async ({ pod }) => (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id })).status?.network?.ip));
    assert.equal(new Set(ips).size, 12, `every pod has its own IP: ${ips.join(", ")}`);
    const running = await env.client.runtime.ListContainers({ filter: { state: { state: "CONTAINER_RUNNING" } } });
    assert.equal(running.containers.filter((c) => pods.some((p) => p.pod.id === c.pod_sandbox_id)).length, 24);
    await Promise.all(pods.map(async ({ pod }) => {
      await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
      await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    }));
    const left = await leftovers(env);
    left["netns"] = (left["netns"] ?? []).filter((n) => pods.some((p) => n.endsWith(p.pod.id)));
    assert.deepEqual(left, { netns: [], veths: [], ipam: [], mounts: [], containers: [], tasks: [], snapshots: [] });
  });
});

void rm; void writeFile;
