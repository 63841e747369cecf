// Just enough DWARF (versions 2 to 5) to answer a query: each function's formal parameters
// (name and type) by its start address, and the source line of an instruction. The sections
// come out of a trace, so they are untrusted: reading past the end of one is an error, never a
// crash, and sizes are bounded.
import type { Elf } from './elf.js';

export class DwarfError extends Error {}

/** What a parameter's value can be shown as; 'other': a type whose value the query does not read. */
export interface ParamType {
  name: string;
  kind: 'signed' | 'unsigned' | 'float' | 'bool' | 'char' | 'pointer' | 'other';
  size: number;
}

export interface FunctionInfo {
  name: string;
  params: { name: string; type: ParamType }[];
}

export interface SourceLine {
  file: string;
  line: number;
}

class Reader {
  constructor(
    readonly buf: Buffer,
    public at = 0,
  ) {}
  need(n: number): void {
    if (n < 0 || this.at + n > this.buf.length) throw new DwarfError('debug information ends early');
  }
  u8(): number {
    this.need(1);
    return this.buf[this.at++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.at);
    this.at += 8;
    return v;
  }
  uN(n: number): bigint {
    if (n === 1) return BigInt(this.u8());
    if (n === 2) return BigInt(this.u16());
    if (n === 3) return BigInt(this.u16() | (this.u8() << 16));
    if (n === 4) return BigInt(this.u32());
    if (n === 8) return this.u64();
    throw new DwarfError(`a ${n}-byte value`);
  }
  uleb(): bigint {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.u8();
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
      if (shift > 70n) throw new DwarfError('a LEB128 number too long');
    }
  }
  sleb(): bigint {
    let v = 0n;
    let shift = 0n;
    let b: number;
    do {
      b = this.u8();
      v |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (shift > 70n) throw new DwarfError('a LEB128 number too long');
    } while (b & 0x80);
    return b & 0x40 ? v - (1n << shift) : v;
  }
  num(v: bigint): number {
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new DwarfError('a number too large');
    return Number(v);
  }
  ulebN(): number {
    return this.num(this.uleb());
  }
  cstr(): string {
    const end = this.buf.indexOf(0, this.at);
    if (end < 0) throw new DwarfError('a string without its end');
    const s = this.buf.toString('utf8', this.at, end);
    this.at = end + 1;
    return s;
  }
  /** Skips n bytes (a block the query has no use for). */
  skip(n: number): undefined {
    this.need(n);
    this.at += n;
    return undefined;
  }
}

function cstrAt(buf: Buffer | undefined, at: number): string {
  if (!buf || at >= buf.length) throw new DwarfError('a string offset beyond its section');
  const end = buf.indexOf(0, at);
  return buf.toString('utf8', at, end < 0 ? buf.length : end);
}

// Tags, attributes and forms used here (DWARF 5, section 7).
const TAG = { formalParameter: 0x05, compileUnit: 0x11, subprogram: 0x2e, baseType: 0x24, pointer: 0x0f, reference: 0x10, rvalueReference: 0x42, enumeration: 0x04 } as const;
const TRANSPARENT = new Set([0x16 /* typedef */, 0x26 /* const */, 0x35 /* volatile */, 0x37 /* restrict */, 0x47 /* atomic */]);
const QUALIFIERS = new Map([
  [0x26, 'const'],
  [0x35, 'volatile'],
]);
const AT = { name: 0x03, lowPc: 0x11, type: 0x49, encoding: 0x3e, byteSize: 0x0b, strOffsetsBase: 0x72, addrBase: 0x73, specification: 0x47, abstractOrigin: 0x31 } as const;
const MAX_DIES = 20_000_000;

type Value = bigint | string | { ref: number };

interface Abbrev {
  tag: number;
  children: boolean;
  attrs: { at: number; form: number; implicit?: bigint }[];
}

interface Die {
  tag: number;
  attrs: Map<number, Value>;
  children: number[];
}

interface Unit {
  version: number;
  addrSize: number;
  strOffsetsBase: number;
  addrBase: number;
  /** strx and addrx values, resolved once the unit's bases are known. */
  pending: { die: Die; at: number; form: 'strx' | 'addrx'; index: number }[];
}

/** The debugging information of one executable. */
export class Dwarf {
  private readonly dies = new Map<number, Die>();
  private functions: Map<bigint, FunctionInfo> | undefined;
  private lines: { addr: bigint; file: string; line: number; end: boolean }[] | undefined;

  constructor(private readonly elf: Elf) {
    const info = elf.section('.debug_info');
    const abbrevs = elf.section('.debug_abbrev');
    if (!info || !abbrevs) return;
    const str = elf.section('.debug_str');
    const lineStr = elf.section('.debug_line_str');
    const strOffsets = elf.section('.debug_str_offsets');
    const addr = elf.section('.debug_addr');
    const r = new Reader(info);
    while (r.at < info.length) {
      const start = r.at;
      const length = r.u32();
      if (length >= 0xfffffff0) throw new DwarfError('64-bit DWARF is not read here');
      const end = r.at + length;
      r.need(length);
      const version = r.u16();
      let addrSize: number;
      let abbrevOffset: number;
      if (version >= 5) {
        const unitType = r.u8();
        addrSize = r.u8();
        abbrevOffset = r.u32();
        if (unitType !== 1 && unitType !== 3) {
          r.at = end; // type and skeleton units: nothing a query needs
          continue;
        }
      } else if (version >= 2) {
        abbrevOffset = r.u32();
        addrSize = r.u8();
      } else {
        throw new DwarfError(`DWARF version ${version}`);
      }
      if (addrSize !== 8 && addrSize !== 4) throw new DwarfError(`${addrSize}-byte addresses`);
      const table = readAbbrevs(abbrevs, abbrevOffset);
      const unit: Unit = { version, addrSize, strOffsetsBase: 8, addrBase: 8, pending: [] };
      const stack: Die[] = [];
      while (r.at < end) {
        const offset = r.at;
        const code = r.ulebN();
        if (code === 0) {
          stack.pop();
          continue;
        }
        const abbrev = table.get(code);
        if (!abbrev) throw new DwarfError(`unit at ${start}: no abbreviation ${code}`);
        const die: Die = { tag: abbrev.tag, attrs: new Map(), children: [] };
        for (const a of abbrev.attrs) {
          const v = readForm(r, a.form, a.implicit, unit, start, str, lineStr, die, a.at);
          if (v !== undefined) die.attrs.set(a.at, v);
        }
        if (die.tag === TAG.compileUnit) {
          const so = die.attrs.get(AT.strOffsetsBase);
          const ab = die.attrs.get(AT.addrBase);
          if (typeof so === 'bigint') unit.strOffsetsBase = r.num(so);
          if (typeof ab === 'bigint') unit.addrBase = r.num(ab);
        }
        if (this.dies.size >= MAX_DIES) throw new DwarfError('too many debugging entries');
        this.dies.set(offset, die);
        stack[stack.length - 1]?.children.push(offset);
        if (abbrev.children) stack.push(die);
      }
      for (const p of unit.pending) {
        if (p.form === 'strx') {
          const at = unit.strOffsetsBase + p.index * 4;
          if (!strOffsets || at + 4 > strOffsets.length) throw new DwarfError('a string index beyond its table');
          p.die.attrs.set(p.at, cstrAt(str, strOffsets.readUInt32LE(at)));
        } else {
          const at = unit.addrBase + p.index * unit.addrSize;
          if (!addr || at + unit.addrSize > addr.length) throw new DwarfError('an address index beyond its table');
          p.die.attrs.set(p.at, unit.addrSize === 8 ? addr.readBigUInt64LE(at) : BigInt(addr.readUInt32LE(at)));
        }
      }
      r.at = end;
    }
  }

  /** The function that begins at `address` (as the file says), with its parameters. */
  functionAt(address: bigint): FunctionInfo | undefined {
    if (!this.functions) {
      this.functions = new Map();
      for (const die of this.dies.values()) {
        if (die.tag !== TAG.subprogram) continue;
        const low = die.attrs.get(AT.lowPc);
        if (typeof low !== 'bigint') continue;
        const params = die.children
          .map((c) => this.dies.get(c))
          .filter((c): c is Die => c?.tag === TAG.formalParameter)
          .map((p) => ({ name: this.name(p) ?? '?', type: this.type(p.attrs.get(AT.type) ?? this.origin(p)?.attrs.get(AT.type), 0) }));
        this.functions.set(low, { name: this.name(die) ?? '?', params });
      }
    }
    return this.functions.get(address);
  }

  /** The source line of the instruction at `address` (as the file says). */
  lineAt(address: bigint): SourceLine | undefined {
    this.lines ??= readLines(this.elf);
    let lo = 0;
    let hi = this.lines.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.lines[mid]!.addr <= address) {
        best = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    const row = this.lines[best];
    if (!row || row.end) return undefined;
    return { file: row.file, line: row.line };
  }

  /** Where the line tables say instructions begin (as the file says). */
  lineAddresses(): bigint[] {
    this.lines ??= readLines(this.elf);
    return this.lines.filter((r) => !r.end).map((r) => r.addr);
  }

  private origin(die: Die): Die | undefined {
    const o = die.attrs.get(AT.abstractOrigin) ?? die.attrs.get(AT.specification);
    return typeof o === 'object' ? this.dies.get(o.ref) : undefined;
  }

  private name(die: Die): string | undefined {
    const n = die.attrs.get(AT.name);
    if (typeof n === 'string') return n;
    const o = this.origin(die);
    return o && o !== die ? this.name(o) : undefined;
  }

  private type(ref: Value | undefined, depth: number): ParamType {
    const die = typeof ref === 'object' ? this.dies.get(ref.ref) : undefined;
    if (!die || depth > 16) return { name: ref === undefined ? 'void' : '?', kind: 'other', size: 0 };
    const size = die.attrs.get(AT.byteSize);
    const bytes = typeof size === 'bigint' && size <= 16n ? Number(size) : 0;
    const name = this.name(die);
    if (TRANSPARENT.has(die.tag)) {
      const inner = this.type(die.attrs.get(AT.type), depth + 1);
      const qualifier = QUALIFIERS.get(die.tag);
      return { ...inner, name: name ?? (qualifier ? `${qualifier} ${inner.name}` : inner.name) };
    }
    if (die.tag === TAG.pointer || die.tag === TAG.reference || die.tag === TAG.rvalueReference) {
      const to = this.type(die.attrs.get(AT.type), depth + 1);
      return { name: name ?? `${to.name} ${die.tag === TAG.pointer ? '*' : '&'}`, kind: 'pointer', size: 8 };
    }
    if (die.tag === TAG.enumeration) return { name: `enum ${name ?? ''}`.trim(), kind: bytes ? 'signed' : 'other', size: bytes };
    if (die.tag === TAG.baseType) {
      const enc = Number(die.attrs.get(AT.encoding) ?? 0n);
      // DW_ATE_boolean 2, float 4, signed 5, signed_char 6, unsigned 7, unsigned_char 8, UTF 0x10.
      const kind = enc === 2 ? 'bool' : enc === 4 ? 'float' : enc === 5 ? 'signed' : enc === 6 || enc === 8 || enc === 0x10 ? 'char' : enc === 7 ? 'unsigned' : 'other';
      return { name: name ?? '?', kind, size: bytes };
    }
    return { name: name ?? '?', kind: 'other', size: bytes };
  }
}

function readAbbrevs(buf: Buffer, offset: number): Map<number, Abbrev> {
  const r = new Reader(buf, offset);
  const out = new Map<number, Abbrev>();
  for (;;) {
    const code = r.ulebN();
    if (code === 0) return out;
    const tag = r.ulebN();
    const children = r.u8() === 1;
    const attrs: Abbrev['attrs'] = [];
    for (;;) {
      const at = r.ulebN();
      const form = r.ulebN();
      if (at === 0 && form === 0) break;
      attrs.push(form === 0x21 ? { at, form, implicit: r.sleb() } : { at, form });
    }
    out.set(code, { tag, children, attrs });
  }
}

/** Reads one attribute value; strx and addrx forms are noted in the unit, to be resolved after. */
function readForm(r: Reader, form: number, implicit: bigint | undefined, unit: Unit, unitStart: number, str: Buffer | undefined, lineStr: Buffer | undefined, die: Die, at: number): Value | undefined {
  const later = (kind: 'strx' | 'addrx', index: number): undefined => {
    unit.pending.push({ die, at, form: kind, index });
    return undefined;
  };
  switch (form) {
    case 0x01: // addr
      return r.uN(unit.addrSize);
    case 0x03: // block2
      return r.skip(r.u16());
    case 0x04: // block4
      return r.skip(r.u32());
    case 0x05: // data2
      return BigInt(r.u16());
    case 0x06: // data4
      return BigInt(r.u32());
    case 0x07: // data8
      return r.u64();
    case 0x08: // string
      return r.cstr();
    case 0x09: // block
    case 0x18: // exprloc
      return r.skip(r.ulebN());
    case 0x0a: // block1
      return r.skip(r.u8());
    case 0x0b: // data1
    case 0x0c: // flag
      return BigInt(r.u8());
    case 0x0d: // sdata
      return r.sleb();
    case 0x0e: // strp
      return cstrAt(str, r.u32());
    case 0x1f: // line_strp
      return cstrAt(lineStr, r.u32());
    case 0x0f: // udata
      return r.uleb();
    case 0x10: // ref_addr
      return { ref: unit.version <= 2 ? Number(r.uN(unit.addrSize)) : r.u32() };
    case 0x11: // ref1
      return { ref: unitStart + r.u8() };
    case 0x12: // ref2
      return { ref: unitStart + r.u16() };
    case 0x13: // ref4
      return { ref: unitStart + r.u32() };
    case 0x14: // ref8
      return { ref: unitStart + r.num(r.u64()) };
    case 0x15: // ref_udata
      return { ref: unitStart + r.ulebN() };
    case 0x16: // indirect
      return readForm(r, r.ulebN(), implicit, unit, unitStart, str, lineStr, die, at);
    case 0x17: // sec_offset
    case 0x1c: // ref_sup4
    case 0x1d: // strp_sup
      return BigInt(r.u32());
    case 0x19: // flag_present
      return 1n;
    case 0x1a: // strx
      return later('strx', r.ulebN());
    case 0x1b: // addrx
      return later('addrx', r.ulebN());
    case 0x1e: // data16
      return r.skip(16);
    case 0x20: // ref_sig8
    case 0x24: // ref_sup8
      return r.skip(8);
    case 0x21: // implicit_const
      return implicit;
    case 0x22: // loclistx
    case 0x23: // rnglistx
      return r.uleb();
    case 0x25:
    case 0x26:
    case 0x27:
    case 0x28: // strx1-4
      return later('strx', Number(r.uN(form - 0x24)));
    case 0x29:
    case 0x2a:
    case 0x2b:
    case 0x2c: // addrx1-4
      return later('addrx', Number(r.uN(form - 0x28)));
    default:
      throw new DwarfError(`unknown attribute form 0x${form.toString(16)}`);
  }
}

/** Every row of the line tables, by address. */
function readLines(elf: Elf): { addr: bigint; file: string; line: number; end: boolean }[] {
  const buf = elf.section('.debug_line');
  if (!buf) return [];
  const str = elf.section('.debug_str');
  const lineStr = elf.section('.debug_line_str');
  const rows: { addr: bigint; file: string; line: number; end: boolean }[] = [];
  const r = new Reader(buf);
  while (r.at < buf.length) {
    const length = r.u32();
    if (length >= 0xfffffff0) throw new DwarfError('64-bit DWARF is not read here');
    r.need(length);
    const end = r.at + length;
    const version = r.u16();
    if (version < 2 || version > 5) throw new DwarfError(`line table version ${version}`);
    if (version >= 5) r.skip(2); // address size, segment selector size
    const headerLength = r.u32();
    const programStart = r.at + headerLength;
    const minInst = r.u8();
    if (version >= 4) r.u8(); // maximum operations per instruction (VLIW only)
    const defaultIsStmt = r.u8() !== 0;
    const lineBase = (r.u8() << 24) >> 24;
    const lineRange = r.u8();
    const opcodeBase = r.u8();
    if (lineRange === 0) throw new DwarfError('a line table with a line range of 0');
    const opLengths: number[] = [];
    for (let i = 1; i < opcodeBase; i++) opLengths.push(r.u8());
    const dirs: string[] = [];
    const files: string[] = [];
    if (version >= 5) {
      const entries = (): { path: string; dir: number }[] => {
        const formats: [number, number][] = [];
        const count = r.u8();
        for (let i = 0; i < count; i++) formats.push([r.ulebN(), r.ulebN()]);
        const out: { path: string; dir: number }[] = [];
        const n = r.ulebN();
        for (let i = 0; i < n; i++) {
          const e = { path: '', dir: 0 };
          for (const [type, form] of formats) {
            const v = form === 0x08 ? r.cstr() : form === 0x0e ? cstrAt(str, r.u32()) : form === 0x1f ? cstrAt(lineStr, r.u32()) : form === 0x0b ? BigInt(r.u8()) : form === 0x05 ? BigInt(r.u16()) : form === 0x0f ? r.uleb() : form === 0x1e ? r.skip(16) : form === 0x09 ? r.skip(r.ulebN()) : form === 0x06 ? BigInt(r.u32()) : form === 0x07 ? r.u64() : undefined;
            if (v === undefined && form !== 0x1e && form !== 0x09) throw new DwarfError(`line table form 0x${form.toString(16)}`);
            if (type === 1 && typeof v === 'string') e.path = v; // DW_LNCT_path
            if (type === 2 && typeof v === 'bigint') e.dir = Number(v); // DW_LNCT_directory_index
          }
          out.push(e);
        }
        return out;
      };
      for (const d of entries()) dirs.push(d.path);
      for (const f of entries()) files.push(f.path.startsWith('/') ? f.path : `${dirs[f.dir] ?? ''}/${f.path}`);
    } else {
      dirs.push('');
      for (let d = r.cstr(); d; d = r.cstr()) dirs.push(d);
      files.push('');
      for (let f = r.cstr(); f; f = r.cstr()) {
        const dir = r.ulebN();
        r.uleb();
        r.uleb();
        files.push(f.startsWith('/') || !dirs[dir] ? f : `${dirs[dir]}/${f}`);
      }
    }
    r.at = programStart;
    let addr = 0n;
    let file = 1;
    let line = 1;
    const reset = (): void => {
      addr = 0n;
      file = 1;
      line = 1;
    };
    const emit = (endSeq: boolean): void => {
      rows.push({ addr, file: files[file] ?? '?', line, end: endSeq });
    };
    void defaultIsStmt;
    while (r.at < end) {
      const op = r.u8();
      if (op >= opcodeBase) {
        const adj = op - opcodeBase;
        addr += BigInt(Math.floor(adj / lineRange) * minInst);
        line += lineBase + (adj % lineRange);
        emit(false);
      } else if (op === 0) {
        const len = r.ulebN();
        const next = r.at + len;
        const sub = len > 0 ? r.u8() : 0;
        if (sub === 1) {
          emit(true);
          reset();
        } else if (sub === 2) {
          addr = r.u64();
        }
        r.at = next;
      } else if (op === 1) {
        emit(false);
      } else if (op === 2) {
        addr += r.uleb() * BigInt(minInst);
      } else if (op === 3) {
        line += Number(r.sleb());
      } else if (op === 4) {
        file = r.ulebN();
      } else if (op === 8) {
        addr += BigInt(Math.floor((255 - opcodeBase) / lineRange) * minInst);
      } else if (op === 9) {
        addr += BigInt(r.u16());
      } else {
        for (let i = 0; i < (opLengths[op - 1] ?? 0); i++) r.uleb();
      }
    }
    r.at = end;
  }
  // Stable: at one address, an end of sequence comes before the next sequence's first row.
  return rows.sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : Number(b.end) - Number(a.end)));
}
