// crib's streaming server. The CRI Exec, Attach and PortForward RPCs return a
// URL on this server that stands for the validated request (a single-use token);
// kubelet, kubectl or crictl then connect to it over SPDY/3.1 or WebSocket and
// the session runs against the StreamingRuntime. The sessions themselves
// (upgrade.ts) are loaded with the first upgrade.
import { setMaxListeners } from "node:events";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { isIP, type AddressInfo, type Socket } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import { pino, type Logger } from "pino";
import { invalidArgument, unavailable } from "../errors.js";
import { isSpdyUpgrade, isWebSocketUpgrade, refuseUpgrade } from "./http-upgrade.js";
import { selfSignedCertificate } from "./self-signed.js";
import { StreamSessionEnded, type AttachRequest, type ExecRequest, type PortForwardRequest, type StreamingRuntime } from "./streaming-runtime.js";
import { TokenCache, type StreamKind, type StreamRequest } from "./token-cache.js";
import type { SessionHandle, Upgrades } from "./upgrade.js";

export interface StreamingServerOptions {
  runtime: StreamingRuntime;
  /** Address to listen on; default 127.0.0.1 (kubelet on the same node proxies the streams). */
  address?: string;
  /** Port to listen on; default 0, an ephemeral port. */
  port?: number;
  /** TLS with the given certificate, or `true` for a self-signed one made at start. Default: plain HTTP. */
  tls?: boolean | { cert: string | Buffer; key: string | Buffer };
  /** Scheme, host and port for the URLs handed out, when clients reach the server by another name. */
  baseUrl?: string;
  /** How long a URL stays valid; default 60 s. */
  tokenTtlMs?: number;
  /** URLs handed out but not yet used; default 1000, as kubelet. */
  maxOutstandingTokens?: number;
  /** A session with no traffic either way is closed after this long; default 4 h, as kubelet. */
  streamIdleTimeoutMs?: number;
  /** How long a client may take to open all the streams of an exec, attach or port-forward pair; default 30 s. */
  streamCreationTimeoutMs?: number;
  /** Concurrent sessions (one per exec, attach or port-forward connection); beyond it clients get 429. Default 256. */
  maxConcurrentStreams?: number;
  /** How long a finished session waits for the client to hang up before the server does; default 10 s. */
  closeGraceMs?: number;
  /** After one direction of a forwarded connection ends, how long the other may go on; default 1 s, as containerd. */
  portForwardHalfCloseTimeoutMs?: number;
  log?: Logger;
}

const DEFAULTS = {
  address: "127.0.0.1",
  port: 0,
  tokenTtlMs: 60_000,
  maxOutstandingTokens: 1000,
  streamIdleTimeoutMs: 4 * 60 * 60 * 1000,
  streamCreationTimeoutMs: 30_000,
  maxConcurrentStreams: 256,
  closeGraceMs: 10_000,
  portForwardHalfCloseTimeoutMs: 1000,
};
/** How long close() waits for runtime calls to settle after their signals fired. */
const SHUTDOWN_WAIT_MS = 5000;
/** How long a refused upgrade socket may linger before it is destroyed. */
const REFUSED_LINGER_MS = 5000;

type Settings = typeof DEFAULTS;

export class StreamingServer implements AsyncDisposable {
  readonly #runtime: StreamingRuntime;
  readonly #settings: Settings;
  readonly #log: Logger;
  readonly #http: Server;
  /** the SPDY and WebSocket sessions (ws, spdy-transport…): loaded by the first upgrade, as a daemon may never stream */
  #upgrades: Promise<Upgrades> | undefined;
  readonly #tokens: TokenCache;
  readonly #sessions = new Set<Session>();
  readonly #refused = new Set<Socket>();
  readonly #scheme: "http" | "https";
  readonly #baseUrlOption: string | undefined;
  #baseUrl = "";
  #closing: Promise<void> | undefined;
  /** The PEM certificate clients should trust, when TLS is on. */
  readonly certificate: string | undefined;

  private constructor(options: StreamingServerOptions) {
    this.#runtime = options.runtime;
    this.#settings = { ...DEFAULTS, ...definedOnly(options) };
    this.#log = options.log ?? pino({ level: "silent" });
    this.#baseUrlOption = options.baseUrl?.replace(/\/+$/, "");
    this.#tokens = new TokenCache({ ttlMs: this.#settings.tokenTtlMs, maxTokens: this.#settings.maxOutstandingTokens });
    const tls = options.tls === true ? selfSignedCertificate({ commonName: "crib streaming server", hosts: certificateHosts(this.#settings.address), validDays: 3650 }) : options.tls || undefined;
    this.certificate = tls === undefined ? undefined : tls.cert.toString();
    this.#scheme = tls === undefined ? "http" : "https";
    this.#http = tls === undefined ? createHttpServer({ noDelay: true }) : createHttpsServer({ cert: tls.cert, key: tls.key, noDelay: true });
    this.#http.on("request", (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res));
    // http and https servers hand upgrades a net.Socket (a TLSSocket is one too).
    this.#http.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#http.on("clientError", (err: Error, socket: Socket) => {
      this.#log.debug({ err: err.message }, "bad streaming request");
      socket.destroy();
    });
  }

  /** Starts a server and resolves once it listens. */
  static async listen(options: StreamingServerOptions): Promise<StreamingServer> {
    const server = new StreamingServer(options);
    await new Promise<void>((resolve, reject) => {
      server.#http.once("error", reject);
      server.#http.listen({ host: server.#settings.address, port: server.#settings.port }, () => {
        server.#http.off("error", reject);
        resolve();
      });
    });
    const address = server.#http.address() as AddressInfo;
    server.#baseUrl = server.#baseUrlOption ?? `${server.#scheme}://${urlHost(address.address)}:${address.port}`;
    server.#log.info({ url: server.#baseUrl }, "streaming server listening");
    return server;
  }

  /** Scheme, host and port of the URLs this server hands out. */
  get url(): string {
    return this.#baseUrl;
  }

  /** Sessions running now. */
  get activeStreams(): number {
    return this.#sessions.size;
  }

  getExecUrl(req: ExecRequest): string {
    validateExec(req);
    return this.#issue({ kind: "exec", req: { ...req, cmd: [...req.cmd] } });
  }

  getAttachUrl(req: AttachRequest): string {
    validateAttach(req);
    return this.#issue({ kind: "attach", req: { ...req } });
  }

  getPortForwardUrl(req: PortForwardRequest): string {
    validatePortForward(req);
    return this.#issue({ kind: "portforward", req: { ...req, ports: [...req.ports] } });
  }

  /** Stops listening, forgets outstanding URLs, ends every session and waits (a bounded time) for the runtime calls to settle. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #issue(request: StreamRequest): string {
    if (this.#closing !== undefined) throw unavailable("the streaming server is shut down");
    const url = `${this.#baseUrl}/${request.kind}/${this.#tokens.insert(request)}`;
    // the client connects next: load the sessions now, while the URL travels
    this.#loadUpgrades().catch(() => undefined);
    return url;
  }

  async #shutdown(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.#http.close(() => resolve()));
    this.#http.closeAllConnections();
    this.#tokens.clear();
    for (const socket of this.#refused) socket.destroy();
    const sessions = [...this.#sessions];
    for (const session of sessions) session.shutDown();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(sessions.map((s) => s.done)), new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_WAIT_MS)))]);
    clearTimeout(timer);
    if (this.#sessions.size > 0) this.#log.warn({ sessions: this.#sessions.size }, "runtime calls still running after the streaming server closed");
    if (this.#upgrades) (await this.#upgrades.catch(() => undefined))?.close();
    await stopped;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const route = parseRoute(req.url);
    const known = route !== undefined && this.#tokens.consume(route.token, route.kind) !== undefined;
    const [status, body] = known ? [400, "unable to upgrade: missing upgrade headers in request"] : [404, "404 page not found"];
    res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff" });
    res.end(`${body}\n`);
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on("error", (err) => this.#log.debug({ err: err.message }, "streaming socket error"));
    if (this.#closing !== undefined) return this.#refuse(socket, 503, "streaming server is shutting down");
    const route = parseRoute(req.url);
    if (route === undefined || !this.#tokens.has(route.token, route.kind)) return this.#refuse(socket, 404, "404 page not found");
    const limit = this.#settings.maxConcurrentStreams;
    if (this.#sessions.size >= limit) {
      this.#log.warn({ limit }, "refusing a streaming session: too many concurrent sessions");
      return this.#refuse(socket, 429, `crib streaming server: too many concurrent streaming sessions (limit ${limit}); try again later`, { "Retry-After": "1" });
    }
    const request = this.#tokens.consume(route.token, route.kind) as StreamRequest;
    const webSocket = isWebSocketUpgrade(req);
    if (!webSocket && !isSpdyUpgrade(req)) return this.#refuse(socket, 400, "unable to upgrade: missing upgrade headers in request");
    // the socket is not flowing after an upgrade: what the client sends meanwhile waits in it
    this.#loadUpgrades().then((upgrades) => {
      if (this.#closing !== undefined) return this.#refuse(socket, 503, "streaming server is shutting down");
      if (webSocket) upgrades.webSocket(req, socket, head, request);
      else upgrades.spdy(req, socket, head, request);
    }, (err: unknown) => {
      this.#log.error({ err: err instanceof Error ? err.message : String(err) }, "cannot load the streaming sessions");
      this.#refuse(socket, 500, "crib streaming server: cannot start the session");
    });
  }

  #loadUpgrades(): Promise<Upgrades> {
    // a failed import is tried again by the next request
    this.#upgrades ??= import("./upgrade.js").catch((err: unknown) => { this.#upgrades = undefined; throw err; }).then(({ Upgrades }) => new Upgrades({
      runtime: this.#runtime,
      settings: this.#settings,
      open: (socket, request, transport, protocol) => this.#open(socket, request, transport, protocol),
      refuse: (socket, status, message, headers) => this.#refuse(socket, status, message, headers),
    }));
    return this.#upgrades;
  }

  #open(socket: Socket, request: StreamRequest, transport: string, protocol: string): Session {
    const subject = request.kind === "portforward" ? { podSandboxId: request.req.podSandboxId } : { containerId: request.req.containerId };
    const log = this.#log.child({ stream: request.kind, transport, protocol, ...subject });
    const session = new Session(socket, log, this.#settings.streamIdleTimeoutMs, () => this.#sessions.delete(session));
    this.#sessions.add(session);
    log.debug({ active: this.#sessions.size }, "streaming session started");
    return session;
  }

  #refuse(socket: Socket, status: number, message: string, headers?: Record<string, string | readonly string[]>): void {
    this.#log.debug({ status, message }, "refusing streaming request");
    refuseUpgrade(socket, status, message, headers);
    if (socket.destroyed) return;
    this.#refused.add(socket);
    socket.setTimeout(REFUSED_LINGER_MS, () => socket.destroy());
    socket.once("close", () => this.#refused.delete(socket));
  }
}

/** One exec, attach or port-forward connection and the signal its runtime calls get. */
class Session implements SessionHandle {
  readonly #controller = new AbortController();
  readonly #socket: Socket;
  readonly #onEnd: () => void;
  readonly signal: AbortSignal = this.#controller.signal;
  readonly log: Logger;
  done: Promise<void> = Promise.resolve();

  constructor(socket: Socket, log: Logger, idleTimeoutMs: number, onEnd: () => void) {
    this.#socket = socket;
    this.log = log;
    this.#onEnd = onEnd;
    // Every forwarded connection of a port-forward session listens on it.
    setMaxListeners(0, this.signal);
    socket.setTimeout(idleTimeoutMs, () => {
      log.info({ idleTimeoutMs }, "closing idle streaming session");
      this.#abort("idle-timeout", `no traffic for ${idleTimeoutMs} ms`);
      socket.destroy();
    });
    socket.once("close", () => this.#abort("client-disconnected", "the client disconnected"));
  }

  run(serve: () => Promise<void>): void {
    this.done = serve()
      .catch((err: unknown) => {
        if (!this.signal.aborted) this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "streaming session failed");
      })
      .finally(() => {
        this.#abort("completed", "the session completed");
        this.#socket.setTimeout(0);
        this.#socket.destroy();
        this.#onEnd();
        this.log.debug("streaming session ended");
      });
  }

  shutDown(): void {
    this.#abort("server-closed", "the streaming server is shutting down");
    this.#socket.destroy();
  }

  #abort(why: StreamSessionEnded["why"], message: string): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(new StreamSessionEnded(why, message));
  }
}

function parseRoute(url: string | undefined): { kind: StreamKind; token: string } | undefined {
  const match = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)\/?(?:\?.*)?$/.exec(url ?? "");
  if (match === null) return undefined;
  return { kind: match[1] as StreamKind, token: match[2] as string };
}

function validateExec(req: ExecRequest): void {
  if (req.containerId === "") throw invalidArgument("exec: container_id is required");
  const what = `exec in container "${req.containerId}"`;
  if (req.cmd.length === 0) throw invalidArgument(`${what}: cmd is required`);
  validateStreams(what, req);
}

function validateAttach(req: AttachRequest): void {
  if (req.containerId === "") throw invalidArgument("attach: container_id is required");
  validateStreams(`attach to container "${req.containerId}"`, req);
}

function validateStreams(what: string, req: { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }): void {
  // With a TTY there is one output stream: stdout carries what the terminal shows.
  if (req.tty && req.stderr) throw invalidArgument(`${what}: tty and stderr cannot both be true`);
  if (!req.stdin && !req.stdout && !req.stderr) throw invalidArgument(`${what}: one of stdin, stdout, or stderr must be set`);
}

function validatePortForward(req: PortForwardRequest): void {
  if (req.podSandboxId === "") throw invalidArgument("port forward: pod_sandbox_id is required");
  for (const port of req.ports) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument(`port forward to pod sandbox "${req.podSandboxId}": port ${port} must be between 1 and 65535`);
  }
}

function urlHost(address: string): string {
  const host = address === "0.0.0.0" ? "127.0.0.1" : address === "::" ? "::1" : address;
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** Names the self-signed certificate is good for: loopback, this host, and the listening address(es). */
function certificateHosts(address: string): string[] {
  const hosts = ["localhost", "127.0.0.1", "::1", hostname()];
  if (address === "0.0.0.0" || address === "::") {
    for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) if (a.scopeid === undefined || a.scopeid === 0) hosts.push(a.address);
  } else {
    hosts.push(address);
  }
  return hosts.filter((h) => !h.includes("%"));
}

function definedOnly(options: StreamingServerOptions): Partial<Settings> {
  const out: Partial<Settings> = {};
  for (const key of Object.keys(DEFAULTS) as (keyof Settings)[]) {
    const value = options[key];
    if (value !== undefined) (out as Record<string, unknown>)[key] = value;
  }
  return out;
}
