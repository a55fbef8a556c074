// Docker-style image references, normalised the way docker and containerd do:
// `busybox` is `docker.io/library/busybox:latest`. The grammar is the one of
// github.com/distribution/reference.
import { CribError } from "../errors.js";

export class InvalidReferenceError extends CribError {
  constructor(readonly reference: string, problem: string) {
    super("invalid-argument", `invalid image reference "${reference}": ${problem}`);
    this.name = "InvalidReferenceError";
  }
}

export interface Reference {
  /** Registry host, with port when there is one: `docker.io`, `127.0.0.1:5000`. */
  readonly domain: string;
  /** Repository path inside the registry: `library/busybox`. */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: string;
}

export const DEFAULT_DOMAIN = "docker.io";
export const DEFAULT_TAG = "latest";
const LEGACY_DEFAULT_DOMAIN = "index.docker.io";
const OFFICIAL_REPO_PREFIX = "library/";
const MAX_NAME_LENGTH = 255;

const alnum = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alnum}(?:${separator}${alnum})*`;
const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const ipv6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const domainName = `(?:${domainComponent}(?:\\.${domainComponent})*|${ipv6})(?::[0-9]+)?`;
const tagPattern = "[\\w][\\w.-]{0,127}";
const digestPattern = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";

const DOMAIN = new RegExp(`^${domainName}$`);
const PATH = new RegExp(`^${pathComponent}(?:/${pathComponent})*$`);
const TAG = new RegExp(`^${tagPattern}$`);
const IDENTIFIER = /^[a-f0-9]{64}$/;

const DIGEST_LENGTHS: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

export interface Digest {
  readonly algorithm: "sha256" | "sha384" | "sha512";
  readonly hex: string;
}

/** Parses `sha256:<64 hex>` (or sha384/sha512); throws on anything else. */
export function parseDigest(digest: string, reference = digest): Digest {
  if (!new RegExp(`^${digestPattern}$`).test(digest)) {
    throw new InvalidReferenceError(reference, `invalid digest "${digest}"`);
  }
  const colon = digest.indexOf(":");
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  const length = DIGEST_LENGTHS[algorithm];
  if (length === undefined) throw new InvalidReferenceError(reference, `unsupported digest algorithm "${algorithm}"`);
  if (hex.length !== length || !/^[a-f0-9]+$/.test(hex)) {
    throw new InvalidReferenceError(reference, `digest "${digest}" must be ${length} lowercase hex characters`);
  }
  return { algorithm: algorithm as Digest["algorithm"], hex };
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses and normalises a reference: adds `docker.io` and `library/` as docker
 * does, and `:latest` when neither tag nor digest is given.
 */
export function parseReference(input: string): Reference {
  const ref = parseNormalized(input);
  return ref.tag === undefined && ref.digest === undefined ? { ...ref, tag: DEFAULT_TAG } : ref;
}

/** Like parseReference, but leaves a reference without tag or digest as it is. */
export function parseNormalized(input: string): Reference {
  if (input === "") throw new InvalidReferenceError(input, "reference is empty");
  if (IDENTIFIER.test(input)) {
    throw new InvalidReferenceError(input, "cannot specify 64-byte hexadecimal strings, they are image IDs");
  }

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    parseDigest(digest, input);
  }

  let tag: string | undefined;
  // A colon after the last slash starts a tag; before it, it is a port.
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidReferenceError(input, `invalid tag "${tag}"`);
  }

  const [domain, path] = splitDomain(rest);
  if (!DOMAIN.test(domain)) throw new InvalidReferenceError(input, `invalid registry host "${domain}"`);
  const port = /:(\d+)$/.exec(domain)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    throw new InvalidReferenceError(input, `registry port ${port} is out of range (1–65535)`);
  }
  if (path !== path.toLowerCase()) throw new InvalidReferenceError(input, "repository name must be lowercase");
  if (!PATH.test(path)) throw new InvalidReferenceError(input, `invalid repository name "${path}"`);
  if (domain.length + 1 + path.length > MAX_NAME_LENGTH) {
    throw new InvalidReferenceError(input, `repository name must not be more than ${MAX_NAME_LENGTH} characters`);
  }

  return {
    domain,
    path,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
  };
}

// The first component is a registry host when it looks like one: it has a dot
// or a port, or is `localhost`, or has upper case (which a path cannot have).
function splitDomain(name: string): [string, string] {
  const slash = name.indexOf("/");
  let domain: string;
  let path: string;
  const first = slash < 0 ? "" : name.slice(0, slash);
  if (
    slash < 0 ||
    (!first.includes(".") && !first.includes(":") && first !== "localhost" && first.toLowerCase() === first)
  ) {
    domain = DEFAULT_DOMAIN;
    path = name;
  } else {
    domain = first;
    path = name.slice(slash + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = OFFICIAL_REPO_PREFIX + path;
  return [domain, path];
}

/** `docker.io/library/busybox` */
export const repositoryName = (ref: Reference): string => `${ref.domain}/${ref.path}`;

/** `docker.io/library/busybox:1.36@sha256:…`, every part that is set. */
export const referenceString = (ref: Reference): string =>
  repositoryName(ref) + (ref.tag === undefined ? "" : `:${ref.tag}`) + (ref.digest === undefined ? "" : `@${ref.digest}`);

/** The reference without its tag, pinned to a digest: what CRI reports as a repo digest. */
export const withDigest = (ref: Reference, digest: string): Reference => ({ domain: ref.domain, path: ref.path, digest });

export const withTag = (ref: Reference, tag: string): Reference => ({ domain: ref.domain, path: ref.path, tag });

/** The short name docker shows: `busybox`, `user/app`, `127.0.0.1:5000/app`. */
export function familiarName(ref: Reference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return repositoryName(ref);
  const rest = ref.path.slice(OFFICIAL_REPO_PREFIX.length);
  return ref.path.startsWith(OFFICIAL_REPO_PREFIX) && !rest.includes("/") ? rest : ref.path;
}

/** `busybox:latest`, `user/app@sha256:…` */
export const familiarString = (ref: Reference): string =>
  familiarName(ref) + (ref.tag === undefined ? "" : `:${ref.tag}`) + (ref.digest === undefined ? "" : `@${ref.digest}`);

/** The tag or digest to ask a registry for; the digest wins when both are set. */
export const manifestReference = (ref: Reference): string => ref.digest ?? ref.tag ?? DEFAULT_TAG;
