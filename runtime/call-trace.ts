// What one CRI call costs (containerd round trips, plugin and tool execs, file
// writes), with the time each kind took, for profiling: on only when
// CRIB_TRACE_CALLS is set, so the request path carries no AsyncLocalStorage
// otherwise. cri/rpc.ts opens a scope per call and logs it with the call's duration.
import { AsyncLocalStorage } from "node:async_hooks";

/** per kind of call: how many, and their summed milliseconds */
export type CallCounts = Map<string, { n: number; ms: number }>;

const storage = process.env["CRIB_TRACE_CALLS"] ? new AsyncLocalStorage<CallCounts>() : undefined;
const nothing = (): void => {};

export const tracingCalls = (): boolean => storage !== undefined;

/** Runs `work` with a fresh scope (or just runs it when tracing is off). */
export function withCallCounts<T>(counts: CallCounts, work: () => T): T {
  return storage ? storage.run(counts, work) : work();
}

/** One more `what` in the current call's counts; call the result when it is done. */
export function countCall(what: string): () => void {
  const counts = storage?.getStore();
  if (!counts) return nothing;
  const started = performance.now();
  const entry = counts.get(what) ?? { n: 0, ms: 0 };
  counts.set(what, entry);
  entry.n++;
  return () => { entry.ms += performance.now() - started; };
}

/** `work` counted as one `what`, timed until it settles. */
export function counted<T>(what: string, work: Promise<T>): Promise<T> {
  if (!storage?.getStore()) return work;
  const done = countCall(what);
  return work.finally(done);
}

export const countsForLog = (counts: CallCounts): Record<string, string> =>
  Object.fromEntries([...counts].map(([k, { n, ms }]) => [k, `${n}× ${ms.toFixed(1)} ms`]));

