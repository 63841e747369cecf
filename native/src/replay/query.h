// Questions asked of a whole recording in one forward replay: every stop of the recorded
// program at a breakpoint (the calls of a function), or every write to a few bytes of its memory.
// Each answer names its moment the way a debug session can go back to it: the segment (a
// stretch of one thread's user code, known by its key) and the count of stops of the same
// breakpoints or watchpoints in that segment before it (0: at the segment's start).
#pragma once

#include <sys/user.h>

#include <cstdint>
#include <vector>

#include "replay/breakpoints.h"
#include "replay/replay_session.h"

namespace rwd {

struct QueryRequest {
  enum Kind { Calls, Writes } kind = Calls;
  // Calls: where the function begins; writes: the first byte watched (`len` of them).
  uint64_t addr = 0;
  uint32_t len = 0;
  // Whether `addr` is as the executable's file says, before the load bias (a symbol's), or as
  // the program ran.
  bool relative = false;
  uint64_t entry = 0;  // the executable's entry point, as its file says: tells the load bias
  // Writes: addresses where instructions are known to begin (functions, line-table rows), as
  // the file says, sorted: decoding forward from the nearest one before a write finds the
  // instruction that wrote (the debug registers stop the task after it).
  std::vector<uint64_t> starts;
};

struct QueryHit {
  uint64_t segment = 0;
  uint32_t tid = 0;
  uint64_t count = 0;  // stops of the query's set in the segment up to this one
  Regs regs{};
  user_fpregs_struct fp{};
  std::vector<uint8_t> stack;  // calls: 64 bytes at the stack pointer (return address, arguments)
  // Writes: the watched bytes before and after. `bySyscall`: a syscall's result wrote them (at
  // the segment's start); `unexplained`: they changed between two segments with no write replay
  // knows of (another process through shared memory), reported rather than passed over.
  std::vector<uint8_t> before, after;
  bool bySyscall = false, unexplained = false;
  uint64_t insn = 0;  // writes by an instruction: where it begins (0: not found)
};

struct QueryResult {
  uint64_t bias = 0;     // the executable's load bias (calls)
  uint64_t address = 0;  // the function's address as the program ran (calls)
  std::vector<QueryHit> hits;
  uint64_t events = 0;
};

// The watches (at most the four debug registers) that cover `len` bytes at `addr`, aligned
// pieces of 1, 2, 4 or 8 bytes; fails (Unsupported) when they do not fit.
std::vector<Watch> watchesFor(uint64_t addr, uint32_t len);

// Replays the whole recording once. `progress`, when set, gets the event replay has reached.
// Hits beyond `maxHits` fail the query (Unsupported) rather than fill memory.
QueryResult runQuery(const ReplayOptions& options, const QueryRequest& request, size_t maxHits,
                     int32_t* progress);

}  // namespace rwd
