#include "replay/breakpoints.h"

#include <stddef.h>
#include <sys/ptrace.h>
#include <sys/user.h>

#include <algorithm>

#include "core/error.h"

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
  for (const Watch& w : other.watches) {
    if (std::find(m.watches.begin(), m.watches.end(), w) == m.watches.end()) m.watches.push_back(w);
  }
  if (m.watches.size() > kMaxWatches) {
    fail(ErrorCode::Unsupported, "more than 4 watchpoints at once");
  }
  return m;
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
