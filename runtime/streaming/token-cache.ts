// Single-use, short-lived tokens that stand for a validated CRI streaming request.
// With one TTL for all tokens, insertion order is expiry order: sweeping from the
// front of the Map keeps the cache bounded without a timer.
import { randomBytes } from "node:crypto";
import { CribError } from "../errors.js";
import type { AttachRequest, ExecRequest, PortForwardRequest } from "./streaming-runtime.js";

export type StreamRequest =
  | { kind: "exec"; req: ExecRequest }
  | { kind: "attach"; req: AttachRequest }
  | { kind: "portforward"; req: PortForwardRequest };

export type StreamKind = StreamRequest["kind"];

interface Entry {
  request: StreamRequest;
  expiresAt: number;
}

export interface TokenCacheOptions {
  ttlMs: number;
  maxTokens: number;
  now?: () => number;
}

export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #maxTokens: number;
  readonly #now: () => number;

  constructor(options: TokenCacheOptions) {
    this.#ttlMs = options.ttlMs;
    this.#maxTokens = options.maxTokens;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    this.#sweep();
    return this.#entries.size;
  }

  insert(request: StreamRequest): string {
    this.#sweep();
    if (this.#entries.size >= this.#maxTokens) {
      throw new CribError("resource-exhausted", `too many outstanding streaming requests (limit ${this.#maxTokens}); retry once some are used or expire`);
    }
    let token = newToken();
    while (this.#entries.has(token)) token = newToken();
    this.#entries.set(token, { request, expiresAt: this.#now() + this.#ttlMs });
    return token;
  }

  /** The request behind `token` if it is live and of `kind`; the token is spent either way. */
  consume(token: string, kind: StreamKind): StreamRequest | undefined {
    this.#sweep();
    const entry = this.#entries.get(token);
    if (entry === undefined) return undefined;
    this.#entries.delete(token);
    return entry.request.kind === kind ? entry.request : undefined;
  }

  /** Whether `token` is live and of `kind`, without spending it. */
  has(token: string, kind: StreamKind): boolean {
    this.#sweep();
    return this.#entries.get(token)?.request.kind === kind;
  }

  clear(): void {
    this.#entries.clear();
  }

  #sweep(): void {
    const now = this.#now();
    for (const [token, entry] of this.#entries) {
      if (entry.expiresAt > now) break;
      this.#entries.delete(token);
    }
  }
}

// 128 bits, URL-safe, no padding.
const newToken = (): string => randomBytes(16).toString("base64url");
