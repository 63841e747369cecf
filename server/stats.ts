/** Counters of this server process (reported by CatalogService.GetStats). */
export class ServerStats {
  bytesReceived = 0;
  chunksRejected = 0;
  blobsCompleted = 0;
  tracesCommitted = 0;
}
