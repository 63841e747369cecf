#include "core/x86_instruction.h"

#include <cstring>

namespace rwd {
namespace {

enum : uint8_t {
  kNone = 0,
  kModRM = 1,
  kImm8 = 2,
  kImmZ = 4,
  kImm16 = 8,
  kControl = 16,
  kBranch = 64,  // control flow by a jump, call or return
  kBad = 32
};

// The one-byte opcode map in 64-bit mode: what follows the opcode, and whether it leaves the line.
uint8_t oneByte(uint8_t op) {
  if (op < 0x40) {
    switch (op & 7) {
      case 0:
      case 1:
      case 2:
      case 3:
        return kModRM;
      case 4:
        return kImm8;
      case 5:
        return kImmZ;
      default:
        return kBad;  // segment pushes and pops, BCD: invalid in 64-bit mode
    }
  }
  if (op >= 0x50 && op <= 0x5f) return kNone;
  if (op >= 0x70 && op <= 0x7f) return kImm8 | kControl | kBranch;
  if (op >= 0x84 && op <= 0x8f) return kModRM;
  if (op >= 0x90 && op <= 0x9f) return op == 0x9a ? kBad : kNone;
  if (op >= 0xb0 && op <= 0xb7) return kImm8;
  if ((op >= 0xb8 && op <= 0xbf) || (op >= 0xa0 && op <= 0xa3)) return kNone;  // sized below
  if ((op >= 0xd0 && op <= 0xd3) || (op >= 0xd8 && op <= 0xdf)) return kModRM;
  switch (op) {
    case 0x63:
      return kModRM;
    case 0x68:
      return kImmZ;
    case 0x69:
      return kModRM | kImmZ;
    case 0x6a:
      return kImm8;
    case 0x6b:
      return kModRM | kImm8;
    case 0x80:
    case 0x83:
    case 0xc0:
    case 0xc1:
    case 0xc6:
      return kModRM | kImm8;
    case 0x81:
    case 0xc7:
      return kModRM | kImmZ;
    case 0xa4:
    case 0xa5:
    case 0xa6:
    case 0xa7:
    case 0xaa:
    case 0xab:
    case 0xac:
    case 0xad:
    case 0xae:
    case 0xaf:
    case 0xc9:
    case 0xd7:
    case 0xf5:
    case 0xf8:
    case 0xf9:
    case 0xfa:
    case 0xfb:
    case 0xfc:
    case 0xfd:
      return kNone;
    case 0xa8:
      return kImm8;
    case 0xa9:
      return kImmZ;
    case 0xc8:
      return kImm16 | kImm8;
    case 0xf6:
    case 0xf7:
    case 0xfe:
    case 0xff:
      return kModRM;  // immediates and control flow depend on the ModRM reg field
    case 0xc2:
      return kImm16 | kControl | kBranch;
    case 0xca:
      return kImm16 | kControl;
    case 0xe0:
    case 0xe1:
    case 0xe2:
    case 0xe3:
    case 0xeb:
      return kImm8 | kControl | kBranch;
    case 0xcd:
    case 0xe4:
    case 0xe5:
    case 0xe6:
    case 0xe7:
      return kImm8 | kControl;
    case 0xe8:
    case 0xe9:
      return kImmZ | kControl | kBranch;
    case 0xc3:
      return kControl | kBranch;
    case 0xcb:
    case 0xcc:
    case 0xcf:
    case 0xec:
    case 0xed:
    case 0xee:
    case 0xef:
    case 0xf1:
    case 0xf4:
    case 0x6c:
    case 0x6d:
    case 0x6e:
    case 0x6f:
      return kControl;
    default:
      return kBad;
  }
}

// The 0F map.
uint8_t twoByte(uint8_t op) {
  if (op >= 0x80 && op <= 0x8f) return kImmZ | kControl | kBranch;
  if (op >= 0x30 && op <= 0x37) return kControl;  // msr, rdtsc, rdpmc, sysenter...
  if (op >= 0xc8 && op <= 0xcf) return kNone;     // bswap
  if ((op >= 0x70 && op <= 0x73) || op == 0xa4 || op == 0xac || op == 0xba || op == 0xc2 ||
      (op >= 0xc4 && op <= 0xc6)) {
    return kModRM | kImm8;
  }
  switch (op) {
    case 0x05:
    case 0x06:
    case 0x07:
    case 0x08:
    case 0x09:
    case 0x0b:
    case 0xa2:
    case 0xaa:
      return kControl;
    case 0x0e:
    case 0x77:
    case 0xa0:
    case 0xa1:
    case 0xa8:
    case 0xa9:
      return kNone;
    case 0x04:
    case 0x0a:
    case 0x0c:
    case 0x0f:
    case 0x24:
    case 0x25:
    case 0x26:
    case 0x27:
    case 0x36:
    case 0x39:
    case 0x3b:
    case 0x3c:
    case 0x3d:
    case 0x3e:
    case 0x3f:
      return kBad;
    default:
      return kModRM;
  }
}

// Operand and address size, lock, rep and segment prefixes.
bool legacyPrefix(uint8_t b) {
  return b == 0x66 || b == 0x67 || b == 0xf0 || b == 0xf2 || b == 0xf3 || b == 0x2e || b == 0x36 ||
         b == 0x3e || b == 0x26 || b == 0x64 || b == 0x65;
}

}  // namespace

X86Instruction decodeX86(const uint8_t* code, size_t available) {
  X86Instruction out;
  if (available > 15) available = 15;
  size_t i = 0;
  bool operand16 = false, address32 = false, rexW = false;
  for (;; i++) {
    if (i >= available) return out;
    uint8_t b = code[i];
    if (b == 0x66) {
      operand16 = true;
    } else if (b == 0x67) {
      address32 = true;
    } else if (!legacyPrefix(b)) {
      break;
    }
  }
  if ((code[i] & 0xf0) == 0x40) {
    rexW = code[i] & 8;
    if (++i >= available) return out;
  }
  uint8_t op = code[i++];
  int map = 0;  // 0: one byte, 1: 0F, 2: 0F 38, 3: 0F 3A
  bool vex = false;
  if (op == 0xc4 || op == 0xc5 || op == 0x62) {
    // VEX and EVEX (in 64-bit mode these bytes are always prefixes).
    size_t n = op == 0xc5 ? 1 : op == 0xc4 ? 2 : 3;
    if (i + n >= available) return out;
    map = op == 0xc5 ? 1 : op == 0xc4 ? (code[i] & 0x1f) : (code[i] & 0x7);
    if (map < 1 || map > 3) return out;
    vex = true;
    i += n;
    op = code[i++];
  } else if (op == 0x0f) {
    if (i >= available) return out;
    op = code[i++];
    map = 1;
    if (op == 0x38 || op == 0x3a) {
      map = op == 0x38 ? 2 : 3;
      if (i >= available) return out;
      op = code[i++];
    }
  }
  uint8_t form = map == 0   ? oneByte(op)
                 : map == 1 ? twoByte(op)
                 : map == 2 ? kModRM
                            : kModRM | kImm8;
  if (vex && map == 1) {
    form = op == 0x77 ? kNone : kModRM;  // vzeroupper, vzeroall take no ModRM
    if ((op >= 0x70 && op <= 0x73) || op == 0xc2 || (op >= 0xc4 && op <= 0xc6)) form |= kImm8;
  }
  if (form & kBad) return out;
  bool control = form & kControl;
  bool branch = form & kBranch;
  size_t imm = 0;
  if (form & kImm8) imm += 1;
  if (form & kImm16) imm += 2;
  if (form & kImmZ) imm += operand16 && !control ? 2 : 4;
  if (map == 0 && op >= 0xb8 && op <= 0xbf) imm = rexW ? 8 : operand16 ? 2 : 4;
  if (map == 0 && op >= 0xa0 && op <= 0xa3) imm = address32 ? 4 : 8;  // moffs
  if (form & kModRM) {
    if (i >= available) return out;
    uint8_t modrm = code[i++];
    int mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;
    if (map == 0) {
      if ((op == 0xf6 || op == 0xf7) && reg < 2) imm = op == 0xf6 ? 1 : operand16 ? 2 : 4;
      if (op == 0xff && reg >= 2 && reg <= 5) control = branch = true;  // indirect call, jmp
      if (op == 0xff && (reg == 2 || reg == 3)) out.call = true;
      if (op == 0xff && reg == 7) return out;
      if ((op == 0xc6 || op == 0xc7) && modrm == 0xf8) control = true;  // xabort, xbegin
    }
    if (map == 1 && !vex && op == 0x01 && modrm == 0xf9) control = true;         // rdtscp
    if (map == 1 && !vex && op == 0xc7 && mod == 3 && reg >= 6) control = true;  // rdrand, rdseed
    size_t disp = 0;
    if (mod != 3) {
      if (rm == 4) {
        if (i >= available) return out;
        uint8_t sib = code[i++];
        if (mod == 0 && (sib & 7) == 5) disp = 4;
      } else if (mod == 0 && rm == 5) {
        out.ripRelative = true;
        out.dispOffset = i;
        disp = 4;
      }
      if (mod == 1) disp = 1;
      if (mod == 2) disp = 4;
    }
    i += disp;
  }
  i += imm;
  if (i > available) return X86Instruction{};
  out.length = i;
  out.controlFlow = control;
  out.traps = control && !branch;
  if (map == 0 && op == 0xe8) out.call = true;
  out.conditional = (map == 0 && ((op >= 0x70 && op <= 0x7f) || (op >= 0xe0 && op <= 0xe3))) ||
                    (map == 1 && !vex && op >= 0x80 && op <= 0x8f);
  return out;
}

bool backwardConditionalJump(const uint8_t* code, const X86Instruction& insn) {
  if (!insn.conditional) return false;
  // The displacement ends the instruction: 4 bytes after 0F 8x, else 1.
  size_t n = insn.length;
  if (n >= 6 && code[n - 6] == 0x0f && (code[n - 5] & 0xf0) == 0x80) {
    int32_t rel;
    memcpy(&rel, code + n - 4, 4);
    return rel < 0;
  }
  return int8_t(code[n - 1]) < 0;
}

bool repeatedString(const uint8_t* code, const X86Instruction& insn) {
  bool rep = false;
  size_t i = 0;
  for (; i < insn.length && legacyPrefix(code[i]); i++)
    rep = rep || code[i] == 0xf2 || code[i] == 0xf3;
  if (i < insn.length && (code[i] & 0xf0) == 0x40) i++;  // REX
  return rep && i < insn.length && code[i] >= 0xa4 && code[i] <= 0xaf && code[i] != 0xa8 &&
         code[i] != 0xa9;  // a8, a9: test al/eax, imm
}

bool relocatable(const X86Instruction& insn) { return insn.length >= 5 && !insn.controlFlow; }

}  // namespace rwd
