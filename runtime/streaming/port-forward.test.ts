import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { Duplex, Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { collect, SpdyPortForwardClient, UpgradeRefusedError, WsPortForwardClient } from "../../test/fixtures/stream-clients.js";
import { echoServer, FakeRuntime } from "./fake-runtime.fixture.js";
import { StreamingServer } from "./server.js";

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const POD_PORT = 8080;
const OTHER_POD_PORT = 9090;
const CLOSED_POD_PORT = 7070;

/** Sends `payload`, half-closes, and returns everything that came back before the far end closed. */
async function echo(data: Duplex, payload: Buffer): Promise<Buffer> {
  const back = collect(data);
  data.end(payload);
  return back;
}

/** Reads until `length` bytes came back (WebSocket port forward cannot half-close). */
function readExactly(data: Duplex, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= length) {
        data.off("data", onData);
        resolve(Buffer.concat(chunks));
      }
    };
    data.on("data", onData);
    data.once("end", () => reject(new Error(`the connection ended after ${got} of ${length} bytes`)));
  });
}

describe("port forward", () => {
  const runtime = new FakeRuntime();
  let server: StreamingServer;
  let echoes: Awaited<ReturnType<typeof echoServer>>[];
  before(async () => {
    echoes = [await echoServer(), await echoServer()];
    runtime.ports.set(POD_PORT, echoes[0]?.port ?? 0);
    runtime.ports.set(OTHER_POD_PORT, echoes[1]?.port ?? 0);
    server = await StreamingServer.listen({ runtime });
  });
  after(async () => {
    await server.close();
    await Promise.all(echoes.map((e) => e.close()));
  });

  describe("over SPDY", () => {
    for (const flavor of ["go", "spdy-transport"] as const) {
      it(`carries 50 concurrent connections on one session (${flavor} client)`, async () => {
        const client = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }), { flavor });
        try {
          const results = await Promise.all(
            Array.from({ length: 50 }, async (_, i) => {
              const payload = randomBytes(64 * 1024 + i * 4096);
              const conn = await client.dial(i % 2 === 0 ? POD_PORT : OTHER_POD_PORT);
              const back = await echo(conn.data, payload);
              return { same: sha256(back) === sha256(payload), length: back.length, expected: payload.length, error: await conn.error };
            }),
          );
          for (const [i, r] of results.entries()) {
            assert.equal(r.length, r.expected, `connection ${i}: bytes echoed`);
            assert.ok(r.same, `connection ${i}: echoed bytes match`);
            assert.equal(r.error, "", `connection ${i}: no error`);
          }
        } finally {
          client.destroy();
        }
      });
    }

    it("carries connections over SPDY tunnelled in a WebSocket (SPDY/3.1+portforward.k8s.io)", async () => {
      const client = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }), { overWebSocket: true });
      try {
        const results = await Promise.all(
          Array.from({ length: 10 }, async () => {
            const payload = randomBytes(200 * 1024);
            const conn = await client.dial(POD_PORT);
            return sha256(await echo(conn.data, payload)) === sha256(payload) && (await conn.error) === "";
          }),
        );
        assert.deepEqual(results, Array.from({ length: 10 }, () => true));
      } finally {
        client.destroy();
      }
    });

    it("reports a connection the pod refuses on that connection's error stream, and the session goes on", async () => {
      const client = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }));
      try {
        const refused = await client.dial(CLOSED_POD_PORT);
        const [back, error] = await Promise.all([collect(refused.data), refused.error]);
        assert.equal(back.length, 0);
        assert.equal(error, `error forwarding port ${CLOSED_POD_PORT} to pod pod1: dial tcp 127.0.0.1:${CLOSED_POD_PORT}: connect: connection refused`);
        const ok = await client.dial(POD_PORT);
        assert.equal((await echo(ok.data, Buffer.from("still here"))).toString(), "still here");
      } finally {
        client.destroy();
      }
    });

    it("refuses to upgrade for a protocol other than portforward.k8s.io", async () => {
      const err = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }), { protocols: ["v4.channel.k8s.io"] }).catch((e: unknown) => e);
      assert.ok(err instanceof UpgradeRefusedError);
      assert.equal(err.statusCode, 403);
      assert.deepEqual(err.headers["x-accepted-stream-protocol-versions"], "portforward.k8s.io");
    });

    it("closes the pod connections when the client goes away", async () => {
      const before = runtime.portForwards;
      const client = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }));
      const conn = await client.dial(POD_PORT);
      conn.data.write("x");
      while (runtime.portForwards === before) await sleep(5);
      client.destroy();
      const deadline = Date.now() + 5000;
      while (server.activeStreams > 0 && Date.now() < deadline) await sleep(10);
      assert.equal(server.activeStreams, 0);
    });
  });

  describe("over WebSocket", () => {
    it("carries 50 concurrent connections, one session each", async () => {
      const results = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const client = await WsPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [POD_PORT] }), 1);
          const conn = client.connections[0];
          assert.ok(conn);
          const payload = randomBytes(64 * 1024 + i * 4096);
          const back = readExactly(conn.data, payload.length);
          conn.data.write(payload);
          const echoed = await back;
          client.close();
          await client.closed;
          return { same: sha256(echoed) === sha256(payload), ports: await client.ports, error: await conn.error };
        }),
      );
      for (const [i, r] of results.entries()) {
        assert.ok(r.same, `connection ${i}: echoed bytes match`);
        assert.deepEqual(r.ports, [POD_PORT], `connection ${i}: the port prefix`);
        assert.equal(r.error, "", `connection ${i}: no error`);
      }
    });

    it("forwards several ports on one connection, data on channel 2i and errors on 2i+1", async () => {
      const url = `${server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] })}?port=${POD_PORT}&port=${CLOSED_POD_PORT},${OTHER_POD_PORT}`;
      const client = await WsPortForwardClient.connect(url, 3, { protocols: ["v4.base64.channel.k8s.io"] });
      assert.deepEqual(await client.ports, [POD_PORT, CLOSED_POD_PORT, OTHER_POD_PORT]);
      const [first, refused, third] = client.connections;
      assert.ok(first && refused && third);
      const a = readExactly(first.data, 5);
      const b = readExactly(third.data, 5);
      first.data.write("first");
      third.data.write("third");
      assert.equal((await a).toString(), "first");
      assert.equal((await b).toString(), "third");
      client.close();
      assert.equal(await refused.error, `error forwarding port ${CLOSED_POD_PORT} to pod pod1: dial tcp 127.0.0.1:${CLOSED_POD_PORT}: connect: connection refused`);
    });

    it("uses the ports of the CRI request over the query", async () => {
      const client = await WsPortForwardClient.connect(`${server.getPortForwardUrl({ podSandboxId: "pod1", ports: [OTHER_POD_PORT] })}?port=1`, 1);
      assert.deepEqual(await client.ports, [OTHER_POD_PORT]);
      client.close();
      await client.closed;
    });

    it("needs to know the ports", async () => {
      const err = await WsPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }), 1).catch((e: unknown) => e);
      assert.ok(err instanceof UpgradeRefusedError);
      assert.equal(err.statusCode, 400);
      assert.match(err.body, /query parameter "port" is required/);
    });

    it("ends the session when the pod closes every connection", async () => {
      const client = await WsPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [POD_PORT] }), 1);
      const conn = client.connections[0];
      assert.ok(conn);
      const back = readExactly(conn.data, 2);
      conn.data.write("hi");
      await back;
      // The echo server closes when its client does; kill the server side instead.
      await echoes[0]?.close();
      echoes[0] = await echoServer();
      runtime.ports.set(POD_PORT, echoes[0].port);
      const closed = await client.closed;
      assert.equal(closed.code, 1000);
    });
  });
});

/** Writes to `out` as fast as it drains until stopped (or `max` bytes); stop() returns the bytes it took. */
function flood(out: Writable, max = Infinity): { stop(): number } {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let written = 0;
  let stopped = false;
  const pump = (): void => {
    if (stopped || out.destroyed || written >= max) return;
    written += chunk.length;
    if (out.write(chunk)) setImmediate(pump);
    else out.once("drain", pump);
  };
  out.on("error", () => undefined);
  pump();
  return { stop: () => { stopped = true; return written; } };
}

describe("port forward with a reader that stops reading", () => {
  const runtime = new FakeRuntime();
  let server: StreamingServer;
  let pod: Server;
  let podPort = 0;
  const podSockets = new Set<Socket>();
  let onPodConnection: (socket: Socket) => void = () => undefined;
  before(async () => {
    pod = createServer((socket) => {
      podSockets.add(socket);
      socket.on("error", () => undefined);
      onPodConnection(socket);
    });
    await new Promise<void>((resolve) => pod.listen(0, "127.0.0.1", resolve));
    podPort = (pod.address() as { port: number }).port;
    runtime.ports.set(POD_PORT, podPort);
    server = await StreamingServer.listen({ runtime });
  });
  after(async () => {
    await server.close();
    for (const s of podSockets) s.destroy();
    await new Promise((r) => pod.close(r));
  });

  // Without backpressure the far side could write GBs in this time; with it, what
  // it gets rid of is what the kernel's socket buffers and a bounded amount in crib hold.
  const BOUND = 64 << 20;

  it("a client that stops reading stops the pod's writes (bytes in flight stay bounded)", async () => {
    let writer: { stop(): number } | undefined;
    onPodConnection = (socket) => { writer = flood(socket); };
    const client = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }));
    try {
      const { data } = await client.dial(POD_PORT);
      let received = 0;
      data.on("data", (c: Buffer) => { received += c.length; });
      await sleep(300);
      client.socket.pause();
      await sleep(3000);
      const written = writer?.stop() ?? 0;
      assert.ok(received > 0, "bytes flowed while the client read");
      // what the client read before it paused is not in flight (at loopback speed, 300 ms of it can pass the bound)
      assert.ok(written - received < BOUND, `the pod wrote ${((written - received) / (1 << 20)).toFixed(0)} MB more than a client that stopped reading took`);
    } finally {
      client.destroy();
    }
  });

  it("a pod that stops reading stops the client's writes (bytes in flight stay bounded)", async () => {
    onPodConnection = (socket) => socket.pause();
    const client = await SpdyPortForwardClient.connect(server.getPortForwardUrl({ podSandboxId: "pod1", ports: [] }));
    try {
      const { data } = await client.dial(POD_PORT);
      // A Go-style client has no flow control: what it queues beyond the kernel is its own
      // memory. What crib lets through is what left the client's socket.
      const socket = client.socket as Socket;
      const sent = (): number => socket.bytesWritten - socket.writableLength;
      const writer = flood(data, 2 * BOUND);
      await sleep(3000);
      assert.equal(writer.stop(), 2 * BOUND, "the client queued its bytes");
      assert.ok(sent() > 0, "bytes left the client");
      assert.ok(sent() < BOUND, `crib took ${(sent() / (1 << 20)).toFixed(0)} MB for a pod that stopped reading`);
    } finally {
      client.destroy();
    }
  });
});
