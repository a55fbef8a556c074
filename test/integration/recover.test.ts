// Crash consistency on the real stack: crib SIGKILLed at each step of
// RunPodSandbox, CreateContainer and StartContainer (CRIB_TEST_CRASH_AT, see
// cri/crash-point.ts), during a CNI ADD, and at random instants of a start;
// then restarted. Nothing it made may be left (netns, veth, host-local IP, CNI
// cache, containers, tasks, snapshots, state directories, intent records) and
// every state it reports must be true. Also: crib started while containerd is
// down answers UNAVAILABLE, never an empty list, until it can tell the truth.
import assert from "node:assert/strict";
import { chmod, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { parse, stringify } from "smol-toml";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PodEnv, leftovers } from "../fixtures/pod-env.js";
import { BUSYBOX_REF } from "../fixtures/local-images.js";
import { exists } from "../../runtime/netns.js";
import { listShims } from "../../runtime/containerd/shims.js";

const ls = (dir: string): Promise<string[]> => readdir(dir).catch(() => []);

/** crib's own files that name objects: they must match what it lists. */
async function cribFiles(env: PodEnv): Promise<Record<string, string[]>> {
  const root = join(env.crib.dir, "root");
  const state = join(env.crib.dir, "state");
  return {
    rootSandboxes: await ls(join(root, "sandboxes")),
    stateSandboxes: await ls(join(state, "sandboxes")),
    rootContainers: await ls(join(root, "containers")),
    stateContainers: await ls(join(state, "containers")),
    cniCache: (await ls(join(root, "cni-cache"))).map((f) => f.replace(/\.json$/, "")),
    intents: await ls(join(root, "intents")),
  };
}

/** The groups of the runc shims of this test's containerd (after a moment: containerd ends idle ones itself). */
async function shimsOf(env: PodEnv, want: string[]): Promise<string[]> {
  const groups = async () => (await listShims()).filter((s) => s.address === env.containerd.address).map((s) => s.id).sort();
  for (let i = 0; i < 50 && JSON.stringify(await groups()) !== JSON.stringify(want); i++) await new Promise((r) => setTimeout(r, 100));
  return groups();
}

/** The ids the restarted crib says it undid: their netns must be gone. */
async function undoneIds(env: PodEnv): Promise<string[]> {
  return (await env.crib.log()).split("\n").filter((l) => l.includes("had not finished")).map((l) => (JSON.parse(l) as { id: string }).id);
}

async function crashDuring<T>(env: PodEnv, point: string, call: () => Promise<T>): Promise<void> {
  await env.crib.stopProcess("SIGTERM");
  await env.crib.startProcess({ CRIB_TEST_CRASH_AT: point });
  await assert.rejects(call(), `the call fails: crib died at ${point}`);
  assert.equal(await env.crib.exited(), "SIGKILL", `crib killed itself at ${point}`);
  await env.crib.startProcess(); // waits until crib has reconciled, as kubelet retries
}

/**
 * Runs `body` with crib using a runc wrapper (`script`, a shell body that must
 * end up running /usr/sbin/runc) for its containers, then puts the config back.
 */
async function withRuncWrapper(env: PodEnv, script: string, body: () => Promise<void>): Promise<void> {
  const wrapper = join(env.crib.dir, "slow-runc");
  await writeFile(wrapper, `#!/bin/sh\n${script}\n`);
  await chmod(wrapper, 0o755);
  const original = await readFile(env.crib.configPath, "utf8");
  const config = parse(original) as { runtimes?: Record<string, Record<string, unknown>> };
  config.runtimes = { runc: { runtime_type: "io.containerd.runc.v2", binary_name: wrapper } };
  await writeFile(env.crib.configPath, stringify(config));
  try {
    await env.crib.restart("SIGTERM");
    await body();
  } finally {
    await writeFile(env.crib.configPath, original);
    await env.crib.restart("SIGTERM");
  }
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("crib SIGKILLed in RunPodSandbox, then restarted", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  for (const point of ["sandbox-run:netns", "sandbox-run:cni-added", "sandbox-run:pause-created", "sandbox-run:pause-started", "sandbox-run:stored"]) {
    it(`at ${point}: leaves nothing, and kubelet's retry makes the pod`, async () => {
      const name = point.replace(/\W/g, "-");
      await crashDuring(env, point, () => env.runPod(name));
      const { items } = await env.client.runtime.ListPodSandbox({});
      assert.deepEqual(items.map((i) => i.metadata?.name), [], "no sandbox listed");
      assert.deepEqual(await leftovers(env), { netns: [], veths: [], ipam: [], mounts: [], containers: [], tasks: [], snapshots: [] });
      assert.deepEqual(await cribFiles(env), { rootSandboxes: [], stateSandboxes: [], rootContainers: [], stateContainers: [], cniCache: [], intents: [] });
      const undone = await undoneIds(env);
      assert.ok(undone.length >= 1, "the restart undid the recorded sandbox");
      for (const id of undone) assert.equal(await exists(`/var/run/netns/${env.crib.netnsPrefix}${id}`), false, `netns of ${id.slice(0, 12)} removed`);

      const pod = await env.runPod(name);
      const status = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id });
      assert.equal(status.status?.state, "SANDBOX_READY");
      assert.ok(status.status?.network?.ip, "with an IP");
      await env.client.runtime.StopPodSandbox({ pod_sandbox_id: pod.id });
      await env.client.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
      assert.deepEqual(await cribFiles(env), { rootSandboxes: [], stateSandboxes: [], rootContainers: [], stateContainers: [], cniCache: [], intents: [] }, "a removed sandbox leaves no directory");
      assert.deepEqual(await shimsOf(env, []), [], "and no shim");
    });
  }

  it("in the middle of a CNI ADD (the bridge plugin done, the next one kills crib): the IP and veth are given back", async () => {
    const bin = join(env.crib.dir, "cni-bin");
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, "crash-crib"), "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\nkill -9 $PPID\nsleep 5\n");
    await chmod(join(bin, "crash-crib"), 0o755);
    // the bridge from the standard dirs, then the plugin that kills its caller
    const bridge = { type: "bridge", bridge: env.bridge, isGateway: true, ipMasq: false, ipam: { type: "host-local", ranges: [[{ subnet: env.subnet }]], dataDir: env.ipamDir } };
    // crib finds plugins in its bin_dirs: ours first
    const original = await readFile(env.crib.configPath, "utf8");
    const config = parse(original) as { cni: Record<string, unknown> };
    config.cni["bin_dirs"] = [bin, "/opt/cni/bin", "/usr/lib/cni"];
    await writeFile(env.crib.configPath, stringify(config));
    try {
      // written before crib starts: it loads this one, not the one before
      await writeFile(join(env.crib.dir, "net.d", "10-test.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "crib-test", plugins: [bridge, { type: "crash-crib" }] }));
      await env.crib.restart("SIGTERM");
      await env.writeNetwork([bridge, { type: "crash-crib" }]);
      await assert.rejects(env.runPod("mid-add"));
      assert.equal(await env.crib.exited(), "SIGKILL");
      const { ipam } = await leftovers(env);
      assert.equal(ipam?.length, 1, "the ADD got as far as an IP");
      await writeFile(join(env.crib.dir, "net.d", "10-test.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "crib-test", plugins: [bridge] }));
      await env.crib.startProcess(); // waits until crib has reconciled, as kubelet retries
      assert.deepEqual(await leftovers(env), { netns: [], veths: [], ipam: [], mounts: [], containers: [], tasks: [], snapshots: [] });
      assert.deepEqual(await cribFiles(env), { rootSandboxes: [], stateSandboxes: [], rootContainers: [], stateContainers: [], cniCache: [], intents: [] });
    } finally {
      await writeFile(env.crib.configPath, original);
      await env.crib.restart("SIGTERM");
      await env.writeNetwork();
    }
  });
});

describe("crib SIGKILLed in CreateContainer and StartContainer, then restarted", () => {
  let env: PodEnv;
  let pod: { id: string; config: Parameters<PodEnv["runContainer"]>[0]["config"] };
  before(async () => {
    env = await PodEnv.start();
    pod = await env.runPod("host-of-crashes");
  });
  after(async () => { await env?.close(); });

  const create = (name: string) => env.client.runtime.CreateContainer({
    pod_sandbox_id: pod.id,
    config: { metadata: { name }, image: { image: BUSYBOX_REF }, command: ["/bin/sleep", "3600"], log_path: `${name}.log` },
    sandbox_config: pod.config,
  });

  /** Only the pod's own objects remain, and it is READY with its pause running. */
  async function onlyThePod(): Promise<void> {
    const { netns, veths: _v, ipam: _i, mounts: _m, ...ctd } = await leftovers(env);
    assert.deepEqual(netns, [`${env.crib.netnsPrefix}${pod.id}`]);
    assert.deepEqual(ctd, { containers: [pod.id], tasks: [pod.id], snapshots: [pod.id] });
    assert.deepEqual(await cribFiles(env), {
      rootSandboxes: [pod.id], stateSandboxes: [pod.id], rootContainers: [], stateContainers: [], cniCache: [pod.id], intents: [],
    });
    const s = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id });
    assert.equal(s.status?.state, "SANDBOX_READY", "the pod is still READY");
    assert.deepEqual(await shimsOf(env, [pod.id]), [pod.id], "one shim: the pod's");
  }

  for (const point of ["container-create:snapshot", "container-create:record", "container-create:stored"]) {
    it(`at ${point}: the container is neither listed nor left in containerd or on disk`, async () => {
      await crashDuring(env, point, () => create(point.replace(/\W/g, "-")));
      assert.deepEqual((await env.client.runtime.ListContainers({})).containers.map((c) => c.metadata?.name), []);
      await onlyThePod();
    });
  }

  it("at container-start:started: the container is RUNNING, as its task is", async () => {
    const { container_id } = await create("started");
    await crashDuring(env, "container-start:started", () => env.client.runtime.StartContainer({ container_id }));
    const c = await env.client.runtime.ContainerStatus({ container_id });
    assert.equal(c.status?.state, "CONTAINER_RUNNING");
    assert.equal((await env.exec(container_id, ["/bin/true"])).code, 0, "and it runs");
    assert.deepEqual((await cribFiles(env)).intents, []);
    await env.client.runtime.RemoveContainer({ container_id });
    await onlyThePod();
  });

  it("at random instants of StartContainer: the pod stays READY and the container's state matches its task", async () => {
    for (const delay of [20, 60, 90, 150]) {
      const { container_id } = await create(`random-${delay}`);
      const started = env.client.runtime.StartContainer({ container_id }).then(() => "started", () => "failed");
      await new Promise((r) => setTimeout(r, delay));
      await env.crib.stopProcess("SIGKILL");
      await started;
      await env.crib.startProcess(); // waits until crib has reconciled, as kubelet retries
      const s = await eventually("the pod's state", async () => {
        const got = await env.client.runtime.PodSandboxStatus({ pod_sandbox_id: pod.id, verbose: true });
        return got.status?.state === "SANDBOX_READY" ? got : undefined;
      }, 15_000);
      assert.ok((JSON.parse(s.info["info"] ?? "{}") as { pid: number }).pid > 0, `after a kill at ${delay} ms the pod is READY with its pause pid`);
      const ctd = env.containerd.client("crib-test");
      try {
        const c = await env.client.runtime.ContainerStatus({ container_id });
        const task = await ctd.tasks.Get({ container_id }).then((t) => t.process?.status, () => "none");
        if (c.status?.state === "CONTAINER_RUNNING") assert.equal(task, "RUNNING", `RUNNING after a kill at ${delay} ms: its task runs`);
        else assert.notEqual(task, "RUNNING", `${c.status?.state} after a kill at ${delay} ms: its task does not run`);
      } finally {
        ctd.close();
      }
      await env.client.runtime.RemoveContainer({ container_id });
    }
    await onlyThePod();
  });

  it("while containerd still creates the task (a slow runc): kubelet's retry starts it, never UNKNOWN 'file exists'", async () => {
    // runc's `create` takes 4 s, so containerd is still in the interrupted
    // call's tasks.Create when the restarted crib is asked to start again
    await withRuncWrapper(env, "for a; do [ \"$a\" = create ] && sleep 4 && break; done\nexec /usr/sbin/runc \"$@\"", async () => {
      const { container_id } = await create("slow-create");
      const started = env.client.runtime.StartContainer({ container_id }).then(() => "started", () => "failed");
      await new Promise((r) => setTimeout(r, 1000));
      await env.crib.stopProcess("SIGKILL");
      await started;
      await env.crib.startProcess();
      const retried = await env.client.runtime.StartContainer({ container_id }).then(() => ({ code: 0, details: "" }), (e: { code: number; details: string }) => e);
      // OK, or a precise answer a kubelet acts on: already running
      assert.ok(retried.code === 0 || (retried.code === 9 && /is running/.test(retried.details)), `retry answered ${retried.code}: ${retried.details}`);
      // the exit of the interrupted call's task, removed on the way, is not this container's (its log drain takes 5 s)
      await new Promise((r) => setTimeout(r, 6000));
      const c = await env.client.runtime.ContainerStatus({ container_id });
      const said = async () => (await env.crib.log()).split("\n").filter((l) => l.includes(container_id.slice(0, 12))).slice(-10).join("\n");
      assert.equal(c.status?.state, "CONTAINER_RUNNING", `${c.status?.reason} ${c.status?.message} exit ${c.status?.exit_code}; crib said:\n${await said()}`);
      assert.equal((await env.exec(container_id, ["/bin/true"])).code, 0, "and it runs");
      await env.client.runtime.RemoveContainer({ container_id });
    });
    await onlyThePod();
  });
});

describe("containerd SIGKILLed while it creates a pause task", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  it("leaves no shim and no runc init waiting forever, once crib has undone the pod", async () => {
    // `runc create` is done (runc init waits for its start) and the shim has
    // not answered containerd yet when containerd dies
    await withRuncWrapper(env, "/usr/sbin/runc \"$@\"; rc=$?\nfor a; do [ \"$a\" = create ] && sleep 3 && break; done\nexit $rc", async () => {
      const run = env.runPod("lost-create").then(() => "ran", (e: { code?: number }) => `failed ${e.code}`);
      // the pause's runc init exists: containerd is inside tasks.Create
      const inits = async () => {
        const shims = (await listShims()).filter((s) => s.address === env.containerd.address);
        const kids = await Promise.all(shims.map((s) => readFile(`/proc/${s.pid}/task/${s.pid}/children`, "utf8").catch(() => "")));
        return kids.join(" ").trim();
      };
      await eventually("the pause's runc init", async () => ((await inits()) !== "" ? true : undefined), 15_000);
      process.kill(env.containerd.daemon.pid!, "SIGKILL");
      await run;
      await env.containerd.daemon.waitReady(60_000); // the fixture's daemon restarts it
      // crib undoes the pod (now, or on its retry once containerd is back)
      const why = async () => (await env.crib.log()).split("\n").filter((l) => /shim|undo|runc init|lost|task/.test(l)).slice(-12).join("\n");
      await eventually("the pod undone", async () => ((await leftovers(env)).containers?.length === 0 ? true : undefined), 60_000)
        .catch(async (err: Error) => assert.fail(`${err.message}; crib said:\n${await why()}`));
      assert.deepEqual(await shimsOf(env, []), [], `no shim left; crib said:\n${await why()}`);
      assert.equal(await inits(), "", "no runc init left");
    });
  });
});

describe("crib started while containerd is down", () => {
  let env: PodEnv;
  let containerdDown = false;
  before(async () => { env = await PodEnv.start(); });
  after(async () => {
    if (containerdDown) await env?.containerd.daemon.start().catch(() => undefined);
    await env?.close();
  });

  it("answers UNAVAILABLE, never an empty list, then the real lists once containerd is back", async () => {
    const pod = await env.runPod("waits-for-containerd");
    await env.crib.stopProcess("SIGTERM");
    await env.containerd.daemon.stop();
    containerdDown = true;
    await env.crib.startProcess({}, { ready: false });
    await assert.rejects(env.client.runtime.ListPodSandbox({}), (e: { code: number }) => e.code === 14, "ListPodSandbox: UNAVAILABLE");
    await assert.rejects(env.client.runtime.ListContainers({}), (e: { code: number }) => e.code === 14, "ListContainers: UNAVAILABLE");
    const status = await env.client.runtime.Status({});
    assert.equal(status.status?.conditions.find((c) => c.type === "RuntimeReady")?.status, false, "Status answers: runtime not ready");
    await env.containerd.daemon.start();
    containerdDown = false;
    const items = await eventually("the real list", async () => (await env.client.runtime.ListPodSandbox({})).items, 30_000);
    assert.deepEqual(items.map((i) => [i.id, i.state]), [[pod.id, "SANDBOX_READY"]]);
  });
});

describe("a CNI plugin that hangs in ADD", () => {
  let env: PodEnv;
  before(async () => { env = await PodEnv.start(); });
  after(async () => { await env?.close(); });

  it("gets an answer within the ADD deadline, the plugin and its children killed, nothing leaked", async () => {
    const bin = join(env.crib.dir, "cni-bin");
    const pids = join(env.crib.dir, "hang.pids");
    await mkdir(bin, { recursive: true });
    // hangs in ADD with a child of its own (a real plugin's iptables, say); DEL is quick
    await writeFile(join(bin, "hang"), `#!/bin/sh\n[ "$CNI_COMMAND" = ADD ] || exit 0\n/bin/sleep 600 &\necho $$ $! >> ${pids}\nwait\n`);
    await chmod(join(bin, "hang"), 0o755);
    const config = parse(await readFile(env.crib.configPath, "utf8")) as { cni: Record<string, unknown> };
    config.cni["bin_dirs"] = [bin, "/opt/cni/bin", "/usr/lib/cni"];
    config.cni["add_timeout"] = "3s";
    config.cni["del_timeout"] = "5s";
    await writeFile(env.crib.configPath, stringify(config));
    const bridge = { type: "bridge", bridge: env.bridge, isGateway: true, ipMasq: false, ipam: { type: "host-local", ranges: [[{ subnet: env.subnet }]], dataDir: env.ipamDir } };
    await writeFile(join(env.crib.dir, "net.d", "10-test.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "crib-test", plugins: [bridge, { type: "hang" }] }));
    await env.crib.restart("SIGTERM");
    await env.writeNetwork([bridge, { type: "hang" }]);

    const started = Date.now();
    await assert.rejects(env.runPod("hung"), (e: { code: number; details: string }) => e.code === 4 && /CNI ADD .* did not finish within 3000 ms/.test(e.details), "DEADLINE_EXCEEDED naming the ADD");
    const took = Date.now() - started;
    assert.ok(took < 20_000, `answered after ${took} ms: the 3 s ADD deadline and the undo`);
    // gone, or a zombie its new parent has yet to reap
    const alive = async (pid: number) => !/^\d+ \(.*\) Z/.test(await readFile(`/proc/${pid}/stat`, "utf8").catch(() => `${pid} (gone) Z`));
    for (const pid of (await readFile(pids, "utf8")).split(/\s+/).filter(Boolean).map(Number)) {
      await eventually(`process ${pid} of the hung plugin is gone`, async () => ((await alive(pid)) ? undefined : true), 5000);
    }
    assert.deepEqual(await leftovers(env), { netns: [], veths: [], ipam: [], mounts: [], containers: [], tasks: [], snapshots: [] });
    assert.deepEqual(await cribFiles(env), { rootSandboxes: [], stateSandboxes: [], rootContainers: [], stateContainers: [], cniCache: [], intents: [] });
    assert.deepEqual(await shimsOf(env, []), []);
  });
});
