// The plugin protocol and the chain logic, with fake plugins that record what
// they were given (the real plugins run in test/integration/cni.test.ts).
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { pino } from "pino";
import type { NetworkConfigList } from "./config.js";
import { CniError, execPlugin, pluginStdin } from "./exec.js";
import { CniNetwork, type Attachment } from "./network.js";

const log = pino({ level: "silent" });
let root: string;
let bin: string;

// Records {type, env, conf} per call; ADD prints conf.result or passes prevResult on;
// conf.fail makes it print a CNI error; conf.hang makes it never finish.
const FAKE_PLUGIN = `#!${process.execPath}
const fs = require("node:fs");
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const conf = JSON.parse(input);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("CNI_")));
  fs.appendFileSync(conf.log, JSON.stringify({ type: conf.type, pid: process.pid, env, conf }) + "\\n");
  if (conf.hang) return setInterval(() => {}, 1000);
  if (conf.fail && (!conf.failOn || conf.failOn === env.CNI_COMMAND)) {
    if (conf.fail === "garbage") { process.stderr.write("panic: runtime error"); process.exit(2); }
    process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, ...conf.fail }));
    process.exit(1);
  }
  if (env.CNI_COMMAND === "ADD") process.stdout.write(JSON.stringify(conf.result ?? conf.prevResult));
});
`;

const RESULT = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "crib0" }, { name: "eth0", sandbox: "/var/run/netns/x" }],
  ips: [{ interface: 1, address: "10.88.0.5/16", gateway: "10.88.0.1" }],
};

before(async () => {
  root = await mkdtemp(join(tmpdir(), "crib-cni-net-"));
  bin = join(root, "bin");
  await mkdir(bin);
  for (const type of ["fake-main", "fake-meta", "fake-other"]) {
    await writeFile(join(bin, type), FAKE_PLUGIN);
    await chmod(join(bin, type), 0o755);
  }
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Call {
  type: string;
  pid: number;
  env: Record<string, string>;
  conf: Record<string, unknown>;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function fixture(name: string, plugins: Array<Record<string, unknown>>, cniVersion = "1.0.0") {
  const dir = await mkdtemp(join(root, `${name}-`));
  const logFile = join(dir, "calls.jsonl");
  await writeFile(logFile, "");
  const list: NetworkConfigList = {
    cniVersion,
    name: "testnet",
    disableCheck: false,
    source: "test",
    plugins: plugins.map((p) => ({ type: "fake-main", log: logFile, ...p })),
  };
  const calls = async (): Promise<Call[]> =>
    (await readFile(logFile, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Call);
  const cacheDir = join(dir, "cache");
  const network = new CniNetwork({ config: list, binDirs: ["/nonexistent", bin], cacheDir, log });
  return { list, calls, cacheDir, network };
}

const attachment: Attachment = {
  id: "sandbox1",
  netns: "/var/run/netns/crib-does-not-exist",
  pod: { namespace: "default", name: "web", uid: "uid-1" },
  capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }], bandwidth: { ingressRate: 1000 } },
};

test("ADD runs the chain in order, passing each plugin the previous result", async () => {
  const { calls, network } = await fixture("add", [
    { type: "fake-main", result: RESULT, capabilities: { portMappings: false } },
    { type: "fake-meta", capabilities: { portMappings: true } },
  ]);
  const result = await network.add(attachment);
  assert.deepEqual(result.podIps, ["10.88.0.5"]);
  assert.deepEqual(result.raw, RESULT);

  const [main, meta] = await calls();
  assert.equal(main?.type, "fake-main");
  assert.equal(meta?.type, "fake-meta");
  assert.deepEqual(main?.env, {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "sandbox1",
    CNI_NETNS: "/var/run/netns/crib-does-not-exist",
    CNI_IFNAME: "eth0",
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=uid-1",
    CNI_PATH: `/nonexistent:${bin}`,
  });
  assert.equal(main?.conf["name"], "testnet");
  assert.equal(main?.conf["cniVersion"], "1.0.0");
  assert.equal(main?.conf["prevResult"], undefined);
  assert.equal(main?.conf["runtimeConfig"], undefined, "a capability declared false gets nothing");
  assert.deepEqual(meta?.conf["prevResult"], RESULT);
  assert.deepEqual(meta?.conf["runtimeConfig"], { portMappings: attachment.capabilityArgs?.portMappings }, "only declared capabilities");
});

test("DEL runs the chain in reverse with the cached result and port mappings, then drops the cache", async () => {
  const { calls, cacheDir, list } = await fixture("del", [
    { type: "fake-main", result: RESULT },
    { type: "fake-meta", capabilities: { portMappings: true } },
  ]);
  const first = new CniNetwork({ config: list, binDirs: [bin], cacheDir, log });
  await first.add(attachment);
  assert.deepEqual(await readdir(cacheDir), ["sandbox1.json"]);

  // As after a restart: a new instance, and the caller no longer knows the port mappings.
  const restarted = new CniNetwork({ config: { ...list, plugins: [] }, binDirs: [bin], cacheDir, log });
  await restarted.del({ ...attachment, capabilityArgs: {} });
  const dels = (await calls()).filter((c) => c.env["CNI_COMMAND"] === "DEL");
  assert.deepEqual(dels.map((c) => c.type), ["fake-meta", "fake-main"], "the cached config, in reverse");
  for (const del of dels) assert.deepEqual(del.conf["prevResult"], RESULT);
  assert.deepEqual(dels[0]?.conf["runtimeConfig"], { portMappings: attachment.capabilityArgs?.portMappings });
  assert.equal(dels[0]?.env["CNI_NETNS"], "", "a netns that is gone is passed as empty");
  assert.deepEqual(await readdir(cacheDir), []);

  await restarted.del(attachment); // again: nothing cached, the (empty) current config, no error
});

test("DEL without a cache uses the current config and no prevResult", async () => {
  const { calls, network } = await fixture("del-nocache", [{ type: "fake-main" }, { type: "fake-meta" }]);
  await network.del(attachment);
  const dels = await calls();
  assert.deepEqual(dels.map((c) => [c.type, c.env["CNI_COMMAND"]]), [["fake-meta", "DEL"], ["fake-main", "DEL"]]);
  assert.equal(dels[0]?.conf["prevResult"], undefined);
});

test("DEL of a 0.3.1 network passes no prevResult", async () => {
  const { calls, network } = await fixture("del-031", [{ type: "fake-main", result: { ...RESULT, cniVersion: "0.3.1" } }], "0.3.1");
  await network.add(attachment);
  await network.del(attachment);
  const del = (await calls()).find((c) => c.env["CNI_COMMAND"] === "DEL");
  assert.equal(del?.conf["prevResult"], undefined);
});

test("a plugin's error becomes a CniError with its code, prefixed with the plugin type", async () => {
  const { calls, network, cacheDir } = await fixture("fail", [
    { type: "fake-main", result: RESULT },
    { type: "fake-other", capabilities: { portMappings: true }, fail: { code: 11, msg: "iptables lock busy", details: "retry" }, failOn: "ADD" },
  ]);
  await assert.rejects(network.add(attachment), (err: unknown) => {
    assert.ok(err instanceof CniError);
    assert.equal(err.cniCode, 11);
    assert.equal(err.plugin, "fake-other");
    assert.equal(err.details, "retry");
    assert.equal(err.message, 'plugin type="fake-other" failed: iptables lock busy');
    return true;
  });
  // The half-done ADD is undone with what ADD was given.
  const cached = JSON.parse(await readFile(join(cacheDir, "sandbox1.json"), "utf8")) as Record<string, unknown>;
  assert.equal(cached["result"], undefined);
  await network.del({ ...attachment, capabilityArgs: {} });
  const dels = (await calls()).filter((c) => c.env["CNI_COMMAND"] === "DEL");
  assert.deepEqual(dels.map((c) => c.type), ["fake-other", "fake-main"]);
  assert.deepEqual(dels[0]?.conf["runtimeConfig"], { portMappings: attachment.capabilityArgs?.portMappings });
});

test("a plugin that crashes without an error object reports its stderr", async () => {
  const { network } = await fixture("crash", [{ type: "fake-main", fail: "garbage" }]);
  await assert.rejects(network.add(attachment), (err: unknown) => {
    assert.ok(err instanceof CniError);
    assert.equal(err.cniCode, 0);
    assert.match(err.message, /fake-main.*exit status 2: panic: runtime error/);
    return true;
  });
});

test("a missing plugin binary is named", async () => {
  const { network } = await fixture("missing", [{ type: "no-such-plugin" }]);
  await assert.rejects(network.add(attachment), /plugin type="no-such-plugin" failed: plugin binary not found in \/nonexistent, /);
});

test("CHECK runs against the cached result; without one it fails", async () => {
  const { calls, network } = await fixture("check", [{ type: "fake-main", result: RESULT }]);
  await assert.rejects(network.check(attachment), (err: unknown) => err instanceof CniError && err.cniCode === 3);
  await network.add(attachment);
  await network.check(attachment);
  const check = (await calls()).find((c) => c.env["CNI_COMMAND"] === "CHECK");
  assert.deepEqual(check?.conf["prevResult"], RESULT);
});

test("an aborted call kills the plugin and rejects with the signal's reason", async () => {
  const { calls, network } = await fixture("hang", [{ type: "fake-main", hang: true }]);
  const controller = new AbortController();
  const adding = network.add(attachment, controller.signal);
  adding.catch(() => undefined);
  // abort once the plugin runs (a busy node may take seconds to start it); bounds only catch a stall
  const call = await until("the plugin to start", async () => (await calls())[0]);
  const reason = new Error("kubelet gave up");
  controller.abort(reason);
  await assert.rejects(adding, (err: unknown) => err === reason);
  await until("the plugin process to be gone", async () => {
    try {
      process.kill(call.pid, 0);
      return undefined;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "ESRCH" ? true : undefined;
    }
  });
});

test("the per-plugin timeout names the plugin", async () => {
  const { list, cacheDir } = await fixture("timeout", [{ type: "fake-main", hang: true }]);
  const network = new CniNetwork({ config: list, binDirs: [bin], cacheDir, log, pluginTimeoutMs: 300 });
  await assert.rejects(network.add(attachment), { name: "TimeoutError", message: /fake-main ADD for sandbox1 timed out/ });
});

test("no config yet means try again later", async () => {
  const network = new CniNetwork({ config: () => ({ config: undefined, reason: "no CNI config found in /etc/cni/net.d" }), binDirs: [bin], cacheDir: root, log });
  await assert.rejects(network.add(attachment), (err: unknown) => {
    assert.ok(err instanceof CniError);
    assert.equal(err.cniCode, 11);
    assert.match(err.message, /CNI network not ready: no CNI config found in \/etc\/cni\/net\.d/);
    return true;
  });
});

test("DEL with nothing cached and no config has nothing to undo", async () => {
  const network = new CniNetwork({ config: () => ({ config: undefined, reason: "no CNI config" }), binDirs: [bin], cacheDir: join(root, "none"), log });
  await network.del(attachment);
});

test("ids and CNI_ARGS values that could escape are refused", async () => {
  const { network } = await fixture("ids", [{ type: "fake-main", result: RESULT }]);
  await assert.rejects(network.add({ ...attachment, id: "../x" }), /container id "..\/x"/);
  await assert.rejects(network.add({ ...attachment, pod: { ...attachment.pod, name: "a;b" } }), /K8S_POD_NAME="a;b"/);
});

test("pluginStdin replaces name, cniVersion and any runtimeConfig in the file", () => {
  const list: NetworkConfigList = { cniVersion: "1.0.0", name: "n", disableCheck: false, source: "x", plugins: [] };
  const conf = pluginStdin(list, { type: "bandwidth", cniVersion: "0.3.0", name: "other", runtimeConfig: { stale: 1 }, capabilities: { bandwidth: true } }, {
    capabilityArgs: { bandwidth: { egressRate: 1 }, portMappings: [] },
  });
  assert.deepEqual(conf, { type: "bandwidth", cniVersion: "1.0.0", name: "n", capabilities: { bandwidth: true }, runtimeConfig: { bandwidth: { egressRate: 1 } } });
});

test("execPlugin returns undefined for an empty stdout", async () => {
  const { list } = await fixture("exec", [{ type: "fake-main" }]);
  const plugin = list.plugins[0];
  assert.ok(plugin);
  const out = await execPlugin("fake-main", {
    command: "DEL",
    containerId: "c",
    netns: "",
    ifName: "eth0",
    args: "",
    binDirs: [bin],
    stdin: pluginStdin(list, plugin),
  });
  assert.equal(out, undefined);
});
