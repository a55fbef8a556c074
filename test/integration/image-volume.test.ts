// Image volumes (CRI Mount.image, Kubernetes' ImageVolume): an image kubelet
// pulled, mounted read-only into a container. Checked from inside the container
// as a pod would see it, and on the host: crib's mounts and containerd's snapshots.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PodEnv, leftovers } from "../fixtures/pod-env.js";
import { BUSYBOX_REF, importImage } from "../fixtures/local-images.js";
import { buildImage } from "../fixtures/image-builder.js";
import { mountPoints } from "../../runtime/mount.js";
import type * as cri from "../../proto/gen/cri/types.js";

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL("../../cri/main.js", import.meta.url));
const VOLUME_REF = "docker.io/library/volume:test";

/** One layer: data, an etc of its own, a symlink to /data and one that tries to climb out. */
const volumeImage = () => buildImage({
  layers: [{
    entries: [
      { path: "data", type: "directory" },
      { path: "data/hello.txt", content: "hello from a volume\n" },
      { path: "etc", type: "directory" },
      { path: "etc/marker", content: "the image's etc\n" },
      { path: "to-data", type: "symlink", target: "/data" },
      { path: "escape", type: "symlink", target: "../../../../etc" },
    ],
  }],
});

type Pod = { id: string; config: cri.PodSandboxConfig__Input };
type RpcError = { code: number; details: string };

describe("image volumes", () => {
  let env: PodEnv;
  let pod: Pod;
  let busyboxId: string;
  let volumeId: string;
  before(async () => {
    env = await PodEnv.start();
    await importImage(env.containerd.address, "crib-test", VOLUME_REF, await volumeImage());
    pod = await env.runPod("image-volumes");
    busyboxId = (await env.client.image.ImageStatus({ image: { image: BUSYBOX_REF } })).image!.id;
    volumeId = (await env.client.image.ImageStatus({ image: { image: VOLUME_REF } })).image!.id;
  });
  after(async () => { await env?.close(); });

  const root = () => join(env.crib.dir, "root");
  const volume = (image: string, extra: Partial<cri.Mount__Input> = {}): cri.Mount__Input =>
    ({ container_path: "/vol", readonly: true, image: { image, user_specified_image: image }, ...extra });
  const create = async (name: string, mounts: cri.Mount__Input[]): Promise<string> =>
    (await env.client.runtime.CreateContainer({
      pod_sandbox_id: pod.id,
      config: { metadata: { name }, image: { image: BUSYBOX_REF }, command: ["/bin/sleep", "3600"], mounts },
      sandbox_config: pod.config,
    })).container_id;
  const start = async (name: string, mounts: cri.Mount__Input[]): Promise<string> => {
    const id = await create(name, mounts);
    await env.client.runtime.StartContainer({ container_id: id });
    return id;
  };
  const volumeDir = (id: string, n = 0) => join(root(), "containers", id, "image-volumes", String(n));
  /** What crib has mounted under its root, and containerd's snapshots that are not image layers. */
  const hostState = async () => ({
    mounts: (await mountPoints()).filter((m) => m.startsWith(`${root()}/`)).sort(),
    snapshots: (await leftovers(env)).snapshots!.sort(),
    containerDirs: (await readdir(join(root(), "containers")).catch(() => [])).sort(),
  });
  const remove = async (id: string) => {
    await env.client.runtime.StopContainer({ container_id: id, timeout: 0 });
    await env.client.runtime.RemoveContainer({ container_id: id });
  };

  it("mounts the image read-only at the container path: its files are there, writes fail, its binaries run", async () => {
    const id = await start("whole", [volume(busyboxId)]);
    assert.equal((await env.exec(id, ["/bin/cat", "/vol/srv/index.html"])).stdout, "hello from crib\n", "a file of the image's top layer");
    assert.equal((await env.exec(id, ["/bin/cat", "/vol/var/www/index.html"])).stdout, "hello from crib\n", "a file of its bottom layer");
    const write = await env.exec(id, ["/bin/touch", "/vol/written"]);
    assert.notEqual(write.code, 0, "touch in the volume succeeded");
    assert.match(write.stderr, /Read-only file system/);
    assert.deepEqual(await env.exec(id, ["/vol/bin/busybox", "echo", "ran from the volume"]), { stdout: "ran from the volume\n", stderr: "", code: 0 });

    const host = await hostState();
    assert.ok(host.mounts.includes(volumeDir(id)), `mounted on the host at ${volumeDir(id)}: ${host.mounts.join(", ")}`);
    assert.ok(host.snapshots.includes(`image-volume/${id}/0`), `view snapshot: ${host.snapshots.join(", ")}`);
    const { stdout: ctrList } = await run("ctr", ["-a", env.containerd.address, "-n", "crib-test", "snapshots", "ls"]);
    assert.match(ctrList, new RegExp(`image-volume/${id}/0\\s+sha256:\\w+\\s+View`), "ctr lists it as a View");

    await remove(id);
    const gone = await hostState();
    assert.ok(!gone.mounts.some((m) => m.includes(id)), `still mounted: ${gone.mounts.join(", ")}`);
    assert.ok(!gone.snapshots.some((s) => s.includes(id)), `snapshots left: ${gone.snapshots.join(", ")}`);
    assert.ok(!gone.containerDirs.includes(id), "the container's directory is gone");
  });

  it("reports the image ID as the mount's image_ref, for an image named by ID or by name", async () => {
    const id = await create("status", [volume(busyboxId), volume(VOLUME_REF, { container_path: "/named" })]);
    const { status } = await env.client.runtime.ContainerStatus({ container_id: id });
    const byPath = new Map(status!.mounts.map((m) => [m.container_path, m.image]));
    assert.equal(byPath.get("/vol")?.image, busyboxId);
    assert.equal(byPath.get("/vol")?.image_ref, busyboxId);
    assert.equal(byPath.get("/named")?.image, VOLUME_REF, "image.image as kubelet gave it");
    assert.equal(byPath.get("/named")?.image_ref, volumeId);
    assert.match(volumeId, /^sha256:[0-9a-f]{64}$/);
    await env.client.runtime.RemoveContainer({ container_id: id });
  });

  it("image_sub_path mounts a directory of the image, symlinks resolved inside the image", async () => {
    const id = await start("sub-path", [
      volume(busyboxId, { image_sub_path: "etc" }),
      volume(VOLUME_REF, { container_path: "/data", image_sub_path: "to-data" }),
      volume(VOLUME_REF, { container_path: "/climb", image_sub_path: "escape" }),
    ]);
    assert.equal((await env.exec(id, ["/bin/ls", "/vol/passwd"])).code, 0, "/etc/passwd of the image at /vol/passwd");
    assert.notEqual((await env.exec(id, ["/bin/ls", "/vol/etc/passwd"])).code, 0, "the whole image was mounted");
    assert.equal((await env.exec(id, ["/bin/cat", "/data/hello.txt"])).stdout, "hello from a volume\n", "to-data → /data of the image");
    assert.equal((await env.exec(id, ["/bin/cat", "/climb/marker"])).stdout, "the image's etc\n", "../../../../etc stays in the image");
    assert.notEqual((await env.exec(id, ["/bin/ls", "/climb/passwd"])).code, 0, "the host's /etc reached");
    await remove(id);
  });

  it("refuses what it cannot mount with the code critest expects, and leaves nothing behind", async () => {
    const before = await hostState();
    const cases: [string, cri.Mount__Input[], number, RegExp][] = [
      ["missing sub path", [volume(busyboxId, { image_sub_path: "not-existing" })], 5, /image_sub_path "not-existing" does not exist/],
      ["sub path with ..", [volume(busyboxId, { image_sub_path: "../etc" })], 3, /image_sub_path "\.\.\/etc" must not contain "\.\."/],
      ["absolute sub path", [volume(busyboxId, { image_sub_path: "/etc" })], 3, /must be a relative path/],
      ["writable", [volume(busyboxId, { readonly: false })], 3, /mounts\[0\]: image volume .* must be read-only/],
      ["with a host path", [volume(busyboxId, { host_path: "/tmp" })], 3, /must have no host_path/],
      ["absent image", [volume("docker.io/library/absent:1")], 5, /image "docker\.io\/library\/absent:1"/],
      // the first volume is mounted when the second fails: it must be undone
      ["second volume fails", [volume(busyboxId), volume(VOLUME_REF, { container_path: "/v2", image_sub_path: "data/nope" })], 5, /mounts\[1\]\.image_sub_path "data\/nope"/],
    ];
    for (const [name, mounts, code, message] of cases) {
      await assert.rejects(create("refused", mounts), (e: RpcError) => {
        assert.equal(e.code, code, `${name}: ${e.details}`);
        assert.match(e.details, message, name);
        return true;
      });
      assert.deepEqual(await hostState(), before, `${name}: left something behind`);
    }
    const { containers } = await env.client.runtime.ListContainers({ filter: { pod_sandbox_id: pod.id } });
    assert.ok(!containers.some((c) => c.metadata?.name === "refused"));
    const id = await create("refused", [volume(busyboxId)]);
    await env.client.runtime.RemoveContainer({ container_id: id });
  });

  it("removes the volumes of a container after crib restarted", async () => {
    const id = await start("restart", [volume(busyboxId), volume(VOLUME_REF, { container_path: "/data", image_sub_path: "data" })]);
    await env.crib.restart("SIGKILL");
    const { status } = await env.client.runtime.ContainerStatus({ container_id: id });
    assert.equal(status!.mounts.find((m) => m.container_path === "/data")?.image?.image_ref, volumeId);
    assert.equal((await env.exec(id, ["/bin/cat", "/data/hello.txt"])).stdout, "hello from a volume\n");
    const { stdout } = await run(process.execPath, [MAIN, "doctor", "--json", "--config", env.crib.configPath, "--leak-age", "0s"], { timeout: 60_000 })
      .catch((e: { stdout: string }) => e); // other checks may fail on a test machine
    const checks = (JSON.parse(stdout) as { checks: { check: string; status: string; message: string }[] }).checks;
    for (const name of ["leaked-mounts", "leaked-snapshots"]) {
      const v = checks.find((c) => c.check === name);
      assert.equal(v?.status, "pass", `crib doctor takes a live container's image volumes for leaks: ${v?.message}`);
    }
    await remove(id);
    const host = await hostState();
    assert.ok(!host.mounts.some((m) => m.includes(id)), `still mounted: ${host.mounts.join(", ")}`);
    assert.ok(!host.snapshots.some((s) => s.includes(id)), `snapshots left: ${host.snapshots.join(", ")}`);
  });

  it("mounts the volumes of a created container again when a reboot took them away", async () => {
    const id = await create("reboot", [volume(VOLUME_REF, { image_sub_path: "data" })]);
    await env.crib.stopProcess("SIGKILL");
    await run("umount", [volumeDir(id)]); // what a reboot does to crib's mounts
    await env.crib.startProcess();
    assert.ok((await mountPoints()).includes(volumeDir(id)), "mounted again at start");
    await env.client.runtime.StartContainer({ container_id: id });
    assert.equal((await env.exec(id, ["/bin/cat", "/vol/hello.txt"])).stdout, "hello from a volume\n");
    await remove(id);
  });
});
