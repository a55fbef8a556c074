#!/usr/bin/env node
// Runs crib's tests with node's test runner: unit tests beside the code, then the
// integration tests (real containerd, runc, CNI plugins and registry; needs root).
//   node test/run.mjs [--unit] [--integration] [name-filter...]
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const dist = join(root, "dist");
const args = process.argv.slice(2);
const only = args.includes("--unit") ? "unit" : args.includes("--integration") ? "integration" : "all";
const filters = args.filter((a) => !a.startsWith("--"));

const walk = (dir) => readdirSync(dir).flatMap((name) => {
  const p = join(dir, name);
  if (statSync(p).isDirectory()) return name === "node_modules" ? [] : walk(p);
  return p.endsWith(".test.js") ? [p] : [];
});
const all = walk(dist).filter((f) => filters.length === 0 || filters.some((x) => f.includes(x))).sort();
const isIntegration = (f) => relative(dist, f).startsWith("test/");
const files = all.filter((f) => (only === "unit" ? !isIntegration(f) : only === "integration" ? isIntegration(f) : true));
if (files.length === 0) { console.error("no test files matched"); process.exit(1); }
if (process.getuid?.() !== 0 && files.some(isIntegration)) {
  console.error("integration tests need root (they run containerd, runc and CNI plugins)");
  process.exit(1);
}
const res = spawnSync(process.execPath, ["--test", "--test-concurrency=2", "--test-reporter=spec", ...files], { stdio: "inherit" });
process.exit(res.status ?? 1);
