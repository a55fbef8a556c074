// The HTTP underneath the registry client: node's http/https with one
// keep-alive agent per TLS setting, redirects that keep Authorization on the
// same origin only, and timeouts for each stage that can stall (connect,
// response headers, then no data for a while) instead of a total one.
import { createHash } from "node:crypto";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import type { TlsSettings } from "./hosts.js";

export interface HttpRequest {
  method: string;
  url: URL;
  headers: Record<string, string | string[]>;
  body?: Buffer;
  tls: TlsSettings;
  signal?: AbortSignal | undefined;
  /** milliseconds from the request sent (or the connection made) until the response headers; 0 waits forever */
  idleTimeoutMs: number;
  /** milliseconds to get a TCP connection (a reused one is at once); 0 or absent: the header timeout covers it */
  connectTimeoutMs?: number;
  /** follow 3xx answers of GET and HEAD */
  followRedirects?: boolean;
}

export type Stall = "connect" | "headers" | "body";

const STALLED: Record<Stall, string> = {
  connect: "no TCP connection within",
  headers: "no response headers within",
  body: "no data for",
};

/** A stage of an HTTP exchange stalled past its timeout: the connection, the response headers, or the body. */
export class IdleTimeoutError extends Error {
  constructor(readonly host: string, readonly timeoutMs: number, readonly stage: Stall = "body", request = "") {
    super(`${host}: ${STALLED[stage]} ${timeoutMs} ms${request ? ` (${request})` : ""}`);
    this.name = "IdleTimeoutError";
  }
}

const MAX_REDIRECTS = 10;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class HttpTransport {
  #agents = new Map<string, http.Agent>();

  async request(req: HttpRequest): Promise<IncomingMessage> {
    let current = req;
    for (let hop = 0; ; hop++) {
      const res = await this.#once(current);
      const location = res.headers.location;
      const status = res.statusCode ?? 0;
      if (!req.followRedirects || !REDIRECTS.has(status) || location === undefined || (req.method !== "GET" && req.method !== "HEAD")) {
        return res;
      }
      res.resume();
      if (hop >= MAX_REDIRECTS) throw new Error(`${req.url.host}: more than ${MAX_REDIRECTS} redirects`);
      const url = new URL(location, current.url);
      const headers = { ...current.headers };
      // Credentials for the registry are not for the storage it redirects to.
      if (url.origin !== current.url.origin) {
        delete headers["Authorization"];
        delete headers["authorization"];
      }
      current = { ...current, url, headers };
    }
  }

  #once(req: HttpRequest): Promise<IncomingMessage> {
    const { url, signal } = req;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const secure = url.protocol === "https:";
    const options: http.RequestOptions = {
      method: req.method,
      headers: req.body === undefined ? req.headers : { ...req.headers, "Content-Length": String(req.body.length) },
      agent: this.#agent(secure, req.tls),
      ...(signal === undefined ? {} : { signal }),
    };
    return new Promise<IncomingMessage>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let answered = false;
      const disarm = (): void => clearTimeout(timer);
      const arm = (stage: Stall = "headers"): void => {
        disarm();
        const ms = stage === "connect" ? (req.connectTimeoutMs ?? 0) : req.idleTimeoutMs;
        const request = `${req.method} ${url.pathname}`;
        if (ms > 0 && !answered) timer = setTimeout(() => outgoing.destroy(new IdleTimeoutError(url.host, ms, stage, request)), ms);
      };
      const outgoing = (secure ? https : http).request(url, options, (res) => {
        answered = true;
        disarm();
        resolve(res);
      });
      outgoing.on("error", (err) => {
        disarm();
        reject(signal?.aborted ? abortReason(signal) : err);
      });
      // the connection, then the wait for the headers; an upload is not timed, the wait for the answer after it is
      arm(req.connectTimeoutMs ? "connect" : "headers");
      outgoing.on("socket", (socket) => {
        const connected = (): void => (req.body === undefined ? arm("headers") : disarm());
        if (socket.connecting) socket.once("connect", connected);
        else connected();
      });
      if (req.body !== undefined) outgoing.on("finish", () => arm("headers"));
      outgoing.end(req.body);
    });
  }

  #agent(secure: boolean, tls: TlsSettings): http.Agent {
    const key = secure ? agentKey(tls) : "http";
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      agent = secure
        ? new https.Agent({
            keepAlive: true,
            // Extra CAs add to the system's, as containerd does, rather than replace them.
            ...(tls.ca === undefined ? {} : { ca: [...rootCertificates, ...tls.ca.map((c) => c.toString())] }),
            ...(tls.cert === undefined ? {} : { cert: tls.cert }),
            ...(tls.key === undefined ? {} : { key: tls.key }),
            rejectUnauthorized: tls.rejectUnauthorized,
          })
        : new http.Agent({ keepAlive: true });
      this.#agents.set(key, agent);
    }
    return agent;
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}

function agentKey(tls: TlsSettings): string {
  const h = createHash("sha256");
  for (const ca of tls.ca ?? []) h.update("ca").update(ca);
  if (tls.cert !== undefined) h.update("cert").update(tls.cert);
  if (tls.key !== undefined) h.update("key").update(tls.key);
  h.update(tls.rejectUnauthorized ? "verify" : "skip");
  return h.digest("hex");
}

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** Reads a whole (small) body, failing past `limit` bytes or after `idleTimeoutMs` without data. */
export function readBody(
  res: IncomingMessage,
  options: { limit: number; idleTimeoutMs: number; signal?: AbortSignal | undefined; what: string; host: string },
): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: NodeJS.Timeout | undefined;
    const fail = (err: unknown): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      res.destroy();
      reject(err);
    };
    const arm = (): void => {
      clearTimeout(timer);
      if (options.idleTimeoutMs > 0) {
        timer = setTimeout(() => fail(new IdleTimeoutError(options.host, options.idleTimeoutMs)), options.idleTimeoutMs);
      }
    };
    const onAbort = (): void => fail(abortReason(options.signal as AbortSignal));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    arm();
    res.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > options.limit) return fail(new Error(`${options.what} is larger than ${options.limit} bytes`));
      chunks.push(chunk);
      arm();
    });
    res.on("end", () => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve(Buffer.concat(chunks));
    });
    res.on("error", (err) => fail(options.signal?.aborted ? abortReason(options.signal) : err));
  });
}

const RETRYABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "UND_ERR_SOCKET",
]);

/** A failure of the connection that another attempt may not have. */
export const isRetryableNetworkError = (err: unknown): boolean =>
  err instanceof IdleTimeoutError || RETRYABLE_CODES.has(errorCode(err));

/** The server answered a TLS hello with something that is not TLS: it speaks plain HTTP. */
export const isNotTls = (err: unknown): boolean => {
  const code = errorCode(err);
  return code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "EPROTO" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG";
};

export const errorCode = (err: unknown): string =>
  typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "string" ? (err as { code: string }).code : "";
