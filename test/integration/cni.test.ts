// Pod networking with the real plugins from /usr/lib/cni (bridge, host-local,
// portmap) in netns crib creates. Needs root. Everything it makes is named
// with a random suffix and removed in `after`, failed or not: a test bridge
// and subnet, netns, host-local's dataDir in a temp dir. What stays, as it
// would on a node: net.ipv4.ip_forward=1 (bridge's isGateway sets it) and
// portmap's shared CNI-HOSTPORT-* nat chains (empty once all pods are gone).
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { access, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { pino } from "pino";
import { loadNetworkConfig, missingPlugins, type NetworkConfigList } from "../../cni/config.js";
import { CniError } from "../../cni/exec.js";
import { CniNetwork, type Attachment, type CapabilityArgs } from "../../cni/network.js";
import type { NetworkResult } from "../../cni/result.js";
import { NetnsManager, type Netns } from "../../runtime/netns.js";

const run = promisify(execFile);
const BIN_DIRS = ["/usr/lib/cni"];
const BUSYBOX = "/bin/busybox";
const log = pino({ level: process.env["CRIB_TEST_LOG"] ?? "silent" });

async function prerequisites(): Promise<string | false> {
  if (process.getuid?.() !== 0) return "needs root";
  for (const path of [...["bridge", "host-local", "portmap"].map((p) => join(BIN_DIRS[0] ?? "", p)), BUSYBOX]) {
    try {
      await access(path);
    } catch {
      return `needs ${path}`;
    }
  }
  return false;
}

const suffix = randomBytes(2).toString("hex");
const bridge = `cribt${suffix}`;
const networkName = `cribit-${suffix}`;
const netnsManager = new NetnsManager({ prefix: `cribit${suffix}-` });

let root = "";
let dataDir = "";
let subnetPrefix = ""; // "10.199.N."
let config: NetworkConfigList | undefined;
let network: CniNetwork;
const attached = new Map<string, Attachment>();
const everCreated: string[] = [];
const servers: ChildProcess[] = [];

// A /24 under 10.199/16 that no host interface uses yet.
async function freeSubnet(): Promise<string> {
  const { stdout } = await run("ip", ["-o", "addr"]);
  for (;;) {
    const candidate = `10.199.${randomInt(1, 255)}.`;
    if (!stdout.includes(` ${candidate}`)) return candidate;
  }
}

interface Pod {
  readonly id: string;
  readonly netns: Netns;
  readonly attachment: Attachment;
  readonly result: NetworkResult;
  readonly ip: string;
}

async function startPod(name: string, capabilityArgs: CapabilityArgs = {}): Promise<Pod> {
  const id = `${name}${suffix}${randomBytes(4).toString("hex")}`;
  const netns = await netnsManager.create(id);
  const attachment: Attachment = { id, netns: netns.path, pod: { namespace: "test", name, uid: `uid-${id}` }, capabilityArgs };
  attached.set(id, attachment);
  everCreated.push(id);
  const result = await network.add(attachment);
  const ip = result.podIps[0];
  assert.ok(ip, `pod ${name} got no IP: ${JSON.stringify(result)}`);
  return { id, netns, attachment, result, ip };
}

async function stopPod(pod: Pod): Promise<void> {
  await network.del(pod.attachment);
  attached.delete(pod.id);
  await netnsManager.remove(pod.netns);
}

// Bounded by execFile's timeout: Debian's busybox 1.35 wget crashes with -T.
const inPod = (pod: Pod, ...args: string[]) =>
  run("ip", ["netns", "exec", pod.netns.name, BUSYBOX, ...args], { timeout: 20_000 });

function httpGet(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get({ host, port, path: "/index.html", signal: AbortSignal.timeout(5000) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve(body));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

// busybox httpd on port 80 inside the pod, serving `content` as /index.html.
async function serveHttp(pod: Pod, content: string): Promise<void> {
  const dir = join(root, `www-${pod.id}`);
  await mkdir(dir);
  await writeFile(join(dir, "index.html"), content);
  // `ip netns exec` execs busybox, so this pid is the server's.
  const server = spawn("ip", ["netns", "exec", pod.netns.name, BUSYBOX, "httpd", "-f", "-p", "80", "-h", dir], { stdio: "ignore" });
  servers.push(server);
  for (let i = 0; ; i++) {
    try {
      await inPod(pod, "wget", "-q", "-O", "-", "http://127.0.0.1/index.html");
      return;
    } catch (err) {
      if (i > 50) throw new Error(`httpd in pod ${pod.id} did not start`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function stopServers(): void {
  for (const server of servers.splice(0)) if (server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
}

/** Host-local's reservation files (one per allocated IP) in our dataDir. */
async function reservations(): Promise<string[]> {
  const names = await readdir(join(dataDir, networkName)).catch(() => [] as string[]);
  return names.filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n) || n.includes(":"));
}

/** Names of the links enslaved to our bridge. */
async function vethsOnBridge(): Promise<string[]> {
  const { stdout } = await run("ip", ["-o", "link", "show", "master", bridge]).catch(() => ({ stdout: "" }));
  return stdout.split("\n").flatMap((line) => /^\d+: ([^@:]+)/.exec(line)?.[1] ?? []);
}

/** The host end of the pod's veth, as bridge reported it. */
function hostVeth(pod: Pod): string {
  const veth = pod.result.interfaces.find((i) => i.sandbox === undefined && i.name !== bridge)?.name;
  assert.ok(veth, `bridge reported no host veth for pod ${pod.id}`);
  return veth;
}

async function natRulesMentioning(text: string): Promise<string[]> {
  const { stdout } = await run("iptables-save", ["-t", "nat"]);
  return stdout.split("\n").filter((line) => line.includes(text));
}

// bridge 1.1 cannot undo its ipMasq rules once the netns is gone (it learns the
// pod IP from the netns), nor can a test that failed half-way; remove them.
async function removeNatRulesOf(id: string): Promise<void> {
  const { stdout } = await run("iptables", ["-t", "nat", "-L", "POSTROUTING", "-n", "--line-numbers"]);
  const numbers: number[] = [];
  const chains = new Set<string>();
  for (const line of stdout.split("\n")) {
    if (!line.includes(`"${id}"`)) continue;
    const [number, target] = line.trim().split(/\s+/);
    numbers.push(Number(number));
    if (target?.startsWith("CNI-")) chains.add(target);
  }
  for (const number of numbers.sort((x, y) => y - x)) await run("iptables", ["-t", "nat", "-D", "POSTROUTING", String(number)]);
  for (const chain of chains) {
    await run("iptables", ["-t", "nat", "-F", chain]);
    await run("iptables", ["-t", "nat", "-X", chain]);
  }
}

describe("pod networking with the CNI plugins", { concurrency: false }, async () => {
  const skip = await prerequisites();

  before(async () => {
    if (skip) return;
    root = await mkdtemp(join(tmpdir(), "crib-cni-it-"));
    dataDir = join(root, "host-local");
    const confDir = join(root, "net.d");
    await mkdir(confDir);
    subnetPrefix = await freeSubnet();
    await writeFile(
      join(confDir, "10-test.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: networkName,
        plugins: [
          {
            type: "bridge",
            bridge,
            isGateway: true,
            ipMasq: true,
            hairpinMode: true,
            ipam: {
              type: "host-local",
              dataDir,
              ranges: [[{ subnet: `${subnetPrefix}0/24`, gateway: `${subnetPrefix}1` }]],
              routes: [{ dst: "0.0.0.0/0" }],
            },
          },
          { type: "portmap", capabilities: { portMappings: true } },
        ],
      }),
    );
    ({ config } = await loadNetworkConfig(confDir, log));
    assert.ok(config, "the test conflist loads");
    network = new CniNetwork({ config, binDirs: BIN_DIRS, cacheDir: join(root, "cni-cache"), log, pluginTimeoutMs: 30_000 });
  });

  after(async () => {
    if (skip) return;
    stopServers();
    for (const attachment of attached.values()) {
      await network.del(attachment).catch((err: unknown) => log.warn({ err }, "cleanup DEL failed"));
    }
    for (const ns of await netnsManager.list()) await netnsManager.remove(ns);
    for (const id of everCreated) await removeNatRulesOf(id);
    await run("ip", ["link", "delete", bridge]).catch(() => {});
    if (root) await rm(root, { recursive: true, force: true });
  });

  test("the plugins of the config are installed", { skip }, async () => {
    assert.ok(config);
    assert.deepEqual(await missingPlugins(config, BIN_DIRS), []);
  });

  test("two pods get addresses and reach each other; the host reaches them; DEL leaves nothing", { skip }, async () => {
    const a = await startPod("a");
    const b = await startPod("b");
    for (const pod of [a, b]) {
      assert.ok(pod.ip.startsWith(subnetPrefix), `pod IP ${pod.ip} is in ${subnetPrefix}0/24`);
      const { stdout } = await run("ip", ["-n", pod.netns.name, "-o", "-4", "addr", "show", "eth0"]);
      assert.match(stdout, new RegExp(`inet ${pod.ip.replaceAll(".", "\\.")}/24`), `eth0 in the pod has ${pod.ip}`);
      assert.equal(pod.result.interfaces.find((i) => i.sandbox)?.sandbox, pod.netns.path);
    }
    assert.notEqual(a.ip, b.ip);
    await network.check(a.attachment); // the plugins agree the pod is set up as they left it
    for (const pod of [a, b]) {
      assert.ok((await reservations()).includes(pod.ip), `host-local reserved ${pod.ip}`);
      assert.ok((await vethsOnBridge()).includes(hostVeth(pod)), `${hostVeth(pod)} is on ${bridge}`);
    }

    await inPod(a, "ping", "-c", "1", "-W", "5", b.ip);
    await serveHttp(b, "hello from b\n");
    const fromA = await inPod(a, "wget", "-q", "-O", "-", `http://${b.ip}/index.html`);
    assert.equal(fromA.stdout, "hello from b\n", "pod a fetches from pod b");
    assert.equal(await httpGet(b.ip, 80), "hello from b\n", "the host fetches from pod b");
    await run(BUSYBOX, ["ping", "-c", "1", "-W", "5", a.ip], { timeout: 20_000 });

    stopServers();
    await run("ip", ["-n", b.netns.name, "route", "del", "default"]);
    await assert.rejects(network.check(b.attachment), (err: unknown) => {
      assert.ok(err instanceof CniError, String(err));
      assert.match(err.message, /^plugin type="bridge" failed: .*route/i);
      return true;
    }, "CHECK notices the pod lost its default route");
    await stopPod(a);
    await stopPod(b);
    for (const pod of [a, b]) {
      assert.ok(!(await netnsManager.list()).some((ns) => ns.sandboxId === pod.id), `netns ${pod.netns.name} is gone`);
      assert.ok(!(await vethsOnBridge()).includes(hostVeth(pod)), `veth ${hostVeth(pod)} is gone from the bridge`);
      assert.ok(!(await reservations()).includes(pod.ip), `host-local released ${pod.ip}`);
      assert.deepEqual(await natRulesMentioning(pod.id), [], `no masquerade rules left for pod ${pod.id}`);
      assert.ok(!(await readdir(join(root, "cni-cache"))).includes(`${pod.id}.json`), "its cached result is dropped");
    }
  });

  test("a hostPort on the bridge gateway reaches the pod's port through portmap", { skip }, async () => {
    const gateway = `${subnetPrefix}1`;
    const hostPort = randomInt(20_000, 30_000);
    const pod = await startPod("web", { portMappings: [{ hostPort, containerPort: 80, protocol: "tcp", hostIP: gateway }] });
    assert.equal(pod.result.ips[0]?.gateway, gateway);
    await serveHttp(pod, "hello through a hostPort\n");
    assert.equal(await httpGet(gateway, hostPort), "hello through a hostPort\n");
    assert.notDeepEqual(await natRulesMentioning(pod.id), [], "portmap added DNAT rules for the pod");

    stopServers();
    await stopPod(pod);
    assert.deepEqual(await natRulesMentioning(pod.id), [], "DEL removed the pod's DNAT and masquerade rules");
    await assert.rejects(httpGet(gateway, hostPort), "the hostPort no longer forwards");
  });

  test("DEL after the netns is gone still releases the IP", { skip }, async () => {
    const pod = await startPod("gone");
    assert.ok((await reservations()).includes(pod.ip));
    await netnsManager.remove(pod.netns);

    await network.del(pod.attachment);
    attached.delete(pod.id);
    await removeNatRulesOf(pod.id);
    assert.deepEqual(await natRulesMentioning(pod.id), []);
    assert.ok(!(await reservations()).includes(pod.ip), `host-local released ${pod.ip}`);
    assert.ok(!(await vethsOnBridge()).includes(hostVeth(pod)), "the veth went with the netns");
    await network.del(pod.attachment); // and again: DEL is idempotent
  });
});
