// The CRI ImageService against a real registry and a real containerd: what
// kubelet sees when it pulls, lists, inspects and removes images, and what
// containerd holds afterwards (ctr shows the records and the chain-ID snapshots).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { status, type ServiceError } from "@grpc/grpc-js";
import type { Containerd } from "../../runtime/containerd/client.js";
import { SNAPSHOTTER } from "../../runtime/containerd/tasks.js";
import { withTempMount } from "../../runtime/mount.js";
import { RegistryClient } from "../../runtime/image/registry.js";
import { chainId, PINNED_LABEL } from "../../runtime/image/store.js";
import { TestContainerd } from "../fixtures/containerd.js";
import { TestCrib } from "../fixtures/crib.js";
import {
  APP_UID,
  buildImage,
  buildIndex,
  busyboxLayer,
  filesLayer,
  multiLayerImage,
  PLATFORM_LABEL,
  randomLayer,
  userImage,
  type BuiltImage,
} from "../fixtures/image-builder.js";
import { startRegistryWithImages, type RegistryWithImages } from "../fixtures/pause-image.js";
import { pushImage } from "../fixtures/push.js";
import { FaultyProxy, startRegistry, type TestRegistry } from "../fixtures/registry.js";

const run = promisify(execFile);
const NAMESPACE = "crib-images";

const diffIds = (image: BuiltImage, i = 0): string[] => image.manifests[i]!.config.parsed.rootfs.diff_ids;
const chainIds = (ids: readonly string[]): string[] => ids.map((_, i) => chainId(ids.slice(0, i + 1)));

async function snapshotNames(c: Containerd): Promise<string[]> {
  const names: string[] = [];
  const stream = c.raw.snapshots.List({ snapshotter: SNAPSHOTTER, filters: [] }, c.metadata());
  for await (const page of stream as AsyncIterable<{ info: Array<{ name: string }> }>) names.push(...page.info.map((i) => i.name));
  return names.sort();
}

async function recordNames(c: Containerd): Promise<string[]> {
  return (await c.images.List({ filters: [] })).images.map((i) => i.name).sort();
}

async function rejection(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as ServiceError;
  }
  assert.fail("expected the call to fail");
}

async function ctr(address: string, ...args: string[]): Promise<string> {
  return (await run("ctr", ["-a", address, "-n", NAMESPACE, ...args])).stdout;
}

describe("ImageService", () => {
  let containerd: TestContainerd;
  let client: Containerd;
  let images: RegistryWithImages;
  let registry: TestRegistry;
  let proxy: FaultyProxy;
  let pusher: RegistryClient;
  let crib: TestCrib;
  let certsDir: string;

  const push = async (repo: string, image: BuiltImage): Promise<string> => {
    await pushImage(pusher, `${registry.host}/${repo}`, image);
    return `${proxy.host}/${repo}`;
  };
  const pull = (image: string, auth?: { username: string; password: string }) =>
    crib.client.image.PullImage({ image: { image }, ...(auth ? { auth } : {}) });
  const statusOf = async (image: string) => (await crib.client.image.ImageStatus({ image: { image }, verbose: true }));

  before(async () => {
    containerd = await TestContainerd.start();
    client = containerd.client(NAMESPACE);
    images = await startRegistryWithImages();
    registry = images.registry;
    proxy = await FaultyProxy.start(registry.host);
    pusher = new RegistryClient({ retryDelayMs: 5 });
    // certs.d sends certsd.invalid to the registry; the config file makes it a mirror of mirror.invalid
    certsDir = await mkdtemp("/tmp/crib-certs.d-");
    await mkdir(join(certsDir, "certsd.invalid"));
    await writeFile(join(certsDir, "certsd.invalid", "hosts.toml"), `server = "http://${registry.host}"\n`);
    crib = await TestCrib.start({
      containerdAddress: containerd.address,
      namespace: NAMESPACE,
      config: {
        sandbox: { image: images.pauseRef },
        registry: {
          config_path: certsDir, max_concurrent_downloads: 3, progress_timeout: "5s",
          hosts: { "mirror.invalid": { mirrors: [`http://${registry.host}`] } },
        },
      },
    });
  });
  after(async () => {
    await crib?.close();
    pusher?.close();
    await proxy?.close();
    await images?.close();
    client?.close();
    await containerd?.close();
    if (certsDir) await rm(certsDir, { recursive: true, force: true });
  });

  test("pulls a multi-layer image into records, content and chain-ID snapshots that ctr shows", async () => {
    const image = await multiLayerImage();
    const ref = await push("multi:1", image);
    const { image_ref } = await pull(ref);
    assert.equal(image_ref, image.manifest.config.descriptor.digest, "PullImage answers the image ID (config digest)");

    const listed = await ctr(containerd.address, "images", "ls", "-q");
    assert.ok(listed.includes(`${ref}\n`), `ctr images ls shows ${ref}:\n${listed}`);
    assert.ok(listed.includes(`${proxy.host}/multi@${image.target.digest}`), `ctr images ls shows the repo digest:\n${listed}`);
    const snapshots = await ctr(containerd.address, "snapshots", "--snapshotter", SNAPSHOTTER, "ls");
    for (const chain of chainIds(diffIds(image))) assert.match(snapshots, new RegExp(`^${chain}\\s.*Committed`, "m"), `snapshot ${chain} committed:\n${snapshots}`);
    assert.doesNotMatch(snapshots, /extract-/, "no extraction snapshot is left");

    // the labels containerd's own unpacker sets, so its GC keeps what the record reaches
    const config = await client.content.Info({ digest: image.manifest.config.descriptor.digest });
    assert.equal(config.info?.labels[`containerd.io/gc.ref.snapshot.${SNAPSHOTTER}`], chainId(diffIds(image)));
    const manifest = await client.content.Info({ digest: image.manifest.descriptor.digest });
    assert.equal(manifest.info?.labels["containerd.io/gc.ref.content.config"], image.manifest.config.descriptor.digest);
    assert.equal(manifest.info?.labels["containerd.io/gc.ref.content.l.2"], image.manifest.layers[2]!.descriptor.digest);
    const layer = await client.content.Info({ digest: image.manifest.layers[1]!.descriptor.digest });
    assert.equal(layer.info?.labels["containerd.io/uncompressed"], diffIds(image)[1]);
    const { leases } = await client.leases.List({ filters: [] });
    assert.deepEqual(leases.filter((l) => l.id.startsWith("crib-pull-")), [], "the pull's lease is gone");

    // the top snapshot is the image's filesystem, whiteouts applied
    const top = chainId(diffIds(image));
    const { mounts } = await client.snapshots.View({ snapshotter: SNAPSHOTTER, key: "test-view-multi", parent: top, labels: { "containerd.io/gc.root": new Date().toISOString() } }); // kept from a GC another test's RemoveImage runs
    try {
      await withTempMount(mounts, async (root) => {
        assert.equal(await readFile(join(root, "data/hello.txt"), "utf8"), "hello\n");
        assert.equal(await readFile(join(root, "data/second.txt"), "utf8"), "second\n");
        await assert.rejects(stat(join(root, "data/remove-me.txt")), "the whiteout of layer 3 removed the file");
        assert.ok((await stat(join(root, "bin/busybox"))).isFile());
      });
    } finally {
      await client.snapshots.Remove({ snapshotter: SNAPSHOTTER, key: "test-view-multi" });
    }
  });

  test("picks linux/amd64 from a multi-platform index and records the index digest", async () => {
    const index = await buildIndex({ layers: [busyboxLayer(), filesLayer({ "index.txt": "index\n" })] });
    const ref = await push("multiarch:1", index);
    const amd64 = index.manifests.find((m) => m.platform.architecture === "amd64")!;
    const { image_ref } = await pull(ref);
    assert.equal(image_ref, amd64.config.descriptor.digest);
    const { image, info } = await statusOf(ref);
    assert.deepEqual(image?.repo_digests, [`${proxy.host}/multiarch@${index.target.digest}`]);
    const spec = JSON.parse(info["info"] ?? "{}") as { imageSpec: { architecture: string; config: { Labels: Record<string, string> } } };
    assert.equal(spec.imageSpec.architecture, "amd64");
    assert.equal(spec.imageSpec.config.Labels[PLATFORM_LABEL], "linux/amd64");
    const records = await client.images.Get({ name: ref });
    assert.equal(records.image?.target?.digest, index.target.digest, "the record points at the index");
  });

  test("pulls Docker schema 2, zstd and uncompressed layers", async () => {
    for (const [repo, image] of [
      ["docker:1", await buildImage({ format: "docker", layers: [busyboxLayer(), filesLayer({ "docker.txt": "docker\n" })] })],
      ["zstd:1", await buildImage({ compression: "zstd", layers: [busyboxLayer(), filesLayer({ "zstd.txt": "zstd\n" })] })],
      ["plain:1", await buildImage({ compression: "none", layers: [busyboxLayer(), filesLayer({ "plain.txt": "plain\n" })] })],
    ] as const) {
      const ref = await push(repo, image);
      const { image_ref } = await pull(ref);
      assert.equal(image_ref, image.manifest.config.descriptor.digest, repo);
      const names = await snapshotNames(client);
      assert.ok(names.includes(chainId(diffIds(image))), `${repo}: top snapshot unpacked`);
    }
  });

  test("reports the image's user by name and by uid", async () => {
    const byName = await push("user-name:1", await userImage("app"));
    const byUid = await push("user-uid:1", await userImage(`${APP_UID}:2000`));
    await pull(byName);
    await pull(byUid);
    const named = (await statusOf(byName)).image;
    assert.equal(named?.username, "app");
    assert.equal(named?.uid, null);
    const numbered = (await statusOf(byUid)).image;
    assert.equal(numbered?.username, "");
    assert.equal(numbered?.uid?.value, String(APP_UID));
  });

  test("pulls by tag and by digest; ImageStatus finds an image by tag, ID and digest, and nothing for an absent one", async () => {
    const image = await buildImage({ layers: [busyboxLayer(), filesLayer({ "digest.txt": "by digest\n" })] });
    await push("bydigest:1", image);
    const byDigest = `${proxy.host}/bydigest@${image.target.digest}`;
    const { image_ref } = await pull(byDigest);
    assert.equal(image_ref, image.manifest.config.descriptor.digest);
    assert.deepEqual(await recordNames(client).then((n) => n.filter((x) => x.includes("/bydigest"))), [byDigest], "a pull by digest makes only the digest record");
    const got = (await statusOf(byDigest)).image;
    assert.deepEqual(got?.repo_tags, []);
    assert.deepEqual(got?.repo_digests, [byDigest]);
    assert.equal(got?.size, String(image.manifest.config.descriptor.size + image.manifest.layers.reduce((n, l) => n + l.descriptor.size, 0)));

    await pull(`${proxy.host}/bydigest:1`);
    const byTag = (await statusOf(`${proxy.host}/bydigest:1`)).image;
    assert.deepEqual(byTag?.repo_tags, [`${proxy.host}/bydigest:1`]);
    assert.equal((await statusOf(image_ref)).image?.id, image_ref, "by ID");
    assert.equal((await statusOf(image_ref.slice("sha256:".length, "sha256:".length + 12))).image?.id, image_ref, "by a short ID");
    const absent = await statusOf(`${proxy.host}/nothing:here`);
    assert.equal(absent.image, null);
  });

  test("lists images, all of them or the one a filter names", async () => {
    const { images: all } = await crib.client.image.ListImages({});
    assert.ok(all.length >= 3, `several images: ${all.map((i) => i.repo_tags.join(",")).join("; ")}`);
    assert.ok(all.some((i) => i.repo_tags.includes(`${proxy.host}/multi:1`)));
    const { images: one } = await crib.client.image.ListImages({ filter: { image: { image: `${proxy.host}/multi:1` } } });
    assert.equal(one.length, 1);
    assert.deepEqual(one[0]?.repo_tags, [`${proxy.host}/multi:1`]);
    const { images: none } = await crib.client.image.ListImages({ filter: { image: { image: `${proxy.host}/absent:1` } } });
    assert.deepEqual(none, []);
  });

  test("removes an image by tag (keeping its other tags), by ID, and succeeds for an absent one; GC frees its snapshots", async () => {
    const image = await buildImage({ layers: [randomLayer(64 << 10, "remove-me")] });
    await push("removable:1", image);
    await push("removable:2", image);
    await pull(`${proxy.host}/removable:1`);
    await pull(`${proxy.host}/removable:2`);
    const top = chainId(diffIds(image));
    assert.ok((await snapshotNames(client)).includes(top));

    await crib.client.image.RemoveImage({ image: { image: `${proxy.host}/removable:1` } });
    const left = (await statusOf(`${proxy.host}/removable:2`)).image;
    assert.deepEqual(left?.repo_tags, [`${proxy.host}/removable:2`], "the other tag stays");
    assert.equal(left?.repo_digests.length, 1, "so does the digest record");
    assert.equal((await statusOf(`${proxy.host}/removable:1`)).image, null);

    await crib.client.image.RemoveImage({ image: { image: left!.id } });
    assert.equal((await statusOf(left!.id)).image, null, "gone by ID");
    assert.deepEqual((await recordNames(client)).filter((n) => n.includes("/removable")), []);
    assert.ok(!(await snapshotNames(client)).includes(top), "containerd's GC removed the snapshot");

    await crib.client.image.RemoveImage({ image: { image: `${proxy.host}/never-pulled:1` } });
  });

  test("answers ImageFsInfo with the snapshotter's directory and nonzero usage", async () => {
    const info = await crib.client.image.ImageFsInfo({});
    const fs = info.image_filesystems[0];
    assert.ok(fs, "one image filesystem");
    assert.match(fs.fs_id?.mountpoint ?? "", /\/io\.containerd\.snapshotter\.v1\.overlayfs$/);
    assert.ok(Number(fs.used_bytes?.value) > 0, `used bytes ${fs.used_bytes?.value}`);
    assert.ok(Number(fs.inodes_used?.value) > 0, `inodes ${fs.inodes_used?.value}`);
    assert.ok(Number(fs.timestamp) > 0);
    assert.equal(info.container_filesystems[0]?.fs_id?.mountpoint, fs.fs_id?.mountpoint);
  });

  test("rejects an invalid reference naming it, and a missing tag as NOT_FOUND leaving nothing behind", async () => {
    const invalid = await rejection(pull("Not A Reference!"));
    assert.equal(invalid.code, status.INVALID_ARGUMENT);
    assert.match(invalid.details, /Not A Reference!/);

    const before = await snapshotNames(client);
    const missing = await rejection(pull(`${proxy.host}/multi:no-such-tag`));
    assert.equal(missing.code, status.NOT_FOUND, missing.details);
    assert.match(missing.details, /multi:no-such-tag/);
    assert.deepEqual(await snapshotNames(client), before);
  });

  test("a corrupted blob fails the pull with the blob named, and leaves no record and no snapshot", async () => {
    // a base layer of its own, so that its snapshot (committed before the bad layer fails) must be undone too
    const image = await buildImage({ layers: [randomLayer(16 << 10, "corrupt-base"), randomLayer(1 << 20, "corrupt")] });
    const ref = await push("corrupt:1", image);
    const bad = image.manifest.layers[1]!.descriptor.digest;
    const before = await snapshotNames(client);
    proxy.inject({ method: "GET", path: new RegExp(`/blobs/${bad}`) }, { kind: "corrupt" });
    try {
      const err = await rejection(pull(ref));
      assert.match(err.details, new RegExp(bad.slice(0, 20)), err.details);
      assert.match(err.details, /digest/);
    } finally {
      proxy.clear();
    }
    assert.equal((await statusOf(ref)).image, null);
    assert.deepEqual((await recordNames(client)).filter((n) => n.includes("/corrupt")), []);
    assert.deepEqual(await snapshotNames(client), before, "no snapshot left over (the base layer's included)");
    const { image_ref } = await pull(ref);
    assert.equal(image_ref, image.manifest.config.descriptor.digest, "a later pull succeeds");
  });

  test("a dropped connection fails the pull cleanly; the next pull resumes the partial download", async () => {
    const image = await buildImage({ layers: [randomLayer(4 << 20, "dropped")] });
    const ref = await push("dropped:1", image);
    const layer = image.manifest.layers[0]!.descriptor;
    const before = await snapshotNames(client);
    proxy.inject({ method: "GET", path: new RegExp(`/blobs/${layer.digest}`) }, { kind: "drop", afterBytes: 256 << 10 });
    try {
      const err = await rejection(pull(ref));
      assert.equal(err.code, status.UNAVAILABLE, err.details);
      assert.match(err.details, /broke|closed/, err.details);
    } finally {
      proxy.clear();
    }
    assert.equal((await statusOf(ref)).image, null);
    assert.deepEqual(await snapshotNames(client), before);

    const { image_ref } = await pull(ref);
    assert.equal(image_ref, image.manifest.config.descriptor.digest);
    const gets = proxy.requests.filter((r) => r.method === "GET" && r.path.includes(`/blobs/${layer.digest}`));
    assert.equal(gets.length, 1, "one more GET");
    assert.match(String(gets[0]?.headers.range), /^bytes=\d+-$/, "it resumed with a Range request");
    assert.notEqual(gets[0]?.headers.range, "bytes=0-");
  });

  test("concurrent pulls of one image share one download", async () => {
    const image = await buildImage({ layers: [busyboxLayer(), randomLayer(2 << 20, "shared-a"), randomLayer(2 << 20, "shared-b")] });
    const ref = await push("shared:1", image);
    proxy.clear();
    const results = await Promise.all([pull(ref), pull(ref), pull(ref)]);
    for (const r of results) assert.equal(r.image_ref, image.manifest.config.descriptor.digest);
    const manifestGets = proxy.requests.filter((r) => r.method === "GET" && r.path.includes("/manifests/"));
    assert.equal(manifestGets.length, 1, "resolved once");
    for (const layer of image.manifest.layers.slice(1)) {
      const gets = proxy.requests.filter((r) => r.method === "GET" && r.path.includes(`/blobs/${layer.descriptor.digest}`));
      assert.equal(gets.length, 1, `layer ${layer.descriptor.digest} fetched once`);
    }
  });

  test("a caller giving up does not stop a pull others wait for", async () => {
    const image = await buildImage({ layers: [randomLayer(1 << 20, "patient")] });
    const ref = await push("patient:1", image);
    const layer = image.manifest.layers[0]!.descriptor.digest;
    // the layer stalls once; the progress timeout (5 s) cuts it and the pull resumes
    proxy.inject({ method: "GET", path: new RegExp(`/blobs/${layer}`) }, { kind: "stall", afterBytes: 64 << 10 }, 1);
    try {
      const impatient = rejection(crib.client.image.PullImage({ image: { image: ref } }, { timeoutMs: 500 }));
      const patient = pull(ref);
      assert.equal((await impatient).code, status.DEADLINE_EXCEEDED);
      assert.equal((await patient).image_ref, image.manifest.config.descriptor.digest);
      const gets = proxy.requests.filter((r) => r.method === "GET" && r.path.includes(`/blobs/${layer}`));
      assert.equal(gets.length, 2, "the stalled GET, then one resuming it");
      assert.match(String(gets[1]?.headers.range), /^bytes=[1-9]\d*-$/);
    } finally {
      proxy.clear();
    }
  });

  test("when every caller gives up the pull stops, and the next one starts at once where it stopped", async () => {
    const image = await buildImage({ layers: [randomLayer(1 << 20, "abandoned")] });
    const ref = await push("abandoned:1", image);
    const layer = image.manifest.layers[0]!.descriptor.digest;
    proxy.inject({ method: "GET", path: new RegExp(`/blobs/${layer}`) }, { kind: "stall", afterBytes: 64 << 10 }, 1);
    try {
      const gaveUp = await rejection(crib.client.image.PullImage({ image: { image: ref } }, { timeoutMs: 500 }));
      assert.equal(gaveUp.code, status.DEADLINE_EXCEEDED);
      // had the download gone on, its ingest would stay locked until the 5 s progress timeout
      const started = Date.now();
      assert.equal((await pull(ref)).image_ref, image.manifest.config.descriptor.digest);
      assert.ok(Date.now() - started < 3000, `the next pull took ${Date.now() - started} ms`);
      const gets = proxy.requests.filter((r) => r.method === "GET" && r.path.includes(`/blobs/${layer}`));
      assert.equal(gets.length, 2);
      assert.equal(gets[1]?.headers.range, `bytes=${64 << 10}-`, "the bytes that arrived before were kept");
    } finally {
      proxy.clear();
    }
  });

  test("pulls with the request's basic-auth credentials, and fails naming the problem without them", async () => {
    await using secured = await startRegistry({ htpasswd: { alice: "s3cret" } });
    const image = await buildImage({ layers: [busyboxLayer(), filesLayer({ "auth.txt": "secret\n" })] });
    await pushImage(pusher, `${secured.host}/private:1`, image, { auth: { username: "alice", password: "s3cret" } });
    const ref = `${secured.host}/private:1`;

    const anonymous = await rejection(pull(ref));
    assert.equal(anonymous.code, status.FAILED_PRECONDITION, anonymous.details);
    assert.match(anonymous.details, /credentials|password/);
    const wrong = await rejection(pull(ref, { username: "alice", password: "nope" }));
    assert.match(wrong.details, /alice/);

    const { image_ref } = await pull(ref, { username: "alice", password: "s3cret" });
    assert.equal(image_ref, image.manifest.config.descriptor.digest);
  });

  test("pulls the sandbox image for RunPodSandbox, pinned, and refuses to remove it while a sandbox uses it", async () => {
    await crib.client.image.RemoveImage({ image: { image: images.pauseRef } });
    assert.equal((await statusOf(images.pauseRef)).image, null);
    const config = {
      metadata: { name: "pinned", namespace: "crib-images", uid: "uid-pinned", attempt: 0 },
      hostname: "pinned",
      log_directory: join(crib.dir, "pods", "pinned"),
      linux: { security_context: { namespace_options: { network: "NODE" as const } } },
    };
    const { pod_sandbox_id } = await crib.client.runtime.RunPodSandbox({ config });
    try {
      const pause = (await statusOf(images.pauseRef)).image;
      assert.equal(pause?.pinned, true, "pulled on demand and pinned");
      const refused = await rejection(crib.client.image.RemoveImage({ image: { image: pause!.id } }));
      assert.equal(refused.code, status.FAILED_PRECONDITION, refused.details);
      assert.match(refused.details, new RegExp(pod_sandbox_id));
    } finally {
      await crib.client.runtime.StopPodSandbox({ pod_sandbox_id });
      await crib.client.runtime.RemovePodSandbox({ pod_sandbox_id });
    }
    await crib.client.image.RemoveImage({ image: { image: images.pauseRef } });
    assert.equal((await statusOf(images.pauseRef)).image, null, "removable once the sandbox is gone");
  });

  test("pulls through a mirror from the config file and a certs.d hosts.toml", async () => {
    const image = await buildImage({ layers: [busyboxLayer(), filesLayer({ "mirror.txt": "mirrored\n" })] });
    await pushImage(pusher, `${registry.host}/mirrored:1`, image);
    for (const ref of ["mirror.invalid/mirrored:1", "certsd.invalid/mirrored:1"]) {
      const { image_ref } = await pull(ref);
      assert.equal(image_ref, image.manifest.config.descriptor.digest, ref);
      assert.ok((await statusOf(ref)).image?.repo_tags.includes(ref), `${ref} is a tag of the image`);
    }
  });

  test("labels the sandbox image pinned", async () => {
    await pull(images.pauseRef);
    const pause = (await statusOf(images.pauseRef)).image;
    assert.equal(pause?.pinned, true);
    assert.equal(pause?.id, images.pause.manifest.config.descriptor.digest);
    const record = await client.images.Get({ name: images.pauseRef });
    assert.equal(record.image?.labels[PINNED_LABEL], "pinned");
    assert.equal((await statusOf(`${proxy.host}/multi:1`)).image?.pinned, false);
  });
});
