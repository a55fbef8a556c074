import assert from "node:assert/strict";
import { test } from "node:test";
import { loginKey, loginOf, parseChallenges, tokenOf } from "./registry-auth.js";

test("a bearer challenge yields realm, service and scope", () => {
  const [bearer] = parseChallenges(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
  );
  assert.deepEqual(bearer, {
    scheme: "bearer",
    params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/busybox:pull" },
  });
});

test("several challenges, quoted commas and escapes, unquoted values", () => {
  const challenges = parseChallenges([
    'Basic realm="crib, test", Bearer realm=https://t.example/token,service=reg , error="insufficient_scope"',
    'Custom realm="a \\"quoted\\" word"',
  ]);
  assert.deepEqual(challenges, [
    { scheme: "basic", params: { realm: "crib, test" } },
    { scheme: "bearer", params: { realm: "https://t.example/token", service: "reg", error: "insufficient_scope" } },
    { scheme: "custom", params: { realm: 'a "quoted" word' } },
  ]);
  assert.deepEqual(parseChallenges(undefined), []);
  assert.deepEqual(parseChallenges("Negotiate abc==, Basic realm=x"), [
    { scheme: "negotiate", params: {} },
    { scheme: "basic", params: { realm: "x" } },
  ]);
});

test("auth in base64 gives username and password", () => {
  assert.deepEqual(loginOf({ auth: Buffer.from("alice:pa:ss").toString("base64") }), { username: "alice", password: "pa:ss" });
  assert.deepEqual(loginOf({ username: "u", password: "", identity_token: "r" }), { username: "u", identityToken: "r" });
  assert.deepEqual(loginOf(undefined), {});
});

test("cache keys do not contain the secret", () => {
  const key = loginKey({ username: "alice", password: "s3cret" });
  assert.ok(!key.includes("s3cret"));
  assert.equal(loginKey({}), "anonymous");
  assert.notEqual(key, loginKey({ username: "alice", password: "other" }));
});

test("a token answer is read from token or access_token, with a lifetime", () => {
  const now = 1_000_000;
  assert.deepEqual(tokenOf({ token: "t", expires_in: 300 }, now), { token: "t", expiresAt: now + 290_000 });
  assert.deepEqual(tokenOf({ access_token: "a" }, now), { token: "a", expiresAt: now + 50_000 });
  assert.equal(tokenOf({}, now), undefined);
  assert.equal(tokenOf("nope", now), undefined);
});
