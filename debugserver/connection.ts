// One client's byte stream: packets in, acknowledgements (until QStartNoAckMode), framed
// replies out. Damaged input gets an error or a retransmit request, never the session's end.
import type { Response } from './gdb_server.js';
import { frame, PacketReader } from './packet.js';

/** What answers the packets: a session on a thread of its own, so that Ctrl-C can reach it. */
export interface PacketHandler {
  handle(payload: Buffer): Promise<Response>;
  /** gdb's Ctrl-C (0x03) while a resume runs. */
  interrupt(): void;
}

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
    const response = await this.server.handle(payload);
    if (this.ended) return;
    for (const p of response.packets) this.send(p);
    if (payload.toString('latin1') === 'QStartNoAckMode' && response.packets[0] === 'OK') this.noAck = true;
    if (response.end) {
      this.ended = true;
      this.options.onEnd();
    }
  }

  private send(payload: string | Buffer): void {
    if (this.options.trace) this.options.log(`-> ${payload.toString().slice(0, 200)}`);
    this.lastSent = frame(payload);
    this.options.write(this.lastSent);
  }
}
