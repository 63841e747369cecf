#include "replay/breakpoints.h"

#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/user.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/x86_instruction.h"

namespace rwd {
namespace {

long debugRegisterOffset(int i) { return long(offsetof(struct user, u_debugreg) + i * 8); }

void pokeDebugRegister(Task& task, int i, uint64_t value) {
  if (ptrace(PTRACE_POKEUSER, task.tid(), debugRegisterOffset(i), value) < 0) {
    failErrno("setting a debug register");
  }
}

}  // namespace

Breakpoints Breakpoints::merged(const Breakpoints& other) const {
  Breakpoints m = *this;
  m.code.insert(other.code.begin(), other.code.end());
  // Conditional in both, or in one and absent from the other: either's conditions stop.
  m.conditions.clear();
  for (uint64_t a : m.code) {
    auto mine = conditions.find(a), theirs = other.conditions.find(a);
    bool plainHere = code.count(a) && mine == conditions.end();
    bool plainThere = other.code.count(a) && theirs == other.conditions.end();
    if (plainHere || plainThere) continue;
    std::vector<Condition>& all = m.conditions[a];
    if (mine != conditions.end()) all = mine->second;
    if (theirs != other.conditions.end()) {
      all.insert(all.end(), theirs->second.begin(), theirs->second.end());
    }
  }
  for (const Watch& w : other.watches) {
    if (std::find(m.watches.begin(), m.watches.end(), w) == m.watches.end()) m.watches.push_back(w);
  }
  if (m.watches.size() > kMaxWatches) {
    fail(ErrorCode::Unsupported, "more than 4 watchpoints at once");
  }
  return m;
}

bool Breakpoints::stopsAt(uint64_t addr, const Task& task, const Regs& regs) const {
  if (!code.count(addr)) return false;
  auto it = conditions.find(addr);
  if (it == conditions.end()) return true;
  for (const Condition& c : it->second) {
    // One that cannot be evaluated stops, for the debugger to see (as gdbserver does).
    std::optional<uint64_t> v = evaluateCondition(c, task, regs);
    if (!v || *v != 0) return true;
  }
  return false;
}

namespace {

// gdb's agent expression opcodes (gdb/common/ax.def): those a condition uses.
enum AxOp : uint8_t {
  kAxAdd = 0x02,
  kAxSub = 0x03,
  kAxMul = 0x04,
  kAxDivSigned = 0x05,
  kAxDivUnsigned = 0x06,
  kAxRemSigned = 0x07,
  kAxRemUnsigned = 0x08,
  kAxLsh = 0x09,
  kAxRshSigned = 0x0a,
  kAxRshUnsigned = 0x0b,
  kAxLogNot = 0x0e,
  kAxBitAnd = 0x0f,
  kAxBitOr = 0x10,
  kAxBitXor = 0x11,
  kAxBitNot = 0x12,
  kAxEqual = 0x13,
  kAxLessSigned = 0x14,
  kAxLessUnsigned = 0x15,
  kAxExt = 0x16,
  kAxRef8 = 0x17,
  kAxRef16 = 0x18,
  kAxRef32 = 0x19,
  kAxRef64 = 0x1a,
  kAxIfGoto = 0x20,
  kAxGoto = 0x21,
  kAxConst8 = 0x22,
  kAxConst16 = 0x23,
  kAxConst32 = 0x24,
  kAxConst64 = 0x25,
  kAxReg = 0x26,
  kAxEnd = 0x27,
  kAxDup = 0x28,
  kAxPop = 0x29,
  kAxZeroExt = 0x2a,
  kAxSwap = 0x2b,
  kAxPick = 0x32,
  kAxRot = 0x33,
};

// gdb's amd64 register numbers 0-23, as offsets into user_regs_struct.
std::optional<uint64_t> axRegister(const Regs& r, unsigned n) {
  const unsigned long long* order[] = {
      &r.rax, &r.rbx,    &r.rcx, &r.rdx, &r.rsi, &r.rdi, &r.rbp, &r.rsp,
      &r.r8,  &r.r9,     &r.r10, &r.r11, &r.r12, &r.r13, &r.r14, &r.r15,
      &r.rip, &r.eflags, &r.cs,  &r.ss,  &r.ds,  &r.es,  &r.fs,  &r.gs,
  };
  if (n >= sizeof order / sizeof order[0]) return std::nullopt;
  return uint64_t(*order[n]);
}

// Bounds for an expression the debugger sent (it is input like any other).
constexpr size_t kAxMaxStack = 1024;
constexpr size_t kAxMaxSteps = 100000;

}  // namespace

std::optional<uint64_t> evaluateCondition(const Condition& code, const Task& task,
                                          const Regs& regs) {
  std::vector<uint64_t> stack;
  size_t pc = 0;
  auto imm = [&](size_t bytes) -> std::optional<uint64_t> {
    if (pc + bytes > code.size()) return std::nullopt;
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++) v = (v << 8) | code[pc++];  // big-endian
    return v;
  };
  for (size_t steps = 0; steps < kAxMaxSteps && pc < code.size(); steps++) {
    const uint8_t op = code[pc++];
    // Operands: b the top of the stack, a the one below.
    const size_t need =
        op == kAxConst8 || op == kAxConst16 || op == kAxConst32 || op == kAxConst64 ||
                op == kAxReg || op == kAxGoto
            ? 0
        : op == kAxSwap                                                               ? 2
        : op == kAxRot                                                                ? 3
        : op >= kAxAdd && op <= kAxLessUnsigned && op != kAxLogNot && op != kAxBitNot ? 2
                                                                                      : 1;
    if (stack.size() < need || stack.size() >= kAxMaxStack) return std::nullopt;
    uint64_t b = stack.empty() ? 0 : stack.back();
    uint64_t a = stack.size() < 2 ? 0 : stack[stack.size() - 2];
    auto binary = [&](uint64_t v) {
      stack.pop_back();
      stack.back() = v;
    };
    switch (op) {
      case kAxAdd:
        binary(a + b);
        break;
      case kAxSub:
        binary(a - b);
        break;
      case kAxMul:
        binary(a * b);
        break;
      case kAxDivSigned:
      case kAxRemSigned:
        if (b == 0 || (int64_t(a) == INT64_MIN && int64_t(b) == -1)) return std::nullopt;
        binary(op == kAxDivSigned ? uint64_t(int64_t(a) / int64_t(b))
                                  : uint64_t(int64_t(a) % int64_t(b)));
        break;
      case kAxDivUnsigned:
      case kAxRemUnsigned:
        if (b == 0) return std::nullopt;
        binary(op == kAxDivUnsigned ? a / b : a % b);
        break;
      case kAxLsh:
        binary(b < 64 ? a << b : 0);
        break;
      case kAxRshSigned:
        binary(uint64_t(int64_t(a) >> (b < 64 ? b : 63)));
        break;
      case kAxRshUnsigned:
        binary(b < 64 ? a >> b : 0);
        break;
      case kAxLogNot:
        stack.back() = b == 0;
        break;
      case kAxBitAnd:
        binary(a & b);
        break;
      case kAxBitOr:
        binary(a | b);
        break;
      case kAxBitXor:
        binary(a ^ b);
        break;
      case kAxBitNot:
        stack.back() = ~b;
        break;
      case kAxEqual:
        binary(a == b);
        break;
      case kAxLessSigned:
        binary(int64_t(a) < int64_t(b));
        break;
      case kAxLessUnsigned:
        binary(a < b);
        break;
      case kAxExt:
      case kAxZeroExt: {
        std::optional<uint64_t> bits = imm(1);
        if (!bits || *bits == 0) return std::nullopt;
        if (*bits < 64) {
          uint64_t mask = (uint64_t(1) << *bits) - 1, sign = uint64_t(1) << (*bits - 1);
          uint64_t v = b & mask;
          stack.back() = op == kAxExt && (v & sign) ? v | ~mask : v;
        }
        break;
      }
      case kAxRef8:
      case kAxRef16:
      case kAxRef32:
      case kAxRef64: {
        const size_t len = size_t(1) << (op - kAxRef8);
        uint64_t v = 0;
        if (!task.tryRead(b, &v, len)) return std::nullopt;
        stack.back() = v;
        break;
      }
      case kAxIfGoto:
      case kAxGoto: {
        std::optional<uint64_t> to = imm(2);
        if (!to) return std::nullopt;
        bool jump = true;
        if (op == kAxIfGoto) {
          jump = b != 0;
          stack.pop_back();
        }
        if (jump) pc = size_t(*to);
        break;
      }
      case kAxConst8:
      case kAxConst16:
      case kAxConst32:
      case kAxConst64: {
        std::optional<uint64_t> v = imm(size_t(1) << (op - kAxConst8));
        if (!v) return std::nullopt;
        stack.push_back(*v);
        break;
      }
      case kAxReg: {
        std::optional<uint64_t> n = imm(2);
        std::optional<uint64_t> v = n ? axRegister(regs, unsigned(*n)) : std::nullopt;
        if (!v) return std::nullopt;
        stack.push_back(*v);
        break;
      }
      case kAxEnd:
        return b;
      case kAxDup:
        stack.push_back(b);
        break;
      case kAxPop:
        stack.pop_back();
        break;
      case kAxSwap:
        stack[stack.size() - 1] = a;
        stack[stack.size() - 2] = b;
        break;
      case kAxPick: {
        std::optional<uint64_t> n = imm(1);
        if (!n || *n >= stack.size()) return std::nullopt;
        stack.push_back(stack[stack.size() - 1 - *n]);
        break;
      }
      case kAxRot: {  // a b c (c on top) => c a b
        const size_t n = stack.size();
        const uint64_t c = stack[n - 1];
        stack[n - 1] = stack[n - 2];
        stack[n - 2] = stack[n - 3];
        stack[n - 3] = c;
        break;
      }
      default:
        return std::nullopt;  // floating point, tracing, trace state variables, printf
    }
  }
  return std::nullopt;  // ran off its end, or too long
}

namespace {

// The target of a direct jump or call (rel8 or rel32, the last bytes of the instruction).
std::optional<uint64_t> directTarget(const uint8_t* code, const X86Instruction& insn, uint64_t at) {
  size_t i = 0;
  auto prefix = [](uint8_t b) {
    return b == 0x2e || b == 0x36 || b == 0x3e || b == 0x26 || b == 0x64 || b == 0x65 ||
           b == 0xf2 || b == 0xf3 || (b & 0xf0) == 0x40;
  };
  while (i < insn.length && prefix(code[i])) i++;
  if (i >= insn.length) return std::nullopt;
  const uint8_t op = code[i];
  int64_t rel;
  if ((op >= 0x70 && op <= 0x7f) || op == 0xeb || (op >= 0xe0 && op <= 0xe3)) {
    rel = int8_t(code[insn.length - 1]);
  } else if (op == 0xe8 || op == 0xe9 ||
             (op == 0x0f && i + 1 < insn.length && code[i + 1] >= 0x80 && code[i + 1] <= 0x8f)) {
    int32_t r;
    memcpy(&r, code + insn.length - 4, 4);
    rel = r;
  } else {
    return std::nullopt;
  }
  return at + insn.length + uint64_t(rel);
}

constexpr uint64_t kMaxRange = 1 << 16;

}  // namespace

std::optional<std::set<uint64_t>> rangeExits(const Task& task, uint64_t start, uint64_t end) {
  if (end <= start || end - start > kMaxRange) return std::nullopt;
  std::vector<uint8_t> code(end - start + 15, 0);
  if (!task.tryRead(start, code.data(), end - start)) return std::nullopt;
  std::set<uint64_t> exits{end};
  for (uint64_t at = start; at < end;) {
    const uint8_t* here = code.data() + (at - start);
    X86Instruction insn = decodeX86(here, size_t(end - at));
    if (insn.length == 0 || at + insn.length > end) return std::nullopt;
    if (insn.controlFlow) {
      std::optional<uint64_t> target = directTarget(here, insn, at);
      if (!target) {
        exits.insert(at);
      } else if (*target < start || *target >= end) {
        exits.insert(*target);
      }
    }
    at += insn.length;
  }
  return exits;
}

InsertedBreakpoints::InsertedBreakpoints(Task& task, const std::set<uint64_t>& addrs)
    : task_(task) {
  const uint8_t int3 = 0xcc;
  for (uint64_t a : addrs) {
    uint8_t original;
    if (!task.tryRead(a, &original, 1)) continue;
    task.write(a, &int3, 1);
    saved_.emplace_back(a, original);
  }
}

InsertedBreakpoints::~InsertedBreakpoints() {
  for (auto& [a, original] : saved_) task_.tryWrite(a, &original, 1);  // the task may be gone
}

bool InsertedBreakpoints::has(uint64_t addr) const {
  for (auto& [a, original] : saved_) {
    if (a == addr) return true;
  }
  return false;
}

void setDebugRegisters(Task& task, const std::vector<Watch>& watches) {
  // All off first: the kernel checks each address against the slot's current kind and length.
  pokeDebugRegister(task, 7, 0);
  uint64_t dr7 = 0;
  for (size_t i = 0; i < watches.size() && i < kMaxWatches; i++) {
    const Watch& w = watches[i];
    pokeDebugRegister(task, int(i), w.addr);
    // x86 has no read-only watch; an instruction breakpoint has length 1 (encoded 0).
    uint64_t rw = w.kind == WatchKind::Execute ? 0 : w.kind == WatchKind::Write ? 1 : 3;
    uint64_t len = w.len == 1 ? 0 : w.len == 2 ? 1 : w.len == 8 ? 2 : 3;
    dr7 |= (1ull << (2 * i)) | (rw << (16 + 4 * i)) | (len << (18 + 4 * i));
  }
  pokeDebugRegister(task, 7, dr7);
}

int firedWatch(Task& task) {
  errno = 0;
  long dr6 = ptrace(PTRACE_PEEKUSER, task.tid(), debugRegisterOffset(6), nullptr);
  if (errno != 0) return -1;
  ptrace(PTRACE_POKEUSER, task.tid(), debugRegisterOffset(6), 0);
  for (int i = 0; i < int(kMaxWatches); i++) {
    if (dr6 & (1l << i)) return i;
  }
  return -1;
}

}  // namespace rwd
