import assert from "node:assert/strict";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { pino } from "pino";
import type { ConfigLoad } from "./config.js";
import { CniConfigWatcher } from "./watch.js";

const log = pino({ level: "silent" });
const roots: string[] = [];
after(async () => {
  for (const dir of roots) await rm(dir, { recursive: true, force: true });
});

const conflist = (name: string) => JSON.stringify({ cniVersion: "1.0.0", name, plugins: [{ type: "bridge" }] });

async function eventually(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("a conf dir created after start is found, and changes are picked up", async () => {
  const root = await mkdtemp(join(tmpdir(), "crib-cni-watch-"));
  roots.push(root);
  const confDir = join(root, "net.d");
  const changes: ConfigLoad[] = [];
  await using watcher = await CniConfigWatcher.start({ confDir, log, debounceMs: 20, pollMs: 50, onChange: (s) => changes.push(s) });

  assert.equal(watcher.current().config, undefined);
  assert.match(watcher.current().reason ?? "", /does not exist/);

  await mkdir(confDir);
  await eventually("the empty dir to be noticed", () => /no CNI config found/.test(watcher.current().reason ?? ""));

  // Written as installers do: a temp file renamed into place.
  await writeFile(join(confDir, ".tmp"), conflist("first"));
  await rename(join(confDir, ".tmp"), join(confDir, "20-first.conflist"));
  await eventually("the first config", () => watcher.current().config?.name === "first");

  await writeFile(join(confDir, "10-earlier.conflist"), conflist("earlier"));
  await eventually("the lexicographically earlier config", () => watcher.current().config?.name === "earlier");

  await rm(confDir, { recursive: true });
  await eventually("the removal", () => watcher.current().config === undefined);

  await mkdir(confDir);
  await writeFile(join(confDir, "10-back.conflist"), conflist("back"));
  await eventually("the recreated dir's config", () => watcher.current().config?.name === "back");

  // "none" repeats as the reason changes (dir missing, then empty); configs appear once each.
  const names = changes.map((s) => s.config?.name ?? "none").filter((n, i, all) => i === 0 || all[i - 1] !== n);
  assert.deepEqual(names, ["none", "first", "earlier", "none", "back"]);
});

test("close stops watching", async () => {
  const confDir = await mkdtemp(join(tmpdir(), "crib-cni-watch-"));
  roots.push(confDir);
  const watcher = await CniConfigWatcher.start({ confDir, log, debounceMs: 10, pollMs: 20 });
  await watcher.close();
  await writeFile(join(confDir, "10-late.conflist"), conflist("late"));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(watcher.current().config, undefined);
});
