import assert from "node:assert/strict";
import { test } from "node:test";
import {
  familiarName,
  familiarString,
  InvalidReferenceError,
  manifestReference,
  parseDigest,
  parseNormalized,
  parseReference,
  referenceString,
  repositoryName,
  withDigest,
} from "./reference.js";

const digest = `sha256:${"a".repeat(64)}`;

test("a bare name is normalised to docker.io/library and :latest", () => {
  const ref = parseReference("busybox");
  assert.deepEqual(ref, { domain: "docker.io", path: "library/busybox", tag: "latest" });
  assert.equal(referenceString(ref), "docker.io/library/busybox:latest");
  assert.equal(repositoryName(ref), "docker.io/library/busybox");
  assert.equal(familiarString(ref), "busybox:latest");
});

test("normalisation matches docker for the usual spellings", () => {
  const cases: Array<[string, string]> = [
    ["busybox:1.36", "docker.io/library/busybox:1.36"],
    ["library/busybox", "docker.io/library/busybox:latest"],
    ["user/app", "docker.io/user/app:latest"],
    ["docker.io/busybox", "docker.io/library/busybox:latest"],
    ["index.docker.io/busybox:musl", "docker.io/library/busybox:musl"],
    ["registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"],
    ["quay.io/a/b/c:v1", "quay.io/a/b/c:v1"],
    ["localhost/app", "localhost/app:latest"],
    ["localhost:5000/app:dev", "localhost:5000/app:dev"],
    ["127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag"],
    ["host:5000/a/b:tag", "host:5000/a/b:tag"],
    ["[::1]:5000/app:1", "[::1]:5000/app:1"],
    ["Registry.Example.com/app", "Registry.Example.com/app:latest"],
    ["my-registry.local/a__b/c.d/e-f:V1.0_x", "my-registry.local/a__b/c.d/e-f:V1.0_x"],
  ];
  for (const [input, want] of cases) assert.equal(referenceString(parseReference(input)), want, input);
});

test("a digest pins the reference and no tag is added", () => {
  const ref = parseReference(`busybox@${digest}`);
  assert.deepEqual(ref, { domain: "docker.io", path: "library/busybox", digest });
  assert.equal(manifestReference(ref), digest);
  assert.equal(familiarString(ref), `busybox@${digest}`);
});

test("tag and digest together keep both, and the digest is what is fetched", () => {
  const ref = parseReference(`127.0.0.1:5000/app:1.0@${digest}`);
  assert.equal(ref.domain, "127.0.0.1:5000");
  assert.equal(ref.path, "app");
  assert.equal(ref.tag, "1.0");
  assert.equal(ref.digest, digest);
  assert.equal(manifestReference(ref), digest);
  assert.equal(referenceString(withDigest(ref, digest)), `127.0.0.1:5000/app@${digest}`);
});

test("parseNormalized leaves a name without tag alone", () => {
  assert.equal(referenceString(parseNormalized("busybox")), "docker.io/library/busybox");
});

test("familiar names drop docker.io and library/ only where docker does", () => {
  assert.equal(familiarName(parseReference("docker.io/library/busybox")), "busybox");
  assert.equal(familiarName(parseReference("docker.io/user/app")), "user/app");
  assert.equal(familiarName(parseReference("docker.io/library/a/b")), "library/a/b");
  assert.equal(familiarName(parseReference("127.0.0.1:5000/library/busybox")), "127.0.0.1:5000/library/busybox");
});

test("invalid references are refused with an error that names them", () => {
  const invalid: Array<[string, RegExp]> = [
    ["", /empty/],
    ["Busybox", /lowercase/],
    ["docker.io/User/app", /lowercase/],
    ["busybox:", /invalid tag/],
    ["busybox:-x", /invalid tag/],
    [`busybox:${"t".repeat(129)}`, /invalid tag/],
    ["busybox@sha256:abc", /invalid digest/],
    [`busybox@sha256:${"A".repeat(64)}`, /lowercase hex/],
    [`busybox@md5:${"a".repeat(32)}`, /unsupported digest algorithm/],
    [`busybox@sha256:${"a".repeat(63)}`, /64 lowercase hex/],
    ["a/b//c", /invalid repository name/],
    ["a/-b", /invalid repository name/],
    ["bad_host:5000/app", /invalid registry host/],
    ["host:port/app", /invalid registry host/],
    ["busybox:1@2", /invalid digest/],
    ["a".repeat(64), /image IDs/],
    [`example.com/${"a".repeat(250)}`, /255 characters/],
  ];
  for (const [input, problem] of invalid) {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => {
        assert.ok(err instanceof InvalidReferenceError, `${input}: ${String(err)}`);
        assert.equal(err.reference, input);
        assert.ok(err.message.includes(`"${input}"`), err.message);
        assert.match(err.message, problem);
        assert.equal(err.kind, "invalid-argument");
        return true;
      },
      input,
    );
  }
});

test("digests are parsed into algorithm and hex", () => {
  assert.deepEqual(parseDigest(digest), { algorithm: "sha256", hex: "a".repeat(64) });
  assert.deepEqual(parseDigest(`sha512:${"0".repeat(128)}`), { algorithm: "sha512", hex: "0".repeat(128) });
});
