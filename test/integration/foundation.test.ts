// The CRI server, its config and its containerd connection, against a real containerd.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { TestContainerd } from "../fixtures/containerd.js";
import { TestCrib } from "../fixtures/crib.js";
import { socketAnswers } from "../../cri/socket.js";
import { SYSTEM_CONTAINERD } from "../../cri/serve.js";

const MAIN = fileURLToPath(new URL("../../cri/main.js", import.meta.url));
const run = promisify(execFile);

async function cribExit(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await run(process.execPath, [MAIN, ...args], { timeout: 20_000 });
    return { code: 0, stderr: "" };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

const condition = (status: { status: { conditions: { type: string; status: boolean; reason: string; message: string }[] } | null }, type: string) =>
  status.status?.conditions.find((c) => c.type === type);

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("crib against a test containerd", () => {
  let containerd: TestContainerd;
  let crib: TestCrib;
  before(async () => {
    containerd = await TestContainerd.start();
    crib = await TestCrib.start({ containerdAddress: containerd.address });
  });
  after(async () => {
    await crib?.close();
    await containerd?.close();
  });

  it("answers Version as crib with the CRI v1 API", async () => {
    const v = await crib.client.runtime.Version({});
    assert.equal(v.runtime_name, "crib");
    assert.equal(v.runtime_api_version, "v1");
    const pkg = JSON.parse(await readFile(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(v.runtime_version, pkg.version);
  });

  it("reports RuntimeReady, and NetworkReady only once a CNI config exists", async () => {
    const s = await crib.client.runtime.Status({ verbose: true });
    assert.equal(condition(s, "RuntimeReady")?.status, true);
    const net = condition(s, "NetworkReady");
    assert.equal(net?.status, false);
    assert.equal(net?.reason, "NetworkPluginNotReady");
    assert.match(net?.message ?? "", /net\.d/);
    assert.ok(s.info["config"], "verbose Status carries the config");
    await writeFile(join(crib.dir, "net.d", "10-test.conflist"), JSON.stringify({
      cniVersion: "1.0.0", name: "test", plugins: [{ type: "loopback" }],
    }));
    await eventually("NetworkReady true", async () => condition(await crib.client.runtime.Status({}), "NetworkReady")?.status === true);
  });

  it("answers RuntimeConfig with the cgroupfs driver", async () => {
    const rc = await crib.client.runtime.RuntimeConfig({});
    assert.equal(rc.linux?.cgroup_driver, "CGROUPFS");
  });

  it("serves its socket with mode 0660", async () => {
    const st = await stat(crib.socket);
    assert.equal(st.mode & 0o777, 0o660);
  });

  it("refuses a second crib on the same socket", async () => {
    const { code, stderr } = await cribExit(["serve", "--config", crib.configPath]);
    assert.equal(code, 1);
    assert.match(stderr + (await crib.log()), /already serving/);
    assert.equal(await socketAnswers(crib.socket), true, "the first crib still serves");
  });

  it("reports RuntimeReady false while containerd is down", async () => {
    await containerd.daemon.stop();
    await eventually("RuntimeReady false", async () => condition(await crib.client.runtime.Status({}), "RuntimeReady")?.status === false);
    const down = condition(await crib.client.runtime.Status({}), "RuntimeReady");
    assert.match(down?.message ?? "", /does not answer/);
    await containerd.daemon.start();
    await eventually("RuntimeReady true again", async () => condition(await crib.client.runtime.Status({}), "RuntimeReady")?.status === true);
  });

  it("replaces a stale socket file left by a crash", async () => {
    await crib.stopProcess("SIGKILL");
    assert.ok(await stat(crib.socket), "a crash leaves the socket file");
    await crib.startProcess();
    assert.equal((await crib.client.runtime.Version({})).runtime_name, "crib");
  });

  it("exits 0 on SIGTERM and removes its socket", async () => {
    assert.equal(await crib.stopProcess("SIGTERM"), 0);
    await assert.rejects(stat(crib.socket));
    await crib.startProcess();
  });
});

describe("crib's own containerd", { skip: (await socketAnswers(SYSTEM_CONTAINERD)) ? "a system containerd answers here" : false }, () => {
  it("starts containerd itself, restarts it when it dies, leaves shims alone on stop", async () => {
    const dir = await mkdtemp("/tmp/crib-own-");
    const crib = await TestCrib.start({ containerdAddress: "", config: { root: join(dir, "root"), state: join(dir, "state") } });
    try {
      const status = async () => condition(await crib.client.runtime.Status({}), "RuntimeReady")?.status;
      assert.equal(await status(), true);
      const pidOf = async () => {
        const lines = (await crib.log()).split("\n").filter((l) => l.includes("started containerd"));
        return (JSON.parse(lines.at(-1)!) as { containerdPid: number }).containerdPid;
      };
      const first = await pidOf();
      process.kill(first, "SIGKILL");
      await eventually("RuntimeReady false after containerd died", async () => (await status()) === false, 10_000);
      await eventually("containerd restarted", async () => (await status()) === true, 30_000);
      assert.notEqual(await pidOf(), first);
    } finally {
      await crib.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("configuration errors", () => {
  let dir: string;
  before(async () => { dir = await mkdtemp("/tmp/crib-cfg-"); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  for (const [what, text, key] of [
    ["an unknown key", 'listen = "/tmp/x.sock"\nlisten_address = "x"\n', "listen_address"],
    ["a wrong type", '[containerd]\nnamespace = 5\n', "containerd.namespace"],
    ["an unknown section key", "[cni]\nconfdir = \"/x\"\n", "cni.confdir"],
    ["a bad duration", '[registry]\nprogress_timeout = "soon"\n', "registry.progress_timeout"],
  ] as const) {
    it(`exits 1 naming the key for ${what}`, async () => {
      const file = join(dir, "config.toml");
      await writeFile(file, text);
      const { code, stderr } = await cribExit(["serve", "--config", file]);
      assert.equal(code, 1);
      assert.ok(stderr.includes(file), `names the file: ${stderr}`);
      assert.ok(stderr.includes(`"${key}"`), `names the key ${key}: ${stderr}`);
    });
  }

  it("prints a default config that loads back unchanged", async () => {
    const { stdout } = await run(process.execPath, [MAIN, "config", "default"]);
    const file = join(dir, "default.toml");
    await writeFile(file, stdout);
    const { configFromObject, defaultConfig } = await import("../../cri/config.js");
    const { parse } = await import("smol-toml");
    assert.deepEqual(configFromObject(file, parse(stdout) as Record<string, unknown>), defaultConfig());
    const shipped = await readFile(new URL("../../../deploy/config.toml", import.meta.url), "utf8");
    assert.equal(shipped, stdout, "deploy/config.toml is `crib config default` (regenerate it)");
  });
});

describe("a busy socket path that is not a socket", () => {
  it("is refused with a clear error", async () => {
    const dir = await mkdtemp("/tmp/crib-sock-");
    try {
      await writeFile(join(dir, "crib.sock"), "not a socket");
      const { code, stderr } = await cribExit(["serve", "--listen", join(dir, "crib.sock"), "--containerd-address", "/nonexistent.sock", "--root", join(dir, "r"), "--state", join(dir, "s")]);
      assert.equal(code, 1);
      assert.match(stderr, /not a socket/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
