// The read rpcs answer from crib's memory (cri/store/, proto/encoded.ts): what
// they answer must still be what is true. Changes crib makes show in the very
// next call; changes made behind crib's back with containerd's API or `ctr`
// (a task killed, an image imported, tagged or removed) within seconds; and
// all of it after crib restarts, and after containerd restarts.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Containerd } from "../../runtime/containerd/client.js";
import { RegistryClient } from "../../runtime/image/registry.js";
import { PodEnv } from "../fixtures/pod-env.js";
import { buildImage } from "../fixtures/image-builder.js";
import { importImage } from "../fixtures/local-images.js";
import { pushImage } from "../fixtures/push.js";
import { startRegistry, type TestRegistry } from "../fixtures/registry.js";

const NAMESPACE = "crib-test"; // PodEnv's

async function eventually<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) assert.fail(`after ${timeoutMs} ms, still not ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("reads answered from memory", () => {
  let env: PodEnv;
  let registry: TestRegistry;
  let pusher: RegistryClient;
  let ctd: Containerd;
  let pod: { id: string; config: Parameters<PodEnv["runContainer"]>[0]["config"] };
  let exited: string;
  let killed: string;

  const container = async (id: string) => (await env.client.runtime.ContainerStatus({ container_id: id })).status!;
  const listed = async (id: string) => (await env.client.runtime.ListContainers({ filter: { id } })).containers[0];
  const sandbox = async (id: string) => (await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status!;
  const sandboxListed = async (id: string) => (await env.client.runtime.ListPodSandbox({ filter: { id } })).items[0];
  const image = async (ref: string) => (await env.client.image.ImageStatus({ image: { image: ref } })).image;
  const imageIds = async () => (await env.client.image.ListImages({})).images.map((i) => i.id);

  before(async () => {
    env = await PodEnv.start({ config: { log_level: "info" } });
    registry = await startRegistry();
    pusher = new RegistryClient({ retryDelayMs: 5 });
    ctd = env.containerd.client(NAMESPACE);
    pod = await env.runPod("reads");
  });
  after(async () => {
    ctd?.close();
    pusher?.close();
    await registry?.close();
    await env?.close();
  });

  it("shows a container's exit in the next ContainerStatus and ListContainers, within seconds", async () => {
    exited = await env.runContainer(pod, "short", { command: ["/bin/sh", "-c", "sleep 1; exit 3"] });
    const s = await eventually("EXITED", () => container(exited), (x) => x.state === "CONTAINER_EXITED");
    assert.equal(s.exit_code, 3);
    assert.equal(s.reason, "Error");
    assert.equal((await listed(exited))?.state, "CONTAINER_EXITED", "ListContainers says what ContainerStatus says");
    const running = await env.client.runtime.ListContainers({ filter: { state: { state: "CONTAINER_RUNNING" } } });
    assert.ok(!running.containers.some((c) => c.id === exited), "an exited container is not listed as running");
  });

  it("shows a task killed with containerd's API, behind crib's back, as exited 137", async () => {
    killed = await env.runContainer(pod, "victim");
    assert.equal((await container(killed)).state, "CONTAINER_RUNNING");
    await ctd.tasks.Kill({ container_id: killed, exec_id: "", signal: 9, all: false });
    const s = await eventually("EXITED after the kill", () => container(killed), (x) => x.state === "CONTAINER_EXITED");
    assert.equal(s.exit_code, 137);
    assert.equal((await listed(killed))?.state, "CONTAINER_EXITED");
  });

  it("shows a pause killed behind crib's back as a NOTREADY sandbox, within seconds", async () => {
    const other = await env.runPod("reads-killed");
    assert.equal((await sandbox(other.id)).state, "SANDBOX_READY");
    await ctd.tasks.Kill({ container_id: other.id, exec_id: "", signal: 9, all: false });
    await eventually("NOTREADY", () => sandbox(other.id), (x) => x.state === "SANDBOX_NOTREADY");
    assert.equal((await sandboxListed(other.id))?.state, "SANDBOX_NOTREADY");
  });

  it("shows StopPodSandbox in the very next PodSandboxStatus and ListPodSandbox", async () => {
    const other = await env.runPod("reads-stopped");
    const ip = (await sandbox(other.id)).network?.ip;
    assert.ok(ip, "a networked pod has an IP");
    await env.client.runtime.StopPodSandbox({ pod_sandbox_id: other.id });
    const s = await sandbox(other.id);
    assert.equal(s.state, "SANDBOX_NOTREADY");
    assert.equal(s.network?.ip, "", "a stopped pod's network is gone");
    assert.equal((await sandboxListed(other.id))?.state, "SANDBOX_NOTREADY");
    await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: other.id });
    assert.equal(await sandboxListed(other.id), undefined);
    await assert.rejects(sandbox(other.id), { code: 5 });
  });

  it("shows PullImage and RemoveImage in the very next ImageStatus and ListImages", async () => {
    const built = await buildImage({ config: { Env: ["PATH=/bin", "READS=pulled"] } });
    const ref = `${registry.host}/reads/pulled:1`;
    await pushImage(pusher, ref, built);
    assert.equal(await image(ref), null);
    const { image_ref: id } = await env.client.image.PullImage({ image: { image: ref } });
    assert.deepEqual((await image(ref))?.repo_tags, [ref]);
    assert.ok((await imageIds()).includes(id), "ListImages has the image just pulled");
    await env.client.image.RemoveImage({ image: { image: ref } });
    assert.equal(await image(ref), null);
    assert.ok(!(await imageIds()).includes(id), "ListImages no longer has the image just removed");
  });

  it("shows an image imported, tagged and removed behind crib's back, within seconds", async () => {
    const built = await buildImage({ config: { Env: ["PATH=/bin", "READS=behind"] } });
    const first = "docker.io/library/behind:1";
    const second = "docker.io/library/behind:2";
    await importImage(env.containerd.address, NAMESPACE, first, built);
    const imported = await eventually("imported", () => image(first), (x) => x !== null);
    assert.equal(imported?.id, built.manifest.config.descriptor.digest);
    const record = (await ctd.images.Get({ name: first })).image!;
    await ctd.images.Create({ image: { name: second, labels: {}, target: record.target } });
    await eventually("tagged twice", () => image(second), (x) => x?.repo_tags.length === 2);
    await ctd.images.Delete({ name: first, sync: true });
    await eventually("the first tag gone", () => image(first), (x) => x === null);
    assert.deepEqual((await image(second))?.repo_tags, [second]);
    const listed = (await env.client.image.ListImages({})).images.find((i) => i.id === imported?.id);
    assert.deepEqual(listed?.repo_tags, [second], "ListImages says what ImageStatus says");
  });

  it("answers all of it the same after crib restarts, with what changed while it was down", async () => {
    const third = "docker.io/library/behind:3";
    await env.crib.stopProcess("SIGKILL");
    const record = (await ctd.images.Get({ name: "docker.io/library/behind:2" })).image!;
    await ctd.images.Create({ image: { name: third, labels: {}, target: record.target } });
    await env.crib.startProcess();
    assert.equal((await container(exited)).exit_code, 3);
    assert.equal((await container(killed)).exit_code, 137);
    assert.equal((await listed(killed))?.state, "CONTAINER_EXITED");
    assert.equal((await sandbox(pod.id)).state, "SANDBOX_READY");
    assert.equal(await image("docker.io/library/behind:1"), null);
    assert.deepEqual((await image(third))?.repo_tags.sort(), ["docker.io/library/behind:2", third]);
  });

  it("keeps up with image changes across a containerd restart", async () => {
    await env.containerd.daemon.stop();
    await env.containerd.daemon.start();
    const fourth = "docker.io/library/behind:4";
    const c = env.containerd.client(NAMESPACE);
    try {
      // the first calls after the restart may find containerd still starting
      const record = await eventually("containerd back", () => c.images.Get({ name: "docker.io/library/behind:2" }).catch(() => undefined), (x) => x?.image !== undefined);
      await c.images.Create({ image: { name: fourth, labels: {}, target: record!.image!.target } });
      await eventually("the tag made after containerd's restart", () => image(fourth).catch(() => null), (x) => x?.repo_tags.includes(fourth) === true);
      await c.images.Delete({ name: fourth, sync: true });
      await eventually("that tag gone again", () => image(fourth).catch(() => undefined), (x) => x === null);
    } finally {
      c.close();
    }
  });
});
