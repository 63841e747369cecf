// One client's byte stream: packets in, acknowledgements (until QStartNoAckMode), framed
// replies out. Damaged input gets an error or a retransmit request, never the session's end.
import type { GdbServer } from './gdb_server.js';
import { frame, PacketReader } from './packet.js';

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

  constructor(
    private readonly server: GdbServer,
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
          // Execution is synchronous: by the time this byte is read, the resume it was meant to
          // interrupt has already stopped and been reported.
          break;
        case 'bad':
          this.options.log(`bad packet from the client: ${input.why}`);
          if (!this.noAck && input.why.startsWith('bad checksum')) {
            this.options.write(Buffer.from('-'));
          } else {
            if (!this.noAck) this.options.write(Buffer.from('+'));
            this.send(`E.${input.why.replace(/[$#}*]/g, ' ')}`);
          }
          break;
        case 'packet':
          this.packet(input.payload);
          break;
      }
    }
  }

  private packet(payload: Buffer): void {
    if (!this.noAck) this.options.write(Buffer.from('+'));
    if (this.options.trace) this.options.log(`<- ${payload.toString('latin1').slice(0, 200)}`);
    const response = this.server.handle(payload);
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
