// What an idle crib keeps in memory: the modules only some requests need are
// loaded by the first such request (the streaming sessions by the first exec,
// attach or port-forward; prom-client only with [metrics] address; the
// Kubernetes client only in `crib bootstrap`), and the spawner threads of a
// burst of pod starts end once it is over.
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PodEnv } from "../fixtures/pod-env.js";
import { execSpdy } from "../fixtures/stream-clients.js";
import { SPAWNER_IDLE_MS } from "../../runtime/process-runner.js";

const ON_DEMAND = ["/node_modules/ws/", "/node_modules/spdy-transport/", "/node_modules/prom-client/", "/node_modules/@kubernetes/client-node/", "/runtime/streaming/upgrade.js", "/cri/metrics.js"];

describe("an idle daemon", () => {
  let env: PodEnv;
  let moduleLog: string;
  const loaded = async (): Promise<string[]> => (await readFile(moduleLog, "utf8")).split("\n").filter(Boolean);
  const onDemandLoaded = async (): Promise<string[]> => (await loaded()).filter((url) => ON_DEMAND.some((part) => url.includes(part)));
  const threads = async (): Promise<number> => (await readdir(`/proc/${env.crib.pid}/task`)).length;

  before(async () => {
    const flags = process.env["CRIB_NODE_FLAGS"];
    const dir = await import("node:fs/promises").then((fs) => fs.mkdtemp("/tmp/crib-modules-"));
    moduleLog = join(dir, "modules.log");
    process.env["CRIB_MODULE_LOG"] = moduleLog;
    process.env["CRIB_NODE_FLAGS"] = `${flags ?? ""} --import ${new URL("../fixtures/module-log.js", import.meta.url).href}`;
    try {
      env = await PodEnv.start({ config: { log_level: "info" } });
    } finally {
      if (flags === undefined) delete process.env["CRIB_NODE_FLAGS"];
      else process.env["CRIB_NODE_FLAGS"] = flags;
      delete process.env["CRIB_MODULE_LOG"];
    }
  });
  after(async () => {
    await env?.close();
  });

  it("has loaded none of the streaming sessions, prom-client or the Kubernetes client", async () => {
    await env.client.runtime.ListContainers({});
    await env.client.image.ListImages({});
    const all = await loaded();
    assert.ok(all.some((url) => url.includes("/cri/serve.js")), `the module log works: ${all.length} modules`);
    assert.deepEqual(await onDemandLoaded(), []);
  });

  it("loads the streaming sessions with the first exec, which answers as before", async () => {
    const pod = await env.runPod("mem");
    const container = await env.runContainer(pod, "sleeper", { command: ["/bin/sleep", "3600"] });
    const { url } = await env.client.runtime.Exec({ container_id: container, cmd: ["/bin/echo", "streamed"], stdout: true, stderr: true });
    const result = await execSpdy(url);
    assert.equal(result.stdout.toString(), "streamed\n");
    const now = await onDemandLoaded();
    assert.ok(now.some((u) => u.includes("/runtime/streaming/upgrade.js")), now.join(", "));
    assert.ok(now.some((u) => u.includes("/node_modules/spdy-transport/")), now.join(", "));
    assert.ok(!now.some((u) => u.includes("prom-client") || u.includes("@kubernetes/client-node")), now.join(", "));
  });

  it("ends the spawner threads of a pod start once nothing runs", async () => {
    const busy = await threads();
    await env.runPod("mem-2");
    const during = await threads();
    await new Promise((r) => setTimeout(r, SPAWNER_IDLE_MS + 2000));
    const quiet = await threads();
    assert.ok(quiet < during, `threads: ${busy} before, ${during} after a RunPodSandbox, still ${quiet} ${SPAWNER_IDLE_MS + 2000} ms later`);
  });
});
