// Just enough of an ELF64 file to answer a query by name: its entry point, its symbol table and
// its sections. The file comes out of a trace, so it is untrusted: every offset and size is
// checked against the file before it is read.
import { inflateSync } from 'node:zlib';

export class ElfError extends Error {}

export interface ElfSymbol {
  name: string;
  /** As the file says (before the load bias of a position-independent executable). */
  value: bigint;
  size: number;
  kind: 'function' | 'object';
}

interface Section {
  name: string;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const SHT_NOBITS = 8;
const SHF_COMPRESSED = 0x800n;
const STT_OBJECT = 1;
const STT_FUNC = 2;
/** A debug section larger than this once inflated is refused (a hostile ratio). */
const MAX_SECTION = 512 << 20;

export class Elf {
  readonly entry: bigint;
  private readonly sections: Section[] = [];

  constructor(private readonly data: Buffer) {
    if (data.length < 64 || data.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
    if (data[4] !== 2 || data[5] !== 1) throw new ElfError('not a 64-bit little-endian ELF file');
    this.entry = data.readBigUInt64LE(0x18);
    const shoff = this.offset(data.readBigUInt64LE(0x28));
    const shentsize = data.readUInt16LE(0x3a);
    const shnum = data.readUInt16LE(0x3c);
    const shstrndx = data.readUInt16LE(0x3e);
    if (shnum === 0) return;
    if (shentsize < 64) throw new ElfError('section headers too small');
    this.range(shoff, shentsize * shnum);
    const raw: (Omit<Section, 'name'> & { nameOff: number })[] = [];
    for (let i = 0; i < shnum; i++) {
      const h = shoff + i * shentsize;
      raw.push({
        nameOff: data.readUInt32LE(h),
        type: data.readUInt32LE(h + 4),
        flags: data.readBigUInt64LE(h + 8),
        offset: this.offset(data.readBigUInt64LE(h + 0x18)),
        size: this.offset(data.readBigUInt64LE(h + 0x20)),
        link: data.readUInt32LE(h + 0x28),
        entsize: this.offset(data.readBigUInt64LE(h + 0x38)),
      });
    }
    const strtab = raw[shstrndx];
    for (const s of raw) {
      const name = strtab && strtab.type !== SHT_NOBITS ? this.cString(strtab.offset, strtab.size, s.nameOff) : '';
      this.sections.push({ name, type: s.type, flags: s.flags, offset: s.offset, size: s.size, link: s.link, entsize: s.entsize });
    }
  }

  /** A section's bytes (inflated if compressed); undefined if there is none of that name. */
  section(name: string): Buffer | undefined {
    const s = this.sections.find((x) => x.name === name);
    if (!s || s.type === SHT_NOBITS) return undefined;
    const bytes = this.range(s.offset, s.size);
    if ((s.flags & SHF_COMPRESSED) === 0n) return bytes;
    if (bytes.length < 24 || bytes.readUInt32LE(0) !== 1) throw new ElfError(`section ${name}: unknown compression`);
    const size = bytes.readBigUInt64LE(8);
    if (size > BigInt(MAX_SECTION)) throw new ElfError(`section ${name}: too large inflated`);
    const out = inflateSync(bytes.subarray(24), { maxOutputLength: Number(size) });
    if (out.length !== Number(size)) throw new ElfError(`section ${name}: inflates to another size than it says`);
    return out;
  }

  /** Functions and objects of the symbol table (the dynamic one if it was stripped). */
  symbols(): ElfSymbol[] {
    const table = this.sections.find((s) => s.type === SHT_SYMTAB) ?? this.sections.find((s) => s.type === SHT_DYNSYM);
    if (!table) return [];
    const strings = this.sections[table.link];
    if (!strings || table.entsize < 24) return [];
    const bytes = this.range(table.offset, table.size);
    const out: ElfSymbol[] = [];
    for (let at = 0; at + 24 <= bytes.length; at += table.entsize) {
      const info = bytes[at + 4]! & 0xf;
      const shndx = bytes.readUInt16LE(at + 6);
      if ((info !== STT_FUNC && info !== STT_OBJECT) || shndx === 0) continue;
      const name = this.cString(strings.offset, strings.size, bytes.readUInt32LE(at));
      if (!name) continue;
      const size = bytes.readBigUInt64LE(at + 16);
      out.push({ name, value: bytes.readBigUInt64LE(at + 8), size: size > 1n << 32n ? 0 : Number(size), kind: info === STT_FUNC ? 'function' : 'object' });
    }
    return out;
  }

  private offset(v: bigint): number {
    if (v > BigInt(this.data.length)) throw new ElfError('an offset or size lies beyond the file');
    return Number(v);
  }

  private range(offset: number, size: number): Buffer {
    if (offset + size > this.data.length) throw new ElfError('a section lies beyond the file');
    return this.data.subarray(offset, offset + size);
  }

  private cString(tableOffset: number, tableSize: number, at: number): string {
    if (at >= tableSize) return '';
    const table = this.range(tableOffset, tableSize);
    const end = table.indexOf(0, at);
    return table.toString('utf8', at, end < 0 ? table.length : end);
  }
}

/**
 * A Rust legacy-mangled name (`_ZN9creatures6record17h0123456789abcdefE`) as a path
 * (`creatures::record`), without its hash; other names as they are.
 */
export function demangle(mangled: string): string {
  // LLVM's suffixes after the mangled name (`.0` for a piece of a split global, `.llvm.123`).
  const name = mangled.replace(/E(\.[A-Za-z0-9_.]+)$/, 'E');
  if (!name.startsWith('_ZN') || !name.endsWith('E')) return mangled;
  const parts: string[] = [];
  for (let at = 3; at < name.length - 1; ) {
    const m = /^\d+/.exec(name.slice(at, at + 6));
    if (!m) return mangled;
    const len = Number(m[0]);
    at += m[0].length;
    parts.push(name.slice(at, at + len));
    at += len;
  }
  if (parts.length > 1 && /^h[0-9a-f]{16}$/.test(parts[parts.length - 1]!)) parts.pop();
  return parts.map((p) => p.replace(/\$LT\$/g, '<').replace(/\$GT\$/g, '>').replace(/\$u20\$/g, ' ').replace(/\.\./g, '::')).join('::');
}
