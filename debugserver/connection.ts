// One client's byte stream: packets in, acknowledgements (until QStartNoAckMode), framed
// replies out. Damaged input gets an error or a retransmit request, never the session's end.
import type { Response } from './gdb_server.js';
import { frame, PacketReader } from './packet.js';

/** What answers the packets: a session on a thread of its own, so that Ctrl-C can reach it. */
export interface PacketHandler {
  handle(payload: Buffer): Promise<Response>;
  /** gdb's Ctrl-C (0x03) while a resume runs. */
  interrupt(): void;
  /** Where a resume under way has got to (`event N of M`). */
  progress?(): string;
}

/** The packets that run the program: c, s, C, S, vCont with actions, bc, bs, monitor (seek). */
const RUNS = /^([csCS]|vCont;|b[cs]$|qRcmd,)/;

/** A resume that runs longer than this shows its progress on gdb's console, then as often again. */
const PROGRESS_MS = 1000;

export interface ConnectionOptions {
  /** Writes bytes to the client. */
  write: (data: Buffer) => void;
  /** The client asked to end the session (k, vKill, D); the session is already closed. */
  onEnd: () => void;
  log: (line: string) => void;
  /** Log every packet both ways (REWIND_DEBUG_RSP=1). */
  trace?: boolean;
}

export class RspConnection {
  private readonly reader = new PacketReader();
  private noAck = false;
  private lastSent: Buffer | undefined;
  private ended = false;
  /** Packets are answered in order, one at a time. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly server: PacketHandler,
    private readonly options: ConnectionOptions,
  ) {}

  receive(chunk: Buffer): void {
    for (const input of this.reader.feed(chunk)) {
      if (this.ended) return;
      switch (input.kind) {
        case 'ack':
          break;
        case 'nak':
          if (!this.noAck && this.lastSent) this.options.write(this.lastSent);
          break;
        case 'interrupt':
          this.server.interrupt();
          break;
        case 'bad':
          this.options.log(`bad packet from the client: ${input.why}`);
          if (!this.noAck && input.why.startsWith('bad checksum')) {
            this.options.write(Buffer.from('-'));
          } else {
            const reply = `E.${input.why.replace(/[$#}*]/g, ' ')}`;
            this.inTurn(async () => {
              if (!this.noAck) this.options.write(Buffer.from('+'));
              this.send(reply);
            });
          }
          break;
        case 'packet': {
          const payload = input.payload;
          this.inTurn(() => this.packet(payload));
          break;
        }
      }
    }
  }

  private inTurn(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((err: unknown) => this.options.log(`answering the debugger: ${err instanceof Error ? err.message : String(err)}`));
  }

  private async packet(payload: Buffer): Promise<void> {
    if (this.ended) return;
    // Acknowledged in turn: a packet after QStartNoAckMode is not, even if it came early.
    if (!this.noAck) this.options.write(Buffer.from('+'));
    if (this.options.trace) this.options.log(`<- ${payload.toString('latin1').slice(0, 200)}`);
    const progress = this.server.progress && RUNS.test(payload.toString('latin1')) ? this.showProgress(this.server.progress.bind(this.server)) : undefined;
    let response: Response;
    try {
      response = await this.server.handle(payload);
    } finally {
      clearInterval(progress);
    }
    if (this.ended) return;
    for (const p of response.packets) this.send(p);
    if (payload.toString('latin1') === 'QStartNoAckMode' && response.packets[0] === 'OK') this.noAck = true;
    if (response.end) {
      this.ended = true;
      this.options.onEnd();
    }
  }

  /**
   * Console output (O packets, which gdb shows while it waits for a stop) every second of a long
   * resume: going back far or running a long stretch, the user sees that it moves.
   */
  private showProgress(where: () => string): NodeJS.Timeout {
    const started = Date.now();
    return setInterval(() => {
      if (this.ended) return;
      const seconds = Math.round((Date.now() - started) / 1000);
      this.send(`O${Buffer.from(`rewind: replaying, at ${where()} (${seconds} s; Ctrl-C stops)\n`).toString('hex')}`);
    }, PROGRESS_MS);
  }

  private send(payload: string | Buffer): void {
    if (this.options.trace) this.options.log(`-> ${payload.toString().slice(0, 200)}`);
    this.lastSent = frame(payload);
    this.options.write(this.lastSent);
  }
}
