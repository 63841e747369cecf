// Where the replay stub lives. The recorder reserves this range in every recorded process
// right after exec, so the recorded program never maps anything there and replay can keep
// the stub (and its syscall instruction and scratch memory) mapped beside the program.
#pragma once

#include <cstdint>

namespace rwd {

constexpr uint64_t kStubBase = 0x100000000000;
constexpr uint64_t kStubSize = 1 << 20;

// The address rewind's own syscalls in a recorded process claim to come from (the recorder sets
// it at their entry stop): a rule the recorder puts in front of each seccomp filter the program
// installs lets them through (record/seccomp_filter.h). Nothing runs there.
constexpr uint64_t kRewindSyscallIp = kStubBase;

inline bool inStubRange(uint64_t addr) { return addr >= kStubBase && addr < kStubBase + kStubSize; }

}  // namespace rwd
