import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isKind } from "../errors.js";
import { deviceMajor, deviceMinor, hostDevices, resolveDevices } from "./devices.js";

const invalid = (message: RegExp) => (err: unknown) => isKind(err, "invalid-argument") && message.test((err as Error).message);

test("device numbers decode as glibc's major() and minor()", () => {
  assert.deepEqual([deviceMajor(0x0103n), deviceMinor(0x0103n)], [1, 3]); // /dev/null
  assert.deepEqual([deviceMajor(0x8800n), deviceMinor(0x8800n)], [136, 0]); // /dev/pts/0
  // A minor above 255 spreads into the high bits.
  const rdev = (0x12345n & 0xffn) | ((0x12345n & ~0xffn) << 12n) | ((259n & 0xfffn) << 8n);
  assert.deepEqual([deviceMajor(rdev), deviceMinor(rdev)], [259, 0x12345]);
});

test("a CRI device is found on the host with its numbers, mode and the asked permissions", async () => {
  const [null_] = await resolveDevices([{ host_path: "/dev/null", container_path: "/dev/mynull", permissions: "rw" }]);
  assert.deepEqual(
    { path: null_?.path, type: null_?.type, major: null_?.major, minor: null_?.minor, permissions: null_?.permissions },
    { path: "/dev/mynull", type: "c", major: 1, minor: 3, permissions: "rw" },
  );
  assert.equal(null_?.fileMode, 0o666);
  const [defaults] = await resolveDevices([{ host_path: "/dev/zero", container_path: "", permissions: "" }]);
  assert.equal(defaults?.path, "/dev/zero");
  assert.equal(defaults?.permissions, "rwm");
});

test("a missing host device, a plain file or bad permissions are refused by name", async () => {
  await assert.rejects(resolveDevices([{ host_path: "/dev/nonexistent-crib", container_path: "/dev/x", permissions: "rw" }]), invalid(/nonexistent-crib/));
  const dir = await mkdtemp(join(tmpdir(), "crib-dev-"));
  try {
    await writeFile(join(dir, "file"), "");
    await assert.rejects(resolveDevices([{ host_path: join(dir, "file"), container_path: "/dev/x", permissions: "rw" }]), invalid(/is not a device/));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await assert.rejects(resolveDevices([{ host_path: "/dev/null", container_path: "/dev/x", permissions: "rx" }]), invalid(/must be letters of "rwm"/));
});

test("the host's devices include /dev/null and skip /dev/pts", async () => {
  const devices = await hostDevices();
  assert.ok(devices.some((d) => d.path === "/dev/null" && d.major === 1 && d.minor === 3));
  assert.ok(!devices.some((d) => d.path.startsWith("/dev/pts/")));
});
