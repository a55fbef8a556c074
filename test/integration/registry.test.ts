// The registry client against a real docker-registry on 127.0.0.1.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, describe, test } from "node:test";
import {
  DigestMismatchError,
  NoMatchingPlatformError,
  NotFoundError,
  ProgressTimeoutError,
  RegistryUnavailableError,
  TransferError,
  UnauthorizedError,
  UnsupportedManifestError,
} from "../../runtime/image/errors.js";
import { MediaType } from "../../runtime/image/oci.js";
import { formatPlatform, hostPlatform } from "../../runtime/image/platform.js";
import { RegistryClient, type RegistryClientOptions } from "../../runtime/image/registry.js";
import {
  buildImage,
  buildIndex,
  filesLayer,
  multiLayerImage,
  PLATFORM_LABEL,
  pseudoRandom,
  type Blob,
  type BuiltImage,
} from "../fixtures/image-builder.js";
import { pushImage } from "../fixtures/push.js";
import { FaultyProxy, startRegistry, type TestRegistry } from "../fixtures/registry.js";
import { unusedPort } from "../fixtures/ports.js";

const client = (options: RegistryClientOptions = {}): RegistryClient => new RegistryClient({ retryDelayMs: 5, ...options });

async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Fetches a blob whole through the client, as a puller would. */
async function fetchAll(c: RegistryClient, ref: string, blob: Blob): Promise<Buffer> {
  return readAll(await c.fetchBlob(ref, blob.descriptor));
}

const labelOf = (config: Buffer): string | undefined =>
  (JSON.parse(config.toString()) as { config?: { Labels?: Record<string, string> } }).config?.Labels?.[PLATFORM_LABEL];

// A layer big enough to be cut mid-body: 4 MiB of incompressible bytes.
const bigLayer = (): ReturnType<typeof filesLayer> => filesLayer({ "data/big.bin": pseudoRandom(4 << 20, "big") });

describe("a plain registry", () => {
  let registry: TestRegistry;
  let pusher: RegistryClient;
  let single: BuiltImage;
  let index: BuiltImage;
  let docker: BuiltImage;

  before(async () => {
    registry = await startRegistry();
    pusher = client();
    single = await multiLayerImage();
    index = await buildIndex();
    docker = await buildIndex({ format: "docker" });
    await pushImage(pusher, `${registry.host}/single:1`, single);
    await pushImage(pusher, `${registry.host}/multi:1`, index);
    await pushImage(pusher, `${registry.host}/docker:1`, docker);
  });
  after(async () => {
    pusher.close();
    await registry.close();
  });

  test("resolves an OCI image and fetches its config and layers byte for byte", async () => {
    await using c = client();
    const resolved = await c.resolve(`${registry.host}/single:1`);
    assert.deepEqual(resolved.target, single.target);
    assert.equal(resolved.indexes.length, 0);
    assert.deepEqual(resolved.manifest.bytes, single.manifest.data);
    assert.equal(resolved.host, registry.host);
    const config = await c.readBlob(resolved.reference, resolved.manifest.manifest.config);
    assert.deepEqual(config, single.manifest.config.data);
    assert.equal(resolved.manifest.manifest.layers.length, 3);
    for (const [i, layer] of single.manifest.layers.entries()) {
      assert.deepEqual(await fetchAll(c, `${registry.host}/single:1`, layer), layer.data, `layer ${i}`);
    }
  });

  test("resolves by digest, and by tag and digest together", async () => {
    await using c = client();
    const byDigest = await c.resolve(`${registry.host}/single@${single.target.digest}`);
    assert.equal(byDigest.target.digest, single.target.digest);
    const both = await c.resolve(`${registry.host}/single:1@${single.target.digest}`);
    assert.equal(both.target.digest, single.target.digest);
  });

  test("a multi-platform index resolves to this host's platform", async () => {
    await using c = client();
    const resolved = await c.resolve(`${registry.host}/multi:1`);
    assert.equal(resolved.target.mediaType, MediaType.OciIndex);
    assert.equal(resolved.target.digest, index.target.digest);
    assert.equal(resolved.indexes.length, 1);
    assert.deepEqual(resolved.indexes[0]?.bytes, index.index?.data);
    const config = await c.readBlob(resolved.reference, resolved.manifest.manifest.config);
    assert.equal(labelOf(config), formatPlatform(hostPlatform()), "the config of another platform was picked");
  });

  test("an explicit platform picks that entry, variant included", async () => {
    await using c = client();
    for (const platform of ["linux/arm/v7", "linux/arm64", "linux/amd64"]) {
      const [os = "", architecture = "", variant] = platform.split("/");
      const want = variant === undefined ? { os, architecture } : { os, architecture, variant };
      const resolved = await c.resolve(`${registry.host}/multi:1`, { platform: want });
      assert.equal(labelOf(await c.readBlob(resolved.reference, resolved.manifest.manifest.config)), platform);
    }
  });

  test("an index without this platform is refused with NoMatchingPlatformError naming what it has", async () => {
    await using c = client();
    await assert.rejects(c.resolve(`${registry.host}/multi:1`, { platform: { os: "linux", architecture: "s390x" } }), (err: unknown) => {
      assert.ok(err instanceof NoMatchingPlatformError, String(err));
      assert.match(err.message, /linux\/s390x/);
      assert.match(err.message, /linux\/arm\/v7/);
      assert.equal(err.kind, "not-found");
      return true;
    });
  });

  test("Docker schema 2 manifest lists and manifests resolve", async () => {
    await using c = client();
    const resolved = await c.resolve(`${registry.host}/docker:1`);
    assert.equal(resolved.target.mediaType, MediaType.DockerManifestList);
    assert.equal(resolved.manifest.descriptor.mediaType, MediaType.DockerManifest);
    assert.equal(resolved.manifest.manifest.config.mediaType, MediaType.DockerConfig);
    assert.equal(resolved.manifest.manifest.layers[0]?.mediaType, MediaType.DockerLayerGzip);
    const config = await c.readBlob(resolved.reference, resolved.manifest.manifest.config);
    assert.equal(labelOf(config), formatPlatform(hostPlatform()));
  });

  test("zstd and uncompressed layers are served as built", async () => {
    await using c = client();
    for (const compression of ["zstd", "none"] as const) {
      const image = await buildImage({ compression });
      await pushImage(c, `${registry.host}/${compression}:1`, image);
      const resolved = await c.resolve(`${registry.host}/${compression}:1`);
      const layer = resolved.manifest.manifest.layers[0];
      assert.equal(layer?.mediaType, compression === "zstd" ? MediaType.OciLayerZstd : MediaType.OciLayer);
      assert.deepEqual(await fetchAll(c, `${registry.host}/${compression}:1`, image.manifest.layers[0]!), image.manifest.layers[0]!.data);
    }
  });

  test("chunked uploads push the same image", async () => {
    await using c = client();
    const image = await buildImage({ layers: [bigLayer()] });
    await pushImage(c, `${registry.host}/chunked:1`, image, { chunkSize: 1 << 20 });
    const resolved = await c.resolve(`${registry.host}/chunked:1`);
    assert.deepEqual(await fetchAll(c, `${registry.host}/chunked:1`, image.manifest.layers[0]!), image.manifest.layers[0]!.data);
    assert.equal(resolved.target.digest, image.target.digest);
  });

  test("a missing tag is a NotFoundError that names the image", async () => {
    await using c = client();
    await assert.rejects(c.resolve(`${registry.host}/single:nope`), (err: unknown) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.match(err.message, new RegExp(`image "${registry.host}/single:nope"`));
      assert.match(err.message, /MANIFEST_UNKNOWN/);
      assert.equal(err.kind, "not-found");
      return true;
    });
    await assert.rejects(c.resolve(`${registry.host}/no-such-repo:1`), NotFoundError);
  });

  test("a missing blob is a NotFoundError", async () => {
    await using c = client();
    const digest = `sha256:${"0".repeat(64)}`;
    await assert.rejects(c.fetchBlob(`${registry.host}/single:1`, { mediaType: MediaType.OciLayerGzip, digest, size: 10 }), (err: unknown) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.match(err.message, new RegExp(`blob ${digest}`));
      return true;
    });
  });

  test("a download resumes at an offset, checking the digest when given the hash so far", async () => {
    await using c = client();
    const layer = single.manifest.layers[0]!;
    const offset = 1000;
    const hash = createHash("sha256").update(layer.data.subarray(0, offset));
    const stream = await c.fetchBlob(`${registry.host}/single:1`, layer.descriptor, { offset, hash });
    assert.equal(stream.verifiesDigest, true);
    assert.deepEqual(await readAll(stream), layer.data.subarray(offset));

    const sizeOnly = await c.fetchBlob(`${registry.host}/single:1`, layer.descriptor, { offset });
    assert.equal(sizeOnly.verifiesDigest, false);
    assert.deepEqual(await readAll(sizeOnly), layer.data.subarray(offset));

    const wholeAlready = await c.fetchBlob(`${registry.host}/single:1`, layer.descriptor, {
      offset: layer.data.length,
      hash: createHash("sha256").update(layer.data),
    });
    assert.equal((await readAll(wholeAlready)).length, 0);
  });

  test("a resumed download with a wrong hash so far fails at its end", async () => {
    await using c = client();
    const layer = single.manifest.layers[0]!;
    const hash = createHash("sha256").update(Buffer.alloc(500));
    const stream = await c.fetchBlob(`${registry.host}/single:1`, layer.descriptor, { offset: 500, hash });
    await assert.rejects(readAll(stream), DigestMismatchError);
  });

  test("a descriptor whose size is wrong is refused before any byte is used", async () => {
    await using c = client();
    const layer = single.manifest.layers[0]!;
    await assert.rejects(c.fetchBlob(`${registry.host}/single:1`, { ...layer.descriptor, size: layer.descriptor.size + 1 }), DigestMismatchError);
  });

  test("an aborted fetch ends with the abort", async () => {
    await using c = client();
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(c.resolve(`${registry.host}/single:1`, { signal: controller.signal }), { name: "AbortError" });
  });
});

describe("a registry behind a faulty proxy", () => {
  let registry: TestRegistry;
  let proxy: FaultyProxy;
  let image: BuiltImage;
  let layer: Blob;
  let ref: string;

  before(async () => {
    registry = await startRegistry();
    proxy = await FaultyProxy.start(registry.host);
    image = await buildImage({ layers: [bigLayer()] });
    layer = image.manifest.layers[0]!;
    await using c = client();
    await pushImage(c, `${registry.host}/app:1`, image);
    ref = `${proxy.host}/app:1`;
  });
  after(async () => {
    await proxy.close();
    await registry.close();
  });

  test("5xx answers are retried with backoff until the registry answers", async () => {
    proxy.clear();
    proxy.inject({ method: "GET", path: /\/manifests\// }, { kind: "status", status: 503 }, 2);
    await using c = client();
    const resolved = await c.resolve(ref);
    assert.equal(resolved.target.digest, image.target.digest);
    assert.equal(proxy.requests.filter((r) => r.path.includes("/manifests/")).length, 3);
  });

  test("a registry that keeps failing gives up after the retries, naming the status", async () => {
    proxy.clear();
    proxy.inject({ path: /\/manifests\// }, { kind: "status", status: 500 });
    await using c = client({ retries: 2 });
    await assert.rejects(c.resolve(ref), (err: unknown) => {
      assert.ok(err instanceof RegistryUnavailableError, String(err));
      assert.match(err.message, /answered 500/);
      assert.match(err.message, new RegExp(proxy.host));
      return true;
    });
    assert.equal(proxy.requests.filter((r) => r.path.includes("/manifests/")).length, 3, "1 attempt + 2 retries");
  });

  test("a corrupted blob fails its stream with DigestMismatchError, so nothing is committed", async () => {
    proxy.clear();
    proxy.inject({ path: /\/blobs\// }, { kind: "corrupt" }, 1);
    await using c = client();
    const stream = await c.fetchBlob(ref, layer.descriptor);
    let finished = false;
    const sink = new Writable({
      write: (_chunk, _enc, cb) => cb(),
      final: (cb) => {
        finished = true;
        cb();
      },
    });
    await assert.rejects(pipeline(stream, sink), (err: unknown) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.match(err.message, new RegExp(`blob ${layer.descriptor.digest}`));
      assert.match(err.message, /sent content with digest sha256:/);
      return true;
    });
    assert.equal(finished, false, "the sink was finished: a caller would have committed corrupt data");
  });

  test("a connection dropped mid-blob is a TransferError saying how far it got", async () => {
    proxy.clear();
    proxy.inject({ path: /\/blobs\// }, { kind: "drop", afterBytes: 100_000 }, 1);
    await using c = client();
    const stream = await c.fetchBlob(ref, layer.descriptor);
    await assert.rejects(readAll(stream), (err: unknown) => {
      assert.ok(err instanceof TransferError, String(err));
      assert.match(err.message, new RegExp(`connection to ${proxy.host} broke after \\d+ of ${layer.descriptor.size} bytes`));
      return true;
    });
  });

  test("after a drop, the download resumes at the bytes it has", async () => {
    proxy.clear();
    proxy.inject({ path: /\/blobs\// }, { kind: "drop", afterBytes: 300_000 }, 1);
    await using c = client();
    const first = await c.fetchBlob(ref, layer.descriptor);
    const got: Buffer[] = [];
    const hash = createHash("sha256");
    await assert.rejects(
      (async () => {
        for await (const chunk of first) {
          got.push(chunk as Buffer);
          hash.update(chunk as Buffer);
        }
      })(),
      TransferError,
    );
    const offset = Buffer.concat(got).length;
    assert.ok(offset > 0 && offset <= 300_000, `resuming at ${offset}`);
    const rest = await c.fetchBlob(ref, layer.descriptor, { offset, hash });
    got.push(await readAll(rest));
    assert.deepEqual(Buffer.concat(got), layer.data);
    const resumed = proxy.requests.filter((r) => r.path.includes("/blobs/")).at(-1);
    assert.equal(resumed?.headers.range, `bytes=${offset}-`);
  });

  test("a registry that ignores Range still yields the bytes from the offset, fully verified", async () => {
    proxy.clear();
    proxy.inject({ path: /\/blobs\// }, { kind: "ignore-range" }, 1);
    await using c = client();
    const stream = await c.fetchBlob(ref, layer.descriptor, { offset: 12345 });
    assert.equal(stream.verifiesDigest, true);
    assert.deepEqual(await readAll(stream), layer.data.subarray(12345));
  });

  test("a stalled transfer is cut after the progress timeout, a slow reader is not", async () => {
    proxy.clear();
    proxy.inject({ path: /\/blobs\// }, { kind: "stall", afterBytes: 200_000 }, 1);
    await using c = client({ progressTimeoutMs: 300 });
    const started = Date.now();
    const stalled = await c.fetchBlob(ref, layer.descriptor);
    await assert.rejects(readAll(stalled), (err: unknown) => {
      assert.ok(err instanceof ProgressTimeoutError, String(err));
      assert.match(err.message, /no data from .* for 300 ms after 200000 of/);
      return true;
    });
    assert.ok(Date.now() - started < 5000);

    // A reader that pauses longer than the timeout is waiting on itself, not on the registry.
    const slow = await c.fetchBlob(ref, layer.descriptor);
    const chunks: Buffer[] = [];
    for await (const chunk of slow) {
      if (chunks.length === 1) await new Promise((r) => setTimeout(r, 700));
      chunks.push(chunk as Buffer);
    }
    assert.deepEqual(Buffer.concat(chunks), layer.data);
  });

  test("aborting the signal mid-blob ends the stream with the abort", async () => {
    proxy.clear();
    proxy.inject({ path: /\/blobs\// }, { kind: "stall", afterBytes: 100_000 }, 1);
    await using c = client();
    const controller = new AbortController();
    const stream = await c.fetchBlob(ref, layer.descriptor, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(readAll(stream), { name: "AbortError" });
  });

  test("a Docker schema 1 manifest is refused with a clear error", async () => {
    proxy.clear();
    proxy.inject({ path: /\/manifests\// }, {
      kind: "status",
      status: 200,
      headers: { "Content-Type": MediaType.DockerSchema1Signed },
      body: JSON.stringify({ schemaVersion: 1, name: "app", tag: "1", fsLayers: [] }),
    });
    await using c = client();
    await assert.rejects(c.resolve(ref), (err: unknown) => {
      assert.ok(err instanceof UnsupportedManifestError, String(err));
      assert.match(err.message, /schema 1/);
      return true;
    });
  });
});

describe("a registry with basic auth", () => {
  let registry: TestRegistry;
  let image: BuiltImage;

  before(async () => {
    registry = await startRegistry({ htpasswd: { alice: "s3cret" } });
    image = await buildImage();
    await using c = client();
    await pushImage(c, `${registry.host}/private:1`, image, { auth: { username: "alice", password: "s3cret" } });
  });
  after(async () => {
    await registry.close();
  });

  test("without credentials, the pull is UnauthorizedError", async () => {
    await using c = client();
    await assert.rejects(c.resolve(`${registry.host}/private:1`), (err: unknown) => {
      assert.ok(err instanceof UnauthorizedError, String(err));
      assert.match(err.message, /requires a username and password/);
      return true;
    });
  });

  test("with a wrong password, the pull is UnauthorizedError naming the user", async () => {
    await using c = client();
    await assert.rejects(c.resolve(`${registry.host}/private:1`, { auth: { username: "alice", password: "nope" } }), (err: unknown) => {
      assert.ok(err instanceof UnauthorizedError, String(err));
      assert.match(err.message, /alice/);
      return true;
    });
  });

  test("username and password, or auth in base64, or configured ones, all pull", async () => {
    await using c = client();
    const withPassword = await c.resolve(`${registry.host}/private:1`, { auth: { username: "alice", password: "s3cret" } });
    assert.equal(withPassword.target.digest, image.target.digest);
    const auth = Buffer.from("alice:s3cret").toString("base64");
    const withAuth = await c.resolve(`${registry.host}/private:1`, { auth: { auth, server_address: registry.host } });
    assert.equal(withAuth.target.digest, image.target.digest);
    await using configured = client({ hosts: { hosts: { [registry.host]: { username: "alice", password: "s3cret" } } } });
    const resolved = await configured.resolve(`${registry.host}/private:1`);
    assert.deepEqual(await fetchAll(configured, `${registry.host}/private:1`, image.manifest.layers[0]!), image.manifest.layers[0]!.data);
    assert.equal(resolved.target.digest, image.target.digest);
  });

  test("credentials meant for another server are not sent", async () => {
    await using c = client();
    await assert.rejects(
      c.resolve(`${registry.host}/private:1`, { auth: { username: "alice", password: "s3cret", server_address: "other.example:5000" } }),
      UnauthorizedError,
    );
  });

  test("a redirect to another origin is followed without the Authorization header", async () => {
    await using proxy = await FaultyProxy.start(registry.host);
    proxy.storageAuthorization = `Basic ${Buffer.from("alice:s3cret").toString("base64")}`;
    proxy.inject({ method: "GET", path: /\/blobs\//, authorized: true }, { kind: "redirect" });
    await using c = client();
    const layer = image.manifest.layers[0]!;
    const stream = await c.fetchBlob(`${proxy.host}/private:1`, layer.descriptor, { auth: { username: "alice", password: "s3cret" } });
    assert.deepEqual(await readAll(stream), layer.data);
    assert.ok(proxy.requests.some((r) => r.fault === "redirect" && r.headers.authorization !== undefined), "the registry got the credentials");
    assert.equal(proxy.storageRequests.length, 1);
    assert.equal(proxy.storageRequests[0]?.headers.authorization, undefined, "the credentials went to the redirect target");
  });
});

describe("a registry with token auth", () => {
  let registry: TestRegistry;
  let image: BuiltImage;
  const users = { bob: "hunter2" };

  before(async () => {
    registry = await startRegistry({ token: { users, refreshTokens: { "refresh-bob": "bob" } } });
    image = await buildImage();
    await using c = client();
    await pushImage(c, `${registry.host}/team/app:1`, image, { auth: { username: "bob", password: "hunter2" } });
  });
  after(async () => {
    await registry.close();
  });

  test("an anonymous pull is refused", async () => {
    await using c = client();
    await assert.rejects(c.resolve(`${registry.host}/team/app:1`), (err: unknown) => {
      assert.ok(err instanceof UnauthorizedError, String(err));
      assert.match(err.message, new RegExp(registry.host));
      return true;
    });
  });

  test("with credentials, a token is fetched once and reused for the blobs", async () => {
    const server = registry.tokenServer!;
    server.requests.length = 0;
    await using c = client();
    const auth = { username: "bob", password: "hunter2" };
    const resolved = await c.resolve(`${registry.host}/team/app:1`, { auth });
    assert.equal(resolved.target.digest, image.target.digest);
    await c.readBlob(resolved.reference, resolved.manifest.manifest.config, { auth });
    assert.deepEqual(await readAll(await c.fetchBlob(resolved.reference, resolved.manifest.manifest.layers[0]!, { auth })), image.manifest.layers[0]!.data);
    assert.deepEqual(server.requests.map((r) => [r.method, r.user, r.scopes]), [["GET", "bob", ["repository:team/app:pull"]]]);
  });

  test("a wrong password is refused by the token server", async () => {
    await using c = client();
    await assert.rejects(c.resolve(`${registry.host}/team/app:1`, { auth: { username: "bob", password: "wrong" } }), (err: unknown) => {
      assert.ok(err instanceof UnauthorizedError, String(err));
      assert.match(err.message, /token server 127\.0\.0\.1:\d+ refused bob/);
      return true;
    });
  });

  test("an identity token is exchanged as an OAuth2 refresh token", async () => {
    const server = registry.tokenServer!;
    server.requests.length = 0;
    await using c = client();
    const resolved = await c.resolve(`${registry.host}/team/app:1`, { auth: { identity_token: "refresh-bob" } });
    assert.equal(resolved.target.digest, image.target.digest);
    assert.deepEqual(server.requests.map((r) => [r.method, r.grantType, r.user]), [["POST", "refresh_token", "bob"]]);
  });

  test("a registry token is sent as the bearer token as it is", async () => {
    const server = registry.tokenServer!;
    const res = await fetch(`${server.url}/token?service=${server.service}&scope=repository:team/app:pull`, {
      headers: { Authorization: `Basic ${Buffer.from("bob:hunter2").toString("base64")}` },
    });
    const { token } = (await res.json()) as { token: string };
    server.requests.length = 0;
    await using c = client();
    const resolved = await c.resolve(`${registry.host}/team/app:1`, { auth: { registry_token: token } });
    assert.equal(resolved.target.digest, image.target.digest);
    assert.equal(server.requests.length, 0);
  });
});

describe("registry hosts configuration", () => {
  let registry: TestRegistry;
  let tlsRegistry: TestRegistry;
  let configPath: string;
  let image: BuiltImage;

  before(async () => {
    registry = await startRegistry();
    tlsRegistry = await startRegistry({ tls: true });
    configPath = await mkdtemp(join(tmpdir(), "crib-certs.d-"));
    image = await buildImage();
    await using c = client();
    await pushImage(c, `${registry.host}/app:1`, image);
  });
  after(async () => {
    await registry.close();
    await tlsRegistry.close();
    await rm(configPath, { recursive: true, force: true });
  });

  async function hostsToml(host: string, text: string): Promise<void> {
    const dir = join(configPath, host.replace(":", "_"));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "hosts.toml"), text);
  }

  test("a mirror that answers is used first, told the registry's name", async () => {
    // A second registry as the mirror, holding the same image.
    await using mirror = await startRegistry();
    await using c = client({ hosts: { configPath } });
    await using pusher = client();
    await pushImage(pusher, `${mirror.host}/app:1`, image);
    await using proxy = await FaultyProxy.start(mirror.host);
    await hostsToml(registry.host, `server = "http://${registry.host}"\n[host."http://${proxy.host}"]\ncapabilities = ["pull", "resolve"]\n`);
    const resolved = await c.resolve(`${registry.host}/app:1`);
    assert.equal(resolved.host, proxy.host);
    assert.ok(proxy.requests.every((r) => r.path.includes(`ns=${encodeURIComponent(registry.host)}`)), JSON.stringify(proxy.requests.map((r) => r.path)));
  });

  test("a mirror that fails falls through to the registry", async () => {
    const closedPort = await unusedPort();
    await using proxy = await FaultyProxy.start(registry.host);
    proxy.inject({}, { kind: "status", status: 500 });
    await hostsToml(
      registry.host,
      [
        `server = "http://${registry.host}"`,
        `[host."http://127.0.0.1:${closedPort}"]`,
        `capabilities = ["pull", "resolve"]`,
        `[host."http://${proxy.host}"]`,
        `capabilities = ["pull", "resolve"]`,
        "",
      ].join("\n"),
    );
    await using c = client({ hosts: { configPath } });
    const resolved = await c.resolve(`${registry.host}/app:1`);
    assert.equal(resolved.host, registry.host);
    assert.deepEqual(await fetchAll(c, `${registry.host}/app:1`, image.manifest.layers[0]!), image.manifest.layers[0]!.data);
    assert.ok(proxy.requests.length > 0, "the failing mirror was not tried");
  });

  test("not found on the registry stays NotFoundError when a mirror was down", async () => {
    const closedPort = await unusedPort();
    await hostsToml(registry.host, `server = "http://${registry.host}"\n[host."http://127.0.0.1:${closedPort}"]\n`);
    await using c = client({ hosts: { configPath } });
    await assert.rejects(c.resolve(`${registry.host}/app:missing`), (err: unknown) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.match(err.message, /cannot reach 127\.0\.0\.1/);
      return true;
    });
  });

  test("a TLS registry is trusted through the ca of its hosts.toml, and refused without it", async () => {
    await hostsToml(tlsRegistry.host, `server = "https://${tlsRegistry.host}"\n`);
    await using untrusting = client({ hosts: { configPath } });
    await assert.rejects(untrusting.pushBlob(`${tlsRegistry.host}/app:1`, image.manifest.config.descriptor, image.manifest.config.data), (err: unknown) => {
      assert.ok(err instanceof RegistryUnavailableError, String(err));
      assert.match(err.message, /certificate/);
      return true;
    });

    await hostsToml(tlsRegistry.host, `server = "https://${tlsRegistry.host}"\nca = "${tlsRegistry.caFile}"\n`);
    await using trusting = client({ hosts: { configPath } });
    await pushImage(trusting, `${tlsRegistry.host}/app:1`, image);
    assert.equal((await trusting.resolve(`${tlsRegistry.host}/app:1`)).target.digest, image.target.digest);

    await hostsToml(tlsRegistry.host, `server = "https://${tlsRegistry.host}"\nskip_verify = true\n`);
    await using skipping = client({ hosts: { configPath } });
    assert.equal((await skipping.resolve(`${tlsRegistry.host}/app:1`)).target.digest, image.target.digest);
  });

  test("an unconfigured localhost registry is reached over HTTPS first, then HTTP", async () => {
    await using c = client();
    await pushImage(c, `${tlsRegistry.host}/local:1`, image);
    assert.equal((await c.resolve(`${tlsRegistry.host}/local:1`)).target.digest, image.target.digest);
    assert.equal((await c.resolve(`${registry.host}/app:1`)).target.digest, image.target.digest);
  });
});
