// A debugger's breakpoints and watchpoints, and how they are put into a task for one resume:
// int3 bytes for breakpoints, the x86 debug registers for watchpoints.
#pragma once

#include <cstdint>
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

struct Breakpoints {
  std::set<uint64_t> code;
  std::vector<Watch> watches;
  bool operator==(const Breakpoints& o) const { return code == o.code && watches == o.watches; }
  // Both sets at once; fails (Unsupported) when the watches do not fit the debug registers.
  Breakpoints merged(const Breakpoints& other) const;
};

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
