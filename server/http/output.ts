// What a recorded program wrote to its stdout and stderr, for the trace's page. The bytes are not
// in the trace: a write's event holds only a hash of what was sent (docs/trace-format.md), and
// replay echoes what the replayed program sends after checking it against that hash. So the
// output is what one server replay (RunReplay, as `rewind replay ID`) echoes, each stream up to
// a bound; the replay is stopped once both are full. The two streams reach the server through
// two pipes of the replay worker, so which of them came first is not known: each is kept apart.

/** Bytes of each stream kept at most. */
export const OUTPUT_LIMIT_BYTES = 256 * 1024;

export interface OutputStream {
  /** The bytes as base64 (protobuf's JSON form of bytes, as RunReplay sends them). */
  data: string;
  bytes: number;
  /** The program wrote more: only the first OUTPUT_LIMIT_BYTES are here. */
  truncated: boolean;
}

export interface RecordedOutput {
  stdout: OutputStream;
  stderr: OutputStream;
  /** The replay's exit status; absent when the replay was stopped at the bound. */
  exitStatus?: number;
  /**
   * Set when the replay did not end as the recording did (it failed: stderr ends with replay's
   * own message, and the output is what came before).
   */
  failed?: string;
}

class Kept {
  readonly parts: Buffer[] = [];
  bytes = 0;
  truncated = false;
  constructor(private readonly limit: number) {}
  add(data: Buffer): void {
    const room = this.limit - this.bytes;
    if (data.length > room) this.truncated = true;
    const kept = data.subarray(0, Math.max(0, room));
    if (kept.length > 0) this.parts.push(kept);
    this.bytes += kept.length;
  }
  build(): OutputStream {
    return { data: Buffer.concat(this.parts).toString('base64'), bytes: this.bytes, truncated: this.truncated };
  }
}

export class OutputCollector {
  private readonly streams: Record<1 | 2, Kept>;
  private exitStatus: number | undefined;

  /** `recordedStatus`: the recording's exit status (negative: unknown). */
  constructor(
    private readonly recordedStatus: number,
    limit = OUTPUT_LIMIT_BYTES,
  ) {
    this.streams = { 1: new Kept(limit), 2: new Kept(limit) };
  }

  /** Keeps what fits; false once both streams are full (read no more). */
  add(fd: 1 | 2, data: Buffer): boolean {
    this.streams[fd].add(data);
    return !(this.streams[1].truncated && this.streams[2].truncated);
  }

  exit(status: number): void {
    this.exitStatus = status;
  }

  build(): RecordedOutput {
    const differs = this.exitStatus !== undefined && this.recordedStatus >= 0 && this.exitStatus !== this.recordedStatus;
    return {
      stdout: this.streams[1].build(),
      stderr: this.streams[2].build(),
      ...(this.exitStatus === undefined ? {} : { exitStatus: this.exitStatus }),
      ...(differs ? { failed: `the replay ended with status ${this.exitStatus}, the recording with ${this.recordedStatus}` } : {}),
    };
  }
}
