// The reconciler over every state an intent can be left in: nothing made yet,
// a netns, a half-finished CNI ADD, a finished one, a pause container with a
// running task, a container with snapshot and FIFOs, and an undo that fails
// (containerd away) and is retried until it succeeds. The CNI side runs crib's
// real CniNetwork with a fake plugin that holds an "IP" per container id.
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { pino } from "pino";
import { CniNetwork } from "../cni/network.js";
import type { NetworkConfigList } from "../cni/config.js";
import { ContainerdError } from "../runtime/containerd/errors.js";
import type { Containerd } from "../runtime/containerd/client.js";
import { IntentJournal, type Intent, type SandboxParts } from "./intents.js";
import { Reconciler, RetryQueue, type UndoDeps } from "./reconciler.js";
import { ContainerStore } from "./store/containers.js";

const log = pino({ level: "silent" });

// ADD takes an "IP" (a file named by the container id), DEL gives it back; every call is logged.
const ALLOC_PLUGIN = `#!${process.execPath}
const fs = require("node:fs");
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const conf = JSON.parse(input);
  const id = process.env.CNI_CONTAINERID;
  fs.appendFileSync(conf.log, JSON.stringify({ type: conf.type, command: process.env.CNI_COMMAND, args: process.env.CNI_ARGS, runtimeConfig: conf.runtimeConfig ?? null }) + "\\n");
  if (conf.type === "fail" && process.env.CNI_COMMAND === "ADD") { process.stdout.write(JSON.stringify({ code: 11, msg: "no" })); process.exit(1); }
  if (conf.type === "alloc" && process.env.CNI_COMMAND === "ADD") fs.writeFileSync(conf.dir + "/" + id, "");
  if (conf.type === "alloc" && process.env.CNI_COMMAND === "DEL") fs.rmSync(conf.dir + "/" + id, { force: true });
  if (process.env.CNI_COMMAND === "ADD") process.stdout.write(JSON.stringify(conf.prevResult ?? { cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: "x" }], ips: [{ interface: 0, address: "10.1.0.7/24" }] }));
});
`;

const unavailable = (method: string) => new ContainerdError(status.UNAVAILABLE, method, "connection refused");
const notFound = (method: string) => new ContainerdError(status.NOT_FOUND, method, "not found");

/** containerd's records as far as undoing goes: containers, tasks, snapshots; `down` makes every call fail. */
class FakeContainerd {
  containers = new Map<string, { id: string; labels: Record<string, string>; extensions: Record<string, { value: Buffer }> }>();
  tasks = new Map<string, { pid: number; status: string }>();
  snapshots = new Set<string>();
  down = 0;
  kills: string[] = [];

  #gate(method: string): void {
    if (this.down > 0) { this.down--; throw unavailable(method); }
  }

  client(): Containerd {
    const self = this;
    return {
      containers: {
        async List(req: { filters: string[] }) {
          self.#gate("containers.List");
          const want = /crib.sandbox-id"==(\w+)/.exec(req.filters[0] ?? "")?.[1];
          return { containers: [...self.containers.values()].filter((c) => !want || c.labels["crib.sandbox-id"] === want) };
        },
        async Delete({ id }: { id: string }) {
          self.#gate("containers.Delete");
          if (!self.containers.delete(id)) throw notFound("containers.Delete");
          return {};
        },
      },
      tasks: {
        async Get({ container_id }: { container_id: string }) {
          self.#gate("tasks.Get");
          const t = self.tasks.get(container_id);
          if (!t) throw notFound("tasks.Get");
          return { process: { pid: t.pid, status: t.status, exit_status: 137, exited_at: null } };
        },
        async Kill({ container_id }: { container_id: string }) {
          self.#gate("tasks.Kill");
          const t = self.tasks.get(container_id);
          if (!t) throw notFound("tasks.Kill");
          self.kills.push(container_id);
          t.status = "STOPPED";
          return {};
        },
        async Delete({ container_id }: { container_id: string }) {
          self.#gate("tasks.Delete");
          if (self.tasks.get(container_id)?.status !== "STOPPED") throw notFound("tasks.Delete");
          self.tasks.delete(container_id);
          return {};
        },
      },
      snapshots: {
        async Remove({ key }: { key: string }) {
          self.#gate("snapshots.Remove");
          if (!self.snapshots.delete(key)) throw notFound("snapshots.Remove");
          return {};
        },
      },
    } as unknown as Containerd;
  }
}

let dir: string;
let ipDir: string;
let pluginLog: string;
let network: NetworkConfigList;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "crib-reconciler-"));
  const bin = join(dir, "bin");
  ipDir = join(dir, "ips");
  pluginLog = join(dir, "plugins.log");
  await mkdir(bin);
  await mkdir(ipDir);
  for (const type of ["alloc", "fail", "portmap"]) {
    await writeFile(join(bin, type), ALLOC_PLUGIN);
    await chmod(join(bin, type), 0o755);
  }
  network = {
    cniVersion: "1.0.0", name: "unit",
    plugins: [{ type: "alloc", dir: ipDir, log: pluginLog }, { type: "portmap", capabilities: { portMappings: true }, log: pluginLog } as never],
  } as unknown as NetworkConfigList;
});
after(async () => { await rm(dir, { recursive: true, force: true }); });

interface World {
  ctd: FakeContainerd;
  cni: CniNetwork;
  deps: UndoDeps;
  journal: IntentJournal;
  reconciler: Reconciler;
  netnsRemoved: string[];
  root: string;
  state: string;
}

async function world(name: string, plugins = network.plugins): Promise<World> {
  const root = join(dir, name, "root");
  const state = join(dir, name, "state");
  const bin = join(dir, "bin");
  const ctd = new FakeContainerd();
  const cni = new CniNetwork({ config: { ...network, plugins }, binDirs: [bin], cacheDir: join(root, "cni-cache"), log });
  const netnsRemoved: string[] = [];
  const deps = {
    containerd: ctd.client(), cni, log,
    netns: { remove: async (p: string) => void netnsRemoved.push(p), exists: async () => true },
    containers: new ContainerStore(join(root, "containers")),
    config: { root, state, cni: { del_timeout: 5000 } },
  } as unknown as UndoDeps;
  const journal = new IntentJournal(join(root, "intents"));
  return { ctd, cni, deps, journal, reconciler: new Reconciler(deps, journal, { firstMs: 20, maxMs: 100 }), netnsRemoved, root, state };
}

function sandboxParts(w: World, id: string): SandboxParts {
  return {
    id, netnsPath: `/var/run/netns/crib-${id}`,
    cni: { pod: { namespace: "ns", name: `pod-${id}`, uid: "u1" }, ifName: "eth0", capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] } },
    dir: join(w.root, "sandboxes", id), shmDir: join(w.state, "sandboxes", id, "shm"),
  };
}

const pluginCalls = async (id: string) =>
  (await readFile(pluginLog, "utf8").catch(() => "")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { type: string; command: string; args: string; runtimeConfig: unknown })
    .filter((c) => c.args.includes(`K8S_POD_INFRA_CONTAINER_ID=${id}`));
const ipsHeld = () => readdir(ipDir);
const id64 = (c: string) => c.repeat(64);

async function settle(journal: IntentJournal, want: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await journal.list()).intents.length === want) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`the journal still holds ${(await journal.list()).intents.length} records, not ${want}`);
}

describe("the intent journal", () => {
  test("records durably, lists, drops; a torn temporary file is cleaned, a garbled record is reported and kept", async () => {
    const w = await world("journal");
    const intent: Intent = { kind: "sandbox-run", sandbox: sandboxParts(w, id64("a")) };
    await w.journal.record(intent);
    assert.deepEqual((await w.journal.list()).intents, [intent]);
    await writeFile(join(w.root, "intents", ".sandbox-run.x.json.abc.tmp"), "{");
    await writeFile(join(w.root, "intents", `container-create.${id64("b")}.json`), "{not json");
    const listed = await w.journal.list();
    assert.equal(listed.intents.length, 1);
    assert.deepEqual(listed.unreadable, [join(w.root, "intents", `container-create.${id64("b")}.json`)]);
    assert.ok(!(await readdir(join(w.root, "intents"))).some((n) => n.endsWith(".tmp")), "the temporary file is gone");
    await w.journal.done("sandbox-run", id64("a"));
    assert.equal((await w.journal.list()).intents.length, 0);
  });
});

describe("undoing a RunPodSandbox crib died in", () => {
  test("before anything was made: DEL runs with the recorded args, nothing else is touched, the record goes", async () => {
    const w = await world("nothing");
    const id = id64("1");
    const intent: Intent = { kind: "sandbox-run", sandbox: sandboxParts(w, id) };
    await w.journal.record(intent);
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), true);
    const calls = await pluginCalls(id);
    assert.deepEqual(calls.map((c) => `${c.type} ${c.command}`), ["portmap DEL", "alloc DEL"], "DEL of the whole chain, in reverse");
    assert.match(calls[0]!.args, /K8S_POD_NAME=pod-1{64}/, "with the pod named in the record");
    assert.deepEqual(calls[0]!.runtimeConfig, { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] }, "and its port mappings");
    assert.deepEqual(w.netnsRemoved, [intent.sandbox.netnsPath]);
    assert.equal((await w.journal.list()).intents.length, 0);
  });

  test("with a half-finished CNI ADD (the first plugin allocated, the second failed): DEL frees the IP from the cache entry", async () => {
    const w = await world("half-add", [network.plugins[0]!, { type: "fail", log: pluginLog } as never]);
    const id = id64("2");
    const intent: Intent = { kind: "sandbox-run", sandbox: sandboxParts(w, id) };
    await w.journal.record(intent);
    await assert.rejects(w.cni.add({ id, netns: "", pod: intent.sandbox.cni!.pod }));
    assert.ok((await ipsHeld()).includes(id), "ADD left an IP allocated");
    assert.equal((await w.cni.cached(id))?.result, undefined, "and a cache entry without a result");
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), true);
    assert.ok(!(await ipsHeld()).includes(id), "the IP was given back");
    assert.equal(await w.cni.cached(id), undefined, "the cache entry is gone");
    assert.equal((await w.journal.list()).intents.length, 0);
  });

  test("after everything was made (network, files, pause container, running task, snapshot): all of it goes", async () => {
    const w = await world("all");
    const id = id64("3");
    const intent: Intent = { kind: "sandbox-run", sandbox: sandboxParts(w, id) };
    await w.journal.record(intent);
    await w.cni.add({ id, netns: "", pod: intent.sandbox.cni!.pod });
    await mkdir(intent.sandbox.dir, { recursive: true });
    await writeFile(join(intent.sandbox.dir, "hosts"), "");
    await mkdir(intent.sandbox.shmDir, { recursive: true });
    w.ctd.containers.set(id, { id, labels: { "crib.kind": "sandbox" }, extensions: {} });
    w.ctd.snapshots.add(id);
    w.ctd.tasks.set(id, { pid: 42, status: "RUNNING" });
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), true);
    assert.deepEqual(w.ctd.kills, [id], "the pause task was killed");
    assert.equal(w.ctd.tasks.size + w.ctd.containers.size + w.ctd.snapshots.size, 0, "task, record and snapshot deleted");
    assert.ok(!(await ipsHeld()).includes(id), "the IP was given back");
    assert.deepEqual(w.netnsRemoved, [intent.sandbox.netnsPath]);
    assert.deepEqual(await readdir(join(w.root, "sandboxes")), [], "<root>/sandboxes/<id> removed");
    assert.deepEqual(await readdir(join(w.state, "sandboxes")), [], "<state>/sandboxes/<id> removed");
    assert.equal((await w.journal.list()).intents.length, 0);
  });

  test("a host-network sandbox: no CNI DEL, no netns", async () => {
    const w = await world("host");
    const id = id64("4");
    const intent: Intent = { kind: "sandbox-run", sandbox: { id, netnsPath: "", dir: join(w.root, "sandboxes", id), shmDir: "" } };
    await w.journal.record(intent);
    w.ctd.containers.set(id, { id, labels: {}, extensions: {} });
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), true);
    assert.deepEqual(await pluginCalls(id), []);
    assert.deepEqual(w.netnsRemoved, []);
    assert.equal(w.ctd.containers.size, 0);
  });

  test("an undo that fails while containerd is away stays recorded and is retried until it succeeds", async () => {
    const w = await world("retry");
    const id = id64("5");
    const intent: Intent = { kind: "sandbox-run", sandbox: sandboxParts(w, id) };
    await w.journal.record(intent);
    w.ctd.containers.set(id, { id, labels: {}, extensions: {} });
    w.ctd.tasks.set(id, { pid: 42, status: "RUNNING" });
    w.ctd.down = 3; // the first attempt and the first retry fail
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), false, "the first attempt fails");
    assert.equal(w.reconciler.pending(id), true, "the undo is pending: the stores must not list the sandbox");
    assert.equal((await w.journal.list()).intents.length, 1, "the record is kept");
    await settle(w.journal, 0);
    assert.equal(w.reconciler.pending(id), false);
    assert.equal(w.ctd.tasks.size + w.ctd.containers.size, 0, "the retry took everything apart");
    w.reconciler.close();
  });

  test("a remove crib died in is finished: the sandbox's remaining containers go first", async () => {
    const w = await world("remove");
    const id = id64("6");
    const cid = id64("7");
    const intent: Intent = { kind: "sandbox-remove", sandbox: sandboxParts(w, id) };
    await w.journal.record(intent);
    w.ctd.containers.set(id, { id, labels: {}, extensions: {} });
    w.ctd.containers.set(cid, { id: cid, labels: { "crib.sandbox-id": id }, extensions: {} });
    w.ctd.tasks.set(cid, { pid: 43, status: "RUNNING" });
    w.ctd.snapshots.add(cid);
    await mkdir(join(w.state, "containers", cid, "io"), { recursive: true });
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), true);
    assert.equal(w.ctd.containers.size + w.ctd.tasks.size + w.ctd.snapshots.size, 0);
    assert.deepEqual(await readdir(join(w.state, "containers")), []);
  });
});

describe("undoing a CreateContainer crib died in", () => {
  test("snapshot, record, FIFOs and status files go; the record is dropped", async () => {
    const w = await world("create");
    const id = id64("8");
    const intent: Intent = { kind: "container-create", container: { id, sandboxId: id64("9"), ioDir: join(w.state, "containers", id, "io"), imageVolumes: [] } };
    await w.journal.record(intent);
    w.ctd.snapshots.add(id);
    w.ctd.containers.set(id, { id, labels: {}, extensions: {} });
    await mkdir(intent.container.ioDir, { recursive: true });
    await writeFile(join(intent.container.ioDir, "stdout"), "");
    await mkdir(join(w.root, "containers", id), { recursive: true });
    await writeFile(join(w.root, "containers", id, "status.json"), "{}");
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), true);
    assert.equal(w.ctd.snapshots.size + w.ctd.containers.size, 0);
    assert.deepEqual(await readdir(join(w.state, "containers")), []);
    assert.deepEqual(await readdir(join(w.root, "containers")), []);
    assert.equal((await w.journal.list()).intents.length, 0);
  });

  test("only the snapshot was made (crib died right after Prepare)", async () => {
    const w = await world("create-snapshot");
    const id = id64("a");
    const intent: Intent = { kind: "container-create", container: { id, sandboxId: id64("b"), ioDir: join(w.state, "containers", id, "io"), imageVolumes: [] } };
    w.ctd.snapshots.add(id);
    assert.equal(await w.reconciler.undo(intent, AbortSignal.timeout(5000)), true);
    assert.equal(w.ctd.snapshots.size, 0);
  });
});

describe("the retry queue", () => {
  test("backs off, tries at once when kicked, and never drops a job that keeps failing", async () => {
    const q = new RetryQueue(log, { firstMs: 60_000, maxMs: 60_000 });
    let tries = 0;
    q.add("job", async () => { tries++; if (tries < 3) throw new Error("not yet"); });
    q.kick();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(tries, 1, "kick ran it at once, not after the minute");
    assert.equal(q.has("job"), true, "a failed job stays");
    q.kick();
    await new Promise((r) => setTimeout(r, 50));
    q.kick();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(tries, 3);
    assert.equal(q.has("job"), false, "done after it succeeded");
    q.close();
  });
});
