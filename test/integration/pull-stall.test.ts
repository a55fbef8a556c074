// Pulls that end (issue 13): tiny fake registries on 127.0.0.1 that never
// answer, stall after 10 bytes of a blob, or never answer the manifest. With
// short timeouts in crib's config each pull fails on its own, soon, with
// UNAVAILABLE naming the registry host and what stalled; no lease of the failed
// pull outlives the keep time, and none is left when there is nothing to keep.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect, createServer as createTcpServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { TestContainerd } from "../fixtures/containerd.js";
import { TestCrib } from "../fixtures/crib.js";
import { buildImage, randomLayer, type BuiltImage } from "../fixtures/image-builder.js";

const UNAVAILABLE = 14;
const NAMESPACE = "crib-stall";

/** A registry serving one image, with `stall` deciding which requests hang (after how many bytes of the body). */
async function fakeRegistry(image: BuiltImage, stall: (req: IncomingMessage) => number | "headers" | undefined) {
  const hung: ServerResponse[] = [];
  const server = createHttpServer((req, res) => {
    const how = stall(req);
    if (how === "headers") { hung.push(res); return; }
    if (req.url === "/v2/" || req.url === "/v2") { res.writeHead(200, { "Content-Type": "application/json" }).end("{}"); return; }
    const m = /^\/v2\/[^?]+\/(manifests|blobs)\/([^?]+)/.exec(req.url ?? "");
    const blob = m && (m[1] === "manifests" ? (m[2]!.startsWith("sha256:") ? image.blobs.get(m[2]!) : image.manifest) : image.blobs.get(m[2]!));
    if (!blob) { res.writeHead(404).end(); return; }
    const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ""));
    const start = range ? Number(range[1]) : 0;
    const body = blob.data.subarray(start);
    res.writeHead(range ? 206 : 200, {
      "Content-Type": blob.descriptor.mediaType, "Content-Length": String(body.length), "Docker-Content-Digest": blob.descriptor.digest,
      ...(range ? { "Content-Range": `bytes ${start}-${blob.data.length - 1}/${blob.data.length}` } : {}),
    });
    if (req.method === "HEAD") { res.end(); return; }
    if (typeof how === "number") { res.write(body.subarray(0, how)); hung.push(res); return; }
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    requests: [] as string[],
    async close() {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A TCP port that takes the connection and never says a word. */
async function silentPort(): Promise<{ host: string; close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const server: Server = createTcpServer((s) => { sockets.push(s); s.on("error", () => undefined); });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A port whose TCP connect never completes, on loopback, without iptables: a
 * listener with a backlog of 1 in a process whose event loop is blocked, so it
 * never accepts. Two connections fill its accept queue; after that the kernel
 * drops every SYN, and connect() waits on its retransmits.
 */
async function unacceptingPort(): Promise<{ host: string; close(): Promise<void> }> {
  const child = spawn(process.execPath, ["-e", `
    const server = require("node:net").createServer();
    server.listen({ host: "127.0.0.1", port: 0, backlog: 1 }, () => {
      process.stdout.write(server.address().port + "\\n");
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // never accept
    });`], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once("exit", (code) => reject(new Error(`the listener exited with ${code}`)));
  });
  const fillers: Socket[] = [];
  const connects = (): Promise<boolean> => new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    fillers.push(s);
    s.on("error", () => undefined);
    const timer = setTimeout(() => resolve(false), 1_000);
    s.once("connect", () => { clearTimeout(timer); resolve(true); });
  });
  let made = 0;
  while (await connects()) {
    made++;
    assert.ok(made < 10, "the kernel completes every connect to a listener that never accepts: this test cannot make a connect stall");
  }
  return {
    host: `127.0.0.1:${port}`,
    async close() {
      for (const s of fillers) s.destroy();
      child.kill("SIGKILL");
      if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
    },
  };
}

describe("pulls that end", () => {
  let containerd: TestContainerd;
  let image: BuiltImage;
  const servers: { host: string; close(): Promise<void> }[] = [];
  let silent: { host: string; close(): Promise<void> };
  let unaccepting: { host: string; close(): Promise<void> };
  let blobStall: Awaited<ReturnType<typeof fakeRegistry>>;
  let manifestStall: Awaited<ReturnType<typeof fakeRegistry>>;
  const cribs: TestCrib[] = [];

  before(async () => {
    containerd = await TestContainerd.start();
    image = await buildImage({ layers: [randomLayer(256 << 10, "stall")] });
    const layer = image.manifest.layers[0]!.descriptor.digest;
    silent = await silentPort();
    blobStall = await fakeRegistry(image, (req) => (req.url?.includes(`/blobs/${layer}`) ? 10 : undefined));
    manifestStall = await fakeRegistry(image, (req) => (req.url?.includes("/manifests/") ? "headers" : undefined));
    unaccepting = await unacceptingPort();
    servers.push(silent, blobStall, manifestStall, unaccepting);
  });
  after(async () => {
    for (const c of cribs) await c.close();
    for (const s of servers) await s.close();
    await containerd?.close();
  });

  const startCrib = async (keep: string) => {
    const crib = await TestCrib.start({
      containerdAddress: containerd.address, namespace: NAMESPACE,
      config: {
        registry: {
          progress_timeout: "300ms", response_header_timeout: "500ms", connect_timeout: "1s", max_resumes: 2, failed_pull_keep: keep,
          hosts: Object.fromEntries(servers.map((s) => [s.host, { plain_http: true }])),
        },
      },
    });
    cribs.push(crib);
    return crib;
  };
  const pullLeases = async () => {
    const c = containerd.client(NAMESPACE);
    try {
      return (await c.leases.List({ filters: [] })).leases.filter((l) => l.id.startsWith("crib-pull-"));
    } finally {
      c.close();
    }
  };

  async function fails(crib: TestCrib, host: string, stalled: RegExp): Promise<number> {
    const t0 = Date.now();
    try {
      await crib.client.image.PullImage({ image: { image: `${host}/stall:1` } }, { timeoutMs: 60_000 });
    } catch (err) {
      const e = err as { code: number; details: string };
      assert.equal(e.code, UNAVAILABLE, e.details);
      assert.ok(e.details.includes(host), `names the registry host: ${e.details}`);
      assert.match(e.details, stalled, "says what stalled");
      return Date.now() - t0;
    }
    assert.fail("the pull succeeded");
  }

  it("a registry that never answers: UNAVAILABLE within seconds, no lease", async () => {
    const crib = await startCrib("0s");
    const ms = await fails(crib, silent.host, /no response headers within 500 ms/);
    assert.ok(ms < 15_000, `gave up after ${ms} ms`);
    assert.deepEqual(await pullLeases(), []);
  });

  it("a registry whose TCP connect never completes: UNAVAILABLE naming the host and the connect, after connect_timeout, no lease", async () => {
    const crib = await startCrib("0s");
    const ms = await fails(crib, unaccepting.host, /no TCP connection within 1000 ms/);
    // connect_timeout is 1 s; the stalled request is retried once, with a short backoff
    assert.ok(ms >= 1_000, `gave up after ${ms} ms, before connect_timeout: something else failed`);
    assert.ok(ms < 15_000, `gave up after ${ms} ms`);
    assert.deepEqual(await pullLeases(), []);
  });

  it("a manifest that never comes: UNAVAILABLE naming the manifest, no lease", async () => {
    const crib = await startCrib("0s");
    const ms = await fails(crib, manifestStall.host, /no response headers within 500 ms \(GET \/v2\/stall\/manifests\/1\)/);
    assert.ok(ms < 15_000, `gave up after ${ms} ms`);
    assert.deepEqual(await pullLeases(), []);
  });

  it("a blob that stalls after 10 bytes: resumes a bounded number of times, then fails; the failed pull releases its lease", async () => {
    const crib = await startCrib("0s");
    const ms = await fails(crib, blobStall.host, /blob sha256:[0-9a-f]+ .*no data from .* for 300 ms after \d+ of \d+ bytes/);
    assert.ok(ms < 20_000, `gave up after ${ms} ms`);
    assert.deepEqual(await pullLeases(), [], "no crib-pull-* lease pins the partial data");
  });

  it("with failed_pull_keep the partial data is kept under a short expiry, and crib's sweep ends it", async () => {
    const crib = await startCrib("2s");
    await fails(crib, blobStall.host, /no data from/);
    const kept = await pullLeases();
    assert.equal(kept.length, 1, "one lease keeps the partial download");
    const expires = Date.parse(kept[0]!.labels["containerd.io/gc.expire"] ?? "");
    assert.ok(expires - Date.now() <= 2_000 && expires > Date.now() - 1_000, `expires in about 2 s, not 24 h: ${kept[0]!.labels["containerd.io/gc.expire"]}`);
    await new Promise((r) => setTimeout(r, 2_500));
    // a failing pull sweeps as it ends: the expired lease goes, the new one takes its place
    await fails(crib, silent.host, /no response headers/);
    const deadline = Date.now() + 5_000;
    while ((await pullLeases()).some((l) => l.id === kept[0]!.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(!(await pullLeases()).some((l) => l.id === kept[0]!.id), "the expired lease is deleted by crib");
  });
});
