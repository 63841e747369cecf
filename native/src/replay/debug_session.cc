#include "replay/debug_session.h"

#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "core/error.h"
#include "core/kick.h"
#include "core/memory_map.h"
#include "core/remote_syscalls.h"
#include "core/syscall_table.h"
#include "core/x86_instruction.h"

namespace rwd {
namespace {

// Replay time between automatic checkpoints: going back costs at most about this much
// re-execution, plus the fork.
constexpr auto kCheckpointInterval = std::chrono::milliseconds(20);
constexpr size_t kMaxCheckpoints = 256;
constexpr uint64_t kStepsPerShortcut = 2000;
// Single steps back to the stop before, after which stepping back looks for the predecessor
// with a breakpoint instead (a long loop may lie in between).
constexpr uint64_t kStepsBeforeSearch = 2000;
constexpr size_t kMaxShortcuts = 64;
// An interrupted task steps at most this far looking for an instruction a position can name.
constexpr int kSettleSteps = 4096;

// A guessing scan that meets its guess too often (a hot loop) gives the guess up.
struct TooManyStops {};
constexpr uint64_t kGuessStops = 10000;
// Stepping back single-steps at most this far from the stop before.
constexpr uint64_t kMaxStepsBack = 200000;

[[noreturn]] void lost(const char* what) {
  fail(ErrorCode::System, std::string("replay did not come back to the same moment (") + what +
                              "): the recording does not replay deterministically here");
}

std::string describe(const Moment& m) {
  std::string s = "(" + std::to_string(m.segment) + " t" + std::to_string(m.tid) + ":";
  for (const Action& a : m.actions) {
    s += a.kind == Action::Continue
             ? " C" + std::to_string(a.config) + "x" + std::to_string(a.count)
         : a.kind == Action::Step     ? " S" + std::to_string(a.count)
         : a.kind == Action::Position ? " P" + std::to_string(a.config)
                                      : std::string(" END");
  }
  return s + ")";
}

// REWIND_LOG_DEBUG=1 logs each resume and reverse scan, for debugging the engine.
bool tracing() {
  static const bool on = getenv("REWIND_LOG_DEBUG") != nullptr;
  return on;
}

}  // namespace

DebugSession::DebugSession(ReplayOptions options) : replay_(std::move(options)) {
  replay_.start();
  ReplayTask* t = replay_.active();
  // A Ctrl-C at the terminal is the debugger's (gdb passes it on as an interrupt): in a process
  // group of their own, out of the terminal's foreground group, the replayed processes never get
  // it. Every process replay makes later is a fork of this one, in its group.
  RemoteSyscalls(*t->task, t->stub.gadget)
      .check("leaving the terminal's process group", SYS_setpgid, 0, 0);
  pid_ = replay_.initialTid();
  coverage_ = CodeCoverage(pid_);
  replay_.followCode(&coverage_);
  events_ = replay_.reader().total();
  configs_.push_back(Breakpoints{});  // configuration 0: nothing
  arrive(*t);
}

DebugSession::~DebugSession() {
  closing_ = true;
  if (watcher_.joinable()) watcher_.join();
  std::vector<pid_t> copies;
  for (const std::vector<Checkpoint>* list : {&checkpoints_, &shortcuts_}) {
    for (const Checkpoint& c : *list) {
      for (pid_t pid : c.pids()) copies.push_back(pid);
    }
  }
  killAndReap(copies);
}

std::vector<uint32_t> DebugSession::threads() const {
  std::vector<uint32_t> out;
  for (auto& [tid, t] : replay_.tasks()) {
    if (t.tgid == pid_ && !t.exited) out.push_back(tid);
  }
  return out;
}

Regs DebugSession::registers(uint32_t tid, user_fpregs_struct* fp) {
  ReplayTask* t = replay_.task(tid);
  if (!t || t->tgid != pid_ || t->exited) {
    fail(ErrorCode::Unsupported, "no thread " + std::to_string(tid) + " at this moment");
  }
  Regs r = t->task->regs();
  if (t->pending && t->pending->kind == Stop::SyscallStop) {
    // Stopped at the entry of a syscall replay emulates: show the instruction about to run.
    r.rip -= 2;
    r.rax = r.orig_rax;
  }
  if (fp && ptrace(PTRACE_GETFPREGS, t->task->tid(), nullptr, fp) < 0) {
    failErrno("reading floating-point registers");
  }
  return r;
}

std::vector<uint8_t> DebugSession::readMemory(uint64_t addr, size_t len) {
  std::vector<uint8_t> out(len);
  for (uint32_t tid : threads()) {
    Task& task = *replay_.task(tid)->task;
    if (task.tryRead(addr, out.data(), len)) return out;
    // Part of the range is unmapped: what can be read, up to the first hole.
    size_t got = 0;
    while (got < len) {
      size_t chunk = std::min(len - got, size_t(4096 - ((addr + got) & 4095)));
      if (!task.tryRead(addr + got, out.data() + got, chunk)) break;
      got += chunk;
    }
    out.resize(got);
    return out;
  }
  return {};
}

const ProgramImage& DebugSession::program() const {
  const ProgramImage* p = replay_.program(pid_);
  if (!p) fail(ErrorCode::System, "the debugged process has no program");
  return *p;
}

std::string DebugSession::memoryMap() const {
  std::vector<uint32_t> tids = threads();
  if (tids.empty())
    fail(ErrorCode::Unsupported, "the debugged process has no thread at this moment");
  std::vector<MapsEntry> live = readMemoryMap(replay_.tasks().at(tids[0]).task->tid());
  const CodeTracking& code = coverage_.tracking();
  std::vector<MapsEntry> out;
  for (MapsEntry& e : live) {
    if (code.on) {
      for (const CodeRange& r : code.ranges) {
        if (e.start >= r.start && e.end <= r.end) e.prot = r.prot;
      }
    }
    // Pieces that coverage split off one mapping are one again.
    MapsEntry* last = out.empty() ? nullptr : &out.back();
    if (last && last->end == e.start && last->prot == e.prot && last->shared == e.shared &&
        last->name == e.name && last->inode == e.inode && last->dev == e.dev &&
        (e.inode == 0 || last->offset + (last->end - last->start) == e.offset)) {
      last->end = e.end;
      continue;
    }
    out.push_back(std::move(e));
  }
  std::string text;
  char line[160];
  for (const MapsEntry& e : out) {
    snprintf(line, sizeof line,
             "%08" PRIx64 "-%08" PRIx64 " %c%c%c%c %08" PRIx64 " %02x:%02x %" PRIu64, e.start,
             e.end, e.prot & PROT_READ ? 'r' : '-', e.prot & PROT_WRITE ? 'w' : '-',
             e.prot & PROT_EXEC ? 'x' : '-', e.shared ? 's' : 'p', e.offset, major(e.dev),
             minor(e.dev), e.inode);
    text += line;
    if (!e.name.empty()) text += std::string(std::max<size_t>(1, 73 - strlen(line)), ' ') + e.name;
    text += '\n';
  }
  return text;
}

void DebugSession::setBreakpoint(uint64_t addr, std::vector<Condition> conditions) {
  if (readMemory(addr, 1).empty()) {
    char what[80];
    snprintf(what, sizeof what, "cannot set a breakpoint at 0x%llx: nothing is mapped there",
             (unsigned long long)addr);
    fail(ErrorCode::Unsupported, what);
  }
  breaks_.code.insert(addr);
  if (conditions.empty()) {
    breaks_.conditions.erase(addr);
  } else {
    breaks_.conditions[addr] = std::move(conditions);
  }
}

void DebugSession::removeBreakpoint(uint64_t addr) {
  breaks_.code.erase(addr);
  breaks_.conditions.erase(addr);
}

void DebugSession::setWatchpoint(const Watch& w) {
  if ((w.len != 1 && w.len != 2 && w.len != 4 && w.len != 8) || w.addr % w.len != 0) {
    fail(ErrorCode::Unsupported, "a watchpoint covers 1, 2, 4 or 8 bytes aligned to its size");
  }
  if (w.kind == WatchKind::Execute && w.len != 1) {
    fail(ErrorCode::Unsupported, "a hardware breakpoint covers 1 byte");
  }
  Breakpoints b;
  b.watches.push_back(w);
  breaks_ = breaks_.merged(b);
}

void DebugSession::removeWatchpoint(const Watch& w) {
  auto it = std::find(breaks_.watches.begin(), breaks_.watches.end(), w);
  if (it != breaks_.watches.end()) breaks_.watches.erase(it);
}

void DebugSession::catchSyscalls(bool on, bool all, const std::set<long>& nrs) {
  catchOn_ = on;
  catchAll_ = all;
  catchNrs_ = nrs;
}

bool DebugSession::catches(long nr) const { return catchOn_ && (catchAll_ || catchNrs_.count(nr)); }

// The syscall that thread `tid` returns from as its segment now_ begins: its previous segment
// ended in one. -1: none.
long DebugSession::returnedFrom(uint32_t tid) const {
  auto it = segments_.find(now_.segment);
  while (it != segments_.begin()) {
    --it;
    if (it->second.tid == tid) {
      return it->second.end == SegmentEnd::Syscall ? it->second.syscall : -1;
    }
  }
  return -1;
}

HistoryStats DebugSession::stats() const {
  HistoryStats s = stats_;
  s.checkpoints = checkpoints_.size();
  return s;
}

uint32_t DebugSession::configId(const Breakpoints& b) {
  for (size_t i = 0; i < configs_.size(); i++) {
    if (configs_[i] == b) return uint32_t(i);
  }
  configs_.push_back(b);
  return uint32_t(configs_.size() - 1);
}

uint64_t DebugSession::rip(const ReplayTask& t) const { return t.task->regs().rip; }

// Whether the task, at an address of the set's breakpoints, stops there: its conditions hold.
bool DebugSession::breaksHere(const Breakpoints& set, const ReplayTask& t) const {
  const Regs r = t.task->regs();
  return set.stopsAt(r.rip, *t.task, r);
}

// The write or access watchpoint of `set` on memory that the syscall the active task just
// returned from wrote (replay writes it as the kernel did: the debug registers never see it).
const Watch* DebugSession::writtenBySyscall(const Breakpoints& set) const {
  for (const auto& [addr, len] : replay_.segmentWrites()) {
    for (const Watch& w : set.watches) {
      bool writes = w.kind == WatchKind::Write || w.kind == WatchKind::Access;
      if (writes && w.addr < addr + len && addr < w.addr + w.len) return &w;
    }
  }
  return nullptr;
}

DebugStop DebugSession::resume(bool reverse, bool step, uint32_t tid) {
  if (tracing())
    fprintf(stderr, "resume reverse=%d step=%d at %s\n", reverse, step, describe(now_).c_str());
  if (tid == 0) tid = now_.tid;
  uint32_t config = configId(breaks_);
  if (!reverse) {
    if (atEnd_) return DebugStop{DebugStop::End, now_.tid, {}};
    return step ? stepForward(tid) : continueForward(config);
  }
  atEnd_ = false;
  return step ? stepBackward(tid) : continueBackward(config);
}

DebugStop DebugSession::seek(uint64_t event) {
  atEnd_ = false;
  if (event <= now_.segment) {
    int ci = checkpointBefore(Moment{event, 0, {}}, false);
    restore(checkpoints_.at(size_t(ci < 0 ? 0 : ci)));
  }
  for (;;) {
    if (toDebuggeeSegment() == Arrival::End) return reachedEnd();
    if (replay_.segmentKey() >= event && !replay_.segmentResumed()) {
      return stopHere(DebugStop::Step, nullptr, 0);
    }
    if (interrupted()) return DebugStop{DebugStop::Interrupted, now_.tid, {}};
    ReplayTask& t = *replay_.active();
    std::optional<Trap> trap = runDebuggee(nullptr, 0, false, -1, true);
    if (trap && interrupted()) return interruptHere();
    if (trap) continue;  // a kick that came too late: the run goes on
    if (isFinal(t)) return reachedEnd();
  }
}

DebugStop DebugSession::openMoment(uint64_t segment, uint32_t tid, const Breakpoints& stops,
                                   uint64_t count, bool toEnd) {
  DebugStop at = seek(segment);
  if (at.reason == DebugStop::End || now_.segment != segment || now_.tid != tid) {
    fail(ErrorCode::Unsupported, "no segment of thread " + std::to_string(tid) +
                                     " of the debugged process begins at event " +
                                     std::to_string(segment));
  }
  Moment m = now_;
  if (toEnd) {
    m.actions.push_back(Action{Action::ToEnd, 0, 0});
  } else if (count > 0) {
    m.actions.push_back(Action{Action::Continue, configId(stops), count});
  }
  goTo(m);
  return DebugStop{DebugStop::Step, now_.tid, {}};
}

// --- Forwards ---------------------------------------------------------------------------

DebugStop DebugSession::continueForward(uint32_t config) {
  for (;;) {
    Arrival a = toDebuggeeSegment();
    if (a == Arrival::End) return reachedEnd();
    ReplayTask& t = *replay_.active();
    if (a == Arrival::Arrived) {
      if (t.deliverSig) return signalHere(t);
      long returned = catchOn_ ? returnedFrom(t.recordedTid) : -1;
      if (returned >= 0 && catches(returned)) {
        DebugStop stop = stopHere(DebugStop::SyscallReturn, nullptr, config);
        stop.syscall = returned;
        return stop;
      }
      if (const Watch* w = writtenBySyscall(configs_[config])) {
        return DebugStop{DebugStop::Watchpoint, now_.tid, *w};
      }
      if (breaksHere(configs_[config], t)) return stopHere(DebugStop::Breakpoint, nullptr, config);
      if (interrupted()) return DebugStop{DebugStop::Interrupted, now_.tid, {}};
    }
    std::optional<Trap> trap = runDebuggee(&configs_[config], config, false, -1, true);
    if (trap && trap->kind == Trap::Interrupted) {
      if (interrupted()) return interruptHere();
      continue;  // a kick that came too late: the run goes on
    }
    if (trap) return stopHere(DebugStop::Breakpoint, &*trap, config);
    if (isFinal(t)) return reachedEnd();
    const Segment& ended = segments_[now_.segment];
    if (ended.end == SegmentEnd::Syscall && catches(ended.syscall)) {
      DebugStop stop{DebugStop::SyscallEntry, now_.tid, {}};
      stop.syscall = ended.syscall;
      return stop;
    }
  }
}

DebugStop DebugSession::stepForward(uint32_t tid) {
  uint32_t config = configId(breaks_);
  ReplayTask* t = replay_.active();
  if (t && t->recordedTid == tid && t->tgid == pid_) {
    std::optional<Trap> trap = runDebuggee(&configs_[config], config, true);
    if (trap) return stopHere(DebugStop::Step, &*trap, config);
    if (isFinal(*t)) return reachedEnd();
  }
  return awaitThread(tid, config);
}

// The thread is not in user code (a syscall, or its turn has not come): a step ends when it
// runs user code again. Other threads run meanwhile and may stop at breakpoints.
DebugStop DebugSession::awaitThread(uint32_t tid, uint32_t config) {
  for (;;) {
    Arrival a = toDebuggeeSegment();
    if (a == Arrival::End) return reachedEnd();
    ReplayTask& cur = *replay_.active();
    if (a == Arrival::Arrived && cur.deliverSig) return signalHere(cur);
    if (a == Arrival::Arrived && cur.recordedTid == tid) {
      return stopHere(DebugStop::Step, nullptr, config);
    }
    if (a == Arrival::Arrived && breaksHere(configs_[config], cur)) {
      return stopHere(DebugStop::Breakpoint, nullptr, config);
    }
    if (a == Arrival::Arrived && interrupted()) {
      return DebugStop{DebugStop::Interrupted, now_.tid, {}};
    }
    std::optional<Trap> trap = runDebuggee(&configs_[config], config, false, -1, true);
    if (trap && trap->kind == Trap::Interrupted) {
      if (interrupted()) return interruptHere();
      continue;
    }
    if (trap) return stopHere(DebugStop::Breakpoint, &*trap, config);
    if (isFinal(cur)) return reachedEnd();
  }
}

// Steps thread `tid` while it runs the code of [start, end) (gdb's range stepping, for `next`
// and `step` over a source line): at full speed, with breakpoints where the range can be left,
// and single steps only over the instructions in it that leave it other than by a direct jump.
DebugStop DebugSession::stepRange(uint32_t tid, uint64_t start, uint64_t end) {
  if (tid == 0) tid = now_.tid;
  atEnd_ = false;
  const uint32_t user = configId(breaks_);
  ReplayTask* t = replay_.active();
  const bool inRange = t && t->recordedTid == tid && t->tgid == pid_ &&
                       now_.segment == replay_.segmentKey() && rip(*t) >= start && rip(*t) < end;
  std::optional<std::set<uint64_t>> exits =
      inRange ? rangeExits(*t->task, start, end) : std::nullopt;
  if (!exits) return stepForward(tid);
  Breakpoints armed = breaks_;
  for (uint64_t a : *exits) {
    if (readMemory(a, 1).empty()) return stepForward(tid);  // a way out to nowhere: step
    armed.code.insert(a);
    armed.conditions.erase(a);
  }
  const uint32_t id = configId(armed);
  for (;;) {
    const uint64_t at = rip(*t);
    std::optional<Trap> trap;
    if (exits->count(at) && at != end) {
      trap = runDebuggee(&configs_[user], user, true);  // an instruction that may leave
    } else {
      trap = runDebuggee(&configs_[id], id, false, -1, true);
    }
    if (!trap) return isFinal(*t) ? reachedEnd() : awaitThread(tid, user);
    if (trap->kind == Trap::Interrupted) {
      if (interrupted()) return interruptHere();
      continue;
    }
    if (trap->kind == Trap::Watchpoint) return stopHere(DebugStop::Watchpoint, &*trap, id);
    const uint64_t pc = rip(*t);
    if (pc != at && breaksHere(breaks_, *t)) return stopHere(DebugStop::Breakpoint, nullptr, user);
    if (pc < start || pc >= end) return stopHere(DebugStop::Step, nullptr, user);
  }
}

// Applies events and runs other processes until a segment of the debuggee is due.
DebugSession::Arrival DebugSession::toDebuggeeSegment() {
  ReplayTask* t = replay_.active();
  if (t && t->tgid == pid_ && now_.segment == replay_.segmentKey()) return Arrival::Same;
  for (;;) {
    if (!replay_.advanceToSegment()) return Arrival::End;
    t = replay_.active();
    if (t->tgid == pid_) {
      arrive(*t);
      return Arrival::Arrived;
    }
    replay_.runActive(RunControl{});
  }
}

void DebugSession::arrive(ReplayTask& t) {
  now_ = Moment{replay_.segmentKey(), t.recordedTid, {}};
  if (progress_) {
    __atomic_store_n(progress_, int32_t(std::min<uint64_t>(now_.segment, INT32_MAX)),
                     __ATOMIC_RELAXED);
  }
  segments_.emplace(now_.segment, Segment{t.recordedTid, SegmentEnd::Unknown, t.deliverSig});
  maybeCheckpoint();
  coverage_.arrived(rip(t));
}

// Runs the debuggee's active segment and notes in now_ how far it went.
std::optional<Trap> DebugSession::runDebuggee(const Breakpoints* breaks, uint32_t config, bool step,
                                              int stopAt, bool interruptible) {
  ReplayTask& t = *replay_.active();
  RunControl c;
  c.breaks = breaks;
  c.step = step;
  c.skipAt = rip(t);
  c.stopAt = stopAt >= 0 ? &positions_.at(size_t(stopAt)) : nullptr;
  c.interruptible = interruptible && interrupt_;
  if (c.interruptible) {
    std::lock_guard<std::mutex> lock(kickLock_);
    running_ = t.task->tid();
  }
  std::optional<Trap> trap;
  for (;;) {
    trap = replay_.runActive(c);
    if (!trap || trap->kind != Trap::Breakpoint || step || breaksHere(*breaks, t)) break;
    c.skipAt = rip(t);  // a hit whose conditions are false: on, without a stop
  }
  if (c.interruptible) {
    std::lock_guard<std::mutex> lock(kickLock_);
    running_ = 0;
    // A kick that came as the run stopped by itself waits in the task: take it out now, before
    // anything else resumes the task (an injected syscall takes it).
    if (kick::outstanding() && !t.exited) RemoteSyscalls(*t.task, t.stub.gadget).call(SYS_getpid);
  }
  std::vector<Action>& a = now_.actions;
  if (trap && trap->kind == Trap::Interrupted) return trap;  // no moment yet: interruptHere()
  if (trap && trap->kind == Trap::Position) {
    a.push_back(Action{Action::Position, uint32_t(stopAt), 1});
    return trap;
  }
  if (trap) {
    Action::Kind kind = step ? Action::Step : Action::Continue;
    if (!a.empty() && a.back().kind == kind && a.back().config == (step ? 0 : config)) {
      a.back().count++;
    } else {
      a.push_back(Action{kind, step ? 0 : config, 1});
    }
    return trap;
  }
  a.push_back(Action{Action::ToEnd, 0, 0});
  SegmentEnd end = t.exited                                            ? SegmentEnd::Exit
                   : t.atPosition                                      ? SegmentEnd::Position
                   : t.pending && t.pending->kind == Stop::SyscallStop ? SegmentEnd::Syscall
                                                                       : SegmentEnd::Signal;
  segments_[now_.segment].end = end;
  if (end == SegmentEnd::Syscall) {
    segments_[now_.segment].syscall = syscallNumber(t.task->regs().orig_rax);
  }
  return std::nullopt;
}

// Whether the task's segment just ended with the end of the debuggee: its exit_group, or the
// exit of its last thread.
bool DebugSession::isFinal(const ReplayTask& t) const {
  if (t.exited) return true;
  if (!t.pending || t.pending->kind != Stop::SyscallStop) return false;
  long nr = syscallNumber(t.task->regs().orig_rax);
  return nr == SYS_exit_group || (nr == SYS_exit && threads().size() == 1);
}

DebugStop DebugSession::reachedEnd() {
  ReplayTask* t = replay_.task(now_.tid);
  bool intact =
      t && !t->exited && !now_.actions.empty() && now_.actions.back().kind == Action::ToEnd;
  if (!intact) {
    // Replay went past the debuggee's end (a death that no syscall announced, or a recording
    // cut short): come back to the end of its last segment.
    if (segments_.empty()) lost("the end");
    auto last = std::prev(segments_.end());
    // A fatal signal ends history where it was received: its delivery is the death.
    const bool killed = last->second.signal && last->second.end == SegmentEnd::Exit;
    Moment end{last->first, last->second.tid, {}};
    if (!killed) end.actions.push_back(Action{Action::ToEnd, 0, 0});
    // Where replay is now is past any moment, though now_ may still name the one before the
    // death: nothing goes on from here (no segment has key 0).
    now_ = Moment{};
    goTo(end);
  }
  atEnd_ = true;
  return DebugStop{DebugStop::End, now_.tid, {}};
}

// Names the moment a kick stopped the debuggee at, so that replay can come back to it: steps
// on to an instruction a position trap can carry (as the recorder does for a preemption; a loop
// too tight to have one runs on to its way out) and makes that a position of its own.
DebugStop DebugSession::interruptHere() {
  const std::vector<Action> before = now_.actions;
  ReplayTask& t = *replay_.active();
  auto named = [&](Action last) {
    now_.actions = before;
    now_.actions.push_back(last);
    return DebugStop{DebugStop::Interrupted, now_.tid, {}};
  };
  std::map<uint64_t, int> passes;
  bool ended = false;
  for (int i = 0; i < kSettleSteps && !ended; i++) {
    uint8_t code[15];
    const uint64_t at = rip(t);
    if (!t.task->tryRead(at, code, sizeof code)) break;
    X86Instruction insn = decodeX86(code, sizeof code);
    if (insn.length > 0 && relocatable(insn)) {
      PreemptEvent p;
      p.tid = now_.tid;
      p.regs = t.task->regs();
      p.stackHash = stackHash(*t.task, p.regs.rsp);
      positions_.push_back(p);
      DebugStop stop = named(Action{Action::Position, uint32_t(positions_.size() - 1), 1});
      // Coming back here replays to the position with a register check at every pass (every
      // iteration of a loop): a checkpoint of the moment spares that. And the stop is one
      // instruction further, so that stepping back finds its way from the position.
      if (replay_.checkpointable()) keepShortcut();
      ended = !runDebuggee(nullptr, 0, true);
      if (!ended) return stop;
      break;
    }
    if (backwardConditionalJump(code, insn) && ++passes[at] >= 3) {
      Breakpoints exit;
      exit.code.insert(at + insn.length);
      const uint32_t id = configId(exit);
      ended = !runDebuggee(&configs_[id], id, false);
      passes.clear();
    } else {
      ended = !runDebuggee(nullptr, 0, true);
    }
  }
  // Otherwise the end of the segment, which is a moment too.
  if (!ended) runDebuggee(nullptr, 0, false);
  DebugStop stop = named(Action{Action::ToEnd, 0, 0});
  return isFinal(t) ? reachedEnd() : stop;
}

// Whether the active task is at `p`: its registers and stack.
bool DebugSession::atPosition(const PreemptEvent& p) {
  const ReplayTask* t = replay_.task(p.tid);
  if (!t) return false;
  return rwd::atPosition(*t->task, t->task->regs(), p);
}

void DebugSession::watchInterrupt(const int32_t* flag) {
  interrupt_ = flag;
  if (!watcher_.joinable()) watcher_ = std::thread([this] { watchForInterrupts(); });
}

// The watcher's thread: while an interruptible run is under way and the interrupt word is set,
// kicks the running task (again, should a kick land where the run cannot stop).
void DebugSession::watchForInterrupts() {
  while (!closing_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::lock_guard<std::mutex> lock(kickLock_);
    if (running_ && interrupted()) kick::send(running_);
  }
}

// The active task at the start of a segment that delivers a recorded signal: stopped as it was
// received, as a debugger sees a signal natively.
DebugStop DebugSession::signalHere(const ReplayTask& t) {
  DebugStop s{DebugStop::Signal, now_.tid, {}};
  s.signal = t.deliverSig;
  return s;
}

DebugStop DebugSession::stopHere(DebugStop::Reason reason, const Trap* trap, uint32_t config) {
  DebugStop s{reason, now_.tid, {}};
  if (trap && trap->kind == Trap::Watchpoint) {
    s.reason = DebugStop::Watchpoint;
    s.watch = configs_[config].watches.at(size_t(trap->watch));
  }
  return s;
}

// --- Backwards --------------------------------------------------------------------------

// Goes back to the last stop of `config` before now: from the nearest checkpoint before,
// replays forwards noting every stop up to now, and goes to the last one; if there is none,
// tries the window before that checkpoint, down to the start of the recording.
DebugStop DebugSession::continueBackward(uint32_t config) {
  Moment end = now_;
  for (;;) {
    int ci = checkpointBefore(end, true);
    if (ci < 0) {
      restore(checkpoints_.front());
      return DebugStop{DebugStop::Begin, now_.tid, {}};
    }
    // The scan may add or thin out checkpoints: keep where this window starts.
    const Moment start = checkpoints_[size_t(ci)].at;
    if (!mayStopIn(configs_[config], start.segment, end)) {
      if (tracing())
        fprintf(stderr, "skip from %s to %s\n", describe(start).c_str(), describe(end).c_str());
      stats_.windowsSkipped++;
      end = start;
      continue;
    }
    stats_.windowsReplayed++;
    restore(checkpoints_[size_t(ci)]);
    std::optional<Candidate> found;
    scan(end, config, &found);
    if (tracing())
      fprintf(stderr, "scan from %s to %s: %s\n", describe(start).c_str(), describe(end).c_str(),
              found ? describe(found->at).c_str() : "none");
    if (found) {
      // Going backwards, a watchpoint stops before the instruction that touched the memory,
      // with the value it had then (gdb reports the change as it would going forwards). A
      // hardware breakpoint stops before its instruction either way.
      std::optional<Moment> before;
      if (found->stop.reason == DebugStop::Watchpoint &&
          found->stop.watch.kind != WatchKind::Execute) {
        before = previousMoment(found->at, true);
      }
      goTo(before ? *before : found->at);
      return found->stop;
    }
    if (interrupted()) {
      goTo(start);
      return DebugStop{DebugStop::Interrupted, now_.tid, {}};
    }
    end = start;
  }
}

// Whether replay from the start of segment `first` to `end` may meet a stop of `set`, as far as
// code coverage tells (data watchpoints: always).
bool DebugSession::mayStopIn(const Breakpoints& set, uint64_t first, const Moment& end) const {
  if (catchOn_) return true;  // caught syscalls: code coverage does not see them
  std::vector<uint64_t> addrs(set.code.begin(), set.code.end());
  for (const Watch& w : set.watches) {
    if (w.kind != WatchKind::Execute) return true;
    addrs.push_back(w.addr);
  }
  bool upToNow = end.segment == now_.segment && end.actions == now_.actions;
  // At the very start of segment `end.segment`, nothing of it has run.
  uint64_t last = end.actions.empty() && !upToNow ? end.segment - 1 : end.segment;
  return coverage_.mayHaveRun(addrs, first, last, upToNow);
}

// Replays from here to `end`, keeping in *found the last stop of `config` before `end`.
void DebugSession::scan(const Moment& end, uint32_t config, std::optional<Candidate>* found) {
  const Breakpoints& set = configs_[config];
  bool first = true;
  for (;;) {
    Arrival a = first ? Arrival::Arrived : toDebuggeeSegment();
    first = false;
    const uint64_t key = replay_.segmentKey();
    if (a == Arrival::End || key > end.segment) return;
    const bool isEnd = key == end.segment && end.actions.empty();
    // A caught syscall's return is the segment's first stop forwards.
    const long returned = a == Arrival::Arrived && !isEnd && catchOn_ ? returnedFrom(now_.tid) : -1;
    if (returned >= 0 && catches(returned)) {
      *found = Candidate{now_, stopHere(DebugStop::SyscallReturn, nullptr, config)};
      (*found)->stop.syscall = returned;
    }
    // A syscall's write comes before the segment's first instruction; going backwards from the
    // segment's start, it is the first thing undone.
    if (const Watch* w = a == Arrival::Arrived ? writtenBySyscall(set) : nullptr) {
      *found = Candidate{now_, DebugStop{DebugStop::Watchpoint, now_.tid, *w}};
    }
    if (a == Arrival::Arrived && !isEnd && breaksHere(set, *replay_.active())) {
      *found = Candidate{now_, DebugStop{DebugStop::Breakpoint, now_.tid, {}}};
    }
    if (key == end.segment) return runActions(end, end.actions, &set, found);
    for (;;) {
      std::optional<Trap> trap = runDebuggee(&set, config, false);
      if (!trap) break;
      *found = Candidate{now_, stopHere(DebugStop::Breakpoint, &*trap, config)};
    }
    // The segment ended at a syscall instruction: a caught one's entry is a stop there.
    const Segment& ended = segments_[now_.segment];
    if (ended.end == SegmentEnd::Syscall && catches(ended.syscall)) {
      *found = Candidate{now_, DebugStop{DebugStop::SyscallEntry, now_.tid, {}}};
      (*found)->stop.syscall = ended.syscall;
    }
  }
}

bool DebugSession::stopIsIn(const Breakpoints& set, const Trap& trap, uint32_t armedConfig) {
  if (trap.kind == Trap::Watchpoint) {
    const Watch& w = configs_[armedConfig].watches.at(size_t(trap.watch));
    return std::find(set.watches.begin(), set.watches.end(), w) != set.watches.end();
  }
  return breaksHere(set, *replay_.active());
}

// Whether the stop comes after the instruction that caused it: a data watchpoint's. Going
// backwards, such a stop at the target itself is one to take.
bool DebugSession::afterItsInstruction(const Trap& trap, uint32_t armedConfig) const {
  return trap.kind == Trap::Watchpoint &&
         configs_[armedConfig].watches.at(size_t(trap.watch)).kind != WatchKind::Execute;
}

// Carries out `rest`, the actions from now_ to `target`. With `observe`, also notes in *found
// every stop of that set on the way, short of the target itself; but a data watchpoint that fires
// as the target is reached counts, since going backwards it stops before that instruction.
void DebugSession::runActions(const Moment& target, const std::vector<Action>& rest,
                              const Breakpoints* observe, std::optional<Candidate>* found) {
  const uint32_t observeId = observe ? configId(*observe) : 0;
  auto note = [&](const Trap& trap, uint32_t armed) {
    if (noteBudget_ && --*noteBudget_ == 0) throw TooManyStops{};
    *found = Candidate{now_, stopHere(DebugStop::Breakpoint, &trap, armed)};
  };
  for (size_t i = 0; i < rest.size(); i++) {
    const Action& act = rest[i];
    const bool last = i + 1 == rest.size();
    switch (act.kind) {
      case Action::Continue: {
        // Armed with both sets, a stop counts toward the action only if it is one of its own.
        const uint32_t armed =
            observe ? configId(configs_[act.config].merged(*observe)) : act.config;
        for (uint64_t count = 0; count < act.count;) {
          std::optional<Trap> trap = runDebuggee(&configs_[armed], armed, false);
          if (!trap) lost("a breakpoint stop");
          if (!observe || stopIsIn(configs_[act.config], *trap, armed)) count++;
          if (observe && (!(last && count == act.count) || afterItsInstruction(*trap, armed)) &&
              stopIsIn(*observe, *trap, armed)) {
            note(*trap, armed);
          }
        }
        break;
      }
      case Action::Step:
        for (uint64_t k = 1; k <= act.count; k++) {
          std::optional<Trap> trap = runDebuggee(observe, observeId, true);
          if (!trap) lost("a step");
          bool isTarget = last && k == act.count;
          if (observe && (!isTarget || afterItsInstruction(*trap, observeId)) &&
              stopIsIn(*observe, *trap, observeId)) {
            note(*trap, observeId);
          }
          if (!isTarget) stepped();
        }
        break;
      case Action::ToEnd:
        while (std::optional<Trap> trap = runDebuggee(observe, observeId, false)) {
          note(*trap, observeId);
        }
        break;
      case Action::Position:
        for (;;) {
          std::optional<Trap> trap = runDebuggee(observe, observeId, false, int(act.config));
          if (!trap || (trap->kind != Trap::Position && !observe)) lost("an interrupted moment");
          if (trap->kind == Trap::Position) break;
          note(*trap, observeId);
        }
        break;
    }
  }
  // Counting may have split the actions differently: the target names the same moment.
  now_.actions = target.actions;
}

DebugStop DebugSession::stepBackward(uint32_t tid) {
  Moment from = now_;
  if (from.tid != tid) {
    // The thread is inside a syscall: it stands at the end of its last segment.
    auto it = segments_.lower_bound(now_.segment);
    while (it != segments_.begin() && (--it)->second.tid != tid) {
    }
    if (it == segments_.end() || it->second.tid != tid || it->first >= now_.segment) {
      return DebugStop{DebugStop::Begin, now_.tid, {}};
    }
    from = Moment{it->first, tid, {Action{Action::ToEnd, 0, 0}}};
  }
  const Moment here = now_;
  std::optional<Moment> prev;
  try {
    prev = previousMoment(from);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::Unsupported) goTo(here);  // refused: stay where the user was
    throw;
  }
  if (!prev) {
    goTo(from);
    return DebugStop{DebugStop::Begin, now_.tid, {}};
  }
  goTo(*prev);
  return DebugStop{DebugStop::Step, now_.tid, {}};
}

// The moment one instruction of m.tid before m, or nullopt at the start of its history.
std::optional<Moment> DebugSession::previousMoment(const Moment& m, bool watchStop) {
  if (m.actions.empty()) {
    // The start of a segment: the task came from the end of its previous one (a syscall, a
    // signal), or, after a preemption, from the same instruction.
    auto it = segments_.find(m.segment);
    const bool delivering = it != segments_.end() && it->second.signal;
    while (it != segments_.begin() && (--it)->second.tid != m.tid) {
    }
    if (it == segments_.end() || it->first >= m.segment || it->second.tid != m.tid) {
      return std::nullopt;
    }
    Moment end{it->first, m.tid, {Action{Action::ToEnd, 0, 0}}};
    // A preempted task, or one stopped by a signal that this segment delivers, had not run the
    // instruction it stopped at: the end of the segment before is this very moment.
    const bool delivers = delivering && it->second.end == SegmentEnd::Signal;
    if (it->second.end == SegmentEnd::Position || delivers) return previousMoment(end);
    return end;
  }
  Moment base = m;
  Action lastAction = base.actions.back();
  base.actions.pop_back();
  if (lastAction.kind == Action::Step) {
    if (lastAction.count > 1) base.actions.push_back(Action{Action::Step, 0, lastAction.count - 1});
    return base;
  }
  if (lastAction.kind == Action::Continue && lastAction.count > 1) {
    base.actions.push_back(Action{Action::Continue, lastAction.config, lastAction.count - 1});
  }
  // A data watchpoint's stop comes right after the instruction that wrote, which is almost
  // always the one that ends where the stop is: look for it with a breakpoint first, for the
  // write in a hot loop lies far from the stop before.
  if (watchStop && lastAction.kind == Action::Continue) {
    if (std::optional<Moment> prev = predecessorByBreakpoint(m, base, lastAction)) return prev;
  }
  // Step from the stop before (or the segment's start) until m, counting; when that is far,
  // look for m's predecessor with a breakpoint instead.
  goTo(base);
  const Breakpoints* set =
      lastAction.kind == Action::Continue ? &configs_[lastAction.config] : nullptr;
  uint64_t steps = 0;
  for (;;) {
    if (steps == kStepsBeforeSearch) {
      if (std::optional<Moment> prev = predecessorByBreakpoint(m, base, lastAction)) return prev;
      Moment here = base;
      here.actions.push_back(Action{Action::Step, 0, steps});
      goTo(here);
    }
    if (steps == kMaxStepsBack) {
      fail(ErrorCode::Unsupported,
           "cannot step back here: the previous instruction is more than " +
               std::to_string(kMaxStepsBack) +
               " instructions after the last stop, in code no breakpoint finds (a loop); "
               "set a breakpoint earlier and reverse-continue to it");
    }
    std::optional<Trap> trap = runDebuggee(set, set ? lastAction.config : 0, true);
    steps++;
    if (!trap) {
      if (lastAction.kind != Action::ToEnd) lost("a breakpoint stop");
      // The instruction that ended the segment was the steps-th: m is before it ran.
      steps--;
      break;
    }
    if (set && stopIsIn(*set, *trap, lastAction.config)) break;
    if (lastAction.kind == Action::Position && atPosition(positions_.at(lastAction.config))) break;
    stepped();
  }
  if (steps == 0) return previousMoment(base);
  Moment prev = base;
  if (steps > 1) prev.actions.push_back(Action{Action::Step, 0, steps - 1});
  return prev;
}

// m's predecessor when m comes after a long stretch of code (a loop): an instruction that runs
// straight into m's (one that ends where it starts, a conditional jump not taken among them),
// or the call that entered m's function. A
// breakpoint on such a guess, replayed from `base` to m at full speed, finds its last run
// before m; one step from there must land on m's instruction. That arrival is m itself when m
// is a breakpoint stop (no other stop of its set lies between base and m), a watchpoint stop
// whose watchpoint the step fires (likewise), or the instruction that ends its segment.
std::optional<Moment> DebugSession::predecessorByBreakpoint(const Moment& m, const Moment& base,
                                                            const Action& last) {
  if (last.kind == Action::Position) return std::nullopt;
  goTo(m);
  ReplayTask& t = *replay_.task(m.tid);
  const Regs regs = registers(m.tid, nullptr);  // inside a syscall: at its instruction
  const uint64_t at = regs.rip;
  auto breaksAt = [&](const Breakpoints& set) {
    return set.code.count(at) || std::find(set.watches.begin(), set.watches.end(),
                                           Watch{WatchKind::Execute, at, 1}) != set.watches.end();
  };
  const bool breakStop = last.kind == Action::Continue && breaksAt(configs_[last.config]);
  if (last.kind == Action::ToEnd && t.atPosition) return std::nullopt;
  if (last.kind == Action::Continue && configs_[last.config].watches.size() >= kMaxWatches) {
    return std::nullopt;
  }
  std::vector<uint64_t> guesses;
  auto guess = [&](uint64_t start, uint64_t length, bool wantCall) {
    uint8_t code[15];
    if (!t.task->tryRead(start, code, sizeof code)) return;
    X86Instruction insn = decodeX86(code, sizeof code);
    bool fallsThrough = !insn.controlFlow || insn.conditional;
    if (insn.length == length && (wantCall ? insn.call : fallsThrough)) {
      guesses.push_back(start);
    }
  };
  for (uint64_t length = 1; length <= 15; length++) guess(at - length, length, false);
  uint64_t returnTo = 0;
  if (t.task->tryRead(regs.rsp, &returnTo, sizeof returnTo)) {
    for (uint64_t length = 2; length <= 7; length++) guess(returnTo - length, length, true);
  }
  Action rest = last;
  if (rest.kind == Action::Continue) rest.count = 1;
  // The instruction found last time first: stepping or going back through a loop meets the
  // same one again and again.
  auto cached = std::find(guesses.begin(), guesses.end(), lastGuess_);
  if (cached != guesses.end()) std::rotate(guesses.begin(), cached, cached + 1);
  for (size_t i = 0; i < guesses.size(); i++) {
    const uint64_t start = guesses[i];
    if (i == 1 && replay_.checkpointable()) {
      // Each guess replays from base: from a checkpoint there, not the one before.
      goTo(base);
      keepShortcut();
    }
    // A hardware breakpoint: a wrong guess at where an instruction starts is harmless there,
    // where an int3 would corrupt the instruction it lands in.
    Breakpoints before;
    before.watches.push_back(Watch{WatchKind::Execute, start, 1});
    goTo(base);
    std::optional<Candidate> found;
    noteBudget_ = kGuessStops;
    try {
      runActions(m, {rest}, &before, &found);
    } catch (const TooManyStops&) {
      found.reset();
    }
    noteBudget_.reset();
    if (!found) continue;
    goTo(found->at);
    // Stepping back goes on from here: keep a checkpoint of it.
    if (replay_.checkpointable()) keepShortcut();
    const uint32_t armed = last.kind == Action::Continue ? last.config : 0;
    std::optional<Trap> trap = runDebuggee(&configs_[armed], armed, true);
    const ReplayTask* now = replay_.active();
    const bool fired =
        trap && trap->kind == Trap::Watchpoint && stopIsIn(configs_[armed], *trap, armed);
    if (now && now->recordedTid == m.tid && rip(*now) == at &&
        (last.kind != Action::Continue || breakStop || fired)) {
      lastGuess_ = start;
      return found->at;
    }
  }
  return std::nullopt;
}

// --- Moving in time ---------------------------------------------------------------------

// If `from` lies on the way from its segment's start to `to`, the actions left to get there.
std::optional<std::vector<Action>> DebugSession::remainder(const Moment& from, const Moment& to) {
  size_t n = from.actions.size();
  if (from.segment != to.segment || n > to.actions.size()) return std::nullopt;
  if (!std::equal(from.actions.begin(), from.actions.begin() + long(n ? n - 1 : 0),
                  to.actions.begin())) {
    return std::nullopt;
  }
  std::vector<Action> rest;
  if (n > 0) {
    const Action& a = from.actions[n - 1];
    const Action& b = to.actions[n - 1];
    if (a.kind != b.kind || a.config != b.config || a.count > b.count) return std::nullopt;
    // Two runs to breakpoint stops, or two runs of steps, make one.
    if (a.count < b.count) rest.push_back(Action{b.kind, b.config, b.count - a.count});
  }
  rest.insert(rest.end(), to.actions.begin() + long(n), to.actions.end());
  return rest;
}

// Takes replay to m the shortest way: on from here, from a checkpoint on the way, or from the
// last checkpoint before m's segment.
void DebugSession::goTo(const Moment& m) {
  std::optional<std::vector<Action>> rest = remainder(now_, m);
  const Checkpoint* best = nullptr;
  auto progress = [](const Moment& x) {
    return std::make_pair(x.actions.size(), x.actions.empty() ? 0 : x.actions.back().count);
  };
  auto consider = [&](const Checkpoint& c) {
    if (!remainder(c.at, m)) return;
    if (best ? progress(c.at) > progress(best->at) : !rest || progress(c.at) > progress(now_)) {
      best = &c;
    }
  };
  for (const Checkpoint& c : shortcuts_) consider(c);
  for (const Checkpoint& c : checkpoints_) consider(c);
  if (best) {
    restore(*best);
    rest = remainder(now_, m);
  } else if (!rest) {
    int ci = checkpointBefore(m, false);
    restore(checkpoints_.at(size_t(ci < 0 ? 0 : ci)));
    for (;;) {
      Arrival a = toDebuggeeSegment();
      if (a == Arrival::End || replay_.segmentKey() > m.segment) lost("a segment");
      if (replay_.segmentKey() == m.segment) break;
      runDebuggee(nullptr, 0, false);
    }
    rest = m.actions;
  }
  runActions(m, *rest, nullptr, nullptr);
  atEnd_ = false;
}

int DebugSession::checkpointBefore(const Moment& m, bool strict) const {
  for (int i = int(checkpoints_.size()) - 1; i >= 0; i--) {
    uint64_t at = checkpoints_[size_t(i)].at.segment;
    if (at < m.segment || (at == m.segment && (!strict || !m.actions.empty()))) return i;
  }
  return -1;
}

void DebugSession::restore(const Checkpoint& c) {
  std::map<uint32_t, pid_t> copies;
  for (const ProcessCopy& p : c.processes) {
    const pid_t copy = forkProcess(*p.leader, p.gadget);
    copies[p.tgid] = copy;
    Task leader{copy};
    for (const auto& [tid, image] : p.threads)
      copies[tid] = recreateThread(leader, p.gadget, image);
  }
  replay_.restoreState(c.state, copies);
  coverage_.setTracking(c.coverage);
  now_ = c.at;
  sinceCheckpoint_ = std::chrono::steady_clock::now();
}

// Long runs of single steps get checkpoints of their own along the way, so that stepping back
// through them does not step again from the segment's start each time.
void DebugSession::stepped() {
  if (++steps_ % kStepsPerShortcut != 0 || !replay_.checkpointable()) return;
  keepShortcut();
}

void DebugSession::keepShortcut() {
  for (const Checkpoint& c : shortcuts_) {
    if (c.at.segment == now_.segment && c.at.actions == now_.actions) return;
  }
  if (shortcuts_.size() >= kMaxShortcuts) {
    killAndReap(shortcuts_.front().pids());
    shortcuts_.erase(shortcuts_.begin());
  }
  shortcuts_.push_back(checkpointHere());
}

DebugSession::Checkpoint DebugSession::checkpointHere() {
  Checkpoint c;
  c.at = now_;
  c.state = replay_.saveState();
  c.coverage = coverage_.tracking();
  std::map<uint32_t, ProcessCopy> copies;  // by recorded tgid
  for (const auto& [tid, t] : replay_.tasks()) {
    ProcessCopy& p = copies[t.tgid];
    if (tid != t.tgid) p.threads.emplace_back(tid, captureThread(*t.task, t.clearChildTid));
  }
  for (auto& [tgid, p] : copies) {
    ReplayTask& leader = *replay_.task(tgid);
    p.tgid = tgid;
    p.gadget = leader.stub.gadget;
    p.leader = std::make_unique<Task>(forkProcess(*leader.task, p.gadget));
    c.processes.push_back(std::move(p));
  }
  return c;
}

std::vector<pid_t> DebugSession::Checkpoint::pids() const {
  std::vector<pid_t> out;
  for (const ProcessCopy& p : processes) out.push_back(p.leader->tid());
  return out;
}

// At the start of a segment, forks a checkpoint when replay has run a while since the last one
// it passed.
void DebugSession::maybeCheckpoint() {
  auto now = std::chrono::steady_clock::now();
  int ci = checkpointBefore(now_, false);
  if (ci >= 0 && checkpoints_[size_t(ci)].at.segment == now_.segment) {
    markCoverage();
    sinceCheckpoint_ = now;
    return;
  }
  if (!checkpoints_.empty() && now - sinceCheckpoint_ < kCheckpointInterval) return;
  if (!replay_.checkpointable()) return;
  if (checkpoints_.size() >= kMaxCheckpoints) {
    // Keep every other one (and the first): the gaps double, the memory stays bounded.
    std::vector<pid_t> dropped;
    std::vector<Checkpoint> kept;
    for (size_t i = 0; i < checkpoints_.size(); i++) {
      if (i % 2 == 0) {
        kept.push_back(std::move(checkpoints_[i]));
      } else {
        for (pid_t pid : checkpoints_[i].pids()) dropped.push_back(pid);
      }
    }
    checkpoints_ = std::move(kept);
    killAndReap(dropped);
    ci = checkpointBefore(now_, false);
  }
  markCoverage();
  checkpoints_.insert(checkpoints_.begin() + (ci + 1), checkpointHere());
  sinceCheckpoint_ = now;
}

// Checkpoints are where code coverage stretches begin: going back skips whole windows between
// checkpoints.
void DebugSession::markCoverage() {
  if (!replay_.checkpointable()) return;
  ReplayTask& t = *replay_.task(now_.tid);
  std::vector<pid_t> threads;
  for (const auto& [tid, other] : replay_.tasks()) {
    if (other.tgid == t.tgid) threads.push_back(other.task->tid());
  }
  coverage_.mark(*t.task, t.stub.gadget, now_.segment, threads);
}

}  // namespace rwd
