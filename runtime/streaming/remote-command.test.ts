import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { execSpdy, execWs, type ExecResult } from "../../test/fixtures/stream-clients.js";
import { FakeRuntime } from "./fake-runtime.fixture.js";
import { readTerminalSizes } from "./remote-command.js";
import { StreamingServer } from "./server.js";
import type { ExecRequest, TerminalSize } from "./streaming-runtime.js";

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const exec = (cmd: string[], streams: Partial<ExecRequest> = {}): ExecRequest => ({ containerId: "c1", cmd, tty: false, stdin: false, stdout: true, stderr: true, ...streams });

async function waitFor(what: string, condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe("exec and attach", () => {
  const runtime = new FakeRuntime();
  let server: StreamingServer;
  before(async () => {
    server = await StreamingServer.listen({ runtime });
  });
  after(() => server.close());

  describe("10 MB of stdin comes back through cat unchanged", () => {
    const input = randomBytes(10 * 1024 * 1024);
    const req = exec(["cat"], { stdin: true });
    const check = (r: ExecResult): void => {
      assert.equal(r.stdout.length, input.length, "stdout length");
      assert.equal(sha256(r.stdout), sha256(input), "stdout sha256");
      assert.deepEqual(r.status, { metadata: {}, status: "Success" });
    };
    it("over SPDY from a Go-like client (no flow control, bare SYN_STREAMs)", async () => check(await execSpdy(server.getExecUrl(req), { stdin: input, flavor: "go" })));
    it("over SPDY from a flow-controlled spdy-transport client", async () => check(await execSpdy(server.getExecUrl(req), { stdin: input, flavor: "spdy-transport" })));
    it("over SPDY with stdin streamed in pieces", async () => {
      const stdin = new PassThrough();
      const result = execSpdy(server.getExecUrl(req), { stdin });
      for (let i = 0; i < input.length; i += 1 << 20) stdin.write(input.subarray(i, i + (1 << 20)));
      stdin.end();
      check(await result);
    });
    it("over WebSocket v5 (stdin closed with the close signal)", async () => check(await execWs(server.getExecUrl(req), { stdin: input })));
    it("over WebSocket v4.base64", async () => {
      const small = input.subarray(0, 300_000);
      const r = await execWs(server.getExecUrl(exec(["head", "-c", String(small.length)], { stdin: true })), { stdin: small, protocols: ["v4.base64.channel.k8s.io"] });
      assert.equal(r.protocol, "v4.base64.channel.k8s.io");
      assert.equal(sha256(r.stdout), sha256(small));
      assert.equal(r.status?.status, "Success");
    });
  });

  it("keeps stdout and stderr apart", async () => {
    const r = await execSpdy(server.getExecUrl(exec(["sh", "-c", "echo to-out; echo to-err >&2"])));
    assert.equal(r.stdout.toString(), "to-out\n");
    assert.equal(r.stderr.toString(), "to-err\n");
  });

  describe("a non-zero exit code", () => {
    const failure = {
      metadata: {},
      status: "Failure",
      message: "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "3" }] },
    };
    it("is a NonZeroExitCode Status over SPDY v5 and v4", async () => {
      for (const protocol of ["v5.channel.k8s.io", "v4.channel.k8s.io"]) {
        const r = await execSpdy(server.getExecUrl(exec(["sh", "-c", "exit 3"])), { protocols: [protocol] });
        assert.equal(r.protocol, protocol);
        assert.deepEqual(JSON.parse(r.error), failure);
      }
    });
    it("is a NonZeroExitCode Status over WebSocket v5 and v4", async () => {
      for (const protocol of ["v5.channel.k8s.io", "v4.channel.k8s.io"]) {
        const r = await execWs(server.getExecUrl(exec(["sh", "-c", "exit 3"])), { protocols: [protocol] });
        assert.equal(r.protocol, protocol);
        assert.deepEqual(JSON.parse(r.error), failure);
      }
    });
    it("is plain text before v4, and success is silent", async () => {
      for (const protocol of ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]) {
        const failed = await execSpdy(server.getExecUrl(exec(["sh", "-c", "exit 3"])), { protocols: [protocol] });
        assert.equal(failed.protocol, protocol);
        assert.equal(failed.error, failure.message);
        const ok = await execSpdy(server.getExecUrl(exec(["true"])), { protocols: [protocol] });
        assert.equal(ok.error, "");
      }
    });
  });

  it("negotiates the client's first choice that the server speaks", async () => {
    const r = await execSpdy(server.getExecUrl(exec(["true"])), { protocols: ["v9.channel.k8s.io", "v3.channel.k8s.io", "v4.channel.k8s.io"] });
    assert.equal(r.protocol, "v3.channel.k8s.io");
  });

  it("reports a runtime failure as an InternalError Status", async () => {
    const r = await execSpdy(server.getExecUrl(exec(["fake-fail"])));
    assert.deepEqual(r.status, {
      metadata: {},
      status: "Failure",
      message: 'Internal error occurred: error executing command in container: container "c1" is not running',
      reason: "InternalError",
      details: { causes: [{ message: 'error executing command in container: container "c1" is not running' }] },
      code: 500,
    });
  });

  describe("TTY resize reaches the runtime", () => {
    const sizes: TerminalSize[] = [
      { width: 80, height: 24 },
      { width: 120, height: 40 },
      { width: 200, height: 50 },
    ];
    const req = exec(["fake-resize", "200x50"], { tty: true, stdin: true, stderr: false });
    const check = (r: ExecResult): void => {
      const seen = r.stdout.toString().trim().split("\n");
      assert.equal(seen.at(-1), "200x50", `the last size reached the runtime (saw ${seen.join(", ")})`);
      // Sizes may be coalesced when the runtime lags, never reordered.
      const order = sizes.map((s) => `${s.width}x${s.height}`);
      assert.deepEqual(seen, order.filter((s) => seen.includes(s)));
      assert.equal(r.status?.status, "Success");
    };
    it("over SPDY", async () => check(await execSpdy(server.getExecUrl(req), { tty: true, resize: sizes, stdin: new PassThrough() })));
    it("over WebSocket", async () => check(await execWs(server.getExecUrl(req), { tty: true, resize: sizes, stdin: new PassThrough() })));
  });

  describe("a client that goes away mid-stream aborts the runtime's signal", () => {
    for (const transport of ["SPDY", "WebSocket"] as const) {
      it(`over ${transport}`, async () => {
        const before = runtime.calls.length;
        let kill: (() => void) | undefined;
        const url = server.getExecUrl(exec(["fake-wait-for-abort"], { stdin: true }));
        const options = { stdin: new PassThrough(), onOpen: (s: { destroy(): void }) => (kill = () => s.destroy()) };
        const done = (transport === "SPDY" ? execSpdy(url, options) : execWs(url, options)).catch(() => undefined);
        await waitFor("the runtime call", () => runtime.calls.length > before);
        // the server may call the runtime before the client has seen its socket open
        await waitFor("the client's socket", () => kill !== undefined);
        const call = runtime.calls.at(-1);
        assert.ok(call);
        assert.equal(call.signal.aborted, false);
        kill!();
        await waitFor("the signal to fire", () => call.signal.aborted);
        assert.equal((call.signal.reason as { why?: string }).why, "client-disconnected");
        await done;
        await waitFor("the session to end", () => server.activeStreams === 0);
      });
    }
  });

  it("gives up on a client that never opens its streams, without calling the runtime", async () => {
    // long enough for the upgrade to finish on a loaded node, so the timeout is what ends the session
    const impatient = await StreamingServer.listen({ runtime: new FakeRuntime(), streamCreationTimeoutMs: 1500 });
    try {
      // stdin is expected but the client opens no stdin stream.
      const r = await execSpdy(impatient.getExecUrl(exec(["cat"], { stdin: true })));
      assert.equal(r.status, undefined);
      await waitFor("the session to end", () => impatient.activeStreams === 0);
    } finally {
      await impatient.close();
    }
  });

  it("holds stdin back while the process does not read it, and loses none of it", async () => {
    const input = randomBytes(8 * 1024 * 1024);
    const req = exec(["sh", "-c", "sleep 1; cat"], { stdin: true });
    const [spdy, ws] = await Promise.all([execSpdy(server.getExecUrl(req), { stdin: input }), execWs(server.getExecUrl(req), { stdin: input })]);
    assert.equal(sha256(spdy.stdout), sha256(input), "over SPDY");
    assert.equal(sha256(ws.stdout), sha256(input), "over WebSocket");
  });

  it("attaches to the main process", async () => {
    const r = await execSpdy(server.getAttachUrl({ containerId: "c1", tty: false, stdin: true, stdout: true, stderr: false }), { stdin: Buffer.from("hello"), stderr: false });
    assert.equal(r.stdout.toString(), "hello");
    assert.deepEqual(r.status, { metadata: {}, status: "Success" });
  });
});

describe("resize messages", () => {
  it("are read back to back, split anywhere, with Go's case-insensitive field names", async () => {
    const input = new PassThrough();
    const sizes = readTerminalSizes(input, pino({ level: "silent" }))[Symbol.asyncIterator]();
    const first = sizes.next();
    input.write('{"Width":80,"Height":24}{"wid');
    assert.deepEqual((await first).value, { width: 80, height: 24 });
    const second = sizes.next();
    input.write('th":100, "height":30}\n');
    assert.deepEqual((await second).value, { width: 100, height: 30 });
    const third = sizes.next();
    input.write('{"Width":"x"}{"WIDTH":1,"HEIGHT":2}');
    assert.deepEqual((await third).value, { width: 1, height: 2 }, "a malformed message is skipped");
    const end = sizes.next();
    input.end();
    assert.equal((await end).done, true);
  });
});
