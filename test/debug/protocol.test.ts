// The protocol layer without a session: framing, escaping, the packet reader's handling of
// damaged input, watchpoint splitting, and target.xml as gdb itself reads it.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { watchPieces } from '../../debugserver/gdb_server.js';
import { checksum, escapeBinary, escapeBinaryPrefix, frame, MAX_PACKET, PacketReader, unescapeBinary } from '../../debugserver/packet.js';
import { allRegisterBytes, registerBytes, REGISTERS, TARGET_XML } from '../../debugserver/target_description.js';
import { cleanupTemps, tempDir } from '../engine/harness.js';

afterAll(cleanupTemps);

describe('framing', () => {
  it('frames with the modulo-256 checksum gdb computes', () => {
    // Known from gdb sessions: $OK#9a, $qSupported#37.
    expect(frame('OK').toString()).toBe('$OK#9a');
    expect(frame('qSupported').toString()).toBe('$qSupported#37');
    expect(checksum(Buffer.from(''))).toBe(0);
  });

  it('escapes # $ } * and round-trips every byte value', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const escaped = escapeBinary(all);
    expect(escaped.length).toBe(256 + 4);
    for (const b of [0x23, 0x24, 0x2a]) expect(escaped.includes(b)).toBe(false);
    expect(unescapeBinary(escaped)).toEqual(all);
    expect(escapeBinary(Buffer.from('a}b'))).toEqual(Buffer.from([0x61, 0x7d, 0x5d, 0x62]));
    expect(unescapeBinary(Buffer.from('ab}'))).toBeNull();
  });

  it('escapes only what fits in a reply, never splitting an escape', () => {
    const data = Buffer.from('ab#cd');
    expect(escapeBinaryPrefix(data, 3)).toEqual({ bytes: Buffer.from('ab'), consumed: 2 });
    expect(escapeBinaryPrefix(data, 4)).toEqual({ bytes: Buffer.from([0x61, 0x62, 0x7d, 0x03]), consumed: 3 });
    expect(escapeBinaryPrefix(data, 100).consumed).toBe(5);
  });
});

describe('PacketReader', () => {
  it('splits packets and control bytes, across chunk boundaries', () => {
    const r = new PacketReader();
    const wire = Buffer.concat([Buffer.from('+'), frame('qC'), Buffer.from([0x03]), frame('m1000,4'), Buffer.from('-')]);
    const out = [...r.feed(wire.subarray(0, 5)), ...r.feed(wire.subarray(5, 9)), ...r.feed(wire.subarray(9))];
    expect(out.map((i) => (i.kind === 'packet' ? i.payload.toString() : i.kind))).toEqual(['ack', 'qC', 'interrupt', 'm1000,4', 'nak']);
  });

  it('drops garbage between packets', () => {
    const r = new PacketReader();
    const out = r.feed(Buffer.concat([Buffer.from('hello world\x00\xff#12'), frame('?')]));
    expect(out).toEqual([{ kind: 'packet', payload: Buffer.from('?') }]);
  });

  it('reports a bad checksum, and a malformed one', () => {
    const r = new PacketReader();
    expect(r.feed(Buffer.from('$qC#00'))).toEqual([{ kind: 'bad', why: 'bad checksum "00"' }]);
    expect(r.feed(Buffer.from('$qC#zz'))[0]?.kind).toBe('bad');
    expect(r.feed(frame('qC'))).toEqual([{ kind: 'packet', payload: Buffer.from('qC') }]);
  });

  it('drops a packet cut short by the start of the next', () => {
    const r = new PacketReader();
    const out = r.feed(Buffer.concat([Buffer.from('$m4000'), frame('qC')]));
    expect(out).toEqual([{ kind: 'packet', payload: Buffer.from('qC') }]);
    expect(r.truncated).toBe(1);
  });

  it('refuses an over-long packet without buffering it, then reads the next', () => {
    const r = new PacketReader();
    const long = Buffer.concat([Buffer.from('$'), Buffer.alloc(MAX_PACKET * 4, 0x61), Buffer.from('#00')]);
    const out = r.feed(Buffer.concat([long, frame('g')]));
    expect(out.map((i) => i.kind)).toEqual(['bad', 'packet']);
  });
});

describe('watchpoint pieces', () => {
  it('covers any range with aligned 1/2/4/8-byte pieces', () => {
    expect(watchPieces(0x1000n, 8)).toEqual([{ address: 0x1000n, length: 8 }]);
    expect(watchPieces(0x1004n, 4)).toEqual([{ address: 0x1004n, length: 4 }]);
    expect(watchPieces(0x1003n, 6)).toEqual([
      { address: 0x1003n, length: 1 },
      { address: 0x1004n, length: 4 },
      { address: 0x1008n, length: 1 },
    ]);
    expect(watchPieces(0x1000n, 16)).toEqual([
      { address: 0x1000n, length: 8 },
      { address: 0x1008n, length: 8 },
    ]);
  });
});

describe('registers', () => {
  it('gdb reads target.xml with our numbering and g-packet offsets', () => {
    const file = join(tempDir('rewind-tdesc-'), 'target.xml');
    writeFileSync(file, TARGET_XML);
    const r = spawnSync('gdb', ['-batch', '-nx', '-ex', `set tdesc filename ${file}`, '-ex', 'maint print remote-registers'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/warning|error/i);
    const remote = new Map<string, { nr: number; offset: number }>();
    for (const line of r.stdout.split('\n')) {
      const m = /^ (\S+)\s+\d+\s+\d+\s+\d+\s+\d+\s+.*?\s(\d+)\s+(\d+)\s*$/.exec(line);
      if (m) remote.set(m[1]!, { nr: Number(m[2]), offset: Number(m[3]) });
    }
    let offset = 0;
    REGISTERS.forEach((reg, nr) => {
      expect(remote.get(reg.name), `${reg.name} in gdb's view:\n${r.stdout}`).toEqual({ nr, offset });
      offset += reg.bits / 8;
    });
    expect(remote.size).toBe(REGISTERS.length);
  });

  it('maps user_regs_struct and FXSAVE fields to gdb registers', () => {
    const general = Buffer.alloc(216);
    general.writeBigUInt64LE(0x1111n, 10 * 8); // rax
    general.writeBigUInt64LE(0x401000n, 16 * 8); // rip
    general.writeBigUInt64LE(0x246n, 18 * 8); // eflags
    general.writeBigUInt64LE(0x7f0000001000n, 21 * 8); // fs_base
    general.writeBigInt64LE(-1n, 15 * 8); // orig_rax
    const fp = Buffer.alloc(512);
    fp.writeUInt16LE(0x37f, 0); // fcw
    fp.writeUInt16LE(7 << 11, 2); // fsw: top = 7
    fp.writeUInt8(0x80, 4); // physical register 7 (st0) in use
    fp.writeBigUInt64LE(0x8000000000000000n, 32); // st0 = 1.0
    fp.writeUInt16LE(0x3fff, 40);
    fp.writeUInt32LE(0x1f80, 24); // mxcsr
    fp.fill(0xab, 160, 176); // xmm0
    const regs = { general, fp };
    const byName = (n: string): Buffer => registerBytes(REGISTERS.findIndex((r) => r.name === n), regs)!;
    expect(byName('rax').readBigUInt64LE()).toBe(0x1111n);
    expect(byName('rip').readBigUInt64LE()).toBe(0x401000n);
    expect(byName('eflags').readUInt32LE()).toBe(0x246);
    expect(byName('fs_base').readBigUInt64LE()).toBe(0x7f0000001000n);
    expect(byName('orig_rax').readBigInt64LE()).toBe(-1n);
    expect(byName('fctrl').readUInt32LE()).toBe(0x37f);
    expect(byName('mxcsr').readUInt32LE()).toBe(0x1f80);
    expect(byName('xmm0')).toEqual(Buffer.alloc(16, 0xab));
    expect(byName('st0').readUInt16LE(8)).toBe(0x3fff);
    // Only physical register 7 is valid (tag 00); all others empty (11).
    expect(byName('ftag').readUInt32LE()).toBe(0x3fff);
    expect(allRegisterBytes(regs)!.length).toBe(REGISTERS.reduce((n, r) => n + r.bits / 8, 0));
    expect(allRegisterBytes({ general: Buffer.alloc(8), fp })).toBeNull();
  });
});
