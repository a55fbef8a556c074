import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CribError } from "../errors.js";
import { execSpdy, execWs, SpdyClient, SpdyPortForwardClient, UpgradeRefusedError } from "../../test/fixtures/stream-clients.js";
import { echoServer, FakeRuntime } from "./fake-runtime.fixture.js";
import { StreamingServer, type StreamingServerOptions } from "./server.js";
import type { ExecRequest } from "./streaming-runtime.js";

const cat: ExecRequest = { containerId: "c1", cmd: ["cat"], tty: false, stdin: true, stdout: true, stderr: true };
const hello = Buffer.from("hello\n");

async function withServer(options: Partial<StreamingServerOptions>, test: (server: StreamingServer, runtime: FakeRuntime) => Promise<void>): Promise<void> {
  const runtime = new FakeRuntime();
  const server = await StreamingServer.listen({ runtime, ...options });
  try {
    await test(server, runtime);
  } finally {
    await server.close();
  }
}

async function refusal(attempt: Promise<unknown>): Promise<UpgradeRefusedError> {
  const err = await attempt.then(
    () => assert.fail("the server accepted the request"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof UpgradeRefusedError, `expected an HTTP refusal, got ${String(err)}`);
  return err;
}

async function waitFor(what: string, condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe("streaming URLs", () => {
  it("look like kubelet's: <base>/exec|attach|portforward/<url-safe token>", () =>
    withServer({}, async (server) => {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(server.getExecUrl(cat), new RegExp(`^${server.url}/exec/[A-Za-z0-9_-]{22}$`));
      assert.match(server.getAttachUrl({ containerId: "c1", tty: true, stdin: true, stdout: true, stderr: false }), /\/attach\/[A-Za-z0-9_-]{22}$/);
      assert.match(server.getPortForwardUrl({ podSandboxId: "p1", ports: [80] }), /\/portforward\/[A-Za-z0-9_-]{22}$/);
      assert.notEqual(server.getExecUrl(cat), server.getExecUrl(cat));
    }));

  it("can name another host", () =>
    withServer({ baseUrl: "https://node-1.example:10010/" }, async (server) => {
      assert.match(server.getExecUrl(cat), /^https:\/\/node-1\.example:10010\/exec\/[A-Za-z0-9_-]+$/);
    }));

  it("work once; a second use gets 404", () =>
    withServer({}, async (server) => {
      const url = server.getExecUrl(cat);
      assert.equal((await execSpdy(url, { stdin: hello })).stdout.toString(), "hello\n");
      const err = await refusal(execSpdy(url, { stdin: hello }));
      assert.equal(err.statusCode, 404);
    }));

  it("expire: a URL used after its TTL gets 404", () =>
    withServer({ tokenTtlMs: 50 }, async (server) => {
      const url = server.getExecUrl(cat);
      await sleep(120);
      assert.equal((await refusal(execSpdy(url, { stdin: hello }))).statusCode, 404);
      assert.equal((await refusal(execWs(server.getExecUrl(cat).replace(/\/exec\/.*/, "/exec/not-a-token"), { stdin: hello }))).statusCode, 404);
    }));

  it("are bound to their kind: an exec URL on the attach path gets 404", () =>
    withServer({}, async (server) => {
      const url = server.getExecUrl(cat).replace("/exec/", "/attach/");
      assert.equal((await refusal(execSpdy(url, { stdin: hello }))).statusCode, 404);
    }));

  it("answer a request that does not upgrade with 400 (and spend the token)", () =>
    withServer({}, async (server) => {
      const url = server.getExecUrl(cat);
      const first = await fetch(url, { method: "POST" });
      assert.equal(first.status, 400);
      assert.match(await first.text(), /unable to upgrade: missing upgrade headers/);
      assert.equal((await fetch(url, { method: "POST" })).status, 404);
    }));

  it("are limited in number, with a resource-exhausted error", () =>
    withServer({ maxOutstandingTokens: 2 }, async (server) => {
      server.getExecUrl(cat);
      server.getExecUrl(cat);
      assert.throws(() => server.getExecUrl(cat), (err: unknown) => err instanceof CribError && err.kind === "resource-exhausted" && /limit 2/.test(err.message));
    }));

  it("are only handed out for valid requests", () =>
    withServer({}, async (server) => {
      const invalid = (fn: () => unknown, message: RegExp): void =>
        assert.throws(fn, (err: unknown) => err instanceof CribError && err.kind === "invalid-argument" && message.test(err.message));
      invalid(() => server.getExecUrl({ ...cat, tty: true, stderr: true }), /exec in container "c1": tty and stderr cannot both be true/);
      invalid(() => server.getExecUrl({ ...cat, stdin: false, stdout: false, stderr: false }), /one of stdin, stdout, or stderr must be set/);
      invalid(() => server.getExecUrl({ ...cat, containerId: "" }), /container_id is required/);
      invalid(() => server.getExecUrl({ ...cat, cmd: [] }), /cmd is required/);
      invalid(() => server.getAttachUrl({ containerId: "c1", tty: true, stdin: false, stdout: false, stderr: true }), /tty and stderr/);
      invalid(() => server.getPortForwardUrl({ podSandboxId: "", ports: [] }), /pod_sandbox_id is required/);
      invalid(() => server.getPortForwardUrl({ podSandboxId: "p1", ports: [70000] }), /port 70000/);
    }));
});

describe("protocol negotiation", () => {
  it("refuses a SPDY client that offers no remote command version it knows, naming the accepted ones", () =>
    withServer({}, async (server) => {
      const err = await refusal(execSpdy(server.getExecUrl(cat), { protocols: ["v9.channel.k8s.io"] }));
      assert.equal(err.statusCode, 403);
      assert.match(err.body, /unable to negotiate protocol: client supports \[v9\.channel\.k8s\.io\]/);
      assert.equal(err.headers["x-accepted-stream-protocol-versions"], "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io");
    }));

  it("requires X-Stream-Protocol-Version", () =>
    withServer({}, async (server) => {
      const err = await refusal(SpdyClient.connect(server.getExecUrl(cat), { protocols: [] }));
      assert.equal(err.statusCode, 400);
      assert.match(err.body, /X-Stream-Protocol-Version is required/);
    }));

  it("refuses a WebSocket client that offers only unknown subprotocols", () =>
    withServer({}, async (server) => {
      const err = await refusal(execWs(server.getExecUrl(cat), { protocols: ["v9.channel.k8s.io"] }));
      assert.equal(err.statusCode, 400);
      assert.match(err.body, /requested protocol\(s\) are not supported/);
    }));

  it("treats a WebSocket client that names no subprotocol as channel.k8s.io", () =>
    withServer({}, async (server) => {
      const r = await execWs(server.getExecUrl({ ...cat, cmd: ["sh", "-c", "exit 2"], stdin: false }), { protocols: [] });
      assert.equal(r.protocol, "");
      assert.match(r.error, /^command terminated with non-zero exit code/);
    }));
});

describe("concurrency limit", () => {
  it("refuses sessions beyond maxConcurrentStreams with 429 and a message that says so; the URL still works later", () =>
    withServer({ maxConcurrentStreams: 1 }, async (server, runtime) => {
      const stdin = new PassThrough();
      const first = execSpdy(server.getExecUrl(cat), { stdin });
      await waitFor("the first session", () => runtime.calls.length === 1);
      const url = server.getExecUrl(cat);
      const spdy = await refusal(execSpdy(url, { stdin: hello }));
      assert.equal(spdy.statusCode, 429);
      assert.match(spdy.body, /too many concurrent streaming sessions \(limit 1\)/);
      const ws = await refusal(execWs(server.getExecUrl(cat), { stdin: hello }));
      assert.equal(ws.statusCode, 429);
      stdin.end("done\n");
      assert.equal((await first).stdout.toString(), "done\n");
      await waitFor("the first session to end", () => server.activeStreams === 0);
      assert.equal((await execSpdy(url, { stdin: hello })).stdout.toString(), "hello\n");
    }));
});

describe("idle timeout", () => {
  it("closes a session without traffic and aborts the runtime call", () =>
    withServer({ streamIdleTimeoutMs: 200 }, async (server, runtime) => {
      const started = Date.now();
      const r = await execSpdy(server.getExecUrl({ ...cat, cmd: ["fake-wait-for-abort"] }), { stdin: new PassThrough() });
      assert.ok(Date.now() - started >= 150, "not before the timeout");
      assert.equal(r.status, undefined);
      const call = runtime.calls[0];
      assert.ok(call);
      await waitFor("the signal", () => call.signal.aborted);
      assert.equal((call.signal.reason as { why?: string }).why, "idle-timeout");
    }));
});

describe("TLS", () => {
  it("serves exec and port forward with a self-signed certificate made at start", async () => {
    const echo = await echoServer();
    try {
      await withServer({ tls: true }, async (server, runtime) => {
        runtime.ports.set(80, echo.port);
        assert.match(server.url, /^https:\/\//);
        const ca = server.certificate;
        assert.ok(ca);
        assert.ok(new X509Certificate(ca).checkIP("127.0.0.1"), "the certificate names 127.0.0.1");
        assert.equal((await execSpdy(server.getExecUrl(cat), { stdin: hello, ca })).stdout.toString(), "hello\n");
        assert.equal((await execWs(server.getExecUrl(cat), { stdin: hello, ca })).stdout.toString(), "hello\n");
        const pf = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "p1", ports: [] }), { ca });
        const conn = await pf.dial(80);
        const back = new Promise<string>((resolve) => {
          let text = "";
          conn.data.on("data", (c: Buffer) => (text += c.toString()));
          conn.data.once("end", () => resolve(text));
        });
        conn.data.end("over tls");
        assert.equal(await back, "over tls");
        pf.destroy();
        // Without the certificate the client refuses the server.
        await assert.rejects(execSpdy(server.getExecUrl(cat), { stdin: hello }), /self-signed|self signed|unable to verify/);
      });
    } finally {
      await echo.close();
    }
  });
});

describe("close()", () => {
  it("ends every session, fires their signals, and leaves no sockets or timers behind", async () => {
    await sleep(100); // let earlier tests' sockets finish closing
    const baseline = countHandles();
    const runtime = new FakeRuntime();
    const echo = await echoServer();
    runtime.ports.set(80, echo.port);
    const server = await StreamingServer.listen({ runtime });
    const execs = [
      execSpdy(server.getExecUrl({ ...cat, cmd: ["fake-wait-for-abort"] }), { stdin: new PassThrough() }),
      execWs(server.getExecUrl({ ...cat, cmd: ["fake-wait-for-abort"] }), { stdin: new PassThrough() }),
      execSpdy(server.getExecUrl({ ...cat, cmd: ["sleep", "30"] }), { stdin: new PassThrough() }),
    ].map((p) => p.catch(() => undefined));
    const pf = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "p1", ports: [] }));
    const conn = await pf.dial(80);
    conn.data.write("open");
    server.getExecUrl(cat); // an outstanding URL
    await waitFor("the runtime calls", () => runtime.calls.length === 3 && runtime.portForwards === 1);

    await server.close();
    for (const call of runtime.calls) {
      assert.equal(call.signal.aborted, true);
      assert.equal((call.signal.reason as { why?: string }).why, "server-closed");
      assert.equal(call.settled, true, `${call.req.containerId} ${"cmd" in call.req ? call.req.cmd.join(" ") : ""} settled`);
    }
    assert.equal(server.activeStreams, 0);
    await Promise.all(execs);
    await pf.closed;
    await echo.close();
    await sleep(50);
    assert.deepEqual(countHandles(), baseline);
  });
});

/** Sockets, servers, timers and child processes the process holds. */
function countHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) {
    if (["TCPSocketWrap", "TCPServerWrap", "Timeout", "ProcessWrap", "TLSWrap"].includes(name)) counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}
