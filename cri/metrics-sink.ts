// What the daemon reports to its Prometheus metrics. cri/metrics.ts (prom-client
// and its collectors, ~3 MB of heap) is loaded only when `[metrics] address` is
// set; without it the reports go nowhere and the rpcs are not timed for it.
export interface MetricsSink {
  /** A PullImage call ended. */
  imagePull(outcome: { ok: true; seconds: number } | { ok: false }): void;
  /** Bytes a pull wrote to the content store. */
  imageBytesDownloaded(bytes: number): void;
  cniDone(operation: string, seconds: number, ok: boolean): void;
}

export const NO_METRICS: MetricsSink = {
  imagePull() {},
  imageBytesDownloaded() {},
  cniDone() {},
};
