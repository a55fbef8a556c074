// `crib bootstrap` against an in-test Kubernetes API server (HTTPS) on 127.0.0.1 that
// serves the paths bootstrap uses (nodes: get and watch; runtimeclasses: get
// and create) with Kubernetes' own JSON, including its 403 and 404 answers.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { stringify } from "smol-toml";

const MAIN = fileURLToPath(new URL("../../cri/main.js", import.meta.url));
const VERSION = (JSON.parse(await readFile(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;
const run = promisify(execFile);
const NODE = "worker-1";

type Json = Record<string, unknown>;

const status = (code: number, reason: string, message: string, details: Json): Json =>
  ({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, details, code });

function nodeObject(opts: { podCIDRs?: string[]; ready: boolean; runtime?: string; resourceVersion: number }): Json {
  const now = new Date().toISOString();
  return {
    kind: "Node", apiVersion: "v1",
    metadata: {
      name: NODE, uid: "0b6f2d3e-9a5c-4c1e-9d55-7c2f3a4b5c6d", resourceVersion: String(opts.resourceVersion), creationTimestamp: now,
      labels: { "kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64" },
      annotations: { "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true" },
    },
    spec: opts.podCIDRs ? { podCIDR: opts.podCIDRs[0], podCIDRs: opts.podCIDRs } : {},
    status: {
      capacity: { cpu: "4", memory: "8029876Ki", pods: "110" },
      allocatable: { cpu: "4", memory: "7927476Ki", pods: "110" },
      conditions: [
        { type: "MemoryPressure", status: "False", lastHeartbeatTime: now, lastTransitionTime: now, reason: "KubeletHasSufficientMemory", message: "kubelet has sufficient memory available" },
        opts.ready
          ? { type: "Ready", status: "True", lastHeartbeatTime: now, lastTransitionTime: now, reason: "KubeletReady", message: "kubelet is posting ready status" }
          : { type: "Ready", status: "False", lastHeartbeatTime: now, lastTransitionTime: now, reason: "KubeletNotReady", message: "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady" },
      ],
      addresses: [{ type: "InternalIP", address: "192.0.2.10" }, { type: "Hostname", address: NODE }],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: "d1c0ffee", systemUUID: "d1c0ffee", bootID: "b00t", kernelVersion: "6.1.0-13-amd64", osImage: "Debian GNU/Linux 12 (bookworm)",
        containerRuntimeVersion: opts.runtime ?? `crib://${VERSION}`, kubeletVersion: "v1.31.2", kubeProxyVersion: "v1.31.2", operatingSystem: "linux", architecture: "amd64",
      },
    },
  };
}

/** The API server: a node that may be registered later, RuntimeClasses, and answers to forbid. */
class FakeApiServer {
  node: Json | undefined;
  runtimeClasses = new Map<string, Json>();
  /** "verb resource" pairs answered with 403, e.g. "create runtimeclasses" */
  forbidden = new Set<string>();
  requests: string[] = [];
  created: Json[] = [];
  #watchers = new Set<ServerResponse>();
  #version = 100;
  #server: Server;

  constructor(tls: { key: string; cert: string }) {
    this.#server = createServer(tls, (req, res) => void this.#handle(req, res));
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", r));
    return `https://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const w of this.#watchers) w.end();
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }

  /** Registers or updates the node; watchers get ADDED or MODIFIED. */
  setNode(opts: { podCIDRs?: string[]; ready: boolean; runtime?: string }): void {
    const type = this.node ? "MODIFIED" : "ADDED";
    this.node = nodeObject({ ...opts, resourceVersion: ++this.#version });
    for (const w of this.#watchers) w.write(`${JSON.stringify({ type, object: this.node })}\n`);
  }

  #json(res: ServerResponse, code: number, body: Json): void {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }

  #forbid(res: ServerResponse, verb: string, resource: string, group: string, name?: string): boolean {
    if (!this.forbidden.has(`${verb} ${resource}`)) return false;
    const what = group ? `${resource}.${group}` : resource;
    this.#json(res, 403, status(403, "Forbidden",
      `${what}${name ? ` "${name}"` : ""} is forbidden: User "system:node:${NODE}" cannot ${verb} resource "${resource}" in API group "${group}" at the cluster scope`,
      { ...(name ? { name } : {}), group, kind: resource }));
    return true;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://x");
    this.requests.push(`${req.method} ${url.pathname}${url.searchParams.get("watch") ? "?watch" : ""}`);
    const nodeName = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname)?.[1];
    const rcName = /^\/apis\/node\.k8s\.io\/v1\/runtimeclasses\/([^/]+)$/.exec(url.pathname)?.[1];
    if (req.method === "GET" && nodeName) {
      if (this.#forbid(res, "get", "nodes", "", nodeName)) return;
      if (nodeName !== NODE || !this.node) return this.#json(res, 404, status(404, "NotFound", `nodes "${nodeName}" not found`, { name: nodeName, kind: "nodes" }));
      return this.#json(res, 200, this.node);
    }
    if (req.method === "GET" && url.pathname === "/api/v1/nodes" && url.searchParams.get("watch") === "true") {
      if (this.#forbid(res, "watch", "nodes", "")) return;
      assert.equal(url.searchParams.get("fieldSelector"), `metadata.name=${NODE}`);
      res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
      if (this.node) res.write(`${JSON.stringify({ type: "ADDED", object: this.node })}\n`);
      this.#watchers.add(res);
      res.on("close", () => this.#watchers.delete(res));
      return;
    }
    if (req.method === "GET" && rcName) {
      if (this.#forbid(res, "get", "runtimeclasses", "node.k8s.io", rcName)) return;
      const rc = this.runtimeClasses.get(rcName);
      if (!rc) return this.#json(res, 404, status(404, "NotFound", `runtimeclasses.node.k8s.io "${rcName}" not found`, { name: rcName, group: "node.k8s.io", kind: "runtimeclasses" }));
      return this.#json(res, 200, rc);
    }
    if (req.method === "POST" && url.pathname === "/apis/node.k8s.io/v1/runtimeclasses") {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Json & { metadata: { name: string } };
      if (this.#forbid(res, "create", "runtimeclasses", "node.k8s.io")) return;
      if (this.runtimeClasses.has(body.metadata.name)) {
        return this.#json(res, 409, status(409, "AlreadyExists", `runtimeclasses.node.k8s.io "${body.metadata.name}" already exists`, { name: body.metadata.name, group: "node.k8s.io", kind: "runtimeclasses" }));
      }
      this.created.push(body);
      const stored = { ...body, metadata: { ...body.metadata, uid: "5e1f", resourceVersion: String(++this.#version), creationTimestamp: new Date().toISOString() } };
      this.runtimeClasses.set(body.metadata.name, stored);
      return this.#json(res, 201, stored);
    }
    this.#json(res, 404, status(404, "NotFound", "the server could not find the requested resource", {}));
  }
}

async function until(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function bootstrap(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, "bootstrap", "--node-name", NODE, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    if (typeof e.code !== "number") throw err;
    return e;
  }
}

describe("crib bootstrap", () => {
  let dir: string;
  let api: FakeApiServer;
  let server: string;
  /** the API server's self-signed certificate, which the kubeconfigs trust */
  let tls: { key: string; cert: string };

  async function kubeconfig(name: string, url: string): Promise<string> {
    const file = join(dir, `${name}.kubeconfig`);
    await writeFile(file, JSON.stringify({
      apiVersion: "v1", kind: "Config", "current-context": "kubelet",
      clusters: [{ name: "test", cluster: { server: url, "certificate-authority-data": Buffer.from(tls.cert).toString("base64") } }],
      users: [{ name: `system:node:${NODE}`, user: { token: "kubelet-token" } }],
      contexts: [{ name: "kubelet", context: { cluster: "test", user: `system:node:${NODE}` } }],
    }));
    return file;
  }

  async function config(name: string, tables: Json): Promise<string> {
    const file = join(dir, `${name}.toml`);
    await mkdir(join(dir, `${name}-net.d`), { recursive: true });
    await writeFile(file, stringify({ cni: { conf_dir: join(dir, `${name}-net.d`), manage_from_node: true }, ...tables }));
    return file;
  }

  before(async () => {
    dir = await mkdtemp("/tmp/crib-bootstrap-");
    await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver",
      "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", join(dir, "api.key"), "-out", join(dir, "api.crt")]);
    tls = { key: await readFile(join(dir, "api.key"), "utf8"), cert: await readFile(join(dir, "api.crt"), "utf8") };
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe("with an API server", () => {
    before(async () => {
      api = new FakeApiServer(tls);
      server = await api.start();
    });
    after(async () => {
      await api.close();
    });

    it("waits for the node, renders its pod CIDRs, creates missing RuntimeClasses and reports Ready on crib", async () => {
      api.runtimeClasses.set("kata", { apiVersion: "node.k8s.io/v1", kind: "RuntimeClass", metadata: { name: "kata", resourceVersion: "7" }, handler: "kata-qemu" });
      const cfg = await config("happy", {
        runtimes: { runc: { runtime_type: "io.containerd.runc.v2" }, kata: { runtime_type: "io.containerd.runc.v2", binary_name: "/usr/bin/kata-runc" } },
      });
      // kubelet registers the node while bootstrap watches, then turns Ready once the network is configured
      const podCIDRs = ["10.244.3.0/24", "fd00:10:244:3::/64"];
      const kubelet = (async () => {
        await until(() => api.requests.includes("GET /api/v1/nodes?watch"));
        api.setNode({ podCIDRs, ready: false });
        await until(() => api.created.length > 0);
        api.setNode({ podCIDRs, ready: true });
      })();
      const { code, stdout, stderr } = await bootstrap(["--config", cfg, "--kubeconfig", await kubeconfig("ok", server), "--timeout", "20s"]);
      await kubelet;
      assert.equal(code, 0, `${stdout}${stderr}`);
      assert.match(stdout, /waiting for kubelet to register node "worker-1"/);
      assert.match(stdout, /node "worker-1" is registered \(kubelet v1\.31\.2\)/);
      assert.match(stdout, new RegExp(`node "worker-1" is Ready; kubelet runs crib://${VERSION.replaceAll(".", "\\.")}`));

      const written = JSON.parse(await readFile(join(dir, "happy-net.d", "10-crib.conflist"), "utf8")) as { name: string; plugins: Array<{ ipam?: Json }> };
      assert.equal(written.name, "crib");
      assert.deepEqual(written.plugins[0]!.ipam, {
        type: "host-local",
        ranges: [[{ subnet: "10.244.3.0/24" }], [{ subnet: "fd00:10:244:3::/64" }]],
        routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
      });
      assert.match(stdout, /CNI: wrote host-local ranges 10\.244\.3\.0\/24, fd00:10:244:3::\/64 into .*10-crib\.conflist/);

      assert.deepEqual(api.created, [{
        apiVersion: "node.k8s.io/v1", kind: "RuntimeClass", metadata: { name: "runc", labels: { "app.kubernetes.io/managed-by": "crib" } }, handler: "runc",
      }]);
      assert.match(stdout, /RuntimeClass "runc" created/);
      assert.match(stdout, /RuntimeClass "kata" exists with handler "kata-qemu"; left alone/);
      assert.equal(api.runtimeClasses.get("kata")!["handler"], "kata-qemu");
      assert.deepEqual(api.requests.filter((r) => !r.startsWith("GET ") && !r.startsWith("POST ")), [], "nothing is changed or deleted");

      // again: nothing to do, and nothing rewritten
      const again = await bootstrap(["--config", cfg, "--kubeconfig", await kubeconfig("ok", server), "--timeout", "5s"]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /already has host-local ranges 10\.244\.3\.0\/24, fd00:10:244:3::\/64/);
      assert.match(again.stdout, /RuntimeClass "runc" exists\n/);
      assert.equal(api.created.length, 1);
    });

    it("names the verb and resource when RBAC forbids creating a RuntimeClass, and still waits for Ready", async () => {
      api.runtimeClasses.clear();
      api.forbidden.add("create runtimeclasses");
      try {
        const cfg = await config("forbidden-create", { cni: { conf_dir: join(dir, "forbidden-create-net.d"), manage_from_node: false } });
        const { code, stdout, stderr } = await bootstrap(["--config", cfg, "--kubeconfig", await kubeconfig("ok", server), "--timeout", "5s"]);
        assert.equal(code, 1);
        assert.match(stderr, /forbidden: user "system:node:worker-1" of .*ok\.kubeconfig may not create runtimeclasses\.node\.k8s\.io "runc": runtimeclasses\.node\.k8s\.io is forbidden: User "system:node:worker-1" cannot create resource "runtimeclasses"/);
        assert.match(stdout, /manage_from_node is false; left .* alone \(the node's pod CIDRs: 10\.244\.3\.0\/24, fd00:10:244:3::\/64\)/);
        assert.match(stdout, /is Ready; kubelet runs crib:/);
      } finally {
        api.forbidden.clear();
      }
    });

    it("names the verb and resource when RBAC forbids reading the node", async () => {
      api.forbidden.add("get nodes");
      try {
        const cfg = await config("forbidden-get", {});
        const { code, stderr } = await bootstrap(["--config", cfg, "--kubeconfig", await kubeconfig("ok", server), "--timeout", "5s"]);
        assert.equal(code, 1);
        assert.match(stderr, /^crib: bootstrap: forbidden: user "system:node:worker-1" .* may not get nodes "worker-1": nodes "worker-1" is forbidden/m);
      } finally {
        api.forbidden.clear();
      }
    });

    it("reports a node that is Ready on another runtime", async () => {
      api.setNode({ podCIDRs: ["10.244.3.0/24"], ready: true, runtime: "containerd://1.7.22" });
      const cfg = await config("other-runtime", {});
      const { code, stderr } = await bootstrap(["--config", cfg, "--kubeconfig", await kubeconfig("ok", server), "--timeout", "5s"]);
      assert.equal(code, 1);
      assert.match(stderr, /node "worker-1" is Ready but kubelet reports runtime containerd:\/\/1\.7\.22, not crib:\/\/.*containerRuntimeEndpoint: unix:\/\/\/run\/crib\/crib\.sock/);
    });
  });

  it("fails clearly when the node is not registered before the timeout", async () => {
    const empty = new FakeApiServer(tls);
    const url = await empty.start();
    try {
      const cfg = await config("unregistered", {});
      const started = Date.now();
      const { code, stderr } = await bootstrap(["--config", cfg, "--kubeconfig", await kubeconfig("empty", url), "--timeout", "2s"]);
      assert.equal(code, 1);
      assert.match(stderr, /node "worker-1" is not registered after 2 s: is kubelet running/);
      assert.ok(Date.now() - started < 15_000, "gives up at the timeout");
      assert.ok(empty.requests.includes("GET /api/v1/nodes/worker-1") && empty.requests.includes("GET /api/v1/nodes?watch"), empty.requests.join(", "));
    } finally {
      await empty.close();
    }
  });

  it("fails clearly when the API server cannot be reached", async () => {
    const gone = new FakeApiServer(tls);
    const url = await gone.start();
    await gone.close();
    const cfg = await config("unreachable", {});
    const { code, stderr } = await bootstrap(["--config", cfg, "--kubeconfig", await kubeconfig("gone", url), "--timeout", "5s"]);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`cannot reach the API server at ${url.replaceAll(".", "\\.")} \\(kubeconfig .*gone\\.kubeconfig\\) to get nodes "worker-1": .*ECONNREFUSED`));
  });

  it("fails clearly on a kubeconfig it cannot load", async () => {
    const cfg = await config("no-kubeconfig", {});
    const { code, stderr } = await bootstrap(["--config", cfg, "--kubeconfig", join(dir, "missing.kubeconfig")]);
    assert.equal(code, 1);
    assert.match(stderr, /cannot load kubeconfig .*missing\.kubeconfig/);
  });
});
