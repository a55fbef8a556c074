// What critest (cri-tools' pkg/validate) checks and the other integration tests
// do not, with critest's own configs where they matter: its default pod (no
// hostname, no log directory, uppercase name), idempotent calls on unknown ids,
// ContainerStatus fields (mounts, user, image_id), security contexts, host
// namespaces, sysctls, mount propagation, hostPorts on 127.0.0.1 and the image
// calls. Only busybox-based images exist here, so checks on critest's other
// images (nginx, nonewprivs…) are made with busybox equivalents.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { get } from "node:http";
import { createServer, type Server } from "node:net";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import { buildImage, filesLayer } from "../fixtures/image-builder.js";
import { pushImage } from "../fixtures/push.js";
import { startRegistry, type TestRegistry } from "../fixtures/registry.js";
import { reservePort } from "../fixtures/ports.js";
import { RegistryClient } from "../../runtime/image/registry.js";
import type * as cri from "../../proto/gen/cri/types.js";

const run = promisify(execFile);
type Pod = { id: string; config: cri.PodSandboxConfig__Input };
type Rejection = { code: number; details: string };

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const httpGet = (url: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = get(url, { timeout: 3000 }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d)).on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`))).on("error", reject);
  });

describe("critest conformance", () => {
  let env: PodEnv;
  let tmp: string;
  before(async () => {
    env = await PodEnv.start();
    tmp = await mkdtemp("/tmp/crib-conformance-");
  });
  after(async () => {
    await env?.close();
    if (!tmp) return;
    // the host mounts the tests made, deepest first, before the files go
    const mounts = (await readFile("/proc/mounts", "utf8")).split("\n").map((l) => l.split(" ")[1] ?? "").filter((m) => m.startsWith(tmp));
    for (const m of mounts.reverse()) await run("umount", ["-l", m]).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
  });

  const status = async (id: string) => (await env.client.runtime.ContainerStatus({ container_id: id })).status!;
  const exited = (id: string) => waitFor(`container ${id.slice(0, 12)} to exit`, async () => {
    const s = await status(id);
    return s.state === "CONTAINER_EXITED" ? s : undefined;
  }, 60_000);
  /** A pod as critest's framework makes them: metadata, cgroup_parent "" (cgroupfs) and what the test adds. */
  const critestPod = async (prefix: string, extra: Partial<cri.PodSandboxConfig__Input> = {}): Promise<Pod> => {
    const config: cri.PodSandboxConfig__Input = {
      metadata: { name: `${prefix}${randomUUID()}`, uid: `cri-test-uid${randomUUID()}`, namespace: `cri-test-namespace${randomUUID()}`, attempt: 2 },
      labels: {},
      ...extra,
      linux: { cgroup_parent: "", ...extra.linux },
    };
    const { pod_sandbox_id } = await env.client.runtime.RunPodSandbox({ config });
    return { id: pod_sandbox_id, config };
  };
  const withLogs = async (): Promise<Partial<cri.PodSandboxConfig__Input>> => {
    const dir = await mkdtemp(join(tmp, "logs-"));
    return { log_directory: dir };
  };
  const logOf = async (pod: Pod, name: string): Promise<string> => readFile(join(pod.config.log_directory ?? "", `${name}.log`), "utf8");

  it("stops and removes unknown containers, sandboxes and images without an error", async () => {
    const unknown = randomUUID();
    await env.client.runtime.StopContainer({ container_id: unknown, timeout: 0 });
    await env.client.runtime.RemoveContainer({ container_id: unknown });
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: unknown });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: unknown });
    await env.client.image.RemoveImage({ image: { image: "0".repeat(64) } });
    await env.client.image.RemoveImage({ image: { image: "0".repeat(64) } });
    const { items } = await env.client.runtime.ListPodSandbox({ filter: { id: "non-existent-id" } });
    assert.deepEqual(items, []);
  });

  it("runs critest's default pod and a container of an image named by its ID, reporting that ID everywhere", async () => {
    const pod = await critestPod("PodSandbox-for-create-test-");
    const { status: podStatus } = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id });
    assert.equal(podStatus?.state, "SANDBOX_READY");
    const imageId = (await env.client.image.ImageStatus({ image: { image: BUSYBOX_REF } })).image!.id;
    const { container_id } = await env.client.runtime.CreateContainer({
      pod_sandbox_id: pod.id,
      config: { metadata: { name: `id-consistency-${randomUUID()}`, attempt: 2 }, image: { image: imageId, user_specified_image: BUSYBOX_REF }, command: ["top"], linux: {} },
      sandbox_config: pod.config,
    });
    await env.client.runtime.StartContainer({ container_id });
    const s = await status(container_id);
    assert.equal(s.state, "CONTAINER_RUNNING");
    assert.equal(s.image_id, imageId, "ContainerStatus.image_id is the ImageStatus id");
    const { containers } = await env.client.runtime.ListContainers({ filter: { id: container_id } });
    assert.equal(containers[0]?.image_id, imageId, "Container.image_id too");
    await env.client.runtime.RemoveContainer({ container_id });
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    assert.deepEqual((await env.client.runtime.ListPodSandbox({ filter: { id: pod.id } })).items, []);
  });

  it("ends a container over its memory and swap limit with exit code 137 and reason OOMKilled", async () => {
    const pod = await critestPod("oom-", { linux: { security_context: { privileged: true } } });
    const c = await env.runContainer(pod, "oom", {
      command: ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M"],
      linux: { resources: { memory_limit_in_bytes: 15 * 1024 * 1024, memory_swap_limit_in_bytes: 15 * 1024 * 1024 } },
    });
    await exited(c);
    // as critest: the reason may follow the exit (containerd's OOM event can come after the exit event)
    const s = await waitFor("reason OOMKilled", async () => {
      const now = await status(c);
      return now.reason === "OOMKilled" ? now : undefined;
    }, 10_000);
    assert.equal(s.exit_code, 137);
  });

  it("propagates mounts as asked: rprivate neither way, rslave from the host, rshared both ways", async () => {
    const pod = await critestPod("propagation-", { linux: { security_context: { privileged: true } } });
    const modes = ["PROPAGATION_PRIVATE", "PROPAGATION_HOST_TO_CONTAINER", "PROPAGATION_BIDIRECTIONAL"] as const;
    for (const mode of modes) {
      const base = await mkdtemp(join(tmp, "prop-"));
      const source = join(base, "mnt");
      const hostMountPoint = join(source, "propagationMnt");
      const flagDir = join(base, "propagationSrcDir");
      await mkdir(hostMountPoint, { recursive: true });
      await mkdir(flagDir);
      await writeFile(join(flagDir, "flagFile"), "");
      await run("mount", ["--bind", source, source]);
      await run("mount", [mode === "PROPAGATION_PRIVATE" ? "--make-rprivate" : "--make-rshared", source]);
      const c = await env.runContainer(pod, `prop-${mode}`, {
        command: ["sh", "-c", "top"],
        linux: { security_context: { privileged: true } },
        mounts: [{ host_path: source, container_path: source, propagation: mode }],
      });
      const mounts = (await status(c)).mounts;
      assert.equal(mounts.length, 1);
      assert.deepEqual([mounts[0]?.host_path, mounts[0]?.container_path, mounts[0]?.readonly, mounts[0]?.selinux_relabel, mounts[0]?.propagation], [source, source, false, false, mode]);

      await run("mount", ["--bind", flagDir, hostMountPoint]);
      const seen = (await env.exec(c, ["ls", "-A", hostMountPoint])).stdout;
      assert.equal(seen, mode === "PROPAGATION_PRIVATE" ? "" : "flagFile\n", `${mode}: a host mount made after the start`);

      const containerMountPoint = join(source, "containerMntPoint");
      const mounted = await env.exec(c, ["sh", "-c", `mkdir -p ${containerMountPoint} && mount --bind /etc ${containerMountPoint}`]);
      assert.equal(mounted.code, 0, mounted.stderr);
      const onHost = await readdir(containerMountPoint);
      assert.equal(onHost.length > 0, mode === "PROPAGATION_BIDIRECTIONAL", `${mode}: a mount the container made, seen from the host: ${onHost.join(" ")}`);
    }
  });

  it("sets the pod's safe and unsafe namespaced sysctls", async () => {
    const pod = await critestPod("pod-sandbox-with-sysctls-", { linux: { sysctls: { "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100" } } });
    const c = await env.runContainer(pod, "sysctls", { command: ["top"] });
    assert.equal((await env.exec(c, ["cat", "/proc/sys/kernel/shm_rmid_forced"])).stdout.trim(), "1");
    assert.equal((await env.exec(c, ["cat", "/proc/sys/fs/mqueue/msg_max"])).stdout.trim(), "100");
  });

  it("shares the node's IPC, PID and network namespaces only when asked", async () => {
    const { stdout } = await run("ipcmk", ["-M", "1048576"]);
    const segment = stdout.trim().replace("Shared memory id: ", "");
    const server: Server = createServer((s) => s.end("hello"));
    await new Promise<void>((r) => server.listen(0, r));
    const port = (server.address() as { port: number }).port;
    const cmdline = await readFile("/proc/self/cmdline", "utf8");
    try {
      for (const node of [true, false]) {
        const mode = node ? "NODE" : "POD";
        const namespace_options = { ipc: mode, pid: mode, network: mode } as const;
        const pod = await critestPod("NamespaceOption-PodSandbox-", { dns_config: {}, linux: { security_context: { namespace_options } } });
        const c = await env.runContainer(pod, `namespaces-${mode}`, { command: ["sh", "-c", "top"], linux: { security_context: { namespace_options } } });
        const shm = (await env.exec(c, ["cat", "/proc/sysvipc/shm"])).stdout;
        const shmids = shm.split("\n").slice(1).map((l) => l.trim().split(/\s+/)[1]);
        assert.equal(shmids.includes(segment), node, `ipc ${mode}: the node's segment ${segment} in ${shmids.join(",")}`);
        const testProcess = await env.exec(c, ["cat", `/proc/${process.pid}/cmdline`]);
        assert.equal(testProcess.stdout === cmdline, node, `pid ${mode}: the test's own process seen`);
        const listening = (await env.exec(c, ["netstat", "-ln"])).stdout;
        assert.equal(listening.includes(`:${port} `), node, `network ${mode}: the node's port ${port} listed`);
      }
    } finally {
      server.close();
      await run("ipcrm", ["-m", segment]).catch(() => undefined);
    }
  });

  it("applies Localhost, RuntimeDefault and Unconfined seccomp profiles, and none to a privileged container", async () => {
    const profile = async (name: string, syscalls: string[]) => {
      const path = join(tmp, name);
      await writeFile(path, JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: syscalls, action: "SCMP_ACT_ERRNO" }] }));
      return path;
    };
    const blockChmod = await profile("block-chmod.json", ["chmod", "fchmodat"]);
    const blockHostname = await profile("block-host-name.json", ["sethostname"]);
    const pod = await critestPod("seccomp-sandbox-");
    const seccompStatus = async (c: string) => (await env.exec(c, ["grep", "Seccomp:", "/proc/self/status"])).stdout.split(/\s+/)[1];

    const localhost = await env.runContainer(pod, "seccomp-localhost", { command: ["sh", "-c", "top"], linux: { security_context: { seccomp: { profile_type: "Localhost", localhost_ref: blockChmod } } } });
    const chmod = await env.exec(localhost, ["chmod", "400", "/"]);
    assert.notEqual(chmod.code, 0);
    assert.match(chmod.stderr, /Operation not permitted/);
    const runtimeDefault = await env.runContainer(pod, "seccomp-default", { command: ["sh", "-c", "top"], linux: { security_context: { seccomp: {} } } });
    assert.equal(await seccompStatus(runtimeDefault), "2", "an empty SecurityProfile is RuntimeDefault");
    const unconfined = await env.runContainer(pod, "seccomp-unconfined", { command: ["sh", "-c", "top"], linux: { security_context: { seccomp: { profile_type: "Unconfined" } } } });
    assert.equal(await seccompStatus(unconfined), "0");

    const sysAdmin = (seccomp: cri.SecurityProfile__Input, name: string, target = pod, privileged = false) =>
      env.runContainer(target, name, { command: ["sleep", "60"], linux: { security_context: { privileged, capabilities: privileged ? {} : { add_capabilities: ["SYS_ADMIN"] }, seccomp } } });
    const setHostname = async (c: string) => (await env.exec(c, ["hostname", "ANewHostName"])).code;
    assert.equal(await setHostname(await sysAdmin({ profile_type: "Unconfined" }, "hostname-unconfined")), 0, "SYS_ADMIN may set the hostname");
    assert.notEqual(await setHostname(await sysAdmin({ profile_type: "Localhost", localhost_ref: blockHostname }, "hostname-blocked")), 0, "the profile blocks sethostname");
    const privilegedPod = await critestPod("seccomp-privileged-", { linux: { security_context: { privileged: true } } });
    const privileged = await sysAdmin({ profile_type: "Localhost", localhost_ref: blockHostname }, "hostname-privileged", privilegedPod, true);
    assert.equal(await setHostname(privileged), 0, "a privileged container ignores the profile");
  });

  it("runs a pod whose sandbox asks for a Localhost seccomp profile too", async () => {
    const path = join(tmp, "allow-all.json");
    await writeFile(path, JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW" }));
    const seccomp = { profile_type: "Localhost", localhost_ref: path } as const;
    const pod = await critestPod("seccomp-sandbox-localhost-", { linux: { security_context: { seccomp } } });
    const c = await env.runContainer(pod, "seccomp-pod-localhost", { command: ["sh", "-c", "top"], linux: { security_context: { seccomp } } });
    assert.equal((await env.exec(c, ["grep", "Seccomp:", "/proc/self/status"])).stdout.split(/\s+/)[1], "2");
    const missing = join(tmp, "missing.json");
    await assert.rejects(
      critestPod("seccomp-sandbox-missing-", { linux: { security_context: { seccomp: { profile_type: "Localhost", localhost_ref: missing } } } }),
      (e: { code: number; details: string }) => e.code === 3 && e.details.includes(missing),
    );
  });

  it("lets only privileged containers and those given NET_ADMIN manage the network; ALL adds every capability, dropping NET_RAW stops ping", async () => {
    const brctl = async (c: string) => (await env.exec(c, ["brctl", "addbr", "foobar"])).code;
    const pod = await critestPod("create-PodSandbox-for-container-");
    assert.equal(await brctl(await env.runContainer(pod, "net-admin", { command: ["sh", "-c", "top"], linux: { security_context: { capabilities: { add_capabilities: ["NET_ADMIN"] } } } })), 0);
    assert.notEqual(await brctl(await env.runContainer(pod, "no-net-admin", { command: ["top"], linux: {} })), 0);
    const all = await env.runContainer(pod, "all-caps", { command: ["sh", "-c", "top"], linux: { security_context: { capabilities: { add_capabilities: ["ALL"] } } } });
    assert.doesNotMatch((await env.exec(all, ["cat", "/proc/self/status"])).stdout, /CapBnd:\s0000000000000000/);
    const noRaw = await env.runContainer(pod, "no-net-raw", { command: ["sh", "-c", "top"], linux: { security_context: { capabilities: { drop_capabilities: ["NET_RAW"] } } } });
    const ping = await env.exec(noRaw, ["ping", "-c", "1", "127.0.0.1"]);
    assert.notEqual(ping.code, 0);
    assert.match(ping.stderr, /permission denied/);
    for (const privileged of [true, false]) {
      const p = await critestPod("create-Privileged-PodSandbox-for-container-", { linux: { security_context: { privileged } } });
      const c = await env.runContainer(p, `privileged-${privileged}`, { command: ["sh", "-c", "top"], linux: { security_context: { privileged } } });
      assert.equal((await brctl(c)) === 0, privileged, `privileged ${privileged}`);
    }
  });

  it("masks and write-protects the paths a security context lists", async () => {
    const pod = await critestPod("create-PodSandbox-for-container-");
    const masked = await env.runContainer(pod, "masked", { command: ["sh", "-c", "top"], linux: { security_context: { masked_paths: ["/srv/index.html"] } } });
    assert.deepEqual(await env.exec(masked, ["cat", "/srv/index.html"]), { stdout: "", stderr: "", code: 0 });
    const readonly = await env.runContainer(pod, "readonly-paths", { command: ["sh", "-c", "top"], linux: { security_context: { readonly_paths: ["/tmp"] } } });
    const touch = await env.exec(readonly, ["touch", "/tmp/test"]);
    assert.notEqual(touch.code, 0);
    assert.equal(touch.stderr, "touch: /tmp/test: Read-only file system\n");
  });

  it("runs as a uid without an account, as a user name, as uid:gid, and refuses run_as_group alone", async () => {
    const pod = await critestPod("PodSandbox-with-log-directory-", await withLogs());
    const byUid = await env.runContainer(pod, "run-as-user", { command: ["sh", "-c", "top"], linux: { security_context: { run_as_user: { value: 1001 } } } });
    assert.equal((await env.exec(byUid, ["id", "-u"])).stdout, "1001\n");
    const byName = await env.runContainer(pod, "run-as-username", { command: ["sh", "-c", "top"], linux: { security_context: { run_as_username: "nobody" } } });
    assert.equal((await env.exec(byName, ["id", "-nu"])).stdout, "nobody\n");
    const name = `container-with-RunAsGroup-test-${randomUUID()}`;
    const withGroup = await env.runContainer(pod, name, { command: ["sh", "-c", "echo $(id -u):$(id -g)"], linux: { security_context: { run_as_user: { value: 1001 }, run_as_group: { value: 1002 } } } });
    await exited(withGroup);
    assert.match(await logOf(pod, name), /^\S+ stdout F 1001:1002$/m);
    const groupAlone = { metadata: { name: "run-as-group-alone" }, image: { image: BUSYBOX_REF }, command: ["sh"], linux: { security_context: { run_as_group: { value: 1002 } } } };
    await assert.rejects(env.client.runtime.CreateContainer({ pod_sandbox_id: pod.id, config: groupAlone, sandbox_config: pod.config }),
      (e: Rejection) => e.code === 3 && /run_as_group/.test(e.details));
  });

  it("merges the image's groups into the supplemental groups unless the policy is Strict, and reports the user in ContainerStatus", async () => {
    const { features } = await env.client.runtime.Status({});
    assert.equal(features?.supplemental_groups_policy, true, "critest runs these checks only when advertised");
    const pod = await critestPod("PodSandbox-with-log-directory-", await withLogs());
    for (const [policy, groups] of [["Merge", ["1000", "1234", "2000"]], ["Strict", ["1000", "1234"]]] as const) {
      const name = `container-with-SupplementalGroupsPolicy${policy}-${randomUUID()}`;
      const c = await env.runContainer(pod, name, {
        command: ["sh", "-c", "id -G; sleep infinity"],
        linux: { security_context: { run_as_user: { value: 1000 }, supplemental_groups: [1234], supplemental_groups_policy: policy } },
      });
      const user = (await status(c)).user;
      assert.deepEqual({ ...user?.linux, supplemental_groups: [...(user?.linux?.supplemental_groups ?? [])].sort() }, { uid: "1000", gid: "1000", supplemental_groups: groups }, policy);
      const expected = `${groups.join(" ")}\n`;
      const firstLine = await waitFor("the first process's id -G", async () => (await logOf(pod, name)).split("\n")[0] || undefined);
      assert.equal(`${firstLine.split(" ").slice(3).join(" ")}\n`, expected, `${policy}: the first process`);
      assert.equal((await env.exec(c, ["id", "-G"])).stdout, expected, `${policy}: an exec'd process`);
    }
  });

  it("forwards a hostPort on the node's 127.0.0.1 to the pod", async () => {
    // held for the test: portmap's DNAT answers for it, and no other program can listen on it meanwhile
    await using reserved = await reservePort();
    const hostPort = reserved.port;
    const pod = await critestPod("create-PodSandbox-with-port-mapping", { port_mappings: [{ container_port: 80, host_port: hostPort, protocol: "TCP" }] });
    await env.runContainer(pod, "web", { command: ["httpd", "-f", "-p", "80", "-h", "/srv"] });
    const res = await waitFor(`127.0.0.1:${hostPort} to answer`, () => httpGet(`http://127.0.0.1:${hostPort}/index.html`));
    assert.deepEqual(res, { status: 200, body: "hello from crib\n" });
  });

  it("mounts a volume whose host path is a symlink", async () => {
    const hostPath = await mkdtemp(join(tmp, "test"));
    await writeFile(join(hostPath, "testVolume.file"), "");
    const link = `${hostPath}-symlink`;
    await symlink(hostPath, link);
    const pod = await critestPod("create-PodSandbox-for-container-");
    const c = await env.runContainer(pod, "symlink-volume", { command: ["sh", "-c", "top"], mounts: [{ host_path: link, container_path: link, selinux_relabel: true }] });
    assert.equal((await env.exec(c, ["ls", "-A", link])).stdout, "testVolume.file\n");
  });

  describe("images", () => {
    let registry: TestRegistry;
    const pull = async (image: string) => (await env.client.image.PullImage({ image: { image }, sandbox_config: { labels: {} } })).image_ref;
    const imageStatus = async (image: string) => (await env.client.image.ImageStatus({ image: { image } })).image;

    before(async () => {
      registry = await startRegistry();
      await using client = new RegistryClient({ retryDelayMs: 5 });
      const image = (name: string) => buildImage({ layers: [filesLayer({ [name]: `${name}\n` })] });
      await pushImage(client, `${registry.host}/test-image-latest:latest`, await image("latest"));
      const tags = await image("tags");
      for (const tag of ["1", "2", "3"]) await pushImage(client, `${registry.host}/test-image-tags:${tag}`, tags);
    });
    after(async () => { await registry?.close(); });

    it("names an image pulled without a tag :latest, and one pulled by three tags with all three", async () => {
      await pull(`${registry.host}/test-image-latest`);
      assert.deepEqual((await imageStatus(`${registry.host}/test-image-latest`))?.repo_tags, [`${registry.host}/test-image-latest:latest`]);
      const tags = ["1", "2", "3"].map((t) => `${registry.host}/test-image-tags:${t}`);
      const ids = new Set<string>();
      for (const tag of tags) ids.add(await pull(tag));
      assert.equal(ids.size, 1, "one image");
      const listed = (await env.client.image.ListImages({})).images.find((i) => ids.has(i.id));
      assert.deepEqual([...(listed?.repo_tags ?? [])].sort(), tags);
    });

    it("gives the same ImageStatus by ID, tag and digest, and removes concurrently with every call succeeding", async () => {
      const tag = `${registry.host}/test-image-tags:1`;
      await pull(tag);
      const byTag = await imageStatus(tag);
      assert.ok(byTag);
      for (const name of [byTag.id, ...byTag.repo_tags, ...byTag.repo_digests]) assert.deepEqual(await imageStatus(name), byTag, name);
      const removals = Array.from({ length: 5 }, async () => {
        await env.client.image.RemoveImage({ image: { image: byTag.id } });
        return imageStatus(byTag.id);
      });
      assert.deepEqual(await Promise.all(removals), [null, null, null, null, null], "gone once each RemoveImage returns");
      assert.deepEqual((await env.client.image.ListImages({})).images.filter((i) => i.id === byTag.id), []);
    });
  });
});
