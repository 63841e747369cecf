// The syscall buffer's trampoline page (core/syscall_buffer_abi.h), mapped by the recorder after
// every exec and by replay while it rebuilds the address space, so the preload library finds it
// in both. Its RWD_REPLAYING word tells the library which of the two it runs in.
//
// Recording maps `syscall; ret`. Replay maps code that first answers the call from the feed:
// records of the recorded buffered syscalls that come next, which the replayer writes below the
// page before it lets a task run (docs/syscall-buffer.md, "Replay"). A call that matches the
// next record in number and all four arguments gets the record's output and result without a
// stop; any other call, or one with the feed empty, makes the real syscall, which stops in the
// replayer as every syscall does in replay. Both ways the call returns with the registers a
// real syscall leaves (rcx the address after the recording's syscall instruction, r11 the
// flags), so positions later on are the recording's.
#pragma once

#include <cstdint>

#include "core/remote_syscalls.h"
#include "core/syscall_buffer_abi.h"

namespace rwd {

constexpr uint64_t kFeedSize = 512 * 1024;
constexpr uint64_t kFeed = RWD_TRAMPOLINE - kFeedSize;  // in the stub's range, above the stub

// At kFeed. Then the records, each followed by its output padded to 8 bytes.
struct FeedHeader {
  uint64_t left;      // records not taken yet; the trampoline takes one per call it answers
  uint64_t next;      // address of the next one
  uint64_t saved[2];  // where the trampoline keeps rdi and rsi while it copies
};

struct FeedRecord {
  int64_t nr;
  uint64_t args[4];  // rdi, rsi, rdx, r10: what the library passes
  int64_t result;
  uint64_t outAddr;
  uint64_t outLen;
};

// Where the replay trampoline's real syscall returns to: the address of its stops.
constexpr uint64_t kReplayTrampolineSyscallEnd = RWD_TRAMPOLINE + 0x1a;

void mapSyscallTrampoline(RemoteSyscalls& remote, bool replaying);

}  // namespace rwd
