// A client of the OCI distribution API (v2): resolve a reference to the
// manifest this host runs, stream blobs that verify themselves, and push (for
// test fixtures). Endpoints come from hosts.ts: mirrors first, each falling
// through to the next; auth is the registry's own challenge (Basic or a bearer
// token from its realm); 5xx, 429 and broken connections are retried with
// exponential backoff, a bounded number of times.
import { createHash, type Hash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { BlobStream } from "./blob-stream.js";
import {
  DigestMismatchError,
  NoMatchingPlatformError,
  NotFoundError,
  RegistryError,
  RegistryUnavailableError,
  UnauthorizedError,
  UnexpectedResponseError,
  UnsupportedManifestError,
} from "./errors.js";
import { credentialsFor, resolveEndpoints, type AuthConfig, type HostCapability, type HostsOptions, type RegistryEndpoint } from "./hosts.js";
import { isIndexType, isManifestType, isSchema1Type, MediaType, type Descriptor, type ImageIndex, type ImageManifest, type Platform } from "./oci.js";
import { formatPlatform, hostPlatform, selectPlatformManifest } from "./platform.js";
import {
  DEFAULT_DOMAIN,
  manifestReference,
  parseDigest,
  parseReference,
  referenceString,
  repositoryName,
  type Reference,
} from "./reference.js";
import { basicAuthorization, loginKey, loginOf, parseChallenges, repositoryScope, tokenOf, type Challenge, type Login } from "./registry-auth.js";
import { abortReason, errorCode, HttpTransport, IdleTimeoutError, isNotTls, isRetryableNetworkError, readBody } from "./registry-http.js";

export interface RegistryClientOptions {
  hosts?: HostsOptions;
  /** attempts after the first on 5xx, 429 and broken connections; default 3 */
  retries?: number;
  /** the first backoff; it doubles each retry, up to 10 s; default 250 ms */
  retryDelayMs?: number;
  /** cut a transfer when no bytes arrive for this long (never for its total duration); 0 never; default 30 s */
  progressTimeoutMs?: number;
  /** give up on a TCP connection not made in this long; default 10 s */
  connectTimeoutMs?: number;
  /** give up on a request whose response headers do not come in this long; default 30 s */
  responseHeaderTimeoutMs?: number;
  /** the platform to pick from an index; default this host's */
  platform?: Platform;
  userAgent?: string;
}

export interface CallOptions {
  signal?: AbortSignal | undefined;
  /** the request's credentials (the CRI's AuthConfig); without them, the configured ones */
  auth?: AuthConfig | undefined;
  progressTimeoutMs?: number | undefined;
}

export interface ResolveOptions extends CallOptions {
  platform?: Platform;
}

export interface FetchBlobOptions extends CallOptions {
  /** start at this byte (resuming a partial download) */
  offset?: number;
  /** a hash fed the blob's first `offset` bytes, so a resumed stream still checks the digest */
  hash?: Hash;
}

export interface PushBlobOptions extends CallOptions {
  /** upload in PATCH chunks of this size instead of one PUT */
  chunkSize?: number;
}

export interface PushManifestOptions extends CallOptions {
  /** the tag to push to; default the reference's tag, else the manifest's digest */
  tag?: string;
}

export interface FetchedManifest {
  descriptor: Descriptor;
  /** the bytes exactly as served: their digest is descriptor.digest */
  bytes: Buffer;
}

export interface ResolvedImage {
  reference: Reference;
  /** what the tag or digest names: an index or a manifest */
  target: Descriptor;
  /** the index (and nested indexes) from target down to the manifest; empty for a single manifest */
  indexes: Array<FetchedManifest & { index: ImageIndex }>;
  /** the manifest of the platform picked */
  manifest: FetchedManifest & { manifest: ImageManifest };
  /** the platform the index entry named; undefined for a single manifest */
  platform?: Platform;
  /** the endpoint that answered */
  host: string;
}

export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
  "*/*",
].join(", ");

const MAX_MANIFEST_SIZE = 4 << 20;
const MAX_ERROR_BODY = 64 << 10;
const MAX_INDEX_DEPTH = 4;
const MAX_BACKOFF_MS = 10_000;

// One endpoint of one repository for one call: what a request needs to know.
interface Session {
  ref: Reference;
  endpoint: RegistryEndpoint;
  login: Login;
  push: boolean;
  /** no other endpoint comes after this one */
  last: boolean;
  what: string;
  signal: AbortSignal | undefined;
  /** no body data for this long */
  idleTimeoutMs: number;
}

interface SendInit {
  headers?: Record<string, string>;
  body?: Buffer;
  followRedirects?: boolean;
}

interface Authorization {
  header: string;
  expiresAt: number;
}

export class RegistryClient {
  readonly #hosts: HostsOptions;
  readonly #retries: number;
  readonly #retryDelayMs: number;
  readonly #progressTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #headerTimeoutMs: number;
  readonly #platform: Platform;
  readonly #userAgent: string;
  readonly #transport = new HttpTransport();
  /** localhost registries found to speak plain HTTP */
  readonly #plainHttp = new Set<string>();
  readonly #authorizations = new Map<string, Authorization>();
  readonly #pendingAuthorizations = new Map<string, Promise<Authorization>>();

  constructor(options: RegistryClientOptions = {}) {
    this.#hosts = options.hosts ?? {};
    this.#retries = options.retries ?? 3;
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#progressTimeoutMs = options.progressTimeoutMs ?? 30_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#headerTimeoutMs = options.responseHeaderTimeoutMs ?? 30_000;
    this.#platform = options.platform ?? hostPlatform();
    this.#userAgent = options.userAgent ?? "crib/0.1";
  }

  /**
   * Resolves a reference to its target (index or manifest) and the manifest
   * of the wanted platform, with the exact bytes of each.
   */
  async resolve(reference: string | Reference, options: ResolveOptions = {}): Promise<ResolvedImage> {
    const ref = toReference(reference);
    const want = options.platform ?? this.#platform;
    const what = `image "${referenceString(ref)}"`;
    // A tag needs a host trusted to resolve it; a digest can come from any that serves pulls.
    const capability: HostCapability = ref.digest === undefined ? "resolve" : "pull";
    const top = await this.#tryEndpoints(ref, capability, what, options, false, (s) =>
      this.#getManifest(s, manifestReference(ref), ref.digest),
    );

    const indexes: ResolvedImage["indexes"] = [];
    let current = top.value;
    let platform: Platform | undefined;
    while (isIndexType(current.descriptor.mediaType)) {
      if (indexes.length >= MAX_INDEX_DEPTH) {
        throw new UnsupportedManifestError(`${what}: indexes nested deeper than ${MAX_INDEX_DEPTH}`, { host: top.host });
      }
      const index = parseManifestJson<ImageIndex>(current, what, top.host);
      if (!Array.isArray(index.manifests)) {
        throw new UnsupportedManifestError(`${what}: index ${current.descriptor.digest} has no manifests list`, { host: top.host });
      }
      indexes.push({ ...current, index });
      const child = selectPlatformManifest(index.manifests, want);
      if (child === undefined) {
        const offered = index.manifests.flatMap((m) => (m.platform === undefined ? [] : [formatPlatform(m.platform)]));
        throw new NoMatchingPlatformError(
          `${what}: no manifest for platform ${formatPlatform(want)} (the index has ${offered.length === 0 ? "none with a platform" : offered.join(", ")})`,
          { host: top.host },
        );
      }
      platform = child.platform;
      current = await this.fetchManifest(ref, child, options);
    }

    const manifest = parseManifestJson<ImageManifest>(current, what, top.host);
    if (typeof manifest.config?.digest !== "string" || !Array.isArray(manifest.layers)) {
      throw new UnsupportedManifestError(`${what}: manifest ${current.descriptor.digest} has no config or layers`, { host: top.host });
    }
    return {
      reference: ref,
      target: top.value.descriptor,
      indexes,
      manifest: { ...current, manifest },
      ...(platform === undefined ? {} : { platform }),
      host: top.host,
    };
  }

  /** Fetches a manifest or index by its descriptor, checking its digest. */
  async fetchManifest(reference: string | Reference, descriptor: Descriptor, options: CallOptions = {}): Promise<FetchedManifest> {
    const ref = toReference(reference);
    const what = `manifest ${descriptor.digest} of ${repositoryName(ref)}`;
    const got = await this.#tryEndpoints(ref, "pull", what, options, false, (s) => this.#getManifest(s, descriptor.digest, descriptor.digest));
    if (got.value.bytes.length !== descriptor.size) {
      throw new DigestMismatchError(`${what}: ${got.host} sent ${got.value.bytes.length} bytes, the descriptor says ${descriptor.size}`, { host: got.host });
    }
    return { descriptor: { ...descriptor, mediaType: got.value.descriptor.mediaType }, bytes: got.value.bytes };
  }

  /**
   * Streams a blob from `offset`. The stream checks the size, and the digest
   * when it can (from offset 0, or with `hash`), and errors at its end instead
   * of ending when they are wrong.
   */
  async fetchBlob(reference: string | Reference, descriptor: Descriptor, options: FetchBlobOptions = {}): Promise<BlobStream> {
    const ref = toReference(reference);
    const offset = options.offset ?? 0;
    const what = `blob ${descriptor.digest} of ${repositoryName(ref)}`;
    parseDigest(descriptor.digest);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > descriptor.size) {
      throw new RangeError(`${what}: offset ${offset} is outside its ${descriptor.size} bytes`);
    }
    const stream = (source: Readable, start: number, host: string): BlobStream =>
      new BlobStream(source, {
        digest: descriptor.digest,
        size: descriptor.size,
        offset,
        start,
        hash: options.hash,
        idleTimeoutMs: options.progressTimeoutMs ?? this.#progressTimeoutMs,
        what,
        host,
        signal: options.signal,
      });
    // Nothing left to fetch: an empty stream that still checks the hash it was given.
    if (offset === descriptor.size) return stream(Readable.from([]), offset, ref.domain);

    const got = await this.#tryEndpoints(ref, "pull", what, options, false, async (s) => {
      const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
      const res = await this.#send(s, "GET", this.#url(s, `/blobs/${descriptor.digest}`), { headers, followRedirects: true });
      let start = 0;
      if (res.statusCode === 206) {
        const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers["content-range"] ?? "");
        start = Number(range?.[1] ?? NaN);
        if (start !== offset) {
          res.resume();
          const answered = JSON.stringify(res.headers["content-range"]);
          throw new UnexpectedResponseError(`${what}: ${s.endpoint.host} answered range ${answered} for bytes=${offset}-`, {
            host: s.endpoint.host,
            status: 206,
          });
        }
      } else if (res.statusCode !== 200) {
        return this.#fail(s, res);
      }
      const length = res.headers["content-length"];
      if (length !== undefined && start + Number(length) !== descriptor.size) {
        res.resume();
        const offered = start + Number(length);
        throw new DigestMismatchError(`${what}: ${s.endpoint.host} offers ${offered} bytes, the descriptor says ${descriptor.size}`, {
          host: s.endpoint.host,
        });
      }
      return { res, start };
    });
    return stream(got.value.res, got.value.start, got.host);
  }

  /** A whole small blob (an image config), verified. */
  async readBlob(reference: string | Reference, descriptor: Descriptor, options: CallOptions = {}): Promise<Buffer> {
    const stream = await this.fetchBlob(reference, descriptor, options);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** Uploads a blob unless the registry has it: one PUT, or PATCH chunks then a PUT. */
  async pushBlob(reference: string | Reference, descriptor: Descriptor, data: Uint8Array, options: PushBlobOptions = {}): Promise<void> {
    const ref = toReference(reference);
    const what = `push blob ${descriptor.digest} to ${repositoryName(ref)}`;
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.#tryEndpoints(ref, "push", what, options, true, async (s) => {
      const head = await this.#send(s, "HEAD", this.#url(s, `/blobs/${descriptor.digest}`));
      head.resume();
      if (head.statusCode === 200) return;

      const uploads = this.#url(s, "/blobs/uploads/");
      const started = await this.#send(s, "POST", uploads, { body: Buffer.alloc(0) });
      if (started.statusCode !== 202) return this.#fail(s, started);
      started.resume();
      let location = uploadLocation(s, started, uploads);

      const chunkSize = options.chunkSize ?? 0;
      if (chunkSize > 0 && body.length > chunkSize) {
        for (let offset = 0; offset < body.length; offset += chunkSize) {
          const chunk = body.subarray(offset, offset + chunkSize);
          const res = await this.#send(s, "PATCH", location, {
            headers: { "Content-Type": "application/octet-stream", "Content-Range": `${offset}-${offset + chunk.length - 1}` },
            body: chunk,
          });
          if (res.statusCode !== 202) return this.#fail(s, res);
          res.resume();
          location = uploadLocation(s, res, uploads);
        }
        location.searchParams.set("digest", descriptor.digest);
        const done = await this.#send(s, "PUT", location, { body: Buffer.alloc(0) });
        if (done.statusCode !== 201) return this.#fail(s, done);
        done.resume();
        return;
      }
      location.searchParams.set("digest", descriptor.digest);
      const done = await this.#send(s, "PUT", location, { headers: { "Content-Type": "application/octet-stream" }, body });
      if (done.statusCode !== 201) return this.#fail(s, done);
      done.resume();
    });
  }

  /** Uploads a manifest or index under a tag (or its digest); returns its descriptor. */
  async pushManifest(
    reference: string | Reference,
    manifest: { mediaType: string; bytes: Uint8Array },
    options: PushManifestOptions = {},
  ): Promise<Descriptor> {
    const ref = toReference(reference);
    const bytes = Buffer.from(manifest.bytes.buffer, manifest.bytes.byteOffset, manifest.bytes.byteLength);
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    const target = options.tag ?? ref.tag ?? digest;
    const what = `push manifest ${repositoryName(ref)}:${target}`;
    await this.#tryEndpoints(ref, "push", what, options, true, async (s) => {
      const res = await this.#send(s, "PUT", this.#url(s, `/manifests/${target}`), {
        headers: { "Content-Type": manifest.mediaType },
        body: bytes,
      });
      if (res.statusCode !== 201) return this.#fail(s, res);
      res.resume();
    });
    return { mediaType: manifest.mediaType, digest, size: bytes.length };
  }

  close(): void {
    this.#transport.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  // Tries each endpoint with the capability in turn; the first answer wins.
  async #tryEndpoints<T>(
    ref: Reference,
    capability: HostCapability,
    what: string,
    options: CallOptions,
    push: boolean,
    attempt: (s: Session) => Promise<T>,
  ): Promise<{ value: T; host: string }> {
    const endpoints = (await resolveEndpoints(ref.domain, this.#hosts)).filter((e) => e.capabilities.includes(capability));
    if (endpoints.length === 0) {
      throw new RegistryUnavailableError(`${what}: no endpoint of ${ref.domain} is configured to ${capability}`);
    }
    const errors: Array<{ endpoint: RegistryEndpoint; error: RegistryError }> = [];
    for (const [i, endpoint] of endpoints.entries()) {
      const s: Session = {
        ref,
        endpoint,
        login: loginOf(credentialsFor(options.auth, endpoint)),
        push,
        last: i === endpoints.length - 1,
        what,
        signal: options.signal,
        idleTimeoutMs: options.progressTimeoutMs ?? this.#progressTimeoutMs,
      };
      try {
        return { value: await attempt(s), host: endpoint.host };
      } catch (err) {
        if (options.signal?.aborted) throw abortReason(options.signal);
        if (!(err instanceof RegistryError)) throw err;
        errors.push({ endpoint, error: err });
      }
    }
    throw combineErrors(what, errors);
  }

  async #getManifest(s: Session, reference: string, digest: string | undefined): Promise<FetchedManifest> {
    const res = await this.#send(s, "GET", this.#url(s, `/manifests/${reference}`), {
      headers: { Accept: MANIFEST_ACCEPT },
      followRedirects: true,
    });
    if (res.statusCode !== 200) return this.#fail(s, res);
    const host = s.endpoint.host;
    const bytes = await this.#read(s, res, MAX_MANIFEST_SIZE, "manifest");
    const mediaType = manifestMediaType(res.headers["content-type"], bytes);
    if (isSchema1Type(mediaType)) {
      throw new UnsupportedManifestError(
        `${s.what}: ${host} serves a Docker schema 1 manifest, which crib does not support; push the image again with a current docker or buildah`,
        { host },
      );
    }
    if (!isIndexType(mediaType) && !isManifestType(mediaType)) {
      throw new UnsupportedManifestError(`${s.what}: ${host} serves ${JSON.stringify(mediaType)}, which is not an image manifest or index`, { host });
    }
    const algorithm = digest === undefined ? "sha256" : parseDigest(digest).algorithm;
    const actual = `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
    if (digest !== undefined && actual !== digest) {
      throw new DigestMismatchError(`${s.what}: ${host} sent a manifest with digest ${actual}, not ${digest}`, { host });
    }
    return { descriptor: { mediaType, digest: actual, size: bytes.length }, bytes };
  }

  #url(s: Session, suffix: string): URL {
    const { endpoint, ref } = s;
    const scheme = endpoint.scheme === "https" && this.#plainHttp.has(endpoint.host) ? "http" : endpoint.scheme;
    const url = new URL(`${scheme}://${endpoint.host}${endpoint.path}/${ref.path}${suffix}`);
    // A mirror learns which registry is meant, as containerd tells it.
    if (isProxy(endpoint.host, ref.domain)) url.searchParams.set("ns", ref.domain);
    return url;
  }

  // One request with auth, retries and the localhost HTTP fallback. Answers
  // other than 401, 429 and 5xx come back as they are.
  async #send(s: Session, method: string, target: URL, init: SendInit = {}): Promise<IncomingMessage> {
    const { endpoint, signal } = s;
    let url = target;
    let authorized = false;
    // Falling through to the next endpoint is a retry of its own: a mirror gets one more try, the last endpoint all.
    const retries = s.last ? this.#retries : Math.min(1, this.#retries);
    for (let attempt = 0; ; ) {
      const headers: Record<string, string | string[]> = { "User-Agent": this.#userAgent };
      for (const [name, values] of Object.entries(endpoint.header)) headers[name] = [...values];
      Object.assign(headers, init.headers);
      const authorization = this.#cachedAuthorization(s);
      if (authorization !== undefined && url.host === endpoint.host) headers["Authorization"] = authorization;

      let res: IncomingMessage;
      try {
        res = await this.#transport.request({
          method,
          url,
          headers,
          ...(init.body === undefined ? {} : { body: init.body }),
          tls: endpoint.tls,
          signal,
          idleTimeoutMs: this.#headerTimeoutMs,
          connectTimeoutMs: this.#connectTimeoutMs,
          followRedirects: init.followRedirects ?? false,
        });
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        if (endpoint.httpFallback && url.protocol === "https:" && isNotTls(err)) {
          this.#plainHttp.add(endpoint.host);
          url = new URL(url);
          url.protocol = "http:";
          continue;
        }
        // A refused connection is final when another endpoint can take over.
        const refusedWithNext = errorCode(err) === "ECONNREFUSED" && !s.last;
        if (isRetryableNetworkError(err) && attempt < retriesFor(err, retries) && !refusedWithNext) {
          await this.#backoff(attempt++, undefined, signal);
          continue;
        }
        const reason = err instanceof Error ? err.message : String(err);
        throw new RegistryUnavailableError(`${s.what}: cannot reach ${endpoint.host}: ${reason}`, { host: endpoint.host, cause: err });
      }

      const status = res.statusCode ?? 0;
      if (status === 401 && !authorized && url.host === endpoint.host) {
        const challenges = parseChallenges(res.headers["www-authenticate"]);
        res.resume();
        authorized = true;
        await this.#authorize(s, challenges);
        continue;
      }
      if ((status >= 500 || status === 429) && attempt < retries) {
        res.resume();
        await this.#backoff(attempt++, retryAfter(res), signal);
        continue;
      }
      return res;
    }
  }

  async #backoff(attempt: number, retryAfterMs: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    const exponential = Math.min(this.#retryDelayMs * 2 ** attempt, MAX_BACKOFF_MS);
    const delay = retryAfterMs ?? exponential * (0.5 + Math.random() / 2);
    try {
      await sleep(Math.min(delay, MAX_BACKOFF_MS), undefined, signal === undefined ? {} : { signal });
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      throw err;
    }
  }

  #authorizationKey(s: Session): string {
    return `${s.endpoint.host}\n${loginKey(s.login)}\n${repositoryScope(s.ref.path, s.push)}`;
  }

  #cachedAuthorization(s: Session): string | undefined {
    const key = this.#authorizationKey(s);
    const cached = this.#authorizations.get(key);
    if (cached === undefined) return undefined;
    if (cached.expiresAt > Date.now()) return cached.header;
    this.#authorizations.delete(key);
    return undefined;
  }

  // Answers a 401: Basic with the credentials, or a bearer token from the realm.
  async #authorize(s: Session, challenges: Challenge[]): Promise<void> {
    const key = this.#authorizationKey(s);
    this.#authorizations.delete(key);
    let pending = this.#pendingAuthorizations.get(key);
    if (pending === undefined) {
      pending = this.#answerChallenge(s, challenges).finally(() => this.#pendingAuthorizations.delete(key));
      this.#pendingAuthorizations.set(key, pending);
    }
    const authorization = await pending;
    if (this.#authorizations.size >= 1000) {
      const now = Date.now();
      for (const [k, a] of this.#authorizations) if (a.expiresAt <= now) this.#authorizations.delete(k);
    }
    this.#authorizations.set(key, authorization);
  }

  async #answerChallenge(s: Session, challenges: Challenge[]): Promise<Authorization> {
    const host = s.endpoint.host;
    const { login } = s;
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer !== undefined) {
      if (login.registryToken) return { header: `Bearer ${login.registryToken}`, expiresAt: Infinity };
      return this.#fetchToken(s, bearer);
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      if (!login.username || login.password === undefined) {
        throw new UnauthorizedError(`${s.what}: ${host} requires a username and password, and none were given`, { host, status: 401 });
      }
      return { header: basicAuthorization(login.username, login.password), expiresAt: Infinity };
    }
    const offered = challenges.map((c) => c.scheme).join(", ") || "none";
    throw new UnauthorizedError(`${s.what}: ${host} answered 401 with no challenge crib can answer (offered: ${offered})`, { host, status: 401 });
  }

  async #fetchToken(s: Session, challenge: Challenge): Promise<Authorization> {
    const host = s.endpoint.host;
    const { login } = s;
    let realm: URL;
    try {
      realm = new URL(challenge.params["realm"] ?? "");
      if (realm.protocol !== "https:" && realm.protocol !== "http:") throw new Error("not http");
    } catch {
      throw new UnauthorizedError(`${s.what}: ${host} names an invalid token realm ${JSON.stringify(challenge.params["realm"] ?? "")}`, { host, status: 401 });
    }
    const scopes = [...new Set([...(challenge.params["scope"]?.split(" ") ?? []), repositoryScope(s.ref.path, s.push)])].filter((x) => x !== "");
    const service = challenge.params["service"];

    let method: string;
    const headers: Record<string, string> = { "User-Agent": this.#userAgent };
    let body: Buffer | undefined;
    if (login.identityToken) {
      // An identity token is an OAuth2 refresh token, exchanged by POST.
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: login.identityToken, client_id: "crib", access_type: "online" });
      if (service !== undefined) form.set("service", service);
      form.set("scope", scopes.join(" "));
      method = "POST";
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      body = Buffer.from(form.toString());
    } else {
      method = "GET";
      if (service !== undefined) realm.searchParams.set("service", service);
      for (const scope of scopes) realm.searchParams.append("scope", scope);
      if (login.username && login.password !== undefined) headers["Authorization"] = basicAuthorization(login.username, login.password);
    }

    const res = await this.#withRetries(s, `token server ${realm.host}`, () =>
      this.#transport.request({
        method,
        url: realm,
        headers,
        ...(body === undefined ? {} : { body }),
        tls: s.endpoint.tls,
        signal: s.signal,
        idleTimeoutMs: this.#headerTimeoutMs,
        connectTimeoutMs: this.#connectTimeoutMs,
        followRedirects: true,
      }),
    );
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) {
      const detail = await this.#errorDetail(s, res);
      const who = login.username ?? (login.identityToken ? "the identity token" : "anonymous");
      throw new UnauthorizedError(`${s.what}: token server ${realm.host} refused ${who}${detail}`, { host, status });
    }
    if (status !== 200) {
      const detail = await this.#errorDetail(s, res);
      throw new UnexpectedResponseError(`${s.what}: token server ${realm.host} answered ${status}${detail}`, { host, status });
    }
    const text = await this.#read(s, res, MAX_ERROR_BODY, "token response");
    let parsed: unknown;
    try {
      parsed = JSON.parse(text.toString("utf8"));
    } catch {
      parsed = undefined;
    }
    const token = tokenOf(parsed);
    if (token === undefined) throw new UnexpectedResponseError(`${s.what}: token server ${realm.host} answered without a token`, { host });
    return { header: `Bearer ${token.token}`, expiresAt: token.expiresAt };
  }

  async #withRetries(s: Session, who: string, request: () => Promise<IncomingMessage>): Promise<IncomingMessage> {
    for (let attempt = 0; ; attempt++) {
      let res: IncomingMessage;
      try {
        res = await request();
      } catch (err) {
        if (s.signal?.aborted) throw abortReason(s.signal);
        if (isRetryableNetworkError(err) && attempt < retriesFor(err, this.#retries)) {
          await this.#backoff(attempt, undefined, s.signal);
          continue;
        }
        const reason = err instanceof Error ? err.message : String(err);
        throw new RegistryUnavailableError(`${s.what}: cannot reach ${who}: ${reason}`, { host: s.endpoint.host, cause: err });
      }
      const status = res.statusCode ?? 0;
      if ((status >= 500 || status === 429) && attempt < this.#retries) {
        res.resume();
        await this.#backoff(attempt, retryAfter(res), s.signal);
        continue;
      }
      return res;
    }
  }

  #read(s: Session, res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
    return readBody(res, { limit, idleTimeoutMs: s.idleTimeoutMs, signal: s.signal, what, host: s.endpoint.host }).catch((err: unknown) => {
      if (s.signal?.aborted) throw abortReason(s.signal);
      const reason = err instanceof Error ? err.message : String(err);
      throw new RegistryUnavailableError(`${s.what}: reading the ${what} from ${s.endpoint.host}: ${reason}`, { host: s.endpoint.host, cause: err });
    });
  }

  // ": CODE: message" from the registry's JSON error body, or "".
  async #errorDetail(s: Session, res: IncomingMessage): Promise<string> {
    let body: Buffer;
    try {
      body = await readBody(res, { limit: MAX_ERROR_BODY, idleTimeoutMs: s.idleTimeoutMs, signal: s.signal, what: "error", host: s.endpoint.host });
    } catch {
      return "";
    }
    try {
      const parsed = JSON.parse(body.toString("utf8")) as { errors?: Array<{ code?: string; message?: string }> };
      const errors = (parsed.errors ?? []).map((e) => [e.code, e.message].filter((x) => x).join(": ")).filter((x) => x !== "");
      if (errors.length > 0) return ` (${errors.join("; ")})`;
    } catch {
      // not JSON
    }
    const text = body.toString("utf8").trim().slice(0, 200);
    return text === "" ? "" : ` (${text})`;
  }

  // Turns an answer that is not a success into the error it means.
  async #fail(s: Session, res: IncomingMessage): Promise<never> {
    const host = s.endpoint.host;
    const status = res.statusCode ?? 0;
    const detail = await this.#errorDetail(s, res);
    const details = { host, status };
    if (status === 404) throw new NotFoundError(`${s.what}: not found on ${host}${detail}`, details);
    if (status === 401) {
      const { username, password, identityToken, registryToken } = s.login;
      const anonymous = !username && !password && !identityToken && !registryToken;
      const problem = anonymous ? "requires credentials, and none were given" : `refused the credentials${username ? ` of ${username}` : ""}`;
      throw new UnauthorizedError(`${s.what}: ${host} ${problem}${detail}`, details);
    }
    if (status === 403) throw new UnauthorizedError(`${s.what}: ${host} denied access${detail}`, details);
    const answered = `${s.what}: ${host} answered ${status} ${res.statusMessage ?? ""}`.trimEnd() + detail;
    if (status >= 500 || status === 429) throw new RegistryUnavailableError(answered, details);
    throw new UnexpectedResponseError(answered, details);
  }
}

const toReference = (reference: string | Reference): Reference =>
  typeof reference === "string" ? parseReference(reference) : reference;

// containerd's rule: a mirror is any host other than the registry's own.
const isProxy = (host: string, domain: string): boolean =>
  host !== domain && !(domain === DEFAULT_DOMAIN && host === "registry-1.docker.io");

function retryAfter(res: IncomingMessage): number | undefined {
  const value = res.headers["retry-after"];
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function uploadLocation(s: Session, res: IncomingMessage, base: URL): URL {
  const location = res.headers.location;
  if (location === undefined) {
    throw new UnexpectedResponseError(`${s.what}: ${s.endpoint.host} answered an upload without a Location`, { host: s.endpoint.host });
  }
  return new URL(location, base);
}

function manifestMediaType(contentType: string | undefined, bytes: Buffer): string {
  const header = (contentType ?? "").split(";")[0]?.trim() ?? "";
  if (isIndexType(header) || isManifestType(header) || isSchema1Type(header)) return header;
  let parsed: { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown; config?: unknown };
  try {
    parsed = JSON.parse(bytes.toString("utf8")) as typeof parsed;
  } catch {
    return header || "application/octet-stream";
  }
  if (typeof parsed.mediaType === "string" && parsed.mediaType !== "") return parsed.mediaType;
  if (parsed.schemaVersion === 1) return MediaType.DockerSchema1;
  if (Array.isArray(parsed.manifests)) return MediaType.OciIndex;
  if (parsed.config !== undefined) return MediaType.OciManifest;
  return header || "application/octet-stream";
}

function parseManifestJson<T>(fetched: FetchedManifest, what: string, host: string): T {
  try {
    return JSON.parse(fetched.bytes.toString("utf8")) as T;
  } catch (err) {
    throw new UnsupportedManifestError(`${what}: ${fetched.descriptor.digest} from ${host} is not valid JSON: ${(err as Error).message}`, { host });
  }
}

// One error for all endpoints that failed: a definite "not found" from the
// registry is not hidden by a mirror that was down.
// A registry that stalls once may answer the next time; one that stalls twice is not waited for again.
const retriesFor = (err: unknown, retries: number): number => (err instanceof IdleTimeoutError ? Math.min(1, retries) : retries);

function combineErrors(what: string, errors: Array<{ endpoint: RegistryEndpoint; error: RegistryError }>): RegistryError {
  const first = errors[0];
  if (first === undefined) return new RegistryUnavailableError(`${what}: no endpoint answered`);
  if (errors.length === 1) return first.error;
  const notFound = errors.filter((e) => e.error instanceof NotFoundError);
  const others = errors.filter((e) => !(e.error instanceof NotFoundError));
  const primary =
    notFound.length > 0 && others.every((e) => e.error instanceof RegistryUnavailableError && e.endpoint.mirror)
      ? notFound[0]
      : (others[0] ?? first);
  const prefix = `${what}: `;
  const parts = errors.map((e) => (e.error.message.startsWith(prefix) ? e.error.message.slice(prefix.length) : e.error.message));
  const message = `${what}: ${parts.join("; ")}`;
  const e = (primary ?? first).error;
  const details = { ...(e.host === undefined ? {} : { host: e.host }), ...(e.status === undefined ? {} : { status: e.status }), cause: e };
  if (e instanceof NoMatchingPlatformError) return new NoMatchingPlatformError(message, details);
  if (e instanceof NotFoundError) return new NotFoundError(message, details);
  if (e instanceof UnauthorizedError) return new UnauthorizedError(message, details);
  if (e instanceof UnsupportedManifestError) return new UnsupportedManifestError(message, details);
  if (e instanceof DigestMismatchError) return new DigestMismatchError(message, details);
  if (e instanceof RegistryUnavailableError) return new RegistryUnavailableError(message, details);
  return new UnexpectedResponseError(message, details);
}
