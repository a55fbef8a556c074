// The streaming server as crib runs it: options from [streaming] in the config,
// sessions against the containers and sandboxes crib holds.
import { readFile } from "node:fs/promises";
import type { Deps } from "./deps.js";
import { CribStreamingRuntime } from "./streaming-runtime.js";
import { StreamingServer } from "../runtime/streaming/server.js";

export async function startStreaming(deps: Deps): Promise<StreamingServer> {
  const s = deps.config.streaming;
  // tls_cert and tls_key come as a pair (cri/config.ts); without them a self-signed certificate is made.
  const tls = !s.tls ? false : s.tls_cert === "" ? true : { cert: await readFile(s.tls_cert), key: await readFile(s.tls_key) };
  return StreamingServer.listen({
    runtime: new CribStreamingRuntime(deps),
    address: s.address,
    port: s.port,
    tls,
    tokenTtlMs: s.token_ttl,
    streamIdleTimeoutMs: s.idle_timeout,
    maxConcurrentStreams: s.max_streams,
    log: deps.log.child({ component: "streaming" }),
  });
}
