// The HTTP underneath the registry client: node's http/https with one
// keep-alive agent per TLS setting, redirects that keep Authorization on the
// same origin only, and an idle timeout instead of a total one.
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
  /** milliseconds without progress before the response headers arrive; 0 waits forever */
  idleTimeoutMs: number;
  /** follow 3xx answers of GET and HEAD */
  followRedirects?: boolean;
}

/** Nothing arrived for the idle timeout. */
export class IdleTimeoutError extends Error {
  constructor(readonly host: string, readonly timeoutMs: number) {
    super(`${host}: no data for ${timeoutMs} ms`);
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
      const arm = (): void => {
        disarm();
        if (req.idleTimeoutMs > 0 && !answered) {
          timer = setTimeout(() => outgoing.destroy(new IdleTimeoutError(url.host, req.idleTimeoutMs)), req.idleTimeoutMs);
        }
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
      arm();
      if (req.body !== undefined) {
        // An upload is not timed; the wait for the answer after it is.
        outgoing.on("socket", (socket) => {
          if (socket.connecting) socket.once("connect", disarm);
          else disarm();
        });
        outgoing.on("finish", arm);
      }
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
