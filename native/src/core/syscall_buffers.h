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
  uint32_t count = 0;  // an in/out count the kernel overwrites (bpf BPF_PROG_QUERY's prog_cnt)
};

EntryValues readEntryValues(const Task& task, long nr, const SyscallSpec& spec,
                            const uint64_t* args);

std::vector<MemoryWrite> captureOutputs(const Task& task, long nr, const SyscallSpec& spec,
                                        const uint64_t* args, int64_t result,
                                        const EntryValues& entry);

// What a syscall sent out of the process, as its table entry's `sent` says (nothing for a failed
// one): recording keeps its hash, replay checks it and echoes the payload.
struct SentData {
  std::vector<uint8_t> payload;   // the data
  std::vector<uint8_t> envelope;  // destination addresses and control data (passed descriptors)
  uint64_t hash() const;
};

SentData sentData(const Task& task, long nr, const SyscallSpec& spec, const uint64_t* args,
                  int64_t result);

}  // namespace rwd
