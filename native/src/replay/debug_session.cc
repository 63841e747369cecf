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
constexpr uint64_t kFirstGuessStops = 64;
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

// With tracing on: where a resume's time went (what going back costs is restores and runs).
struct Costs {
  uint64_t restores = 0, forks = 0, runs = 0, steps = 0, traps = 0;
  std::chrono::steady_clock::duration restoring{}, forking{}, running{};
  void print() const {
    auto ms = [](std::chrono::steady_clock::duration d) {
      return std::chrono::duration<double, std::milli>(d).count();
    };
    fprintf(stderr,
            "costs: %" PRIu64 " restores %.2f ms, %" PRIu64 " checkpoints %.2f ms, %" PRIu64
            " runs (%" PRIu64 " steps, %" PRIu64 " traps) %.2f ms\n",
            restores, ms(restoring), forks, ms(forking), runs, steps, traps, ms(running));
  }
};
Costs costs;

struct Timed {
  std::chrono::steady_clock::duration& into;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~Timed() { into += std::chrono::steady_clock::now() - start; }
};

}  // namespace

DebugSession::DebugSession(ReplayOptions options, uint32_t pid, const std::string& exe)
    : replay_(std::move(options)) {
  replay_.start();
  ReplayTask* t = replay_.active();
  // A Ctrl-C at the terminal is the debugger's (gdb passes it on as an interrupt): in a process
  // group of their own, out of the terminal's foreground group, the replayed processes never get
  // it. Every process replay makes later is a fork of this one, in its group.
  RemoteSyscalls(*t->task, t->stub.gadget)
      .check("leaving the terminal's process group", SYS_setpgid, 0, 0);
  pid_ = pid ? pid : replay_.initialTid();
  coverage_ = CodeCoverage(pid_);
  replay_.followCode(&coverage_);
  events_ = replay_.reader().total();
  configs_.push_back(Breakpoints{});  // configuration 0: nothing
  if (pid_ != replay_.initialTid() || !exe.empty()) {
    // History begins at a checkpoint: a vfork child, which shares its parent's memory until it
    // execs, can be gone back to only from its exec.
    while (t->tgid != pid_ || (!exe.empty() && replay_.program(pid_)->exe != exe) ||
           !replay_.checkpointable()) {
      replay_.runActive(RunControl{});
      if (!replay_.advanceToSegment()) {
        fail(ErrorCode::Unsupported,
             "process " + std::to_string(pid_) + (exe.empty() ? "" : " running " + exe) +
                 " never runs in the recording at a moment that can be gone back to");
      }
      t = replay_.active();
    }
  }
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
  costs = Costs{};
  struct PrintCosts {
    ~PrintCosts() {
      if (tracing()) costs.print();
    }
  } printCosts;
  if (!reverse) {
    if (atEnd_) return DebugStop{DebugStop::End, now_.tid, {}};
    return reported(step ? stepForward(tid) : continueForward(config));
  }
  atEnd_ = false;
  return reported(step ? stepBackward(tid) : continueBackward(config));
}

// How many execs of the debuggee lie before m (since the session's start).
size_t DebugSession::execsBefore(const Moment& m) const {
  return size_t(std::distance(execs_.begin(), execs_.upper_bound(m.segment)));
}

// A stop in another program than the debugger was last told of is first of all that exec.
DebugStop DebugSession::reported(DebugStop stop) {
  const size_t n = execsBefore(now_);
  if (n == shownExecs_) return stop;
  shownExecs_ = n;
  return DebugStop{DebugStop::Exec, now_.tid, {}};
}

// The debugger is not told of a seek (it reads the program anew when it connects after one).
DebugStop DebugSession::seek(uint64_t event) {
  DebugStop stop = seekTo(event);
  shownExecs_ = execsBefore(now_);
  return stop;
}

DebugStop DebugSession::seekTo(uint64_t event) {
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
  shownExecs_ = execsBefore(now_);
  return DebugStop{DebugStop::Step, now_.tid, {}};
}

// --- Forwards ---------------------------------------------------------------------------

DebugStop DebugSession::continueForward(uint32_t config) {
  for (;;) {
    Arrival a = toDebuggeeSegment();
    if (a == Arrival::End) return reachedEnd();
    ReplayTask& t = *replay_.active();
    if (a == Arrival::Arrived) {
      if (execsBefore(now_) != shownExecs_) return DebugStop{DebugStop::Step, now_.tid, {}};
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
  return reported(stepOverRange(tid, start, end));
}

DebugStop DebugSession::stepOverRange(uint32_t tid, uint64_t start, uint64_t end) {
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
  segments_.emplace(now_.segment,
                    Segment{t.recordedTid, SegmentEnd::Unknown, t.deliverSig, -1, {}});
  const long nr = returnedFrom(t.recordedTid);
  if ((nr == SYS_execve || nr == SYS_execveat) && t.task->regs().rax == 0) {
    execs_.insert(now_.segment);
  }
  maybeCheckpoint();
  coverage_.arrived(rip(t));
  runFromStart_ = coverage_.tracking().on;
  unreachedRun_.reset();
}

// Before and after a run of the active segment that began at `from`: narrows what it has not
// reached to what `breaks` arms (none with nullptr), less where the run began (a breakpoint there
// is stepped over, not hit) and where it stopped.
void DebugSession::noteUnreached(const Breakpoints* breaks, uint64_t from) {
  if (!runFromStart_) return;
  std::set<uint64_t> armed;
  if (breaks) {
    for (uint64_t a : breaks->code) {
      if (!unreachedRun_ || unreachedRun_->count(a)) armed.insert(a);
    }
  }
  armed.erase(from);
  unreachedRun_ = std::move(armed);
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
  noteUnreached(breaks, c.skipAt);
  costs.runs++;
  costs.steps += step;
  Timed timed{costs.running};
  for (;;) {
    trap = replay_.runActive(c);
    if (trap && runFromStart_ && !t.exited) unreachedRun_->erase(rip(t));
    if (!trap || trap->kind != Trap::Breakpoint || step || breaksHere(*breaks, t)) break;
    c.skipAt = rip(t);  // a hit whose conditions are false: on, without a stop
  }
  costs.traps += trap.has_value();
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
  if (runFromStart_) {
    // The whole segment ran with these armed, in code whose int3s the program cannot overwrite.
    for (uint64_t addr : *unreachedRun_) {
      if (coverage_.followsFixedCode(addr)) segments_[now_.segment].unreached.insert(addr);
    }
    runFromStart_ = false;
  }
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
  long nr = nativeSyscall(traceSyscallNumber(t.task->regs(), t.task->inCompatSyscall()));
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
      keepShortcut();
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
  std::optional<EarlierStops> earlier = std::move(earlier_);
  earlier_.reset();
  if (earlier && earlier->config == config && !catchOn_ && earlier->from.segment == now_.segment &&
      earlier->from.actions == now_.actions) {
    // A replay up to here would count a data watchpoint's stop at this very moment, but not a
    // breakpoint's: one in this segment might be here, and the scan decides.
    const DebugStop* last = earlier->stops.empty() ? nullptr : &earlier->stops.back().stop;
    const bool dataStop =
        last && last->reason == DebugStop::Watchpoint && last->watch.kind != WatchKind::Execute;
    if (!last) {
      end = earlier->below;
    } else if (dataStop || earlier->stops.back().at.segment < now_.segment) {
      const Candidate found = earlier->stops.back();
      earlier->stops.pop_back();
      DebugStop stop = backTo(found);
      // Going back before a stop at a segment's start leaves that segment: what lies after is
      // not earlier any more.
      while (!earlier->stops.empty() && earlier->stops.back().at.segment > now_.segment) {
        earlier->stops.pop_back();
      }
      earlier->from = now_;
      earlier_ = std::move(earlier);
      return stop;
    }
  }
  for (;;) {
    if (end.actions.empty() && execs_.count(end.segment)) {
      // Before a program's first moment lies the execve of the program before: reported() makes
      // the stop there an exec, and the debugger goes on with that program's breakpoints.
      if (std::optional<Moment> before = previousMoment(end)) {
        goTo(*before);
        return DebugStop{DebugStop::Step, now_.tid, {}};
      }
    }
    int ci = checkpointBefore(end, true);
    if (ci < 0) {
      restore(checkpoints_.front());
      return DebugStop{DebugStop::Begin, now_.tid, {}};
    }
    // The scan may add or thin out checkpoints: keep where this window starts.
    const Moment start = checkpoints_[size_t(ci)].at;
    // A window that an exec cuts (none was checkpointable at the new program's start) is scanned
    // from there only: the breakpoints are the new program's.
    auto exec = execs_.upper_bound(end.segment);
    const uint64_t floor =
        exec != execs_.begin() && *std::prev(exec) > start.segment ? *std::prev(exec) : 0;
    const Moment below = floor ? Moment{floor, segments_.at(floor).tid, {}} : start;
    if (!mayStopIn(configs_[config], below.segment, end)) {
      if (tracing())
        fprintf(stderr, "skip from %s to %s\n", describe(below).c_str(), describe(end).c_str());
      stats_.windowsSkipped++;
      end = below;
      continue;
    }
    stats_.windowsReplayed++;
    restore(checkpoints_[size_t(ci)]);
    std::vector<Candidate> found;
    scan(end, config, floor, &found);
    if (tracing())
      fprintf(stderr, "scan from %s to %s: %s (%zu stops)\n", describe(start).c_str(),
              describe(end).c_str(), found.empty() ? "none" : describe(found.back().at).c_str(),
              found.size());
    if (!found.empty()) {
      const Candidate last = found.back();
      found.pop_back();
      DebugStop stop = backTo(last);
      while (!found.empty() && found.back().at.segment > now_.segment) found.pop_back();
      earlier_ = EarlierStops{now_, config, below, std::move(found)};
      return stop;
    }
    if (interrupted()) {
      goTo(below);
      return DebugStop{DebugStop::Interrupted, now_.tid, {}};
    }
    end = below;
  }
}

// Goes to a stop found going back. A watchpoint stops before the instruction that touched the
// memory, with the value it had then (gdb reports the change as it would going forwards). A
// hardware breakpoint stops before its instruction either way.
DebugStop DebugSession::backTo(const Candidate& found) {
  std::optional<Moment> before;
  if (found.stop.reason == DebugStop::Watchpoint && found.stop.watch.kind != WatchKind::Execute) {
    before = previousMoment(found.at, true);
  }
  goTo(before ? *before : found.at);
  return found.stop;
}

// Whether replay from the start of segment `first` to `end` may meet a stop of `set`, as far as
// code coverage tells (data watchpoints: always).
bool DebugSession::mayStopIn(const Breakpoints& set, uint64_t first, const Moment& end) const {
  if (catchOn_) return true;  // caught syscalls: code coverage does not see them
  bool upToNow = end.segment == now_.segment && end.actions == now_.actions;
  // At the very start of segment `end.segment`, nothing of it has run.
  uint64_t last = end.actions.empty() && !upToNow ? end.segment - 1 : end.segment;
  // Left out: breakpoints that whole runs of each of the debuggee's segments here never reached.
  auto reached = [&](uint64_t addr) {
    for (auto it = segments_.lower_bound(first); it != segments_.end() && it->first <= last; ++it) {
      if (!it->second.unreached.count(addr)) return true;
    }
    return false;
  };
  std::vector<uint64_t> addrs;
  std::copy_if(set.code.begin(), set.code.end(), std::back_inserter(addrs), reached);
  for (const Watch& w : set.watches) {
    if (w.kind != WatchKind::Execute) return true;
    addrs.push_back(w.addr);
  }
  if (addrs.empty()) return false;
  return coverage_.mayHaveRun(addrs, first, last, upToNow);
}

// Replays from here to `end`, noting in *found, in order, the stops of `config` before `end`
// in segments from `floor` on.
void DebugSession::scan(const Moment& end, uint32_t config, uint64_t floor,
                        std::vector<Candidate>* found) {
  const Breakpoints& set = configs_[config];
  bool first = true;
  for (;;) {
    Arrival a = first ? Arrival::Arrived : toDebuggeeSegment();
    first = false;
    const uint64_t key = replay_.segmentKey();
    if (a == Arrival::End || key > end.segment) return;
    if (key < floor) {
      runDebuggee(nullptr, 0, false);
      continue;
    }
    const bool isEnd = key == end.segment && end.actions.empty();
    // A caught syscall's return is the segment's first stop forwards.
    const long returned = a == Arrival::Arrived && !isEnd && catchOn_ ? returnedFrom(now_.tid) : -1;
    if (returned >= 0 && catches(returned)) {
      found->push_back(Candidate{now_, stopHere(DebugStop::SyscallReturn, nullptr, config)});
      found->back().stop.syscall = returned;
    }
    // A syscall's write comes before the segment's first instruction; going backwards from the
    // segment's start, it is the first thing undone.
    if (const Watch* w = a == Arrival::Arrived ? writtenBySyscall(set) : nullptr) {
      found->push_back(Candidate{now_, DebugStop{DebugStop::Watchpoint, now_.tid, *w}});
    }
    if (a == Arrival::Arrived && !isEnd && breaksHere(set, *replay_.active())) {
      found->push_back(Candidate{now_, DebugStop{DebugStop::Breakpoint, now_.tid, {}}});
    }
    if (key == end.segment) return runActions(end, end.actions, &set, found);
    for (;;) {
      std::optional<Trap> trap = runDebuggee(&set, config, false);
      if (!trap) break;
      found->push_back(Candidate{now_, stopHere(DebugStop::Breakpoint, &*trap, config)});
    }
    // The segment ended at a syscall instruction: a caught one's entry is a stop there.
    const Segment& ended = segments_[now_.segment];
    if (ended.end == SegmentEnd::Syscall && catches(ended.syscall)) {
      found->push_back(Candidate{now_, DebugStop{DebugStop::SyscallEntry, now_.tid, {}}});
      found->back().stop.syscall = ended.syscall;
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

// Carries out `rest`, the actions from now_ to `target`. With `observe`, also notes in *found,
// in order, every stop of that set on the way, short of the target itself; but a data watchpoint
// that fires as the target is reached counts, since going backwards it stops before that
// instruction.
void DebugSession::runActions(const Moment& target, const std::vector<Action>& rest,
                              const Breakpoints* observe, std::vector<Candidate>* found) {
  const uint32_t observeId = observe ? configId(*observe) : 0;
  auto note = [&](const Trap& trap, uint32_t armed) {
    if (noteBudget_ && --*noteBudget_ == 0) throw TooManyStops{};
    found->push_back(Candidate{now_, stopHere(DebugStop::Breakpoint, &trap, armed)});
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
  if (last.kind == Action::Continue && configs_[last.config].watches.size() >= kMaxWatches) {
    return std::nullopt;
  }
  Action rest = last;
  if (rest.kind == Action::Continue) rest.count = 1;
  // m's instruction, and whether m is a breakpoint's stop: known once replay has been at m.
  uint64_t at = 0;
  bool breakStop = false;
  auto learn = [&]() {
    const Regs regs = registers(m.tid, nullptr);  // inside a syscall: at its instruction
    at = regs.rip;
    const Breakpoints& set = configs_[last.config];
    breakStop =
        last.kind == Action::Continue &&
        (set.code.count(at) || std::find(set.watches.begin(), set.watches.end(),
                                         Watch{WatchKind::Execute, at, 1}) != set.watches.end());
    return regs;
  };
  // The guess `start` tried, as above, giving up after `budget` hits of it.
  bool cutShort = false;
  auto attempt = [&](uint64_t start, uint64_t budget) -> std::optional<Moment> {
    // A hardware breakpoint: a wrong guess at where an instruction starts is harmless there,
    // where an int3 would corrupt the instruction it lands in.
    Breakpoints before;
    before.watches.push_back(Watch{WatchKind::Execute, start, 1});
    goTo(base);
    std::vector<Candidate> found;
    noteBudget_ = budget;
    try {
      runActions(m, {rest}, &before, &found);
      if (!at) learn();
    } catch (const TooManyStops&) {
      found.clear();
      cutShort = true;
    }
    noteBudget_.reset();
    if (found.empty() || !at) return std::nullopt;
    const Moment guessed = found.back().at;
    goTo(guessed);
    // Stepping back goes on from here: keep a checkpoint of it.
    keepShortcut();
    const uint32_t armed = last.kind == Action::Continue ? last.config : 0;
    std::optional<Trap> trap = runDebuggee(&configs_[armed], armed, true);
    const ReplayTask* now = replay_.active();
    const bool fired =
        trap && trap->kind == Trap::Watchpoint && stopIsIn(configs_[armed], *trap, armed);
    if (now && now->recordedTid == m.tid && rip(*now) == at &&
        (last.kind != Action::Continue || breakStop || fired)) {
      lastGuess_ = start;
      return guessed;
    }
    return std::nullopt;
  };
  // Going to m, each guess, and going to what it finds replay from base: from a checkpoint there,
  // not the one before.
  bool kept = false;
  auto keepBase = [&]() {
    if (kept || !replay_.checkpointable()) return;
    kept = true;
    goToKeepingStops(base);
    keepShortcut();
  };
  // The instruction found last time first, before going to m: stepping or going back through a
  // loop meets the same one again and again. Not known yet to run into m's, it gets a few hits
  // only, and all of them below if it does.
  bool triedLast = false;
  if (lastGuess_ && last.kind == Action::Continue) {
    keepBase();
    if (std::optional<Moment> prev = attempt(lastGuess_, kFirstGuessStops)) return prev;
    triedLast = !cutShort;
  }
  keepBase();
  goTo(m);
  ReplayTask& t = *replay_.task(m.tid);
  const Regs regs = learn();
  if (last.kind == Action::ToEnd && t.atPosition) return std::nullopt;
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
  auto cached = std::find(guesses.begin(), guesses.end(), lastGuess_);
  if (cached != guesses.end()) std::rotate(guesses.begin(), cached, cached + 1);
  for (size_t i = 0; i < guesses.size(); i++) {
    if (triedLast && guesses[i] == lastGuess_) continue;
    keepBase();
    if (std::optional<Moment> prev = attempt(guesses[i], kGuessStops)) return prev;
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

// Goes to m, a run to the n-th stop of a set; going back through the stops of a loop one by one
// goes to the stops before it next. On the way, keeps checkpoints at the stops 1, 2, 4, 8...
// before m where none lies between: each earlier stop is then a short replay away, for about one
// checkpoint per stop gone back to.
void DebugSession::goToKeepingStops(const Moment& m) {
  if (m.actions.empty() || m.actions.back().kind != Action::Continue) return goTo(m);
  const uint64_t n = m.actions.back().count;
  auto between = [&](const Moment& from) {
    for (const std::vector<Checkpoint>* list : {&checkpoints_, &shortcuts_}) {
      for (const Checkpoint& c : *list) {
        if (remainder(from, c.at) && remainder(c.at, m)) return true;
      }
    }
    return false;
  };
  uint64_t gap = 1;
  while (gap * 2 < n) gap *= 2;
  for (; gap >= 1 && replay_.checkpointable(); gap /= 2) {
    Moment rung = m;
    rung.actions.back().count = n - gap;
    if (gap >= n || between(rung)) continue;
    goTo(rung);
    keepShortcut();
  }
  goTo(m);
}

int DebugSession::checkpointBefore(const Moment& m, bool strict) const {
  for (int i = int(checkpoints_.size()) - 1; i >= 0; i--) {
    uint64_t at = checkpoints_[size_t(i)].at.segment;
    if (at < m.segment || (at == m.segment && (!strict || !m.actions.empty()))) return i;
  }
  return -1;
}

void DebugSession::restore(const Checkpoint& c) {
  costs.restores++;
  Timed timed{costs.restoring};
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
  runFromStart_ = c.at.actions.empty() && coverage_.tracking().on;
  unreachedRun_.reset();
}

// Long runs of single steps get checkpoints of their own along the way, so that stepping back
// through them does not step again from the segment's start each time.
void DebugSession::stepped() {
  if (++steps_ % kStepsPerShortcut == 0) keepShortcut();
}

// Where replay can be copied (see ReplaySession::checkpointable): a rung of goToKeepingStops may
// land where a thread is ending.
void DebugSession::keepShortcut() {
  if (!replay_.checkpointable()) return;
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
  costs.forks++;
  Timed timed{costs.forking};
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
  // A program's first moment always: going back over its exec comes back there.
  if (!checkpoints_.empty() && now - sinceCheckpoint_ < kCheckpointInterval &&
      !execs_.count(now_.segment)) {
    return;
  }
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
