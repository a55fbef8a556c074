import assert from "node:assert/strict";
import { test } from "node:test";
import type { Descriptor, Platform } from "./oci.js";
import { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformRank, selectPlatformManifest } from "./platform.js";

const entry = (platform: string, n: number): Descriptor => ({
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: n,
  platform: parsePlatform(platform),
});

const pick = (want: string, entries: string[]): string | undefined => {
  const chosen = selectPlatformManifest(entries.map(entry), parsePlatform(want));
  return chosen?.platform === undefined ? undefined : formatPlatform(chosen.platform);
};

test("this host's platform is linux and node's architecture in OCI words", () => {
  const host = hostPlatform();
  assert.equal(host.os, "linux");
  const expected: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386" };
  if (expected[process.arch] !== undefined) assert.equal(host.architecture, expected[process.arch]);
});

test("platforms are normalised as containerd does", () => {
  const cases: Array<[Platform, string]> = [
    [{ os: "Linux", architecture: "x86_64" }, "linux/amd64"],
    [{ os: "linux", architecture: "aarch64", variant: "v8" }, "linux/arm64"],
    [{ os: "linux", architecture: "armhf" }, "linux/arm/v7"],
    [{ os: "linux", architecture: "armel" }, "linux/arm/v6"],
    [{ os: "linux", architecture: "arm" }, "linux/arm/v7"],
    [{ os: "linux", architecture: "arm", variant: "6" }, "linux/arm/v6"],
    [{ os: "linux", architecture: "i386" }, "linux/386"],
  ];
  for (const [platform, want] of cases) assert.equal(formatPlatform(normalizePlatform(platform)), want);
  assert.throws(() => parsePlatform("linux"), /invalid platform "linux"/);
});

test("an index entry for the exact platform wins, wherever it is", () => {
  assert.equal(pick("linux/amd64", ["linux/arm64", "linux/arm/v7", "linux/amd64"]), "linux/amd64");
  assert.equal(pick("linux/arm64", ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]), "linux/arm64");
  assert.equal(pick("linux/arm/v7", ["linux/arm/v6", "linux/arm/v7", "linux/arm64"]), "linux/arm/v7");
});

test("a host runs older variants and the 32-bit architecture when nothing better is there", () => {
  assert.equal(pick("linux/arm/v7", ["linux/arm/v5", "linux/arm/v6"]), "linux/arm/v6");
  assert.equal(pick("linux/arm64", ["linux/arm/v7", "linux/amd64"]), "linux/arm/v7");
  assert.equal(pick("linux/amd64", ["linux/386", "linux/arm64"]), "linux/386");
  assert.equal(pick("linux/arm/v6", ["linux/arm/v7"]), undefined);
  assert.equal(pick("linux/amd64", ["windows/amd64", "linux/arm64"]), undefined);
  assert.equal(platformRank(parsePlatform("linux/amd64"), parsePlatform("linux/amd64")), 0);
});

test("entries without a platform (attestations) are never picked", () => {
  const attestation: Descriptor = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: `sha256:${"f".repeat(64)}`, size: 1 };
  assert.equal(selectPlatformManifest([attestation], parsePlatform("linux/amd64")), undefined);
});
