// A deterministic crash for the crash-consistency tests: with
// CRIB_TEST_CRASH_AT=<point> in its environment crib SIGKILLs itself when it
// reaches that point (e.g. "sandbox-run:cni-added"). Unset, it is one string compare.
const target = process.env["CRIB_TEST_CRASH_AT"] ?? "";

export function crashPoint(point: string): void {
  if (target !== "" && target === point) process.kill(process.pid, "SIGKILL");
}
