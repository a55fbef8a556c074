import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { capabilitiesFromMask } from "./capabilities.js";
import { readHostFacts } from "./host.js";

test("a capability mask lists its capabilities", () => {
  assert.deepEqual(capabilitiesFromMask("0000000000000003"), ["CAP_CHOWN", "CAP_DAC_OVERRIDE"]);
  const all = capabilitiesFromMask("000001ffffffffff");
  assert.equal(all.length, 41);
  assert.equal(all.at(-1), "CAP_CHECKPOINT_RESTORE");
  const noSysResource = capabilitiesFromMask((0x1ffffffffffn & ~(1n << 24n)).toString(16));
  assert.ok(!noSysResource.includes("CAP_SYS_RESOURCE") && noSysResource.length === 40);
});

test("host facts on cgroup v1: crib's oom_score_adj and capabilities, swap and hugetlb by their files", async () => {
  const root = await mkdtemp(join(tmpdir(), "crib-host-"));
  try {
    await mkdir(join(root, "proc/self"), { recursive: true });
    await writeFile(join(root, "proc/self/status"), "Name:\tnode\nCapEff:\t000001fffeffffff\n");
    await writeFile(join(root, "proc/self/oom_score_adj"), "-500\n");
    await mkdir(join(root, "cgroup/memory"), { recursive: true });
    await writeFile(join(root, "cgroup/memory/memory.memsw.limit_in_bytes"), "");
    const facts = await readHostFacts({ systemdCgroup: false, nodeHostname: "n1", proc: join(root, "proc"), cgroupRoot: join(root, "cgroup") });
    assert.equal(facts.cgroupV2, false);
    assert.equal(facts.minOomScoreAdj, -500);
    assert.equal(facts.swapAccounting, true);
    assert.equal(facts.hugetlb, false);
    assert.ok(!facts.capabilities.includes("CAP_SYS_RESOURCE"));
    assert.equal(facts.capabilities.length, 40);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("host facts of this machine can be read", async () => {
  const facts = await readHostFacts({ systemdCgroup: false, nodeHostname: "n1" });
  assert.equal(typeof facts.minOomScoreAdj, "number");
  assert.ok(facts.capabilities.length > 0 || process.getuid?.() !== 0);
});
