// The bounded CI run of the chaos harness (`npm run chaos` runs it at any size):
// crib SIGKILLed in every phase, containerd SIGKILLed during runp, a pod on a
// hung CNI plugin, crib started while containerd is down; then the states crib
// lists, the removal of everything, and the leftovers, found directly and by
// crib doctor's audit. Strict: 0 leaks of every kind and 0 wrong states.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatSummary, runChaos, type ChaosSummary } from "../chaos/main.js";

describe("chaos: SIGKILLs at any instant, a hung plugin, containerd down", () => {
  it("lists only true states, removes everything, leaves nothing, and crib doctor's audit sees what the harness sees", { timeout: 15 * 60_000 }, async (t) => {
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
    assert.deepEqual(summary.wrongStates, [], `every listed state is true: ${text}`);
    assert.deepEqual(summary.unremovable, [], `everything crib lists can be removed: ${text}`);
    assert.deepEqual(summary.leaks, {}, `nothing is left: ${text}`);
    assert.ok(summary.hungPods.answeredWithinMs.every((ms) => ms < 120_000), `runp on a hung plugin answers before kubelet's 2 minutes: ${text}`);

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
    assert.deepEqual(after.leaks, [], `crib doctor --leaks finds nothing either: ${text}`);
    assert.ok(summary.ok, text);
  });
});
