import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FifoPool } from "./fifo.js";

test("a FIFO pool hands out FIFOs ahead of need, makes more when it runs dry, and refills", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "crib-fifo-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pool = await FifoPool.create(join(dir, "pool"), 4);
  await pool.filled();
  assert.equal(pool.ready, 4);
  const paths = Array.from({ length: 6 }, (_, i) => join(dir, `f${i}`));
  await pool.make(...paths, "");
  for (const p of paths) assert.ok((await stat(p)).isFIFO(), `${p} is a FIFO`);
  await pool.filled();
  assert.equal(pool.ready, 4, "refilled");
  assert.equal((await readdir(join(dir, "pool"))).length, 4);
});

test("a new pool empties what an earlier crib left in its directory", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "crib-fifo-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const first = await FifoPool.create(join(dir, "pool"), 3);
  await first.filled();
  const second = await FifoPool.create(join(dir, "pool"), 2);
  await second.filled();
  assert.equal((await readdir(join(dir, "pool"))).length, 2);
});
