// crib's own Prometheus metrics, served over HTTP when `[metrics] address` is
// set: rpc latency and errors (cri/rpc.ts calls callDone), containers and
// sandboxes by state (counted from the stores at scrape time), image pulls,
// CNI operations, container event clients, and the process's default metrics.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { CallObserver } from "./rpc.js";
import type { MetricsSink } from "./metrics-sink.js";
import type { Container } from "./store/containers.js";
import type { Sandbox } from "./store/sandboxes.js";

export interface MetricSources {
  containers(): Container[];
  sandboxes(): Sandbox[];
  eventClients(): number;
}

const CONTAINER_STATES = ["CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED", "CONTAINER_UNKNOWN"] as const;
const SANDBOX_STATES = ["SANDBOX_READY", "SANDBOX_NOTREADY"] as const;
const stateLabel = (s: string): string => s.replace(/^(CONTAINER|SANDBOX)_/, "").toLowerCase();

/** `host:port`, `[v6]:port` or `:port` (cri/config.ts checked the form); port 0 takes an ephemeral one. Throws naming the value. */
export function parseListenAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  const port = Number(address.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`metrics address "${address}": expected host:port, e.g. "127.0.0.1:9910"`);
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port };
}

export class CribMetrics implements CallObserver, MetricsSink {
  readonly registry = new Registry();
  readonly #rpcSeconds: Histogram<"method">;
  readonly #rpcErrors: Counter<"method" | "code">;
  readonly #pullSeconds: Histogram;
  readonly #pullBytes: Counter;
  readonly #pullFailures: Counter;
  readonly #cniSeconds: Histogram<"operation" | "outcome">;
  #server: Server | undefined;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    this.#rpcSeconds = new Histogram({
      name: "crib_cri_request_duration_seconds", help: "Latency of CRI rpcs, by method.", labelNames: ["method"], registers,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    });
    this.#rpcErrors = new Counter({ name: "crib_cri_request_errors_total", help: "CRI rpcs that failed, by method and gRPC status.", labelNames: ["method", "code"], registers });
    this.#pullSeconds = new Histogram({
      name: "crib_image_pull_duration_seconds", help: "Duration of successful image pulls.", registers,
      buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    });
    this.#pullBytes = new Counter({ name: "crib_image_pull_bytes_total", help: "Bytes downloaded by image pulls.", registers });
    this.#pullFailures = new Counter({ name: "crib_image_pull_failures_total", help: "Image pulls that failed.", registers });
    this.#cniSeconds = new Histogram({
      name: "crib_cni_operation_duration_seconds", help: "Duration of CNI plugin chain operations (ADD, DEL, CHECK).", labelNames: ["operation", "outcome"], registers,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
    });
    new Gauge({
      name: "crib_containers", help: "Containers crib holds, by state.", labelNames: ["state"], registers,
      collect() {
        const counts = new Map<string, number>(CONTAINER_STATES.map((s) => [s, 0]));
        for (const c of sources.containers()) counts.set(c.status.state, (counts.get(c.status.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state: stateLabel(state) }, n);
      },
    });
    new Gauge({
      name: "crib_sandboxes", help: "Pod sandboxes crib holds, by state.", labelNames: ["state"], registers,
      collect() {
        const counts = new Map<string, number>(SANDBOX_STATES.map((s) => [s, 0]));
        for (const s of sources.sandboxes()) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state: stateLabel(state) }, n);
      },
    });
    new Gauge({
      name: "crib_container_event_clients", help: "GetContainerEvents streams open now.", registers,
      collect() {
        this.set(sources.eventClients());
      },
    });
  }

  callDone(method: string, code: status, seconds: number): void {
    this.#rpcSeconds.observe({ method }, seconds);
    if (code !== status.OK) this.#rpcErrors.inc({ method, code: status[code] ?? String(code) });
  }

  /** A PullImage call ended. */
  imagePull(outcome: { ok: true; seconds: number } | { ok: false }): void {
    if (outcome.ok) this.#pullSeconds.observe(outcome.seconds);
    else this.#pullFailures.inc();
  }

  /** Bytes a pull wrote to the content store (for the puller to report as it downloads). */
  imageBytesDownloaded(bytes: number): void {
    if (bytes > 0) this.#pullBytes.inc(bytes);
  }

  cniDone(operation: string, seconds: number, ok: boolean): void {
    this.#cniSeconds.observe({ operation, outcome: ok ? "ok" : "error" }, seconds);
  }

  /** Serves GET /metrics on `address` (host:port) with the process's default metrics added. */
  async listen(address: string, log: Logger): Promise<void> {
    const { host, port } = parseListenAddress(address);
    collectDefaultMetrics({ register: this.registry });
    const server = createServer((req, res) => {
      if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("crib serves /metrics only\n");
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${String(err)}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host || undefined, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#server = server;
    const bound = server.address() as AddressInfo;
    // the bound port, which tells port 0's choice
    log.info({ address: `${bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}` }, "serving Prometheus metrics on /metrics");
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
