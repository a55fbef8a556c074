import assert from "node:assert/strict";
import { test } from "node:test";
import { SPAWNER_IDLE_MS, SpawnError, execFileOffThread, runProcess, spawnerThreads } from "./process-runner.js";

test("a child started off the event loop gets its stdin, env and args; its output and exit status come back", async () => {
  const r = await runProcess("/bin/sh", ["-c", 'read line; echo "$line $CRIB_X $0"; echo oops >&2; exit 3', "arg0"], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", CRIB_X: "from-env" }, input: "from-stdin\n",
  });
  assert.equal(r.code, 3);
  assert.equal(r.signal, null);
  assert.equal(r.stdout.toString(), "from-stdin from-env arg0\n");
  assert.equal(r.stderr.toString(), "oops\n");
  assert.ok(r.pid > 0);
});

test("output beyond the cap is read and dropped, so a chatty child still finishes", async () => {
  const r = await runProcess("/bin/sh", ["-c", "head -c 300000 /dev/zero"], { maxStdout: 1000 });
  assert.equal(r.code, 0);
  assert.equal(r.stdout.length, 1000, "the first 1000 bytes kept");
});

test("a missing binary rejects with a SpawnError naming it and its errno", async () => {
  await assert.rejects(runProcess("/nonexistent/crib-tool", []), (err: unknown) => {
    assert.ok(err instanceof SpawnError);
    assert.equal(err.code, "ENOENT");
    assert.match(err.message, /\/nonexistent\/crib-tool/);
    return true;
  });
});

test("aborting kills the child and rejects with the reason once it is gone", async () => {
  const controller = new AbortController();
  let pid = 0;
  const running = runProcess("/bin/sleep", ["60"], { signal: controller.signal, onStarted: (p) => { pid = p; } });
  for (let i = 0; i < 400 && pid === 0; i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(pid > 0, "the child started");
  controller.abort(new DOMException("enough", "TimeoutError"));
  await assert.rejects(running, { name: "TimeoutError", message: "enough" });
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, "the child is gone when the call settles");
});

test("execFileOffThread answers like execFile: text out, a failed exit as an error carrying stderr", async () => {
  assert.deepEqual(await execFileOffThread("/bin/echo", ["hello"]), { stdout: "hello\n", stderr: "" });
  await assert.rejects(execFileOffThread("/bin/sh", ["-c", "echo nope >&2; exit 2"]), (err: unknown) => {
    assert.equal((err as { stderr?: string }).stderr, "nope\n");
    assert.equal((err as { code?: number }).code, 2);
    return true;
  });
});

test("many children at once all finish, each with its own output", async () => {
  const results = await Promise.all(Array.from({ length: 24 }, (_, i) => execFileOffThread("/bin/echo", [String(i)])));
  assert.deepEqual(results.map((r) => r.stdout), Array.from({ length: 24 }, (_, i) => `${i}\n`));
});

test("an idle spawner thread ends after SPAWNER_IDLE_MS (a thread is ~10 MB), and the next run starts one again", async () => {
  await Promise.all(Array.from({ length: 3 }, () => execFileOffThread("/bin/true", [])));
  assert.ok(spawnerThreads() >= 1, "the runs had a thread");
  await new Promise((r) => setTimeout(r, SPAWNER_IDLE_MS + 1500));
  assert.equal(spawnerThreads(), 0, "no thread left after a quiet spell");
  assert.deepEqual(await execFileOffThread("/bin/echo", ["again"]), { stdout: "again\n", stderr: "" });
  assert.equal(spawnerThreads(), 1);
});

test("a spawner that gets work just before its idle timer fires keeps it and answers", async () => {
  await execFileOffThread("/bin/true", []);
  await new Promise((r) => setTimeout(r, SPAWNER_IDLE_MS - 50));
  const r = await runProcess("/bin/sh", ["-c", "sleep 0.3; echo late"]);
  assert.equal(r.stdout.toString(), "late\n");
});
