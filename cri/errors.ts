// The one place where errors become gRPC statuses.
import { status, type StatusObject } from "@grpc/grpc-js";
import { CribError, type ErrorKind } from "../runtime/errors.js";
import { ContainerdError } from "../runtime/containerd/errors.js";

const CODES: Record<ErrorKind, status> = {
  "invalid-argument": status.INVALID_ARGUMENT,
  "not-found": status.NOT_FOUND,
  "already-exists": status.ALREADY_EXISTS,
  "failed-precondition": status.FAILED_PRECONDITION,
  "resource-exhausted": status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  "deadline-exceeded": status.DEADLINE_EXCEEDED,
  unimplemented: status.UNIMPLEMENTED,
  internal: status.INTERNAL,
};

const isAbort = (err: unknown): boolean => err instanceof Error && err.name === "AbortError";
const isTimeout = (err: unknown): boolean => err instanceof Error && err.name === "TimeoutError";

/**
 * The status message travels as the grpc-message trailer. One of ~80 kB (a
 * request's 100 kB value, echoed) is past what grpc-js clients take: the client
 * answers with GOAWAY and its channel hangs every later call. A message names
 * a field and a shortened value; anything longer (a dependency's text) is cut.
 */
export const MAX_DETAILS = 2048;

export function shortDetails(text: string): string {
  return text.length > MAX_DETAILS ? `${text.slice(0, MAX_DETAILS - 40)}… (${text.length - MAX_DETAILS + 40} more characters)` : text;
}

export function toServiceError(err: unknown): Pick<StatusObject, "code" | "details"> {
  const details = shortDetails(err instanceof Error ? err.message : String(err));
  if (err instanceof CribError) return { code: CODES[err.kind], details };
  if (err instanceof ContainerdError) return { code: err.code, details };
  if (typeof err === "object" && err !== null && typeof (err as { cniCode?: unknown }).cniCode === "number") {
    return { code: (err as { cniCode: number }).cniCode === 11 ? status.UNAVAILABLE : status.INTERNAL, details };
  }
  if (typeof err === "object" && err !== null && typeof (err as { kind?: unknown }).kind === "string" && (err as { kind: string }).kind in CODES) {
    return { code: CODES[(err as { kind: ErrorKind }).kind], details };
  }
  if (isTimeout(err)) return { code: status.DEADLINE_EXCEEDED, details };
  if (isAbort(err)) return { code: status.CANCELLED, details };
  return { code: status.UNKNOWN, details };
}
