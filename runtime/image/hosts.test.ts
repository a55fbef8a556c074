import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { credentialsFor, HostsConfigError, isLocalhost, resolveEndpoints, type RegistryEndpoint } from "./hosts.js";

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "crib-hosts-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function configDir(name: string, files: Record<string, string>): Promise<string> {
  const configPath = await mkdtemp(join(root, `${name}-`));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(configPath, path, ".."), { recursive: true });
    await writeFile(join(configPath, path), content);
  }
  return configPath;
}

const summary = (e: RegistryEndpoint): string => `${e.scheme}://${e.host}${e.path}`;

test("without configuration, docker.io is registry-1.docker.io over verified HTTPS", async () => {
  const [hub, ...rest] = await resolveEndpoints("docker.io");
  assert.equal(rest.length, 0);
  assert.equal(summary(hub!), "https://registry-1.docker.io/v2");
  assert.deepEqual(hub!.capabilities, ["pull", "resolve", "push"]);
  assert.equal(hub!.mirror, false);
  assert.equal(hub!.tls.rejectUnauthorized, true);
  assert.equal(hub!.httpFallback, false);

  const [other] = await resolveEndpoints("registry.example.com:5000");
  assert.equal(summary(other!), "https://registry.example.com:5000/v2");
  assert.equal(other!.httpFallback, false);
});

test("an unconfigured localhost registry tries HTTPS without verification, then plain HTTP", async () => {
  for (const host of ["127.0.0.1:5000", "localhost:5000", "localhost", "[::1]:5000", "127.0.0.2:80"]) {
    const [local] = await resolveEndpoints(host);
    assert.equal(local!.scheme, "https", host);
    assert.equal(local!.httpFallback, true, host);
    assert.equal(local!.tls.rejectUnauthorized, false, host);
  }
  assert.equal(isLocalhost("127.0.0.1"), true);
  assert.equal(isLocalhost("localhost.example.com"), false);
  assert.equal(isLocalhost("10.0.0.1:5000"), false);
});

test("hosts.toml lists its mirrors in order, then the server, with their settings", async () => {
  const configPath = await configDir("full", {
    "registry.example.com_5000/hosts.toml": `
server = "https://registry.example.com:5000"
ca = "upstream-ca.crt"

[host."https://mirror-a.example.com"]
  capabilities = ["pull"]
  ca = ["a-ca.crt"]
  skip_verify = true

[host."http://mirror-b.example.com:8080/prefix"]
  capabilities = ["pull", "resolve"]
  header = { X-Token = "t", X-Multi = ["1", "2"] }

[host."mirror-c.example.com/custom/api"]
  override_path = true
  client = [["client.cert", "client.key"]]
`,
    "registry.example.com_5000/upstream-ca.crt": "UPSTREAM CA",
    "registry.example.com_5000/a-ca.crt": "A CA",
    "registry.example.com_5000/client.cert": "CERT",
    "registry.example.com_5000/client.key": "KEY",
  });
  const endpoints = await resolveEndpoints("registry.example.com:5000", { configPath });
  assert.deepEqual(endpoints.map(summary), [
    "https://mirror-a.example.com/v2",
    "http://mirror-b.example.com:8080/prefix/v2",
    "https://mirror-c.example.com/custom/api",
    "https://registry.example.com:5000/v2",
  ]);
  const [a, b, c, upstream] = endpoints;
  assert.deepEqual(a!.capabilities, ["pull"]);
  assert.equal(a!.tls.rejectUnauthorized, false);
  assert.deepEqual(a!.tls.ca?.map(String), ["A CA"]);
  assert.deepEqual(b!.capabilities, ["pull", "resolve"]);
  assert.deepEqual(b!.header, { "X-Token": ["t"], "X-Multi": ["1", "2"] });
  assert.equal(String(c!.tls.cert), "CERT");
  assert.equal(String(c!.tls.key), "KEY");
  assert.deepEqual(upstream!.capabilities, ["pull", "resolve", "push"]);
  assert.deepEqual(upstream!.tls.ca?.map(String), ["UPSTREAM CA"]);
  assert.deepEqual(endpoints.map((e) => e.mirror), [true, true, true, false]);
});

test("a directory named host:port works too, and _default serves every other host", async () => {
  const configPath = await configDir("default", {
    "127.0.0.1:5000/hosts.toml": `server = "http://127.0.0.1:5000"\n`,
    "_default/hosts.toml": `[host."https://cache.internal"]\n  capabilities = ["pull", "resolve"]\n`,
  });
  const local = await resolveEndpoints("127.0.0.1:5000", { configPath });
  assert.deepEqual(local.map(summary), ["http://127.0.0.1:5000/v2"]);
  assert.equal(local[0]!.httpFallback, false, "an explicit http server is plain HTTP only");

  const hub = await resolveEndpoints("docker.io", { configPath });
  assert.deepEqual(hub.map(summary), ["https://cache.internal/v2", "https://registry-1.docker.io/v2"]);
  const other = await resolveEndpoints("quay.io", { configPath: `/nonexistent:${configPath}` });
  assert.deepEqual(other.map(summary), ["https://cache.internal/v2", "https://quay.io/v2"]);
});

test("a certs.d directory without hosts.toml uses docker's *.crt, *.cert and *.key", async () => {
  const configPath = await configDir("legacy", {
    "registry.example.com/ca.crt": "CA",
    "registry.example.com/client.cert": "CERT",
    "registry.example.com/client.key": "KEY",
  });
  const [e] = await resolveEndpoints("registry.example.com", { configPath });
  assert.equal(summary(e!), "https://registry.example.com/v2");
  assert.deepEqual(e!.tls.ca?.map(String), ["CA"]);
  assert.equal(String(e!.tls.cert), "CERT");
  assert.equal(String(e!.tls.key), "KEY");
});

test("a CA file that cannot be read is an error naming it", async () => {
  const configPath = await configDir("missing", {
    "registry.example.com/hosts.toml": `[host."https://m.example.com"]\nca = "/nonexistent/ca.crt"\n`,
  });
  await assert.rejects(resolveEndpoints("registry.example.com", { configPath }), (err: unknown) => {
    assert.ok(err instanceof HostsConfigError);
    assert.match(err.message, /\/nonexistent\/ca\.crt: cannot read ca/);
    return true;
  });
});

test("plain_http in hosts.toml makes a host plain HTTP", async () => {
  const configPath = await configDir("plain", {
    "registry.example.com/hosts.toml": `server = "https://registry.example.com"\nplain_http = true\n`,
  });
  const [e] = await resolveEndpoints("registry.example.com", { configPath });
  assert.equal(summary(e!), "http://registry.example.com/v2");
});

test("invalid hosts.toml is refused naming the file and the key", async () => {
  const configPath = await configDir("invalid", {
    "bad.example.com/hosts.toml": `[host."https://m.example.com"]\ncapabilities = ["pull", "fly"]\n`,
    "broken.example.com/hosts.toml": `server = `,
  });
  await assert.rejects(resolveEndpoints("bad.example.com", { configPath }), (err: unknown) => {
    assert.ok(err instanceof HostsConfigError);
    assert.match(err.message, /bad\.example\.com\/hosts\.toml/);
    assert.match(err.message, /host "https:\/\/m\.example\.com": unknown capability "fly"/);
    return true;
  });
  await assert.rejects(resolveEndpoints("broken.example.com", { configPath }), HostsConfigError);
});

test("the config file's mirrors, TLS settings and credentials apply without a hosts directory", async () => {
  const files = await configDir("files", { "ca.pem": "CA", "c.pem": "CERT", "k.pem": "KEY" });
  const endpoints = await resolveEndpoints("registry.example.com", {
    hosts: {
      "registry.example.com": {
        mirrors: ["http://mirror.example.com:5000", "https://mirror2.example.com"],
        ca_file: join(files, "ca.pem"),
        client_cert: join(files, "c.pem"),
        client_key: join(files, "k.pem"),
        username: "u",
        password: "p",
      },
      "mirror2.example.com": { skip_verify: true, identity_token: "refresh" },
    },
  });
  assert.deepEqual(endpoints.map(summary), [
    "http://mirror.example.com:5000/v2",
    "https://mirror2.example.com/v2",
    "https://registry.example.com/v2",
  ]);
  const [m1, m2, upstream] = endpoints;
  assert.equal(m1!.credentials, undefined, "the registry's credentials went to a mirror");
  assert.deepEqual(m2!.credentials, { identity_token: "refresh" });
  assert.equal(m2!.tls.rejectUnauthorized, false);
  assert.deepEqual(upstream!.credentials, { username: "u", password: "p" });
  assert.deepEqual(upstream!.tls.ca?.map(String), ["CA"]);
  assert.equal(String(upstream!.tls.cert), "CERT");

  const plain = await resolveEndpoints("127.0.0.1:5000", { hosts: { "127.0.0.1:5000": { plain_http: true, skip_verify: false, ca_file: "" } } });
  assert.deepEqual(plain.map(summary), ["http://127.0.0.1:5000/v2"]);
  assert.equal(plain[0]!.httpFallback, false);

  const wildcard = await resolveEndpoints("quay.io", { hosts: { "*": { mirrors: ["https://cache.internal"] } } });
  assert.deepEqual(wildcard.map(summary), ["https://cache.internal/v2", "https://quay.io/v2"]);
});

test("a request's credentials go only to the server they name", () => {
  const endpoint = { host: "registry.example.com" };
  const configured = { host: "registry.example.com", credentials: { username: "configured" } };
  assert.deepEqual(credentialsFor({ username: "u", password: "p" }, endpoint), { username: "u", password: "p" });
  assert.equal(credentialsFor({ username: "u", server_address: "other.example.com" }, endpoint), undefined);
  assert.deepEqual(credentialsFor({ username: "u", server_address: "other.example.com" }, configured), { username: "configured" });
  assert.deepEqual(credentialsFor({ username: "u", server_address: "https://registry.example.com/v2/" }, endpoint)?.username, "u");
  assert.deepEqual(credentialsFor({ username: "u", server_address: "https://index.docker.io/v1/" }, { host: "registry-1.docker.io" })?.username, "u");
  assert.deepEqual(credentialsFor({}, configured), { username: "configured" });
  assert.equal(credentialsFor(undefined, endpoint), undefined);
});
