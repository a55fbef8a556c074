// containerd answers with gRPC statuses; crib keeps the code so a NotFound from
// containerd stays NOT_FOUND for kubelet, and names the call that failed.
import { status } from "@grpc/grpc-js";

export class ContainerdError extends Error {
  constructor(readonly code: status, readonly method: string, details: string) {
    super(`containerd ${method}: ${details}`);
    this.name = "ContainerdError";
  }
}

export function fromGrpc(method: string, err: unknown): Error {
  if (typeof err === "object" && err !== null && typeof (err as { code?: unknown }).code === "number") {
    const e = err as { code: status; details?: string; message?: string };
    return new ContainerdError(e.code, method, e.details || e.message || "failed");
  }
  return err instanceof Error ? err : new Error(String(err));
}

export const isNotFound = (err: unknown): boolean => err instanceof ContainerdError && err.code === status.NOT_FOUND;
export const isAlreadyExists = (err: unknown): boolean => err instanceof ContainerdError && err.code === status.ALREADY_EXISTS;
export const isUnavailable = (err: unknown): boolean => err instanceof ContainerdError && err.code === status.UNAVAILABLE;
