// The memory a syscall reads or writes in a traced process, as the syscall table describes it:
// the recorder captures what it wrote so replay can write the same bytes without running it.
#pragma once

#include <cstdint>
#include <vector>

#include "core/events.h"
#include "core/syscall_table.h"
#include "core/task.h"

namespace rwd {

// Values read at syscall entry that an output size depends on (socklen_t in/out arguments).
struct EntryValues {
  uint32_t sockLen[3] = {};
};

EntryValues readEntryValues(const Task& task, const SyscallSpec& spec, const uint64_t* args);

std::vector<MemoryWrite> captureOutputs(const Task& task, long nr, const SyscallSpec& spec,
                                        const uint64_t* args, int64_t result,
                                        const EntryValues& entry);

// The bytes a syscall sent out of the process, as its table entry's `sent` says (nothing for a
// failed one): recording keeps their hash, replay checks it and echoes them.
std::vector<uint8_t> sentBytes(const Task& task, long nr, const SyscallSpec& spec,
                               const uint64_t* args, int64_t result);

}  // namespace rwd
