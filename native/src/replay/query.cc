#include "replay/query.h"

#include <elf.h>
#include <sys/ptrace.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/x86_instruction.h"

namespace rwd {
namespace {

// AT_ENTRY of an auxiliary vector: where the kernel put the executable's entry point.
uint64_t entryOf(const std::vector<uint8_t>& auxv) {
  for (size_t i = 0; i + 16 <= auxv.size(); i += 16) {
    uint64_t type, value;
    memcpy(&type, &auxv[i], 8);
    memcpy(&value, &auxv[i + 8], 8);
    if (type == AT_ENTRY) return value;
    if (type == AT_NULL) break;
  }
  fail(ErrorCode::BadTrace, "the recorded program's auxiliary vector has no entry point");
}

bool overlaps(const std::vector<std::pair<uint64_t, uint64_t>>& writes, uint64_t addr,
              uint64_t len) {
  for (const auto& [a, n] : writes) {
    if (a < addr + len && addr < a + n) return true;
  }
  return false;
}

// The instruction that ends at `pc`, decoding forward from the nearest known start before it;
// 0 if none does (no start known near, or `pc` is not the end of an instruction there).
uint64_t writerOf(const Task& task, const std::vector<uint64_t>& starts, uint64_t bias,
                  uint64_t pc) {
  constexpr uint64_t kMaxDecode = 4096;
  auto it = std::upper_bound(starts.begin(), starts.end(), pc - 1 - bias);
  if (it == starts.begin()) return 0;
  const uint64_t base = *std::prev(it) + bias;
  if (pc - base > kMaxDecode) return 0;
  std::vector<uint8_t> code(pc - base);
  if (!task.tryRead(base, code.data(), code.size())) return 0;
  for (uint64_t at = base; at < pc;) {
    X86Instruction insn = decodeX86(&code[at - base], pc - at);
    if (insn.length == 0) return 0;
    if (at + insn.length == pc) return at;
    at += insn.length;
  }
  return 0;
}

}  // namespace

std::vector<Watch> watchesFor(uint64_t addr, uint32_t len) {
  if (len == 0 || addr + len < addr) fail(ErrorCode::Unsupported, "nothing to watch");
  std::vector<Watch> out;
  for (uint64_t p = addr, end = addr + len; p < end;) {
    uint8_t size = 8;
    while (p % size != 0 || p + size > end) size /= 2;
    out.push_back(Watch{WatchKind::Write, p, size});
    p += size;
  }
  if (out.size() > kMaxWatches) {
    fail(ErrorCode::Unsupported,
         "the 4 debug registers watch at most 4 aligned pieces of 1, 2, 4 or 8 bytes (up to 32 "
         "bytes aligned to 8); this range needs " +
             std::to_string(out.size()));
  }
  return out;
}

QueryResult runQuery(const ReplayOptions& options, const QueryRequest& request, size_t maxHits,
                     int32_t* progress) {
  ReplaySession replay(options);
  replay.start();
  const uint32_t pid = replay.initialTid();
  QueryResult out;
  Breakpoints set;
  std::string exe;  // the program `set` belongs to: after another exec it means nothing
  std::vector<uint8_t> shadow(request.kind == QueryRequest::Writes ? request.len : 0);
  bool shadowKnown = false;
  const RunControl plain;

  auto hit = [&](ReplayTask& t, uint64_t count) -> QueryHit& {
    if (out.hits.size() >= maxHits) {
      fail(ErrorCode::Unsupported, "the query has more than " + std::to_string(maxHits) +
                                       " answers; ask about less (a narrower range, or another "
                                       "function)");
    }
    QueryHit& h = out.hits.emplace_back();
    h.segment = replay.segmentKey();
    h.tid = t.recordedTid;
    h.count = count;
    h.regs = t.task->regs();
    if (request.kind == QueryRequest::Calls) {
      if (ptrace(PTRACE_GETFPREGS, t.task->tid(), nullptr, &h.fp) < 0) {
        failErrno("reading floating-point registers");
      }
      h.stack.resize(64);
      if (!t.task->tryRead(h.regs.rsp, h.stack.data(), h.stack.size())) h.stack.clear();
    }
    return h;
  };
  // Writes: the watched bytes now; false where they are not mapped.
  std::vector<uint8_t> now(shadow.size());
  auto readWatched = [&](ReplayTask& t) {
    return t.task->tryRead(out.address, now.data(), now.size());
  };

  while (replay.advanceToSegment()) {
    ReplayTask& t = *replay.active();
    if (progress) {
      __atomic_store_n(progress, int32_t(std::min<uint64_t>(replay.segmentKey(), INT32_MAX)),
                       __ATOMIC_RELAXED);
    }
    const ProgramImage* program = t.tgid == pid ? replay.program(pid) : nullptr;
    if (program && exe.empty()) {
      exe = program->exe;
      out.bias = entryOf(program->auxv) - request.entry;
      out.address = request.relative ? request.addr + out.bias : request.addr;
      if (request.kind == QueryRequest::Calls) {
        set.code.insert(out.address);
      } else {
        set.watches = watchesFor(out.address, request.len);
      }
    }
    if (!program) {
      replay.runActive(plain);
      continue;
    }
    if (program->exe != exe || entryOf(program->auxv) - request.entry != out.bias) {
      shadowKnown = false;  // another program: its memory is another matter
      replay.runActive(plain);
      continue;
    }
    if (request.kind == QueryRequest::Writes) {
      // What changed since the program last ran: a syscall's result, written as the segment
      // begins (the debug registers never see replay write it), or something unknown.
      const bool mapped = readWatched(t);
      const bool bySyscall = overlaps(replay.segmentWrites(), out.address, request.len);
      if (mapped && (bySyscall || (shadowKnown && now != shadow))) {
        QueryHit& h = hit(t, 0);
        if (shadowKnown) h.before = shadow;  // otherwise: unknown, not mapped before
        h.after = now;
        h.bySyscall = bySyscall;
        h.unexplained = !bySyscall;
      }
      shadowKnown = mapped;
      if (mapped) shadow = now;
    } else if (t.deliverSig == 0 && set.code.count(t.task->regs().rip)) {
      // At its breakpoint as the segment begins (a debug session stops here without running).
      hit(t, 0);
    }
    for (uint64_t count = 1;; count++) {
      RunControl c;
      c.breaks = &set;
      c.skipAt = t.task->regs().rip;
      std::optional<Trap> trap = replay.runActive(c);
      if (!trap) break;
      QueryHit& h = hit(t, count);
      if (request.kind == QueryRequest::Writes) {
        if (!readWatched(t)) fail(ErrorCode::System, "watched memory vanished as it was written");
        h.before = shadow;
        h.after = now;
        h.insn = writerOf(*t.task, request.starts, out.bias, h.regs.rip);
        shadow = now;
        shadowKnown = true;
      }
    }
  }
  replay.checkEnd();
  out.events = replay.reader().total();
  return out;
}

}  // namespace rwd
