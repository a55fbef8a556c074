// Exec, attach and port forward on the real stack: the CRI rpcs hand out URLs,
// clients speaking the Kubernetes protocols (SPDY and WebSocket) use them
// against containers in containerd and pods in their own network namespaces.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";

import { join } from "node:path";
import { PassThrough, type Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { status, type ServiceError } from "@grpc/grpc-js";
import { PodEnv } from "../fixtures/pod-env.js";
import { portOf } from "../fixtures/ports.js";
import {
  collect,
  execSpdy,
  execWs,
  SpdyClient,
  SpdyPortForwardClient,
  UpgradeRefusedError,
  WsPortForwardClient,
  type Status,
} from "../fixtures/stream-clients.js";

const run = promisify(execFile);
/** Short, for the expiry test only; the other tests' URLs live the default minute, which a busy node needs. */
const TOKEN_TTL_MS = 3000;
const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const HTTP_GET = "GET /index.html HTTP/1.0\r\n\r\n";

async function rejection(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("expected the call to fail");
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** A live exec or attach over SPDY, driven step by step as a person at a terminal would. */
async function session(url: string, opts: { tty: boolean; stderr?: boolean }) {
  const client = await SpdyClient.connect(url, { protocols: ["v4.channel.k8s.io"] });
  const error = await client.openStream({ streamType: "error" });
  const stdin = await client.openStream({ streamType: "stdin" });
  const stdout = await client.openStream({ streamType: "stdout" });
  const stderr = opts.stderr ? await client.openStream({ streamType: "stderr" }) : undefined;
  const resize = opts.tty ? await client.openStream({ streamType: "resize" }) : undefined;
  let screen = "";
  stdout.on("data", (c: Buffer) => (screen += c.toString()));
  stderr?.resume();
  const result = collect(error).then((b): Status | undefined => (b.length === 0 ? undefined : (JSON.parse(b.toString()) as Status)));
  return {
    get screen() { return screen; },
    type: (text: string) => stdin.write(text),
    endInput: () => stdin.end(),
    resize: (width: number, height: number) => resize?.write(JSON.stringify({ Width: width, Height: height })),
    /** Types `command` until the screen matches `expected` (a resize races the command typed after it). */
    async run(command: string, expected: RegExp): Promise<void> {
      const from = screen.length;
      await until(`${JSON.stringify(command)} to print ${expected}`, async () => {
        stdin.write(command);
        for (let i = 0; i < 10; i++) {
          if (expected.test(screen.slice(from))) return true;
          await sleep(50);
        }
        return undefined;
      });
    },
    result,
    destroy: () => client.destroy(),
  };
}

/** Child processes of `pid` whose command is one of `names`. */
async function children(pid: number, names: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const m = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
    if (m && Number(m[2]) === pid && names.includes(m[1] ?? "")) found.push(`${entry} ${m[1]}`);
  }
  return found;
}

/** An HTTP/1.0 GET over a forwarded connection: everything the server sent before it closed. */
async function httpGet(data: Duplex): Promise<string> {
  const response = collect(data);
  data.write(HTTP_GET);
  return (await response).toString();
}

describe("streaming: exec, attach and port forward", () => {
  let env: PodEnv;
  let pod: Awaited<ReturnType<PodEnv["runPod"]>>;
  let sleeper: string;
  const execUrl = async (cmd: string[], opts: { tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean } = {}) =>
    (await env.client.runtime.Exec({ container_id: sleeper, cmd, tty: false, stdin: false, stdout: true, stderr: true, ...opts })).url;

  before(async () => {
    env = await PodEnv.start();
    pod = await env.runPod("streams");
    sleeper = await env.runContainer(pod, "sleeper");
  });
  after(async () => { await env?.close(); });

  describe("exec", () => {
    it("runs an interactive shell on a terminal that follows the client's size (stty size)", async () => {
      const url = await execUrl(["/bin/sh"], { tty: true, stdin: true, stderr: false });
      const shell = await session(url, { tty: true });
      try {
        shell.resize(123, 45);
        await shell.run("stty size\n", /^45 123\r?$/m);
        shell.resize(80, 20);
        await shell.run("stty size\n", /^20 80\r?$/m);
        await shell.run("tty\n", /^\/dev\/pts\/\d+\r?$/m);
        shell.type("exit 3\n");
        const result = await shell.result;
        assert.equal(result?.reason, "NonZeroExitCode");
        assert.equal(result?.details?.causes[0]?.message, "3");
      } finally {
        shell.destroy();
      }
    });

    for (const transport of ["SPDY", "WebSocket"] as const) {
      it(`pipes 10 MB of stdin through the process and passes its EOF on (sha256sum, ${transport})`, async () => {
        const input = randomBytes(10 * 1024 * 1024);
        const url = await execUrl(["/bin/sha256sum"], { stdin: true });
        const run = transport === "SPDY" ? execSpdy : execWs;
        const result = await run(url, { stdin: input });
        assert.equal(result.stdout.toString(), `${sha256(input)}  -\n`);
        assert.equal(result.stderr.toString(), "");
        assert.equal(result.status?.status, "Success", result.error);
      });
    }

    it("reports the exit code, stdout and stderr apart (sh -c 'exit 7')", async () => {
      const result = await execSpdy(await execUrl(["/bin/sh", "-c", "echo out; echo err >&2; exit 7"]));
      assert.equal(result.stdout.toString(), "out\n");
      assert.equal(result.stderr.toString(), "err\n");
      assert.equal(result.status?.status, "Failure");
      assert.equal(result.status?.reason, "NonZeroExitCode");
      assert.equal(result.status?.details?.causes[0]?.reason, "ExitCode");
      assert.equal(result.status?.details?.causes[0]?.message, "7");
      const ok = await execWs(await execUrl(["/bin/echo", "fine"]));
      assert.equal(ok.stdout.toString(), "fine\n");
      assert.equal(ok.status?.status, "Success");
    });

    it("runs as the container's user, in its working directory and namespaces, with stdout alone", async () => {
      const pod2 = await env.runPod("exec-env");
      const c = await env.runContainer(pod2, "env", { working_dir: "/srv", linux: { security_context: { run_as_user: { value: 1000 } } } });
      const { url } = await env.client.runtime.Exec({ container_id: c, cmd: ["/bin/sh", "-c", "id -u; pwd; hostname; echo hidden >&2"], stdout: true });
      const result = await execSpdy(url, { stderr: false });
      assert.equal(result.stdout.toString(), "1000\n/srv\nexec-env\n", result.error);
      assert.equal(result.status?.status, "Success");
    });

    it("reports a command that cannot start as an internal error naming it", async () => {
      const result = await execSpdy(await execUrl(["/bin/no-such-binary"]));
      assert.equal(result.status?.reason, "InternalError");
      assert.match(result.status?.message ?? "", /no-such-binary/);
    });

    it("leaves no exec process and no FIFO behind when the client is killed mid-stream", async () => {
      const containerd = env.containerd.client("crib-test");
      try {
        const pids = async () => (await containerd.tasks.ListPids({ container_id: sleeper })).processes.length;
        assert.equal(await pids(), 1);
        let kill: (() => void) | undefined;
        const url = await execUrl(["/bin/sleep", "1000"], { stdin: true });
        const running = execSpdy(url, { stdin: new PassThrough(), onOpen: (s) => (kill = () => s.destroy()) }).catch(() => undefined);
        await until("the exec process to run", async () => ((await pids()) === 2 ? true : undefined));
        assert.ok(kill);
        kill();
        await running;
        await until("the exec process to be gone", async () => ((await pids()) === 1 ? true : undefined));
        const fifos = await until("the exec FIFOs to be removed", async () => {
          const left = await readdir(join(env.crib.dir, "state", "exec")).catch(() => []);
          return left.length === 0 ? left : undefined;
        });
        assert.deepEqual(fifos, []);
      } finally {
        containerd.close();
      }
    });

    it("refuses bad requests with the status kubelet expects, naming the container", async () => {
      const missing = await rejection(env.client.runtime.Exec({ container_id: "no-such-container", cmd: ["/bin/true"], stdout: true }));
      assert.equal(missing.code, status.NOT_FOUND);
      assert.match(missing.details, /no-such-container/);
      const noStreams = await rejection(env.client.runtime.Exec({ container_id: sleeper, cmd: ["/bin/true"] }));
      assert.equal(noStreams.code, status.INVALID_ARGUMENT);
      assert.match(noStreams.details, /one of stdin, stdout, or stderr/);
      const ttyStderr = await rejection(env.client.runtime.Exec({ container_id: sleeper, cmd: ["/bin/sh"], tty: true, stdout: true, stderr: true }));
      assert.equal(ttyStderr.code, status.INVALID_ARGUMENT);
      assert.match(ttyStderr.details, /tty and stderr/);
      const noCmd = await rejection(env.client.runtime.Exec({ container_id: sleeper, cmd: [], stdout: true }));
      assert.equal(noCmd.code, status.INVALID_ARGUMENT);

      const stopped = await env.runContainer(pod, "stopped");
      await env.client.runtime.StopContainer({ container_id: stopped, timeout: 0 });
      const notRunning = await rejection(env.client.runtime.Exec({ container_id: stopped, cmd: ["/bin/true"], stdout: true }));
      assert.equal(notRunning.code, status.FAILED_PRECONDITION);
      assert.match(notRunning.details, new RegExp(`container ${stopped} is not running`));
    });
  });

  describe("attach", () => {
    it("connects to the stdin and stdout of a running container; stdin_once ends it, and the log has it all", async () => {
      const c = await env.runContainer(pod, "cat-once", { command: ["/bin/cat"], stdin: true, stdin_once: true });
      const { url } = await env.client.runtime.Attach({ container_id: c, stdin: true, stdout: true, stderr: true });
      const result = await execSpdy(url, { stdin: Buffer.from("hello attach\n") });
      assert.equal(result.stdout.toString(), "hello attach\n");
      assert.equal(result.status?.status, "Success", result.error);
      const exited = await until("cat to exit", async () => {
        const s = (await env.client.runtime.ContainerStatus({ container_id: c })).status;
        return s?.state === "CONTAINER_EXITED" ? s : undefined;
      });
      assert.equal(exited.exit_code, 0);
      const log = await readFile(exited.log_path, "utf8");
      assert.match(log, /^\S+ stdout F hello attach$/m);
    });

    it("lets clients come and go without closing the container's stdin", async () => {
      const c = await env.runContainer(pod, "cat", { command: ["/bin/cat"], stdin: true });
      for (const word of ["first", "second"]) {
        const { url } = await env.client.runtime.Attach({ container_id: c, stdin: true, stdout: true, stderr: true });
        const client = await session(url, { tty: false, stderr: true });
        try {
          await client.run(`${word}\n`, new RegExp(`^${word}$`, "m"));
          client.endInput();
          await sleep(200);
        } finally {
          client.destroy();
        }
      }
      const s = (await env.client.runtime.ContainerStatus({ container_id: c })).status;
      assert.equal(s?.state, "CONTAINER_RUNNING");
      const log = await readFile(s?.log_path ?? "", "utf8");
      assert.match(log, /stdout F first\n.*stdout F second\n/s);
    });

    it("attaches to a container's terminal and resizes it", async () => {
      const c = await env.runContainer(pod, "tty-shell", { command: ["/bin/sh"], stdin: true, tty: true });
      const { url } = await env.client.runtime.Attach({ container_id: c, stdin: true, stdout: true, tty: true });
      const shell = await session(url, { tty: true });
      try {
        shell.resize(132, 50);
        await shell.run("stty size\n", /^50 132\r?$/m);
        shell.type("exit 0\n");
        assert.equal((await shell.result)?.status, "Success");
      } finally {
        shell.destroy();
      }
    });

    it("refuses a terminal the container lacks, and stdin it was created without", async () => {
      const ttyMismatch = await rejection(env.client.runtime.Attach({ container_id: sleeper, stdout: true, tty: true }));
      assert.equal(ttyMismatch.code, status.INVALID_ARGUMENT);
      assert.match(ttyMismatch.details, /created with tty false/);
      const noStdin = await rejection(env.client.runtime.Attach({ container_id: sleeper, stdin: true, stdout: true }));
      assert.equal(noStdin.code, status.INVALID_ARGUMENT);
      assert.match(noStdin.details, new RegExp(`container ${sleeper}: stdin requested but the container was created without stdin`));
    });
  });

  describe("port forward", () => {
    let web: Awaited<ReturnType<PodEnv["runPod"]>>;
    before(async () => {
      web = await env.runPod("web");
      await env.runContainer(web, "httpd", { command: ["/bin/httpd", "-f", "-p", "8080", "-h", "/srv"] });
      // httpd is up once a forwarded GET gets an answer.
      await until("httpd in the pod", async () => {
        const client = await SpdyPortForwardClient.connect((await env.client.runtime.PortForward({ pod_sandbox_id: web.id, port: [8080] })).url);
        try {
          const conn = await client.dial(8080);
          return (await httpGet(conn.data)).includes("hello from crib") ? true : undefined;
        } finally {
          client.destroy();
        }
      });
    });

    it("carries 50 concurrent connections to httpd in a pod whose image has no tools (SPDY)", async () => {
      const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: web.id, port: [8080] });
      const client = await SpdyPortForwardClient.connect(url);
      try {
        const results = await Promise.all(Array.from({ length: 50 }, async () => {
          const conn = await client.dial(8080);
          return { response: await httpGet(conn.data), error: await conn.error };
        }));
        for (const [i, r] of results.entries()) {
          assert.match(r.response, /^HTTP\/1\.[01] 200 OK\r\n/, `connection ${i}`);
          assert.ok(r.response.endsWith("\r\n\r\nhello from crib\n"), `connection ${i}: ${r.response}`);
          assert.equal(r.error, "", `connection ${i}`);
        }
      } finally {
        client.destroy();
      }
    });

    it("carries 50 concurrent connections over WebSocket, one session each", async () => {
      const results = await Promise.all(Array.from({ length: 50 }, async () => {
        const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: web.id, port: [8080] });
        const client = await WsPortForwardClient.connect(url, 1);
        const conn = client.connections[0];
        assert.ok(conn);
        const response = await httpGet(conn.data);
        await client.closed;
        return { response, error: await conn.error, ports: await client.ports };
      }));
      for (const [i, r] of results.entries()) {
        assert.ok(r.response.endsWith("hello from crib\n"), `connection ${i}: ${r.response}`);
        assert.deepEqual(r.ports, [8080]);
        assert.equal(r.error, "", `connection ${i}`);
      }
    });

    it("carries SPDY tunnelled in a WebSocket (kubectl's SPDYOverWebsocket)", async () => {
      const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: web.id, port: [] });
      const client = await SpdyPortForwardClient.connect(url, { overWebSocket: true });
      try {
        const responses = await Promise.all(Array.from({ length: 5 }, async () => httpGet((await client.dial(8080)).data)));
        for (const r of responses) assert.ok(r.endsWith("hello from crib\n"), r);
      } finally {
        client.destroy();
      }
    });

    it("reports a closed port on that connection's error stream, as kubelet words it", async () => {
      const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: web.id, port: [] });
      const client = await SpdyPortForwardClient.connect(url);
      try {
        const refused = await client.dial(9999);
        const [data, error] = await Promise.all([collect(refused.data), refused.error]);
        assert.equal(data.length, 0);
        assert.equal(error, `error forwarding port 9999 to pod ${web.id}: dial tcp 127.0.0.1:9999: connect: connection refused`);
      } finally {
        client.destroy();
      }
    });

    it("reaches a host-network pod's port on the node's loopback", async () => {
      const host = await env.runPod("hostnet", { linux: { security_context: { namespace_options: { network: "NODE" } } } });
      // port 0 on the node's loopback, read back from httpd's own socket: no port to race for on a shared node
      const httpd = await env.runContainer(host, "httpd", { command: ["/bin/httpd", "-f", "-p", "127.0.0.1:0", "-h", "/srv"] });
      const port = await portOf(await env.pidOf(httpd), "httpd in the host-network pod");
      const response = await until("httpd on the node's loopback", async () => {
        const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: host.id, port: [port] });
        const client = await SpdyPortForwardClient.connect(url);
        try {
          const conn = await client.dial(port);
          const [body, error] = await Promise.all([httpGet(conn.data), conn.error]);
          return error === "" ? body : undefined;
        } finally {
          client.destroy();
        }
      });
      assert.ok(response.endsWith("hello from crib\n"), response);
    });

    it("leaves no helper process once the connections are done", async () => {
      const pid = env.crib.pid ?? 0;
      const { url } = await env.client.runtime.PortForward({ pod_sandbox_id: web.id, port: [] });
      const client = await SpdyPortForwardClient.connect(url);
      const open = await client.dial(8080);
      open.data.write("GET /index.html HTTP/1.0\r\n"); // an unfinished request keeps the connection open
      await until("a helper", async () => ((await children(pid, ["socat", "nsenter"])).length > 0 ? true : undefined));
      client.destroy();
      const left = await until("the helpers to exit", async () => {
        const found = await children(pid, ["socat", "nsenter"]);
        return found.length === 0 ? found : undefined;
      });
      assert.deepEqual(left, []);
    });

    it("refuses a missing or stopped pod", async () => {
      const missing = await rejection(env.client.runtime.PortForward({ pod_sandbox_id: "no-such-pod", port: [80] }));
      assert.equal(missing.code, status.NOT_FOUND);
      assert.match(missing.details, /no-such-pod/);
      const gone = await env.runPod("gone");
      await env.client.runtime.StopPodSandbox({ pod_sandbox_id: gone.id });
      const stopped = await rejection(env.client.runtime.PortForward({ pod_sandbox_id: gone.id, port: [80] }));
      assert.equal(stopped.code, status.FAILED_PRECONDITION);
      assert.match(stopped.details, new RegExp(`pod sandbox ${gone.id} is not ready`));
    });
  });

  describe("URLs", () => {
    it("are good for one use only", async () => {
      const url = await execUrl(["/bin/true"]);
      assert.equal((await execSpdy(url)).status?.status, "Success");
      for (const attempt of [() => execSpdy(url), () => execWs(url)]) {
        const err = await attempt().catch((e: unknown) => e);
        assert.ok(err instanceof UpgradeRefusedError, String(err));
        assert.equal(err.statusCode, 404);
      }
    });
  });
});

describe("streaming over TLS", () => {
  let env: PodEnv;
  let cert = "";
  before(async () => {
    const dir = await mkdtemp("/tmp/crib-tls-");
    const [certFile, keyFile] = [join(dir, "cert.pem"), join(dir, "key.pem")];
    await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=crib streaming test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile]);
    cert = await readFile(certFile, "utf8");
    env = await PodEnv.start({ config: { streaming: { tls: true, tls_cert: certFile, tls_key: keyFile, token_ttl: `${TOKEN_TTL_MS}ms` } } });
    await rm(dir, { recursive: true, force: true }); // read at start
  });
  after(async () => { await env?.close(); });

  it("serves https URLs with the configured certificate (SPDY and WebSocket)", async () => {
    const pod = await env.runPod("tls");
    const c = await env.runContainer(pod, "main");
    const url = async () => (await env.client.runtime.Exec({ container_id: c, cmd: ["/bin/echo", "secure"], stdout: true })).url;
    const first = await url();
    assert.match(first, /^https:\/\/127\.0\.0\.1:\d+\/exec\//);
    assert.equal((await execSpdy(first, { ca: cert, stderr: false })).stdout.toString(), "secure\n");
    assert.equal((await execWs(await url(), { ca: cert, stderr: false })).stdout.toString(), "secure\n");
  });

  it("hands out URLs that expire after streaming.token_ttl", async () => {
    const pod = await env.runPod("expiry");
    const c = await env.runContainer(pod, "main");
    const exec = (await env.client.runtime.Exec({ container_id: c, cmd: ["/bin/true"], stdout: true })).url;
    const forward = (await env.client.runtime.PortForward({ pod_sandbox_id: pod.id, port: [] })).url;
    await sleep(TOKEN_TTL_MS + 500);
    const err = await execSpdy(exec, { ca: cert }).catch((e: unknown) => e);
    assert.ok(err instanceof UpgradeRefusedError, String(err));
    assert.equal(err.statusCode, 404);
    const err2 = await SpdyPortForwardClient.connect(forward, { ca: cert }).catch((e: unknown) => e);
    assert.ok(err2 instanceof UpgradeRefusedError, String(err2));
    assert.equal(err2.statusCode, 404);
  });
});
