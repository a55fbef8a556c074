// Needs root and iproute2: creates real network namespaces under a test prefix.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { NETNS_RUN_DIR, NetnsError, NetnsManager, exists } from "./netns.js";

const run = promisify(execFile);
const prefix = `cribtest${randomBytes(3).toString("hex")}-`;
const netns = new NetnsManager({ prefix });

after(async () => {
  for (const ns of await netns.list()) await netns.remove(ns);
});

test("a sandbox gets a pinned netns with loopback up", async () => {
  const ns = await netns.create("sb1");
  assert.equal(ns.name, `${prefix}sb1`);
  assert.equal(ns.path, join(NETNS_RUN_DIR, `${prefix}sb1`));
  assert.equal(await netns.exists(ns.path), true);
  const { stdout } = await run("ip", ["-n", ns.name, "-o", "link", "show", "lo"]);
  assert.match(stdout, /<LOOPBACK,UP,LOWER_UP>/);
  assert.deepEqual(await netns.list(), [{ ...ns, sandboxId: "sb1" }]);

  await netns.remove(ns);
  assert.equal(await exists(ns.path), false);
  assert.deepEqual(await netns.list(), []);
});

test("removing is idempotent, by name or by path", async () => {
  const ns = await netns.create("sb2");
  await netns.remove(ns.path);
  await netns.remove(ns.path);
  await netns.remove(ns.name);
  await netns.remove(ns);
  assert.equal(await exists(ns.path), false);
});

test("creating a netns that exists fails as already-exists", async () => {
  const ns = await netns.create("sb3");
  await assert.rejects(netns.create("sb3"), (err: unknown) => {
    assert.ok(err instanceof NetnsError);
    assert.equal(err.kind, "already-exists");
    assert.match(err.message, new RegExp(`sandbox sb3: cannot create network namespace ${ns.name}: .*File exists`));
    return true;
  });
  await netns.remove(ns);
});

test("an id that cannot be a file name is refused", async () => {
  await assert.rejects(netns.create("../etc"), (err: unknown) => err instanceof NetnsError && err.kind === "invalid-argument");
  await assert.rejects(netns.remove("/tmp/elsewhere"), /is not under \/var\/run\/netns/);
});

test("a stale pin file is not a netns, and remove clears it", async () => {
  const path = join(NETNS_RUN_DIR, `${prefix}stale`);
  await writeFile(path, "");
  assert.equal(await exists(path), false);
  await netns.remove(path);
  assert.deepEqual(await netns.list(), []);
});

test("many sandboxes can be created at once", async () => {
  const ids = Array.from({ length: 8 }, (_, i) => `par${i}`);
  const created = await Promise.all(ids.map((id) => netns.create(id)));
  assert.deepEqual((await netns.list()).map((n) => n.sandboxId).sort(), ids);
  await Promise.all(created.map((ns) => netns.remove(ns)));
  assert.deepEqual(await netns.list(), []);
});

test("an aborted create rejects with the signal's reason", async () => {
  const controller = new AbortController();
  controller.abort(new Error("caller went away"));
  await assert.rejects(netns.create("aborted", controller.signal), /caller went away/);
});

test("a loopback that cannot come up fails the create, naming the netns, and leaves no netns behind", async () => {
  const dir = await mkdtemp(join(tmpdir(), "crib-netns-"));
  try {
    // an `ip` that pins namespaces but refuses to set links up
    const ip = join(dir, "ip");
    await writeFile(ip, `#!/bin/sh\ncase "$*" in *"link set lo up"*) echo "RTNETLINK answers: Operation not permitted" >&2; exit 2;; esac\nexec ip "$@"\n`, { mode: 0o755 });
    const refusing = new NetnsManager({ prefix, ip });
    await assert.rejects(refusing.create("nolo"), (err: unknown) => {
      assert.ok(err instanceof NetnsError);
      assert.equal(err.kind, "internal");
      assert.match(err.message, new RegExp(`cannot bring up loopback in network namespace ${prefix}nolo: RTNETLINK answers: Operation not permitted`));
      return true;
    });
    assert.equal(await exists(join(NETNS_RUN_DIR, `${prefix}nolo`)), false);
    assert.deepEqual(await netns.list(), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("the pod's shm tmpfs can be mounted by the same process, and a mount that fails leaves no netns behind", async () => {
  const dir = await mkdtemp(join(tmpdir(), "crib-netns-shm-"));
  try {
    const ns = await netns.create("shm", undefined, { dir, options: "nodev,noexec,nosuid,mode=1777,size=1048576" });
    assert.equal(await netns.exists(ns.path), true);
    const { stdout } = await run("findmnt", ["-n", "-o", "FSTYPE,OPTIONS", dir]);
    assert.match(stdout, /^tmpfs .*size=1024k/);
    await run("umount", [dir]);
    await netns.remove(ns);

    const missing = join(dir, "missing");
    await assert.rejects(netns.create("shmfail", undefined, { dir: missing, options: "size=1m" }), (err: unknown) => {
      assert.ok(err instanceof NetnsError);
      assert.match(err.message, new RegExp(`sandbox shmfail: cannot mount a tmpfs at ${missing}: .*`));
      return true;
    });
    assert.equal(await exists(join(NETNS_RUN_DIR, `${prefix}shmfail`)), false);
    assert.deepEqual(await netns.list(), []);
  } finally {
    await run("umount", [dir]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
});
