// Errors of talking to a registry. Each carries the kind the CRI layer maps to
// a status, and a message naming the image, the host and what it answered.
import { CribError, type ErrorKind } from "../errors.js";

export interface RegistryErrorDetails {
  /** the registry host (or mirror) that answered */
  host?: string;
  /** its HTTP status */
  status?: number;
  cause?: unknown;
}

export class RegistryError extends CribError {
  readonly host: string | undefined;
  readonly status: number | undefined;
  constructor(kind: ErrorKind, message: string, details: RegistryErrorDetails = {}) {
    super(kind, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "RegistryError";
    this.host = details.host;
    this.status = details.status;
  }
}

/** The tag, manifest or blob does not exist on any endpoint. */
export class NotFoundError extends RegistryError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super("not-found", message, details);
    this.name = "NotFoundError";
  }
}

/** An index has no manifest this host can run. */
export class NoMatchingPlatformError extends NotFoundError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super(message, details);
    this.name = "NoMatchingPlatformError";
  }
}

/** The registry refused the credentials, or there were none where it wants some. */
export class UnauthorizedError extends RegistryError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super("failed-precondition", message, details);
    this.name = "UnauthorizedError";
  }
}

/** A manifest crib cannot use: Docker schema 1, or not a manifest at all. */
export class UnsupportedManifestError extends RegistryError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super("failed-precondition", message, details);
    this.name = "UnsupportedManifestError";
  }
}

/** The bytes received are not the bytes the descriptor names. */
export class DigestMismatchError extends RegistryError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super("internal", message, details);
    this.name = "DigestMismatchError";
  }
}

/** The registry could not be reached, or kept failing (5xx, 429) past the retries. */
export class RegistryUnavailableError extends RegistryError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super("unavailable", message, details);
    this.name = "RegistryUnavailableError";
  }
}

/** A transfer broke off: the connection closed mid-body. A caller may resume at the bytes it has. */
export class TransferError extends RegistryError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super("unavailable", message, details);
    this.name = "TransferError";
  }
}

/** No bytes arrived for the progress timeout. */
export class ProgressTimeoutError extends TransferError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super(message, details);
    this.name = "ProgressTimeoutError";
  }
}

/** Any other answer crib did not expect. */
export class UnexpectedResponseError extends RegistryError {
  constructor(message: string, details: RegistryErrorDetails = {}) {
    super("internal", message, details);
    this.name = "UnexpectedResponseError";
  }
}
