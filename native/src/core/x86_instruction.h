// Just enough x86-64 decoding to move one instruction elsewhere: its length, and whether it
// depends on where it runs (relative to rip) or leaves the straight line of execution.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rwd {

struct X86Instruction {
  size_t length = 0;         // 0: not decoded (unknown or invalid)
  bool ripRelative = false;  // a memory operand addressed from rip
  size_t dispOffset = 0;     // ripRelative: where its 32-bit displacement is in the instruction
  bool controlFlow = false;  // a jump, call, return, trap, syscall or other way out of line
  bool traps = false;        // out of line other than by a jump, call or return (a syscall...)
  bool call = false;         // a call, direct or indirect
  bool conditional = false;  // a conditional jump: when not taken, it runs into the next one
};

// Decodes the instruction at the start of [code, code + available).
X86Instruction decodeX86(const uint8_t* code, size_t available);

// Whether the instruction is a conditional jump backwards (the way a loop goes round again).
bool backwardConditionalJump(const uint8_t* code, const X86Instruction& insn);

// Whether the instruction is a string instruction with a rep prefix (rep movs, stos, lods, or
// repe/repne cmps, scas): a single step runs one of its iterations, not all of them.
bool repeatedString(const uint8_t* code, const X86Instruction& insn);

// Whether the instruction can run from a copy elsewhere (a rip-relative operand adjusted),
// with a 5-byte jump in its place.
bool relocatable(const X86Instruction& insn);

}  // namespace rwd
