import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { isKind } from "../errors.js";
import { DEFAULT_APPARMOR_PROFILE, appArmorChoice, appArmorEnabled, apparmorParser, defaultProfileText, loadedProfiles, requireLoaded } from "./apparmor.js";
import { buildContainerSpec } from "./container.js";
import { containerInput, host } from "./testing.js";

const invalid = (re: RegExp) => (e: unknown) => isKind(e, "invalid-argument") && re.test((e as Error).message);
const withAppArmor = host({ apparmor: { enabled: true, defaultProfile: DEFAULT_APPARMOR_PROFILE } });
const profileOf = (security_context: object, opts: { privileged?: boolean; h?: ReturnType<typeof host> } = {}) =>
  buildContainerSpec(containerInput(
    { linux: { security_context: { ...security_context, ...(opts.privileged ? { privileged: true } : {}) } } },
    { host: opts.h ?? withAppArmor, ...(opts.privileged ? { sandbox: { linux: { security_context: { privileged: true } } } } : {}) },
  )).spec.process.apparmorProfile;

test("the profile comes from the apparmor field, else the deprecated apparmor_profile, else RuntimeDefault", () => {
  assert.deepEqual(appArmorChoice(null, "", "sc"), { kind: "runtime-default" });
  assert.deepEqual(appArmorChoice(null, "runtime/default", "sc"), { kind: "runtime-default" });
  assert.deepEqual(appArmorChoice(null, "unconfined", "sc"), { kind: "unconfined" });
  assert.deepEqual(appArmorChoice(null, "localhost/k8s-deny-write", "sc"), { kind: "localhost", name: "k8s-deny-write" });
  assert.deepEqual(appArmorChoice({ profile_type: "Localhost", localhost_ref: "localhost/p" }, "unconfined", "sc"), { kind: "localhost", name: "p" });
  assert.deepEqual(appArmorChoice({ profile_type: "Localhost", localhost_ref: "p" }, "", "sc"), { kind: "localhost", name: "p" });
  assert.deepEqual(appArmorChoice({ profile_type: "Unconfined", localhost_ref: "" }, "localhost/p", "sc"), { kind: "unconfined" });
  assert.throws(() => appArmorChoice(null, "docker/weird", "sc"), invalid(/unknown AppArmor profile "docker\/weird"/));
  assert.throws(() => appArmorChoice({ profile_type: "Localhost", localhost_ref: "" }, "", "sc"), invalid(/needs a name/));
});

test("on an AppArmor node: crib's default unless asked otherwise, the named profile for Localhost, none for privileged or Unconfined", () => {
  assert.equal(profileOf({}), DEFAULT_APPARMOR_PROFILE);
  assert.equal(profileOf({ apparmor: { profile_type: "RuntimeDefault" } }), DEFAULT_APPARMOR_PROFILE);
  assert.equal(profileOf({ apparmor: { profile_type: "Localhost", localhost_ref: "k8s-deny-write" } }), "k8s-deny-write");
  assert.equal(profileOf({ apparmor_profile: "localhost/legacy" }), "legacy");
  assert.equal(profileOf({ apparmor: { profile_type: "Unconfined" } }), undefined);
  assert.equal(profileOf({}, { privileged: true }), undefined);
  assert.equal(profileOf({ apparmor: { profile_type: "Localhost", localhost_ref: "p" } }, { privileged: true }), "p", "an explicit profile still applies");
});

test("without AppArmor nothing is applied; a Localhost request is a warning, and a missing default profile is reported", () => {
  assert.equal(profileOf({ apparmor: { profile_type: "Localhost", localhost_ref: "p" } }, { h: host() }), undefined);
  const { warnings } = buildContainerSpec(containerInput({ linux: { security_context: { apparmor: { profile_type: "Localhost", localhost_ref: "p" } } } }));
  assert.ok(warnings.some((w) => w.includes(`"p" ignored`)), warnings.join("; "));
  const noDefault = host({ apparmor: { enabled: true } });
  assert.equal(profileOf({}, { h: noDefault }), undefined);
  const unloaded = buildContainerSpec(containerInput({}, { host: noDefault })).warnings;
  assert.ok(unloaded.some((w) => w.includes("unconfined")), unloaded.join("; "));
});

test("AppArmor is on when securityfs has it and the module says Y; Localhost profiles must be loaded", async (t) => {
  const sys = await mkdtemp(join(tmpdir(), "crib-sys-"));
  t.after(() => rm(sys, { recursive: true, force: true }));
  assert.equal(await appArmorEnabled(sys), false);
  await mkdir(join(sys, "kernel/security/apparmor"), { recursive: true });
  await mkdir(join(sys, "module/apparmor/parameters"), { recursive: true });
  await writeFile(join(sys, "module/apparmor/parameters/enabled"), "N\n");
  assert.equal(await appArmorEnabled(sys), false);
  await writeFile(join(sys, "module/apparmor/parameters/enabled"), "Y\n");
  assert.equal(await appArmorEnabled(sys), true);
  await writeFile(join(sys, "kernel/security/apparmor/profiles"), "crib-default (enforce)\nk8s deny write (complain)\n/usr/bin/man (enforce)\n");
  assert.deepEqual([...(await loadedProfiles(sys))], ["crib-default", "k8s deny write", "/usr/bin/man"]);
  const on = { enabled: true };
  await requireLoaded({ kind: "localhost", name: "/usr/bin/man" }, on, sys);
  await assert.rejects(requireLoaded({ kind: "localhost", name: "non-existent-profile" }, on, sys), invalid(/"non-existent-profile" is not loaded/));
  await requireLoaded({ kind: "localhost", name: "non-existent-profile" }, { enabled: false }, sys);
  await requireLoaded({ kind: "runtime-default" }, on, sys);
});

test("crib's default profile compiles (apparmor_parser, when installed)", async (t) => {
  const parser = await promisify(execFile)("sh", ["-c", "command -v apparmor_parser"]).then((r) => r.stdout.trim(), () => "");
  if (!parser) return t.skip("apparmor_parser is not installed");
  await apparmorParser(defaultProfileText(), { replace: false, parser });
  await assert.rejects(apparmorParser("profile broken { bogus }", { replace: false, parser }), /apparmor_parser exited/);
});
