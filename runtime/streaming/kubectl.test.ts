// Real Go clients: kubectl exec and port-forward against crib's streaming server,
// through a stand-in API server that proxies the upgrade like kubelet does.
// Skipped when kubectl is not installed.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { echoServer, FakeRuntime } from "./fake-runtime.fixture.js";
import { StreamingServer } from "./server.js";

const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
const skip = kubectl.error !== undefined || kubectl.status !== 0 ? "kubectl is not installed" : false;

const POD = { apiVersion: "v1", kind: "Pod", metadata: { name: "web", namespace: "default", uid: "u1" }, spec: { containers: [{ name: "c", image: "busybox" }] }, status: { phase: "Running" } };
const DISCOVERY: Record<string, unknown> = {
  "/api": { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] },
  "/apis": { kind: "APIGroupList", apiVersion: "v1", groups: [] },
  "/api/v1": {
    kind: "APIResourceList",
    groupVersion: "v1",
    resources: [{ name: "pods", singularName: "pod", namespaced: true, kind: "Pod", verbs: ["get", "list"], shortNames: ["po"] }],
  },
};

/** Answers the few GETs kubectl makes and hands exec/portforward upgrades to the streaming server. */
function fakeApiServer(streaming: StreamingServer, upgrades: string[]): Server {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const body = path === "/api/v1/namespaces/default/pods/web" ? POD : DISCOVERY[path];
    res.writeHead(body === undefined ? 404 : 200, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body ?? { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 }));
  });
  server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://x");
    const q = url.searchParams;
    const offered = req.headers["sec-websocket-protocol"] ?? req.headers["x-stream-protocol-version"] ?? "";
    upgrades.push(`${req.headers.upgrade ?? ""} ${Array.isArray(offered) ? offered.join(",") : offered}`);
    let target: string;
    if (url.pathname.endsWith("/exec")) {
      target = streaming.getExecUrl({ containerId: "c", cmd: q.getAll("command"), tty: q.get("tty") === "true", stdin: q.get("stdin") === "true", stdout: q.get("stdout") === "true", stderr: q.get("stderr") === "true" });
    } else if (url.pathname.endsWith("/portforward")) {
      target = streaming.getPortForwardUrl({ podSandboxId: "web", ports: q.getAll("ports").map(Number) });
    } else {
      socket.destroy();
      return;
    }
    proxyUpgrade(req, socket, head, new URL(target));
  });
  return server;
}

/** Forwards the upgrade request verbatim (but for its path) and splices the sockets, as kubelet's proxy does. */
function proxyUpgrade(req: IncomingMessage, client: Socket, head: Buffer, target: URL): void {
  const upstream = connect(Number(target.port), target.hostname);
  const headers: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] ?? "";
    headers.push(`${name}: ${name.toLowerCase() === "host" ? target.host : req.rawHeaders[i + 1]}`);
  }
  upstream.write(`${req.method} ${target.pathname} HTTP/1.1\r\n${headers.join("\r\n")}\r\n\r\n`);
  if (head.length > 0) upstream.write(head);
  client.pipe(upstream).pipe(client);
  client.on("error", () => upstream.destroy());
  upstream.on("error", () => client.destroy());
  client.on("close", () => upstream.destroy());
  upstream.on("close", () => client.destroy());
}

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function run(args: string[], env: Record<string, string>, stdin?: Buffer): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("kubectl", args, { env: { ...process.env, ...env }, stdio: "pipe" });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
  });
}

describe("kubectl", { skip }, () => {
  const runtime = new FakeRuntime();
  let streaming: StreamingServer;
  let api: Server;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let dir: string;
  let kubeconfig: string;
  const upgrades: string[] = [];

  before(async () => {
    echo = await echoServer();
    runtime.ports.set(80, echo.port);
    streaming = await StreamingServer.listen({ runtime });
    api = fakeApiServer(streaming, upgrades);
    await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
    dir = mkdtempSync(join(tmpdir(), "crib-kubectl-"));
    kubeconfig = join(dir, "kubeconfig");
    const server = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    writeFileSync(
      kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "fake", cluster: { server } }],
        users: [{ name: "u", user: { token: "t" } }],
        contexts: [{ name: "fake", context: { cluster: "fake", user: "u", namespace: "default" } }],
        "current-context": "fake",
      }),
    );
  });
  after(async () => {
    await streaming.close();
    api.closeAllConnections();
    await new Promise((resolve) => api.close(resolve));
    await echo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const transports = [
    ["SPDY", { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false" }, /^SPDY\/3\.1 v5\.channel\.k8s\.io/],
    ["WebSocket", { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "true" }, /^websocket v5\.channel\.k8s\.io/],
  ] as const;

  for (const [transport, env, upgrade] of transports) {
    describe(`exec over ${transport}`, () => {
      it("pipes 4 MB of stdin through cat and back", async () => {
        const input = randomBytes(4 * 1024 * 1024);
        upgrades.length = 0;
        const r = await run(["--kubeconfig", kubeconfig, "exec", "-i", "web", "-c", "c", "--", "cat"], env, input);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(upgrades.length, 1, `one upgrade: ${upgrades.join(" | ")}`);
        assert.match(upgrades[0] ?? "", upgrade);
        assert.equal(r.stdout.length, input.length);
        assert.equal(createHash("sha256").update(r.stdout).digest("hex"), createHash("sha256").update(input).digest("hex"));
      });

      it("passes the exit code on", async () => {
        const r = await run(["--kubeconfig", kubeconfig, "exec", "web", "-c", "c", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], env);
        assert.equal(r.code, 3, r.stderr);
        assert.equal(r.stdout.toString(), "out\n");
        assert.match(r.stderr, /^err\n/);
        assert.match(r.stderr, /command terminated with exit code 3/);
      });
    });
  }

  for (const [transport, env, upgrade] of [
    ["SPDY", { KUBECTL_PORT_FORWARD_WEBSOCKETS: "false" }, /^SPDY\/3\.1 portforward\.k8s\.io$/],
    ["SPDY tunnelled in WebSocket", { KUBECTL_PORT_FORWARD_WEBSOCKETS: "true" }, /^websocket SPDY\/3\.1\+portforward\.k8s\.io$/],
  ] as const) {
    it(`port-forward over ${transport} carries concurrent connections`, async () => {
      upgrades.length = 0;
      const child = spawn("kubectl", ["--kubeconfig", kubeconfig, "port-forward", "--address", "127.0.0.1", "web", ":80"], { env: { ...process.env, ...env }, stdio: "pipe" });
      try {
        const port = await new Promise<number>((resolve, reject) => {
          let out = "";
          child.stdout.on("data", (c: Buffer) => {
            out += c.toString();
            const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 80/.exec(out);
            if (m?.[1] !== undefined) resolve(Number(m[1]));
          });
          child.once("close", (code) => reject(new Error(`kubectl port-forward exited ${code}: ${out}`)));
        });
        const results = await Promise.all(
          Array.from({ length: 10 }, async () => {
            const payload = randomBytes(256 * 1024);
            const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
            const chunks: Buffer[] = [];
            socket.on("data", (c: Buffer) => chunks.push(c));
            await new Promise<void>((resolve, reject) => {
              socket.once("connect", () => socket.end(payload));
              socket.once("end", () => resolve());
              socket.once("error", reject);
            });
            socket.destroy();
            return Buffer.concat(chunks).equals(payload);
          }),
        );
        assert.deepEqual(results, Array.from({ length: 10 }, () => true));
        assert.equal(upgrades.length, 1, upgrades.join(" | "));
        assert.match(upgrades[0] ?? "", upgrade);
      } finally {
        child.kill();
      }
    });
  }
});
