// The amd64 GNU/Linux register set as gdb numbers it (gdb's features/i386/64bit-{core,sse,
// linux,segments}.xml), and how each register is read out of the kernel's user_regs_struct and
// the FXSAVE-layout user_fpregs_struct that the engine returns.

type Source =
  /** A word of user_regs_struct, at this byte offset, truncated to the register's size. */
  | { from: 'general'; offset: number }
  /** Bytes of user_fpregs_struct at this offset, zero-extended to the register's size. */
  | { from: 'fp'; offset: number; bytes: number }
  /** The full x87 tag word, rebuilt from FXSAVE's abridged one. */
  | { from: 'ftag' };

interface Register {
  name: string;
  bits: number;
  type: string;
  group?: string;
  feature: 'core' | 'sse' | 'linux' | 'segments';
  source: Source;
}

// Offsets in user_regs_struct (<sys/user.h>), 8 bytes a field.
const GENERAL: Record<string, number> = {
  r15: 0, r14: 1, r13: 2, r12: 3, rbp: 4, rbx: 5, r11: 6, r10: 7, r9: 8, r8: 9, rax: 10, rcx: 11, rdx: 12,
  rsi: 13, rdi: 14, orig_rax: 15, rip: 16, cs: 17, eflags: 18, rsp: 19, ss: 20, fs_base: 21, gs_base: 22,
  ds: 23, es: 24, fs: 25, gs: 26,
};

function general(name: string, bits: number, type: string, feature: Register['feature'] = 'core'): Register {
  return { name, bits, type, feature, source: { from: 'general', offset: GENERAL[name]! * 8 } };
}

function buildRegisters(): Register[] {
  const regs: Register[] = [];
  for (const n of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi']) regs.push(general(n, 64, 'int64'));
  regs.push(general('rbp', 64, 'data_ptr'), general('rsp', 64, 'data_ptr'));
  for (let i = 8; i < 16; i++) regs.push(general(`r${i}`, 64, 'int64'));
  regs.push(general('rip', 64, 'code_ptr'), general('eflags', 32, 'i386_eflags'));
  for (const n of ['cs', 'ss', 'ds', 'es', 'fs', 'gs']) regs.push(general(n, 32, 'int32'));
  for (let i = 0; i < 8; i++) {
    regs.push({ name: `st${i}`, bits: 80, type: 'i387_ext', feature: 'core', source: { from: 'fp', offset: 32 + 16 * i, bytes: 10 } });
  }
  // FXSAVE (64-bit format): fcw@0 fsw@2 abridged ftw@4 fop@6 fip@8 (fcs in its bits 32-47)
  // fdp@16 (fds in bits 32-47) mxcsr@24; gdb splits fip/fdp into offset and segment.
  const fp = (name: string, offset: number, bytes: number): Register => ({
    name, bits: 32, type: 'int', group: 'float', feature: 'core', source: { from: 'fp', offset, bytes },
  });
  regs.push(fp('fctrl', 0, 2), fp('fstat', 2, 2));
  regs.push({ name: 'ftag', bits: 32, type: 'int', group: 'float', feature: 'core', source: { from: 'ftag' } });
  regs.push(fp('fiseg', 12, 2), fp('fioff', 8, 4), fp('foseg', 20, 2), fp('fooff', 16, 4), fp('fop', 6, 2));
  for (let i = 0; i < 16; i++) {
    regs.push({ name: `xmm${i}`, bits: 128, type: 'vec128', feature: 'sse', source: { from: 'fp', offset: 160 + 16 * i, bytes: 16 } });
  }
  regs.push({ name: 'mxcsr', bits: 32, type: 'i386_mxcsr', group: 'vector', feature: 'sse', source: { from: 'fp', offset: 24, bytes: 4 } });
  regs.push(general('orig_rax', 64, 'int', 'linux'));
  regs.push(general('fs_base', 64, 'int', 'segments'), general('gs_base', 64, 'int', 'segments'));
  return regs;
}

/** gdb's register numbers are indexes into this list. */
export const REGISTERS: readonly Register[] = buildRegisters();

export const GENERAL_REGS_SIZE = 216;
export const FP_REGS_SIZE = 512;

/** The x87 tag (0 valid, 1 zero, 2 special, 3 empty) of an 80-bit value, as gdbserver computes it. */
function x87Tag(value: Buffer): number {
  const exponent = value.readUInt16LE(8) & 0x7fff;
  const mantissa = value.readBigUInt64LE(0);
  const integerBit = (mantissa >> 63n) & 1n;
  if (exponent === 0x7fff) return 2;
  if (exponent === 0) return mantissa === 0n ? 1 : 2;
  return integerBit === 1n ? 0 : 2;
}

/** FXSAVE keeps one "not empty" bit a physical register; gdb wants the two-bit tag word. */
function fullTagWord(fp: Buffer): number {
  const abridged = fp.readUInt8(4);
  const top = (fp.readUInt16LE(2) >> 11) & 7;
  let word = 0;
  for (let physical = 0; physical < 8; physical++) {
    let tag = 3;
    if (abridged & (1 << physical)) {
      const st = (physical - top + 8) % 8; // st(i) lives in physical register (top + i) % 8
      tag = x87Tag(fp.subarray(32 + 16 * st, 42 + 16 * st));
    }
    word |= tag << (2 * physical);
  }
  return word;
}

/** One register's bytes (little-endian, its full size) from the engine's register buffers. */
export function registerBytes(regnum: number, regs: { general: Buffer; fp: Buffer }): Buffer | null {
  const reg = REGISTERS[regnum];
  if (!reg) return null;
  const size = reg.bits / 8;
  const out = Buffer.alloc(size);
  const src = reg.source;
  if (src.from === 'general') {
    if (regs.general.length < src.offset + 8) return null;
    regs.general.copy(out, 0, src.offset, src.offset + size);
  } else if (src.from === 'fp') {
    if (regs.fp.length < src.offset + src.bytes) return null;
    regs.fp.copy(out, 0, src.offset, src.offset + Math.min(src.bytes, size));
  } else {
    if (regs.fp.length < FP_REGS_SIZE) return null;
    out.writeUInt32LE(fullTagWord(regs.fp));
  }
  return out;
}

/** All registers in number order, as the `g` packet sends them. */
export function allRegisterBytes(regs: { general: Buffer; fp: Buffer }): Buffer | null {
  const parts: Buffer[] = [];
  for (let i = 0; i < REGISTERS.length; i++) {
    const b = registerBytes(i, regs);
    if (!b) return null;
    parts.push(b);
  }
  return Buffer.concat(parts);
}

const EFLAGS_FIELDS: [string, number][] = [
  ['CF', 0], ['', 1], ['PF', 2], ['AF', 4], ['ZF', 6], ['SF', 7], ['TF', 8], ['IF', 9], ['DF', 10], ['OF', 11],
  ['NT', 14], ['RF', 16], ['VM', 17], ['AC', 18], ['VIF', 19], ['VIP', 20], ['ID', 21],
];
const MXCSR_FIELDS: [string, number][] = [
  ['IE', 0], ['DE', 1], ['ZE', 2], ['OE', 3], ['UE', 4], ['PE', 5], ['DAZ', 6], ['IM', 7], ['DM', 8], ['ZM', 9],
  ['OM', 10], ['UM', 11], ['PM', 12], ['FZ', 15],
];

function flags(id: string, fields: [string, number][]): string {
  const f = fields.map(([n, bit]) => `    <field name="${n}" start="${bit}" end="${bit}"/>`).join('\n');
  return `  <flags id="${id}" size="4">\n${f}\n  </flags>`;
}

const SSE_TYPES = `  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>
${flags('i386_mxcsr', MXCSR_FIELDS)}`;

function featureXml(feature: Register['feature'], gdbName: string, types: string): string {
  const regs = REGISTERS.map((r, regnum) => ({ r, regnum }))
    .filter(({ r }) => r.feature === feature)
    .map(({ r, regnum }) => `  <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${regnum}"${r.group ? ` group="${r.group}"` : ''}/>`)
    .join('\n');
  return `<feature name="${gdbName}">\n${types ? `${types}\n` : ''}${regs}\n</feature>`;
}

/** target.xml, whole: explicit register numbers, so gdb's numbering is ours. */
export const TARGET_XML = `<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<osabi>GNU/Linux</osabi>
${featureXml('core', 'org.gnu.gdb.i386.core', flags('i386_eflags', EFLAGS_FIELDS))}
${featureXml('sse', 'org.gnu.gdb.i386.sse', SSE_TYPES)}
${featureXml('linux', 'org.gnu.gdb.i386.linux', '')}
${featureXml('segments', 'org.gnu.gdb.i386.segments', '')}
</target>
`;

/** The register gdb calls the program counter, for stop replies. */
export const PC_REGNUM = REGISTERS.findIndex((r) => r.name === 'rip');
