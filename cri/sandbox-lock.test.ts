import assert from "node:assert/strict";
import { test } from "node:test";
import { SandboxLocks } from "./sandbox-lock.js";

const tick = () => new Promise((r) => setImmediate(r));

test("creates share a sandbox's lock; a remove waits for them and holds it alone; later creates wait for the remove", async () => {
  const locks = new SandboxLocks();
  const log: string[] = [];
  let finishCreates!: () => void;
  const createsMayEnd = new Promise<void>((r) => { finishCreates = r; });
  const c1 = locks.shared("s", async () => { log.push("c1 in"); await createsMayEnd; log.push("c1 out"); });
  const c2 = locks.shared("s", async () => { log.push("c2 in"); await createsMayEnd; log.push("c2 out"); });
  await tick();
  const remove = locks.exclusive("s", async () => { log.push("remove in"); await tick(); log.push("remove out"); });
  const late = locks.shared("s", async () => { log.push("late in"); });
  const other = locks.exclusive("t", async () => { log.push("other pod"); });
  await other;
  await tick();
  assert.deepEqual(log, ["c1 in", "c2 in", "other pod"], "two creates at once; the remove waits; another pod does not");
  finishCreates();
  await Promise.all([c1, c2, remove, late]);
  assert.deepEqual(log.slice(3), ["c1 out", "c2 out", "remove in", "remove out", "late in"]);
  assert.equal(locks.size, 0, "no lock kept for idle sandboxes");
});

test("a failing holder releases the lock", async () => {
  const locks = new SandboxLocks();
  await assert.rejects(locks.exclusive("s", async () => { throw new Error("boom"); }), /boom/);
  assert.equal(await locks.shared("s", async () => 1), 1);
  assert.equal(locks.size, 0);
});
