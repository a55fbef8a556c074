import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { pino } from "pino";
import { InvalidNetworkConfigError, loadNetworkConfig, missingPlugins, parseNetworkConfig } from "./config.js";

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function confDir(files: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "crib-cni-conf-"));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), typeof content === "string" ? content : JSON.stringify(content));
  }
  return dir;
}

// A logger that remembers warnings, to check that skipped files are explained.
function recordingLog(): { log: pino.Logger; warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  const log = pino({ level: "warn" }, {
    write(line: string) {
      warnings.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { log, warnings };
}

const bridgeList = (name: string, cniVersion = "1.0.0") => ({
  cniVersion,
  name,
  plugins: [{ type: "bridge", bridge: "crib0", ipam: { type: "host-local" } }, { type: "portmap", capabilities: { portMappings: true } }],
});

test("the lexicographically first config file is used", async () => {
  const dir = await confDir({ "20-b.conflist": bridgeList("second"), "10-a.conflist": bridgeList("first"), "99-z.conflist": bridgeList("last") });
  const { log } = recordingLog();
  const { config } = await loadNetworkConfig(dir, log);
  assert.equal(config?.name, "first");
  assert.equal(config?.source, join(dir, "10-a.conflist"));
  assert.deepEqual(config?.plugins.map((p) => p.type), ["bridge", "portmap"]);
});

test("a file with invalid JSON is skipped with a warning naming it", async () => {
  const dir = await confDir({ "10-broken.conflist": "{ not json", "20-good.conflist": bridgeList("good") });
  const { log, warnings } = recordingLog();
  const { config } = await loadNetworkConfig(dir, log);
  assert.equal(config?.name, "good");
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]?.["file"], join(dir, "10-broken.conflist"));
  assert.match(String(warnings[0]?.["reason"]), /invalid JSON/);
});

test("a config with an unsupported cniVersion is skipped with the reason", async () => {
  const dir = await confDir({ "10-old.conflist": bridgeList("old", "0.2.0"), "20-new.conflist": bridgeList("new", "0.4.0") });
  const { log, warnings } = recordingLog();
  const { config } = await loadNetworkConfig(dir, log);
  assert.equal(config?.name, "new");
  assert.equal(config?.cniVersion, "0.4.0");
  assert.match(String(warnings[0]?.["reason"]), /cniVersion "0.2.0" is not supported/);
});

test("a .conf holding one plugin is wrapped as a one-plugin list", async () => {
  const dir = await confDir({
    "10-single.conf": { cniVersion: "0.3.1", name: "single", type: "bridge", bridge: "cni9", ipam: { type: "host-local" } },
  });
  const { config } = await loadNetworkConfig(dir, recordingLog().log);
  assert.ok(config);
  assert.equal(config.name, "single");
  assert.equal(config.cniVersion, "0.3.1");
  assert.equal(config.plugins.length, 1);
  assert.equal(config.plugins[0]?.type, "bridge");
  assert.equal(config.plugins[0]?.["bridge"], "cni9");
});

test("files with other extensions, hidden files and directories are not configs", async () => {
  const dir = await confDir({ "00-notes.txt": "hello", ".10-hidden.conflist": bridgeList("hidden"), "30-real.json": bridgeList("real") });
  await mkdir(join(dir, "20-dir.conf"));
  const { log, warnings } = recordingLog();
  const { config } = await loadNetworkConfig(dir, log);
  assert.equal(config?.name, "real");
  assert.equal(warnings.length, 1, "the directory is reported as unreadable");
});

test("no usable config gives undefined and a reason Status can show", async () => {
  const missing = await loadNetworkConfig("/nonexistent/crib/net.d", recordingLog().log);
  assert.equal(missing.config, undefined);
  assert.match(missing.reason ?? "", /does not exist/);

  const empty = await loadNetworkConfig(await confDir({}), recordingLog().log);
  assert.match(empty.reason ?? "", /no CNI config found/);

  const bad = await loadNetworkConfig(await confDir({ "10-x.conflist": { cniVersion: "1.0.0", name: "x", plugins: [] } }), recordingLog().log);
  assert.match(bad.reason ?? "", /no valid CNI config .*1 invalid/);
});

test("validation names the file and the problem", () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ cniVersion: "1.0.0", plugins: [{ type: "bridge" }] }, /name is missing/],
    [{ cniVersion: "1.0.0", name: "bad name", plugins: [{ type: "bridge" }] }, /name "bad name"/],
    [{ name: "n", plugins: [{ type: "bridge" }] }, /cniVersion is missing/],
    [{ cniVersion: "1.0.0", name: "n", plugins: [{ bridge: "x" }] }, /plugins\[0\] has no type/],
    [{ cniVersion: "1.0.0", name: "n", plugins: [{ type: "../bin/sh" }] }, /not a plugin binary name/],
    [[1, 2], /not a JSON object/],
  ];
  for (const [raw, reason] of cases) {
    assert.throws(() => parseNetworkConfig("/etc/cni/net.d/10-x.conflist", JSON.stringify(raw)), (err: unknown) => {
      assert.ok(err instanceof InvalidNetworkConfigError);
      assert.match(err.message, /^CNI config \/etc\/cni\/net\.d\/10-x\.conflist: /);
      assert.match(err.message, reason);
      return true;
    });
  }
});

test("cniVersions (CNI 1.1) picks the highest version crib supports", () => {
  const config = parseNetworkConfig("a.conflist", JSON.stringify({ cniVersions: ["0.4.0", "1.0.0", "9.9.9"], name: "n", plugins: [{ type: "bridge" }] }));
  assert.equal(config.cniVersion, "1.0.0");
});

test("missing plugin binaries are listed", async () => {
  const bin = await confDir({ bridge: "#!/bin/sh\n", portmap: "not executable" });
  await chmod(join(bin, "bridge"), 0o755);
  const config = parseNetworkConfig("a.conflist", JSON.stringify(bridgeList("n")));
  assert.deepEqual(await missingPlugins(config, [bin]), ["portmap"]);
  assert.deepEqual(await missingPlugins(config, ["/nonexistent", bin, "/usr/lib/cni"]), []);
});
