import { status } from '@grpc/grpc-js';

/** An error that maps to one gRPC status; its message is meant for the client as is. */
export class RpcError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

export const invalidArgument = (m: string): RpcError => new RpcError(status.INVALID_ARGUMENT, m);
export const notFound = (m: string): RpcError => new RpcError(status.NOT_FOUND, m);
export const failedPrecondition = (m: string): RpcError => new RpcError(status.FAILED_PRECONDITION, m);
export const permissionDenied = (m: string): RpcError => new RpcError(status.PERMISSION_DENIED, m);
