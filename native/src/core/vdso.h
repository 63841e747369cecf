// The vDSO answers time queries without entering the kernel, which a ptrace recorder cannot
// see. At every exec the recorder rewrites each vDSO function into a real syscall, so its
// result is recorded like any other.
#pragma once

#include <cstdint>

#include "core/task.h"

namespace rwd {

struct VdsoPatch {
  uint64_t syscallGadget = 0;  // address of a `syscall` instruction the patch wrote
};

// Patches the vDSO mapped at [start, end) in `task`; throws if it cannot be parsed.
VdsoPatch patchVdso(Task& task, uint64_t start, uint64_t end);

// The legacy vsyscall page: a call there traps into the kernel, which emulates gettimeofday, time
// or getcpu with no syscall stop (a seccomp filter sees it: the syscall buffer's stops it). The
// recorder rewrites the caller's `mov $entry,%rax; call *%rax` into `mov $nr,%rax; syscall`, the
// same length (rr does the same), so the call becomes an ordinary recorded syscall.
constexpr uint64_t kVsyscallPage = 0xffffffffff600000ull;
constexpr size_t kVsyscallCallSize = 9;
inline bool inVsyscallPage(uint64_t ip) { return ip >= kVsyscallPage && ip < kVsyscallPage + 4096; }
// The syscall the entry at `ip` emulates, or -1.
long vsyscallNumber(uint64_t ip);
// Whether the kVsyscallCallSize bytes at `code` call `entry` as above; if so, `code` becomes the
// replacement.
bool patchVsyscallCall(uint8_t* code, uint64_t entry);

}  // namespace rwd
