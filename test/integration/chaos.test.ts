// The bounded CI run of the chaos harness (`npm run chaos` runs it at any size):
// crib SIGKILLed in every phase, containerd SIGKILLed during runp, a pod on a
// hung CNI plugin, crib started while containerd is down; then the states crib
// lists, the removal of everything, and the leftovers, found directly and by
// crib doctor's audit.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatSummary, runChaos, type ChaosSummary } from "../chaos/main.js";

/**
 * The kinds of leftover that must be zero today. Kinds not listed here are
 * reported (in the test's output) but not yet enforced: they are the crash
 * consistency work still under way (issue 12 items 1-6); each moves here once
 * main fixes it.
 */
const STRICT_LEAKS = ["leases"];

describe("chaos: SIGKILLs at any instant, a hung plugin, containerd down", () => {
  it("leaves no leak of the kinds already fixed, and crib doctor's audit sees what the harness sees", { timeout: 15 * 60_000 }, async (t) => {
    const seed = Number(process.env["CHAOS_SEED"] ?? Math.floor(Math.random() * 2 ** 31));
    const summary: ChaosSummary = await runChaos({
      cribKills: 20, containerdKills: 2, hungPods: 1, maxPods: 5, seed, log: (line) => t.diagnostic(line),
    });
    t.diagnostic(`seed ${seed}\n${formatSummary(summary)}`);
    const text = `seed ${seed}:\n${formatSummary(summary)}`;

    for (const phase of ["runp", "create", "start", "stop", "remove"] as const) {
      assert.ok(summary.kills.crib[phase] >= 4, `crib was SIGKILLed during ${phase}: ${text}`);
    }
    assert.equal(summary.kills.containerd.runp, 2, text);
    assert.ok(summary.kills.inFlight >= 8, `kills hit calls in flight: ${text}`);
    for (const kind of STRICT_LEAKS) assert.deepEqual(summary.leaks[kind] ?? [], [], `${kind} leaked: ${text}`);
    assert.deepEqual(summary.unremovable, [], `everything crib lists can be removed: ${text}`);

    // with pods live, the audit names none of their objects
    const live = summary.audit.live;
    assert.ok(live, `crib doctor --leaks ran with the pods live: ${text}`);
    for (const leak of live.leaks) {
      for (const id of summary.livePods) assert.ok(!`${leak.name} ${leak.detail}`.includes(id.slice(0, 12)), `a live pod's ${leak.kind} listed as a leak: ${leak.name}`);
    }
    // the audit runs against the same node: what it finds after the removal is what the harness finds
    const after = summary.audit.after;
    assert.ok(after, `crib doctor --leaks ran: ${text}`);
    assert.deepEqual(after.unchecked, [], text);
    const direct = (kind: string): number => summary.leaks[kind]?.length ?? 0;
    assert.equal(after.counts["state-dir"], direct("state-dirs"), `doctor and the harness agree on state directories: ${text}`);
    assert.equal(after.counts.shim, direct("shims"), `doctor and the harness agree on shims: ${text}`);
    assert.equal(after.counts.snapshot, direct("snapshots"), `doctor and the harness agree on snapshots: ${text}`);
    assert.equal(after.counts["ip-reservation"] + after.counts["cni-cache"], direct("ip-reservations") + direct("cni-cache"), text);
  });
});
