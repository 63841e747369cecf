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

}  // namespace rwd
