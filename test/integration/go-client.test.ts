// crib through grpc-go, dialled by the socket's path as kubelet and crictl ≤ 1.26
// dial it: the path is the HTTP/2 :authority, which Node's HTTP/2 alone refuses.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PodEnv } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import { GoCriClient, goCallOnce, goClientBinary } from "../fixtures/go-client.js";
import { EMPTY_GRPC_MESSAGE, Flag, FrameType, RawH2Connection, frame, grpcRequestFields, grpcStatus, hpack } from "../fixtures/h2-probe.js";
import { execSpdy } from "../fixtures/stream-clients.js";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

type Json = Record<string, any>;
const MB = 1024 * 1024;

describe("a grpc-go client dialling the socket by path (kubelet ≤ 1.26, crictl ≤ 1.26)", () => {
  let env: PodEnv;
  let go: GoCriClient;
  before(async () => {
    // build while the stack starts
    [env] = await Promise.all([PodEnv.start(), goClientBinary()]);
    go = await GoCriClient.connect(env.crib.socket);
  });
  after(async () => {
    await go?.close();
    await env?.close();
  });

  it("answers Version and Status", async () => {
    const v = await go.ok<Json>("Version", { version: "v1" });
    assert.equal(v["runtime_name"], "crib");
    assert.equal(v["runtime_api_version"], "v1");
    const s = await go.ok<Json>("Status", {});
    const ready = (s["status"]["conditions"] as Json[]).find((c) => c["type"] === "RuntimeReady");
    assert.equal(ready?.["status"], true);
  });

  it("answers a one-shot call from a fresh process, as crictl makes it", async () => {
    const v = JSON.parse(await goCallOnce(env.crib.socket, "Version")) as Json;
    assert.equal(v["runtime_name"], "crib");
  });

  it("runs a pod and a container, lists them, reads their status and execs in it", async () => {
    const config = env.sandboxConfig("go-pod");
    const { pod_sandbox_id: podId } = await go.ok<Json>("RunPodSandbox", { config });
    assert.match(podId, /^[0-9a-f]{64}$/);
    const pods = (await go.ok<Json>("ListPodSandbox", {}))["items"] as Json[];
    assert.ok(pods.some((p) => p["id"] === podId && p["state"] === "SANDBOX_READY"), `pod ${podId} not listed ready: ${JSON.stringify(pods)}`);

    const { container_id: id } = await go.ok<Json>("CreateContainer", {
      pod_sandbox_id: podId,
      config: { metadata: { name: "web" }, image: { image: BUSYBOX_REF }, command: ["/bin/sleep", "3600"], log_path: "web.log" },
      sandbox_config: config,
    });
    await go.ok("StartContainer", { container_id: id });
    const containers = (await go.ok<Json>("ListContainers", { filter: { pod_sandbox_id: podId } }))["containers"] as Json[];
    assert.deepEqual(containers.map((c) => [c["id"], c["state"]]), [[id, "CONTAINER_RUNNING"]]);
    const status = (await go.ok<Json>("ContainerStatus", { container_id: id }))["status"] as Json;
    assert.equal(status["state"], "CONTAINER_RUNNING");
    assert.equal(status["metadata"]["name"], "web");

    const exec = await go.ok<Json>("ExecSync", { container_id: id, cmd: ["/bin/echo", "hello from go"], timeout: 10 });
    assert.equal(Buffer.from(exec["stdout"], "base64").toString(), "hello from go\n");
    assert.equal(exec["exit_code"], 0);

    // the streaming server is plain HTTP: a Host holding the socket's path is served too
    const { url } = await go.ok<Json>("Exec", { container_id: id, cmd: ["/bin/echo", "streamed"], stdout: true, stderr: true });
    const streamedExec = await execSpdy(url, { headers: { Host: env.crib.socket } });
    assert.equal(streamedExec.stdout.toString(), "streamed\n");

    // a server-streaming rpc: the same containers as ListContainers
    const streamed = await go.call<Json>("StreamContainers", { filter: { pod_sandbox_id: podId } });
    assert.equal(streamed.code, 0, streamed.message);
    assert.deepEqual(streamed.responses!.flatMap((r) => (r["containers"] as Json[]).map((c) => c["id"])), [id]);

    // a response over grpc-go's 4 MB default (kubelet raises it to 16 MB, as this client does)
    const big = await go.ok<Json>("ExecSync", { container_id: id, cmd: ["/bin/head", "-c", String(5 * MB), "/dev/zero"], timeout: 30 });
    assert.equal(Buffer.from(big["stdout"], "base64").length, 5 * MB);

    // a request over 4 MB: a label selector no container matches
    const selector = Object.fromEntries(Array.from({ length: 5 * 1024 }, (_, i) => [`k${i}`, "v".repeat(1024)]));
    const none = await go.ok<Json>("ListContainers", { filter: { label_selector: selector } });
    assert.deepEqual(none["containers"], []);

    await go.ok("StopPodSandbox", { pod_sandbox_id: podId });
    await go.ok("RemovePodSandbox", { pod_sandbox_id: podId });
    const after = (await go.ok<Json>("ListPodSandbox", {}))["items"] as Json[];
    assert.ok(!after.some((p) => p["id"] === podId));
  });

  it("lists images", async () => {
    const images = (await go.ok<Json>("ListImages", {}))["images"] as Json[];
    assert.ok(images.some((i) => (i["repo_tags"] as string[]).includes(BUSYBOX_REF)), JSON.stringify(images.map((i) => i["repo_tags"])));
  });

  it("answers 100 calls at once on one connection", async () => {
    const calls = Array.from({ length: 100 }, (_, i) => go.call<Json>(i % 2 ? "Version" : "ListImages", {}));
    const answers = await Promise.all(calls);
    assert.deepEqual(answers.filter((a) => a.code !== 0).map((a) => a.message), []);
    assert.equal(answers.filter((a) => a.response?.["runtime_name"] === "crib").length, 50);
  });

  it("reports a gRPC error as the status crib sent", async () => {
    const a = await go.call("ContainerStatus", { container_id: "no-such-container" });
    assert.equal(a.code, 5, `${a.code}: ${a.message}`); // NOT_FOUND
  });
});

describe("raw HTTP/2 probes and python-grpcio on crib's socket", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start({ network: false }); });
  after(async () => { await env?.close(); });

  const VERSION = "/runtime.v1.RuntimeService/Version";
  const path = () => env.crib.socket;

  it("answers Version with grpc-status 0 for every kind of :authority, plain or Huffman, literal or from the dynamic table", async () => {
    const kinds: [string, Buffer[]][] = [
      ["the socket path, indexed into the table", [hpack.literal(1, path(), { indexing: "incremental" })]],
      ["the same, from the dynamic table", [hpack.indexed(62)]],
      ["the path, Huffman-coded", [hpack.literal(1, path(), { huffman: true })]],
      ["the path under a literal, Huffman-coded name", [hpack.literal(":authority", path(), { huffman: true, huffmanName: true, indexing: "never" })]],
      ["percent-encoded", [hpack.literal(1, encodeURIComponent(path()), { huffman: true })]],
      ["localhost", [hpack.literal(1, "localhost")]],
      ["empty", [hpack.literal(1, "")]],
      ["absent", []],
    ];
    const c = await RawH2Connection.open(path());
    try {
      kinds.forEach(([, authority], i) => {
        const id = 1 + 2 * i;
        c.send(
          frame(FrameType.HEADERS, Flag.END_HEADERS, id, Buffer.concat(grpcRequestFields(VERSION, authority))),
          frame(FrameType.DATA, Flag.END_STREAM, id, EMPTY_GRPC_MESSAGE),
        );
      });
      for (const [i, [kind]] of kinds.entries()) {
        const r = await c.result(1 + 2 * i);
        assert.equal(r.rstCode, undefined, `${kind}: reset with ${r.rstCode}`);
        assert.equal(grpcStatus(r), "0", `${kind}: ${JSON.stringify(r.trailers)}`);
        assert.ok(r.data.includes("crib"), `${kind}: no VersionResponse`);
      }
    } finally {
      c.close();
    }
  });

  it("answers python-grpcio (grpc-core) dialling with the socket path as authority", async () => {
    const script = [
      "import grpc, sys",
      "ch = grpc.insecure_channel('unix:' + sys.argv[1], options=[('grpc.default_authority', sys.argv[1])])",
      "res = ch.unary_unary('/runtime.v1.RuntimeService/Version')(b'', timeout=20)",
      "sys.stdout.write(res.hex())",
    ].join("\n");
    const { stdout } = await run("/usr/bin/python3", ["-c", script, path()], { timeout: 30_000 });
    assert.ok(Buffer.from(stdout, "hex").includes("crib"), `python got ${stdout}`);
  });
});
