// Errors that carry a kind the CRI layer maps to a gRPC status (cri/errors.ts
// is the only place that knows status codes). Messages name the thing and value.
export type ErrorKind =
  | "invalid-argument"
  | "not-found"
  | "already-exists"
  | "failed-precondition"
  | "resource-exhausted"
  | "unavailable"
  | "deadline-exceeded"
  | "unimplemented"
  | "internal";

export class CribError extends Error {
  constructor(readonly kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CribError";
  }
}

export const invalidArgument = (message: string): CribError => new CribError("invalid-argument", message);
export const notFound = (message: string): CribError => new CribError("not-found", message);
export const alreadyExists = (message: string): CribError => new CribError("already-exists", message);
export const failedPrecondition = (message: string): CribError => new CribError("failed-precondition", message);
export const unavailable = (message: string, cause?: unknown): CribError => new CribError("unavailable", message, { cause });
export const internal = (message: string, cause?: unknown): CribError => new CribError("internal", message, { cause });

export const isKind = (err: unknown, kind: ErrorKind): boolean =>
  (err instanceof CribError && err.kind === kind) ||
  (typeof err === "object" && err !== null && (err as { kind?: unknown }).kind === kind);

/** Throws when a required field is missing or empty. */
export function required<T>(value: T | null | undefined | "", field: string): T {
  if (value === undefined || value === null || value === "") throw invalidArgument(`${field} is required`);
  return value;
}
