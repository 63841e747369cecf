// A debugger's breakpoints and watchpoints, and how they are put into a task for one resume:
// int3 bytes for breakpoints, the x86 debug registers for watchpoints.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "core/task.h"

namespace rwd {

// Execute: a hardware breakpoint, which (unlike an int3) changes no byte of the program.
enum class WatchKind : uint8_t { Write, Read, Access, Execute };

struct Watch {
  WatchKind kind;
  uint64_t addr;
  uint8_t len;  // 1, 2, 4 or 8, and addr aligned to it
  bool operator==(const Watch& o) const { return kind == o.kind && addr == o.addr && len == o.len; }
};

constexpr size_t kMaxWatches = 4;  // debug registers DR0-DR3

// A breakpoint condition the debugger has the target evaluate: gdb's agent expression bytecode
// (Z0's `X` parameter; gdb's manual, "Agent Expressions").
using Condition = std::vector<uint8_t>;

struct Breakpoints {
  std::set<uint64_t> code;
  // Conditions of breakpoints in `code`: a hit there is a stop only if one of them is true.
  std::map<uint64_t, std::vector<Condition>> conditions;
  std::vector<Watch> watches;
  bool operator==(const Breakpoints& o) const {
    return code == o.code && conditions == o.conditions && watches == o.watches;
  }
  // Both sets at once (a hit stops if it stops in either); fails (Unsupported) when the watches
  // do not fit the debug registers.
  Breakpoints merged(const Breakpoints& other) const;
  // Whether a hit of the task (stopped with `regs`) at `addr` is a stop of this set.
  bool stopsAt(uint64_t addr, const Task& task, const Regs& regs) const;
};

// The value of a condition for a task stopped with `regs`; nullopt when it cannot be evaluated
// (an operation a condition has no use for, unreadable memory, a malformed expression).
std::optional<uint64_t> evaluateCondition(const Condition& code, const Task& task,
                                          const Regs& regs);

// Where a task running the code of [start, end) (a source line's, for range stepping) can
// leave it: `end`, the targets outside of the direct jumps and calls in it, and the
// instructions in it that leave it some other way (returns, indirect jumps, syscalls), which
// are to be single-stepped. nullopt when the range does not decode to whole instructions.
std::optional<std::set<uint64_t>> rangeExits(const Task& task, uint64_t start, uint64_t end);

// int3 at each address for as long as it lives; the original bytes come back at destruction,
// so nothing but a running task ever sees them.
class InsertedBreakpoints {
 public:
  InsertedBreakpoints(Task& task, const std::set<uint64_t>& addrs);
  ~InsertedBreakpoints();
  InsertedBreakpoints(const InsertedBreakpoints&) = delete;
  InsertedBreakpoints& operator=(const InsertedBreakpoints&) = delete;
  bool has(uint64_t addr) const;

 private:
  Task& task_;
  std::vector<std::pair<uint64_t, uint8_t>> saved_;
};

// Points the task's debug registers at the watches (none: all off).
void setDebugRegisters(Task& task, const std::vector<Watch>& watches);
// Which watch fired at the task's last stop (its index), or -1; clears the status register.
int firedWatch(Task& task);

}  // namespace rwd
