import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ContainerStore, type Container } from "./containers.js";

const container = (id: string): Container => ({
  id,
  sandboxId: "s",
  config: {} as Container["config"],
  createdAt: "0",
  imageRef: "",
  imageId: "",
  imageDigestRef: "",
  imageName: "",
  logPath: "",
  stopSignal: "",
  ioDir: "",
  status: { state: "CONTAINER_CREATED", pid: 0, startedAt: "0", finishedAt: "0", exitCode: 0, reason: "", message: "" },
});

test("status writes that race (start and exit) all land, and the file ends with the newest", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "crib-store-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new ContainerStore(dir);
  const c = container("c1");
  await Promise.all([
    store.setStatus(c, { state: "CONTAINER_RUNNING", pid: 42, startedAt: "1" }),
    store.setStatus(c, { state: "CONTAINER_EXITED", finishedAt: "2", exitCode: 3 }),
    store.setStatus(c, { reason: "Error" }),
  ]);
  const onDisk = JSON.parse(await readFile(store.statusPath("c1"), "utf8")) as Container["status"];
  assert.deepEqual(onDisk, { state: "CONTAINER_EXITED", pid: 42, startedAt: "1", finishedAt: "2", exitCode: 3, reason: "Error", message: "" });
  assert.deepEqual(await readdir(join(dir, "c1")), ["status.json"], "no temporary files left");
});

test("removing a container's files waits for its pending status write", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "crib-store-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new ContainerStore(dir);
  const c = container("c2");
  const write = store.setStatus(c, { state: "CONTAINER_EXITED" });
  await store.removeFiles("c2");
  await write;
  assert.deepEqual(await readdir(dir), []);
});

test("a waiter wakes at the container's next status change, or at its timeout", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "crib-store-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = new ContainerStore(dir);
  const c = container("c3");
  const started = Date.now();
  const woken = store.nextChange("c3", 10_000);
  setTimeout(() => void store.setStatus(c, { state: "CONTAINER_EXITED" }), 20);
  await woken;
  assert.equal(c.status.state, "CONTAINER_EXITED");
  assert.ok(Date.now() - started < 5_000, "woken by the change, not the timeout");
  await store.nextChange("c3", 10); // nothing changes: the timeout ends it
});
