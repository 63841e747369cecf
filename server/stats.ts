/** Counters of this server process (reported by CatalogService.GetStats). */
export class ServerStats {
  /** Wire bytes of blob chunks (compressed or not). */
  bytesReceived = 0;
  /** Decoded blob bytes written to the store. */
  blobBytesReceived = 0;
  chunksRejected = 0;
  blobsCompleted = 0;
  tracesCommitted = 0;
}
