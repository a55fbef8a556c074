// A test or fuzz run that is killed (a timeout's SIGTERM, ^C) before its `after`
// hooks leaves nothing running: the fixtures kill by PID what they started (crib,
// containerd, the shims and their containers), delete crib's netns and the CNI
// bridge, and remove their directories on the way out.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { access, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { processesWith } from "../fixtures/reaper.js";

const run = promisify(execFile);
const POD_ENV = fileURLToPath(new URL("../fixtures/pod-env.js", import.meta.url));

interface Started { crib: number; containerd: number; address: string; dirs: string[]; netnsPrefix: string; bridge: string; container: number }

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe("fixtures of a test process that is killed", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal} before close(): no crib, containerd, shim or container is left, nor a netns, bridge, mount or directory`, { timeout: 180_000 }, async () => {
      const child = spawn(process.execPath, ["--input-type=module", "-e", `
        const { PodEnv } = await import(${JSON.stringify(POD_ENV)});
        const env = await PodEnv.start();
        const pod = await env.runPod("reap");
        const id = await env.runContainer(pod, "reap");
        const started = { crib: env.crib.pid, containerd: env.containerd.daemon.pid, address: env.containerd.address,
          dirs: [env.crib.dir, env.containerd.dir], netnsPrefix: env.crib.netnsPrefix, bridge: env.bridge, container: await env.pidOf(id) };
        process.stdout.write(JSON.stringify(started) + "\\n");
        setInterval(() => undefined, 1000); // until killed
      `], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
      const exited = once(child, "exit");
      while (!out.includes("\n")) {
        assert.equal(child.exitCode, null, "the child started its pod");
        await new Promise((r) => setTimeout(r, 100));
      }
      const s = JSON.parse(out.split("\n")[0]!) as Started;
      assert.ok([s.crib, s.containerd, s.container].every(alive), "crib, containerd and the container run");
      assert.ok(processesWith("-address", s.address).length >= 1, "the pod's shim runs");

      child.kill(signal);
      const [code] = await exited;
      assert.notEqual(code, 0, "the child ended by the signal");

      const deadline = Date.now() + 10_000;
      while ([s.crib, s.containerd, s.container].some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual([s.crib, s.containerd, s.container].filter(alive), [], "crib, containerd and the container's process are gone");
      assert.deepEqual(processesWith("-address", s.address), [], "no shim of that containerd is left");
      const { stdout: netns } = await run("ip", ["netns", "list"]);
      assert.ok(!netns.includes(s.netnsPrefix), `no netns of that crib: ${netns}`);
      const link = await run("ip", ["link", "show", s.bridge]).then(() => "present", () => "gone");
      assert.equal(link, "gone", `bridge ${s.bridge}`);
      const mounts = await readFile("/proc/self/mountinfo", "utf8");
      for (const dir of s.dirs) {
        assert.ok(!mounts.includes(dir), `nothing mounted under ${dir}`);
        assert.equal(await access(dir).then(() => "present", () => "gone"), "gone", dir);
      }
    });
  }
});
