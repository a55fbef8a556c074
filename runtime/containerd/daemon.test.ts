import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { ContainerdDaemon } from "./daemon.js";

/** Live processes running `script`. */
async function running(script: string): Promise<number[]> {
  const out: number[] = [];
  for (const p of await readdir("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, "utf8").catch(() => "");
    const stat = await readFile(`/proc/${p}/stat`, "utf8").catch(() => "");
    if (cmd.includes(script) && !/^\d+ \(.*\) Z/.test(stat)) out.push(Number(p));
  }
  return out;
}

test("start() while the daemon is being restarted after a crash runs one containerd, not two", async () => {
  const dir = await mkdtemp(join(tmpdir(), "crib-daemon-"));
  const script = join(dir, "fake-containerd");
  await writeFile(script, "#!/bin/sh\nwhile :; do sleep 1; done\n");
  await chmod(script, 0o755);
  const daemon = new ContainerdDaemon({ binary: script, root: join(dir, "root"), state: join(dir, "state"), log: pino({ level: "silent" }), probe: async () => true });
  try {
    await daemon.start();
    const first = daemon.pid!;
    process.kill(first, "SIGKILL");
    await new Promise((r) => setTimeout(r, 50)); // the exit is seen; the restart is due in 250 ms
    await daemon.start();
    await new Promise((r) => setTimeout(r, 600)); // past the restart's timer
    const live = await running(script);
    assert.equal(live.length, 1, `one containerd runs: ${live.join(", ")}`);
    assert.equal(live[0], daemon.pid, "the one the daemon tracks");
  } finally {
    await daemon.stop(1000);
    for (const pid of await running(script)) process.kill(pid, "SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
});
