import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isKind } from "../errors.js";
import { defaultCapabilities } from "./capabilities.js";
import { readSeccompProfile, seccompChoice, seccompFromProfile } from "./seccomp.js";
import { cloneNamespaceFlags, defaultSeccompProfile } from "./seccomp-default.js";
import type { Seccomp } from "./types.js";

const invalid = (message: RegExp) => (err: unknown) => isKind(err, "invalid-argument") && message.test((err as Error).message);
const allowed = (profile: Seccomp, name: string): boolean =>
  profile.syscalls?.some((s) => s.names.includes(name) && s.action === "SCMP_ACT_ALLOW" && s.args === undefined) ?? false;

test("the default profile denies with EPERM and allows the everyday syscalls", () => {
  const profile = defaultSeccompProfile(defaultCapabilities, "x64");
  assert.equal(profile.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(profile.defaultErrnoRet, 1);
  for (const name of ["read", "write", "openat", "execve", "futex", "epoll_wait", "arch_prctl", "chroot", "ptrace", "io_uring_setup"]) {
    assert.ok(allowed(profile, name), `${name} should be allowed`);
  }
  for (const name of ["mount", "unshare", "setns", "reboot", "kexec_load", "init_module", "bpf", "keyctl", "add_key"]) {
    assert.ok(!allowed(profile, name), `${name} should be denied`);
  }
});

test("without CAP_SYS_ADMIN clone may not create namespaces and clone3 reports ENOSYS", () => {
  const profile = defaultSeccompProfile(defaultCapabilities, "x64");
  assert.deepEqual(profile.syscalls?.find((s) => s.names.includes("clone")), {
    names: ["clone"],
    action: "SCMP_ACT_ALLOW",
    args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
  });
  assert.equal(cloneNamespaceFlags, 0x7e020000);
  assert.deepEqual(profile.syscalls?.find((s) => s.names.includes("clone3")), { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 });
});

test("personality is allowed only for the harmless personas", () => {
  const values = defaultSeccompProfile([], "x64").syscalls?.filter((s) => s.names.includes("personality")).map((s) => s.args?.[0]?.value);
  assert.deepEqual(values, [0, 8, 0x20000, 0x20008, 0xffffffff]);
});

test("capabilities unlock their syscalls", () => {
  const cases: Array<[string, string]> = [
    ["CAP_SYS_ADMIN", "mount"],
    ["CAP_SYS_PTRACE", "process_vm_readv"],
    ["CAP_SYS_TIME", "settimeofday"],
    ["CAP_SYS_MODULE", "init_module"],
    ["CAP_SYS_BOOT", "reboot"],
    ["CAP_DAC_READ_SEARCH", "open_by_handle_at"],
    ["CAP_BPF", "bpf"],
  ];
  for (const [cap, syscall] of cases) {
    assert.ok(!allowed(defaultSeccompProfile([], "x64"), syscall), `${syscall} without ${cap}`);
    assert.ok(allowed(defaultSeccompProfile([cap], "x64"), syscall), `${syscall} with ${cap}`);
  }
  const admin = defaultSeccompProfile(["CAP_SYS_ADMIN"], "x64");
  assert.ok(!admin.syscalls?.some((s) => s.names.includes("clone3") && s.action === "SCMP_ACT_ERRNO"));
});

test("architectures and arch-only syscalls follow the machine", () => {
  assert.deepEqual(defaultSeccompProfile([], "x64").architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
  const arm = defaultSeccompProfile([], "arm64");
  assert.deepEqual(arm.architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
  assert.ok(allowed(arm, "set_tls") && !allowed(arm, "arch_prctl"));
});

test("profile choice: the SecurityProfile, else the deprecated path, else the fallback", () => {
  assert.deepEqual(seccompChoice(null, "", "", "unconfined", "sc"), { kind: "unconfined" });
  assert.deepEqual(seccompChoice(null, "", "", "runtime-default", "sc"), { kind: "runtime-default" });
  assert.deepEqual(seccompChoice({ profile_type: "Localhost", localhost_ref: "/p.json" }, "unconfined", "", "unconfined", "sc"), {
    kind: "localhost",
    path: "/p.json",
  });
  assert.deepEqual(seccompChoice(null, "localhost/p.json", "/root", "unconfined", "sc"), { kind: "localhost", path: "/root/p.json" });
  assert.throws(() => seccompChoice({ profile_type: "Localhost", localhost_ref: "" }, "", "", "unconfined", "sc"), invalid(/needs a path/));
  assert.throws(() => seccompChoice(null, "localhost/rel.json", "", "unconfined", "sc"), invalid(/not an absolute path/));
});

test("a Docker-format profile keeps the entries whose capability and architecture conditions hold", () => {
  const docker = {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: 1,
    archMap: [
      { architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
      { architecture: "SCMP_ARCH_AARCH64", subArchitectures: ["SCMP_ARCH_ARM"] },
    ],
    syscalls: [
      { names: ["read", "write"], action: "SCMP_ACT_ALLOW" },
      { name: "personality", action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 8, valueTwo: 0, op: "SCMP_CMP_EQ" }] },
      { names: ["mount"], action: "SCMP_ACT_ALLOW", includes: { caps: ["CAP_SYS_ADMIN"] } },
      { names: ["clone"], action: "SCMP_ACT_ALLOW", excludes: { caps: ["CAP_SYS_ADMIN"] } },
      { names: ["set_tls"], action: "SCMP_ACT_ALLOW", includes: { arches: ["arm64"] } },
      { names: ["chmod"], action: "SCMP_ACT_ERRNO", errnoRet: 13, comment: "no" },
    ],
  };
  assert.deepEqual(seccompFromProfile(docker, "/p.json", ["CAP_CHOWN"], "x64"), {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: 1,
    architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    syscalls: [
      { names: ["read", "write"], action: "SCMP_ACT_ALLOW" },
      { names: ["personality"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 8, op: "SCMP_CMP_EQ" }] },
      { names: ["clone"], action: "SCMP_ACT_ALLOW" },
      { names: ["chmod"], action: "SCMP_ACT_ERRNO", errnoRet: 13 },
    ],
  });
  const admin = seccompFromProfile(docker, "/p.json", ["CAP_SYS_ADMIN"], "arm64");
  assert.deepEqual(admin.architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
  assert.deepEqual(admin.syscalls?.map((s) => s.names[0]), ["read", "personality", "mount", "set_tls", "chmod"]);
});

test("a broken profile is refused with its path", () => {
  assert.throws(() => seccompFromProfile([], "/p.json", [], "x64"), invalid(/seccomp profile "\/p.json": not a JSON object/));
  assert.throws(() => seccompFromProfile({ defaultAction: "SCMP_ACT_MAYBE" }, "/p.json", [], "x64"), invalid(/unknown action "SCMP_ACT_MAYBE"/));
  assert.throws(
    () => seccompFromProfile({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["x"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 1, op: "LIKE" }] }] }, "/p.json", [], "x64"),
    invalid(/unknown operator "LIKE"/),
  );
});

test("readSeccompProfile parses the file and names it when it cannot", async () => {
  const dir = await mkdtemp(join(tmpdir(), "crib-seccomp-"));
  try {
    await writeFile(join(dir, "ok.json"), JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW" }));
    await writeFile(join(dir, "bad.json"), "{");
    assert.deepEqual(await readSeccompProfile(join(dir, "ok.json")), { path: join(dir, "ok.json"), profile: { defaultAction: "SCMP_ACT_ALLOW" } });
    await assert.rejects(readSeccompProfile(join(dir, "bad.json")), invalid(/bad.json": not JSON/));
    await assert.rejects(readSeccompProfile(join(dir, "missing.json")), invalid(/missing.json"/));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
