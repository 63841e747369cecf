// The framing of gdb's remote serial protocol: `$payload#cc` packets with a modulo-256 checksum,
// `+`/`-` acknowledgements, the 0x03 interrupt byte, and the `}` escaping of binary data.
// We never send run-length encoding, but escape `*` so gdb never mistakes data for it.

/** The largest packet payload we accept and advertise (qSupported PacketSize). */
export const MAX_PACKET = 0x4000;

export function checksum(data: Uint8Array): number {
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xff;
  return sum;
}

/** `$payload#cc` for a payload that is already escaped where it needs to be. */
export function frame(payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  const out = Buffer.alloc(body.length + 4);
  out[0] = 0x24; // $
  body.copy(out, 1);
  out[body.length + 1] = 0x23; // #
  out.write(checksum(body).toString(16).padStart(2, '0'), body.length + 2, 'latin1');
  return out;
}

const NEEDS_ESCAPE = new Set([0x23, 0x24, 0x7d, 0x2a]); // # $ } *

/** Escapes binary data for a reply (qXfer, vFile:pread, binary memory). */
export function escapeBinary(data: Uint8Array): Buffer {
  let extra = 0;
  for (const b of data) if (NEEDS_ESCAPE.has(b)) extra++;
  const out = Buffer.alloc(data.length + extra);
  let o = 0;
  for (const b of data) {
    if (NEEDS_ESCAPE.has(b)) {
      out[o++] = 0x7d;
      out[o++] = b ^ 0x20;
    } else {
      out[o++] = b;
    }
  }
  return out;
}

/**
 * Escapes as much of `data` as fits in `room` bytes once escaped; `consumed` says how much of
 * `data` that is (replies must stay within the PacketSize we advertised).
 */
export function escapeBinaryPrefix(data: Uint8Array, room: number): { bytes: Buffer; consumed: number } {
  let size = 0;
  let consumed = 0;
  for (const b of data) {
    const need = NEEDS_ESCAPE.has(b) ? 2 : 1;
    if (size + need > room) break;
    size += need;
    consumed++;
  }
  return { bytes: escapeBinary(data.subarray(0, consumed)), consumed };
}

/** Undoes `}` escaping; null when the data ends in the middle of an escape. */
export function unescapeBinary(data: Uint8Array): Buffer | null {
  const out = Buffer.alloc(data.length);
  let o = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === 0x7d) {
      if (i + 1 >= data.length) return null;
      out[o++] = data[++i]! ^ 0x20;
    } else {
      out[o++] = b;
    }
  }
  return out.subarray(0, o);
}

export function toHex(data: Uint8Array | string): string {
  return Buffer.from(typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('hex');
}

/** Decodes an even-length hex string; null for anything else. */
export function fromHex(text: string): Buffer | null {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  return Buffer.from(text, 'hex');
}

/** A non-negative hex number as the protocol writes them (addresses, lengths); null if malformed. */
export function parseHex(text: string): bigint | null {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) return null;
  return BigInt(`0x${text}`);
}

/** parseHex for values that must fit a JavaScript number (lengths, offsets, fds). */
export function parseHexNumber(text: string): number | null {
  const v = parseHex(text);
  if (v === null || v > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return Number(v);
}

export type Incoming =
  | { kind: 'packet'; payload: Buffer }
  /** A packet that arrived damaged: a bad checksum, or longer than MAX_PACKET. */
  | { kind: 'bad'; why: string }
  | { kind: 'ack' }
  | { kind: 'nak' }
  | { kind: 'interrupt' };

/**
 * Splits the byte stream from the client into packets and control bytes. Bytes outside a packet
 * that mean nothing are dropped; a `$` inside a packet (where it cannot appear) means the packet
 * before it was cut short, which is dropped too.
 */
export class PacketReader {
  private state: 'idle' | 'body' | 'sum1' | 'sum2' = 'idle';
  private body: number[] = [];
  private overflow = false;
  private sumText = '';
  /** Packets cut short so far (for logs). */
  truncated = 0;

  feed(chunk: Uint8Array): Incoming[] {
    const out: Incoming[] = [];
    for (const b of chunk) {
      switch (this.state) {
        case 'idle':
          if (b === 0x24) this.start();
          else if (b === 0x2b) out.push({ kind: 'ack' });
          else if (b === 0x2d) out.push({ kind: 'nak' });
          else if (b === 0x03) out.push({ kind: 'interrupt' });
          break;
        case 'body':
          if (b === 0x23) {
            this.state = 'sum1';
            this.sumText = '';
          } else if (b === 0x24) {
            this.truncated++;
            this.start();
          } else if (this.body.length >= MAX_PACKET) {
            this.overflow = true;
          } else {
            this.body.push(b);
          }
          break;
        case 'sum1':
        case 'sum2': {
          this.sumText += String.fromCharCode(b);
          if (this.state === 'sum1') {
            this.state = 'sum2';
            break;
          }
          this.state = 'idle';
          const payload = Buffer.from(this.body);
          this.body = [];
          if (this.overflow) {
            out.push({ kind: 'bad', why: `packet longer than ${MAX_PACKET} bytes` });
          } else if (!/^[0-9a-fA-F]{2}$/.test(this.sumText) || parseInt(this.sumText, 16) !== checksum(payload)) {
            out.push({ kind: 'bad', why: `bad checksum ${JSON.stringify(this.sumText)}` });
          } else {
            out.push({ kind: 'packet', payload });
          }
          break;
        }
      }
    }
    return out;
  }

  private start(): void {
    this.state = 'body';
    this.body = [];
    this.overflow = false;
  }
}
