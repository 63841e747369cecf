#include "replay/replay_session.h"

#include <asm/ldt.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/kick.h"
#include "core/memory_map.h"
#include "core/proc_files.h"
#include "core/remote_syscalls.h"
#include "core/spawn.h"
#include "core/syscall_buffer_abi.h"
#include "core/syscall_buffers.h"
#include "core/syscall_restart.h"
#include "core/syscall_table.h"
#include "core/syscall_trampoline.h"
#include "core/vdso.h"
#include "replay/robust_futexes.h"

namespace rwd {
namespace {

constexpr long kSysClone3 = 435;
constexpr long kSysEpollPwait2 = 441;

uint64_t pageUp(uint64_t a) { return (a + 4095) & ~uint64_t(4095); }
bool isError(int64_t result) { return result < 0 && result > -4096; }

// An entry stop at the syscall instruction at `insn` for the x86-64 syscall `nr` and `args`, as
// enterInPlace takes it.
Regs entryAt(uint64_t insn, Regs r, long nr, const uint64_t* args) {
  r.orig_rax = uint64_t(nr);
  r.rdi = args[0];
  r.rsi = args[1];
  r.rdx = args[2];
  r.r10 = args[3];
  r.r8 = args[4];
  r.r9 = args[5];
  r.rip = insn + 2;
  return r;
}

// Writes all of `data` to `fd`, waiting when the fd is non-blocking and full.
// Returns 0, or the errno that stopped the write.
int writeOut(int fd, const uint8_t* data, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, -1);
        continue;
      }
      return errno;
    }
    data += n;
    len -= size_t(n);
  }
  return 0;
}

}  // namespace

ReplaySession::ReplaySession(ReplayOptions options)
    : options_(std::move(options)),
      blobs_(options_.traceDir, fileMemory_),
      reader_(options_.eventsPath),
      sharedFiles_(fileMemory_) {}

ReplaySession::~ReplaySession() {
  std::vector<pid_t> alive;
  for (auto& [tid, t] : tasks_) {
    if (!t.exited) alive.push_back(t.task->tid());
  }
  killAndReap(alive);
}

bool ReplaySession::nextEvent() {
  eventIndex_ = reader_.position();
  haveNext_ = reader_.next(next_);
  return haveNext_;
}

void ReplaySession::diverged(const ReplayTask& t, const std::string& got) {
  std::string expected;
  if (haveNext_) {
    expected = describeEvent(next_);
  } else if (!reader_.complete()) {
    fail(ErrorCode::BadTrace, "the recording was cut short: it ends after event " +
                                  std::to_string(eventIndex_ ? eventIndex_ - 1 : 0) +
                                  ", where replay met " + got);
  } else {
    expected = "the end of the recording";
  }
  failDiverged(eventIndex_, " (task " + std::to_string(t.recordedTid) + "): expected " + expected +
                                ", got " + got);
}

void ReplaySession::divergedResult(const SyscallEvent& ev, long got) {
  failDiverged(eventIndex_ - 1,
               " (task " + std::to_string(ev.tid) + "): " + describeSyscall(ev.nr, ev.args, 6) +
                   " returned " + std::to_string(got) + ", recorded " + std::to_string(ev.result));
}

// Every divergence says where, what, and how to see the events around it.
void ReplaySession::failDiverged(uint64_t event, const std::string& what) {
  std::string dir = options_.traceName.empty() ? options_.traceDir : options_.traceName;
  if (dir.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-") !=
      std::string::npos) {
    std::string quoted = "'";
    for (char c : dir) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    dir = quoted + "'";
  }
  fail(ErrorCode::Diverged, "replay diverged at event " + std::to_string(event) + what +
                                "; the events around it: rewind dump " + dir + " --from " +
                                std::to_string(event > 5 ? event - 5 : 0) + " --to " +
                                std::to_string(event + 5));
}

void ReplaySession::spawnStub() {
  if (access(options_.stubPath.c_str(), X_OK) != 0) failErrno("replay stub " + options_.stubPath);
  int execErrFd = -1;
  pid_t pid = spawnTraced(options_.stubPath, {options_.stubPath}, {}, &execErrFd);
  close(execErrFd);
  initialTid_ = next_.exec.tid;
  ReplayTask& t = tasks_[initialTid_];
  t.recordedTid = initialTid_;
  t.tgid = initialTid_;
  t.task = std::make_unique<Task>(pid);
  t.task->keepRegs();
  // execve entry, the exec event, then the exit stop where the address space is rebuilt.
  for (;;) {
    t.task->resume(PTRACE_SYSCALL);
    Stop s = t.task->wait();
    if (s.kind == Stop::Event && s.event == PTRACE_EVENT_EXEC) break;
    if (s.kind != Stop::SyscallStop) fail(ErrorCode::System, "the replay stub did not exec");
  }
  t.task->resume(PTRACE_SYSCALL);
  t.task->wait();
  rebuild(t);
}

void ReplaySession::rebuild(ReplayTask& t) {
  t.task->reopenMemory();
  t.stub = buildAddressSpace(*t.task, next_.exec, blobs_);
  t.space = t.tgid;
  spaces_[t.space] = AddressSpace{
      pageUp(next_.exec.brkStart), ProgramImage{next_.exec.exe, next_.exec.auxv}, {}, {}};
  nextEvent();
}

void ReplaySession::start() {
  if (!nextEvent() || next_.type != EventType::Exec) {
    fail(ErrorCode::BadTrace, "the trace does not start with an exec");
  }
  // On the recording's CPU if this machine has it: what cpuid says there is in the program's
  // memory (glibc keeps it), and cpuid cannot be trapped here.
  if (pinToCpu(next_.exec.cpu) < 0) pinToCpu(-1);
  spawnStub();
  activate(tasks_[initialTid_]);
}

// Replay runs one task at a time in the order of the stream. After each event of a task, the
// task runs its next stretch of user code at once, up to its next stop, as it did when recorded
// right after that event; the stop waits there until the stream reaches the event it matches.
ReplayResult ReplaySession::run() {
  start();
  RunControl control;
  control.feed = true;
  while (advanceToSegment()) runActive(control);
  checkEnd();
  ReplayResult result;
  result.waitStatus = waitStatus_;
  result.events = eventIndex_;
  return result;
}

bool ReplaySession::advanceToSegment() {
  while (!active_ && haveNext_) applyEvent();
  return active_ != 0;
}

void ReplaySession::checkEnd() {
  if (!reader_.complete()) {
    fail(ErrorCode::BadTrace, "the recording was cut short: replayed all " +
                                  std::to_string(eventIndex_) + " events it holds");
  }
}

ReplayTask* ReplaySession::active() { return active_ ? &tasks_.at(active_) : nullptr; }

ReplayTask* ReplaySession::task(uint32_t recordedTid) {
  auto it = tasks_.find(recordedTid);
  return it == tasks_.end() ? nullptr : &it->second;
}

const ProgramImage* ReplaySession::program(uint32_t tgid) const {
  for (const auto& [tid, t] : tasks_) {
    if (t.tgid == tgid) return &spaces_.at(t.space).program;
  }
  return nullptr;
}

void ReplaySession::activate(ReplayTask& t) {
  if (!t.maskKept)
    t.sigmask = blockedSignals(*t.task);  // as the recorder notes it after each syscall
  t.maskKept = false;
  active_ = t.recordedTid;
  segmentKey_ = eventIndex_;
  segmentResumed_ = false;
  segmentEnd_ = nextEventOf(t);
  if (segmentEnd_ && segmentEnd_->type == EventType::PtraceSet &&
      segmentEnd_->ptraceSet.at == PtraceSetEvent::AfterLast) {
    // Its tracer changes it before it runs on (record/emulated_ptrace.h).
    t.tracerHold = true;
    active_ = 0;
    return;
  }
  // What the syscall that just returned to this task wrote, for watchpoints.
  segmentWrites_.swap(syscallWrites_);
  syscallWrites_.clear();
}

void ReplaySession::applyEvent() {
  syscallWrites_.clear();  // only the event applied now can have written for the next segment
  static const bool log = getenv("REWIND_LOG_EVENTS") != nullptr;  // for debugging the engine
  if (log) {
    fprintf(stderr, "[%llu] task %u: %s\n", (unsigned long long)eventIndex_, next_.tid(),
            describeEvent(next_).c_str());
  }
  auto it = tasks_.find(next_.tid());
  if (it == tasks_.end()) {
    failDiverged(eventIndex_, ": it belongs to task " + std::to_string(next_.tid()) +
                                  ", which replay does not have");
  }
  ReplayTask& t = it->second;
  if (t.exited) {
    if (next_.type != EventType::Exit || next_.exit.waitStatus != t.exitStatus) {
      diverged(t, describeWaitStatus(t.exitStatus));
    }
    if (t.recordedTid == initialTid_) waitStatus_ = t.exitStatus;
    tasks_.erase(it);
    nextEvent();
    return;
  }
  switch (next_.type) {
    case EventType::Exit:
      return collectDeath(t);
    case EventType::Run:
      if (!t.parked) diverged(t, "a task that was already running");
      nextEvent();
      t.parked = false;
      if (t.vforkRegs) {
        // Its child exec'd or exited: the vfork returns now.
        if (resumeInKernel(t).kind != Stop::SyscallStop) diverged(t, "no return from vfork");
        finishSyscall(t, *t.vforkRegs, t.vforkResult);
        t.vforkRegs.reset();
      }
      return activate(t);
    case EventType::Preempt:
      if (!t.atPosition) diverged(t, t.pending ? describeStop(*t.pending) : "no stop");
      checkTscRead(t, "the position");
      t.atPosition = false;
      nextEvent();
      if (haveNext_ && next_.type == EventType::Signal && next_.tid() == t.recordedTid &&
          !next_.signal.fault) {
        // A signal delivered at this position: it waits here as if it had just come.
        Stop s{};
        s.kind = Stop::Signal;
        s.sig = next_.signal.signo;
        t.pending = s;
      } else {
        t.parked = true;  // preempted: it waits for its Run
      }
      return;
    case EventType::PtraceSet:
      return applyPtraceSet(t);
    default:
      break;
  }
  if (!t.pending) diverged(t, t.parked ? "a task waiting for its turn" : "no stop");
  Stop s = *t.pending;
  t.pending.reset();
  const uint32_t tid = t.recordedTid, tgid = t.tgid;
  onStop(t, s);
  // An exec by a thread other than its process's first makes it the first (execInPlace).
  auto now = tasks_.find(tid);
  ReplayTask& u = now != tasks_.end() ? now->second : tasks_.at(tgid);
  if (!u.exited && !u.parked && !u.pending && !u.atPosition) activate(u);
  u.maskKept = false;  // good for the activation right after the syscall only
}

// What the program's emulated tracer changed in the task, where it stopped: where its last event
// left it, or at the entry of the syscall it stopped in. It must be there, with the registers it
// had when recorded.
void ReplaySession::applyPtraceSet(ReplayTask& t) {
  const PtraceSetEvent ev = next_.ptraceSet;
  const bool atEntry = ev.at == PtraceSetEvent::SyscallEntry;
  const bool there =
      atEntry ? t.pending && t.pending->kind == Stop::SyscallStop && !t.tracerHold : t.tracerHold;
  if (!there) diverged(t, t.pending ? describeStop(*t.pending) : "a task that is not stopped");
  const Regs now = t.task->regs();
  if (memcmp(&now, &ev.before, sizeof now) != 0) {
    char where[128];
    snprintf(where, sizeof where, "the task at ip 0x%llx, not as recorded (ip 0x%llx)",
             (unsigned long long)now.rip, (unsigned long long)ev.before.rip);
    diverged(t, where);
  }
  for (const MemoryWrite& w : ev.writes) t.task->write(w.addr, w.data.data(), w.data.size());
  t.task->setRegs(ev.after);
  if (!ev.xstate.empty()) {
    iovec iov{const_cast<uint8_t*>(ev.xstate.data()), ev.xstate.size()};
    if (ptrace(PTRACE_SETREGSET, t.task->tid(), NT_X86_XSTATE, &iov) < 0) {
      failErrno("PTRACE_SETREGSET");
    }
  }
  nextEvent();
  if (atEntry) return;  // the syscall's event comes next
  t.tracerHold = false;
  activate(t);
}

// Runs the active task's user code to its next stop. When the next event is the task's
// preemption, that is the recorded position: a breakpoint at its instruction, taking the first
// hit with the recorded registers and stack. A debugger's breakpoints and watchpoints stop it
// on the way (and it goes on from there at the next call).
std::optional<Trap> ReplaySession::runActive(const RunControl& control) {
  ReplayTask& t = tasks_.at(active_);
  const std::optional<Event>& end = segmentEnd_;
  if (end && end->type == EventType::Exit && t.deliverSig == 0) {
    // Killed from outside as it ran (SIGKILL, another thread's exit_group), not by a signal
    // delivered now: how far it got is nothing the recording can tell, and it may never stop
    // by itself (a spin loop). It waits for its end.
    active_ = 0;
    return std::nullopt;
  }
  // The debugger's position comes first: it lies before the segment's end.
  const PreemptEvent* target = control.stopAt                           ? control.stopAt
                               : end && end->type == EventType::Preempt ? &end->preempt
                                                                        : nullptr;
  const bool toPosition = target != nullptr;
  if (end && end->type == EventType::Exit && WIFSIGNALED(end->exit.waitStatus) && !t.deliverSig) {
    // A death by a signal the task was not delivered as an event: the SIGKILL or group exit that
    // another task brought while this one ran, still to come in replay (which runs one task at a
    // time). Nothing this stretch did could reach another task but through memory, so it waits
    // where it is for that death (collectDeath), rather than run until something ends it.
    active_ = 0;
    return std::nullopt;
  }
  const bool feeding = !segmentResumed_ && mayFeed(t, control);
  if (!segmentResumed_) {
    segmentResumed_ = true;
    if (end && end->type == EventType::Signal && !end->signal.fault) {
      // The recording saw this signal delivered right here, but replay will not raise it by
      // itself (another process or an emulated syscall sent it): send it now.
      t.task->sendSignal(end->signal.signo);
    }
  }
  std::set<uint64_t> addrs;
  if (control.breaks) addrs = control.breaks->code;
  const uint64_t position = toPosition ? target->regs.rip : ~0ull;
  std::unique_ptr<PositionTrap> trap;
  if (toPosition && !control.step && t.deliverSig == 0 &&
      addrs.lower_bound(position - 15) == addrs.upper_bound(position + 15)) {
    trap = PositionTrap::install(*t.task, t.stub, space(t).trampolines, *target);
  }
  if (toPosition && !trap) addrs.insert(position);
  // A call of the vsyscall page the recorder patched: the task stops before it, where the
  // recorder sent it back to (the kernel would answer the call here without a stop).
  const uint64_t vsyscallCall =
      !toPosition && end && end->type == EventType::Patch && inVsyscallPage(end->patch.site)
          ? end->patch.resume
          : ~0ull;
  if (vsyscallCall != ~0ull) addrs.insert(vsyscallCall);
  const std::vector<Watch> none;
  const std::vector<Watch>& watches = control.breaks ? control.breaks->watches : none;
  if (watches != t.watches) {
    setDebugRegisters(*t.task, watches);
    t.watches = watches;
  }
  // Whether registers `r` (and the stack) are the recorded position's.
  auto atTarget = [&](const Regs& r) { return toPosition && atPosition(*t.task, r, *target); };
  auto reached = [&]() -> std::optional<Trap> {
    if (control.stopAt) return Trap{Trap::Position};
    t.atPosition = true;
    active_ = 0;
    return std::nullopt;
  };
  if (feeding) feed_.fill(*t.task, next_, eventIndex_, reader_);
  uint64_t skip = control.skipAt;
  for (;;) {
    Regs now = t.task->regs();
    uint64_t rip = now.rip;
    if (rip != skip && atTarget(now)) return reached();  // reached by a step
    // Stepping over the breakpoint at `skip` takes one instruction without it.
    bool single = control.step || (rip == skip && addrs.count(rip));
    const uint64_t skipped = skip;
    skip = ~0ull;
    Stop s;
    bool hit = false;
    {
      InsertedBreakpoints inserted(*t.task, single ? std::set<uint64_t>{} : addrs);
      const bool ends = t.deliverSig && killsProcess(t, t.deliverSig);
      if (ends && end && end->type == EventType::Exit && WIFSIGNALED(end->exit.waitStatus) &&
          WTERMSIG(end->exit.waitStatus) == SIGKILL) {
        // Recorded, a SIGKILL overtook this fatal signal (the recorder's own, when the program
        // ended as this one was delivered): the kernel's group exit then takes SIGKILL's code,
        // and no code of the task ran. So it dies of SIGKILL here too.
        t.deliverSig = SIGKILL;
      }
      // A syscall replay executes is let run where the program made it: two stops, where
      // stopping it (PTRACE_SYSEMU) and injecting it again takes four.
      const bool running = !single && !ends && runsInPlace(t, end);
      t.task->resume(single    ? PTRACE_SYSEMU_SINGLESTEP
                     : running ? PTRACE_SYSCALL
                               : PTRACE_SYSEMU,
                     t.deliverSig);
      t.deliverSig = 0;
      s = ends ? waitForProcessEnd(t) : t.task->wait();
      if (feed_.active()) takeFeed(t, s);
      while (running && s.kind == Stop::SyscallStop && !t.task->atSyscallEntry()) {
        // The exit of the syscall its last stop skipped (PTRACE_SYSEMU), reported first.
        t.task->resume(PTRACE_SYSCALL);
        s = t.task->wait();
      }
      if (running && s.kind == Stop::SyscallStop) s = atRunningEntry(t, s);
      if (s.kind == Stop::Signal && s.sig == SIGTRAP) {
        Regs r = t.task->regs();
        hit = !single && inserted.has(r.rip - 1);
        if (hit) {
          r.rip -= 1;
          t.task->setRegs(r);
        }
      }
    }
    if (s.kind == Stop::Signal && s.sig == SIGSTOP && kick::take()) {
      // Not inside a trampoline, whose code is not the program's: the next kick comes soon.
      uint64_t page = t.task->regs().rip & ~uint64_t(4095);
      const std::vector<uint64_t>& tramps = space(t).trampolines.pages;
      bool inTrampoline = std::find(tramps.begin(), tramps.end(), page) != tramps.end();
      if (control.interruptible && !inTrampoline) return Trap{Trap::Interrupted};
      skip = skipped;
      continue;
    }
    if (s.kind == Stop::Signal && s.sig == SIGSEGV && coverage_ && t.tgid == coverage_->tgid() &&
        coverage_->onFault(*t.task, t.stub.gadget)) {
      skip = skipped;  // the instruction has not run yet
      continue;
    }
    if (s.kind == Stop::Signal && s.sig == SIGTRAP && trap && trap->matched(t.task->regs().rip)) {
      // Registers as recorded at the position: is it the stack too?
      Regs r = t.task->regs();
      r.rip = position;
      bool there = atTarget(r);
      if (!there) r.rip = trap->goOn();
      t.task->setRegs(r);
      if (there) return reached();
      continue;
    }
    if (s.kind == Stop::Signal && s.sig == SIGTRAP) {
      int watch = watches.empty() ? -1 : firedWatch(*t.task);
      if (hit) {
        Regs r = t.task->regs();
        if (r.rip == vsyscallCall) {
          endSegment(t, s);  // the patch event takes this stop (onSignal)
          return std::nullopt;
        }
        if (atTarget(r)) return reached();
        if (control.breaks && control.breaks->code.count(r.rip)) return Trap{Trap::Breakpoint};
        skip = r.rip;  // the position, but not this time round
        continue;
      }
      if (watch >= 0) return Trap{Trap::Watchpoint, watch};
      if (single) {
        if (control.step) return Trap{Trap::Step};
        continue;  // stepped over a breakpoint
      }
      // A SIGTRAP of the program's own: it ends the segment like any signal.
    }
    if (isChildEnd(*t.task, s) &&
        !(end && end->type == EventType::Signal && end->signal.signo == SIGCHLD)) {
      continue;  // a replayed child ended; the recording's SIGCHLDs are events of their own
    }
    endSegment(t, s);
    return std::nullopt;
  }
}

// Whether the signal ends the task's process: not caught, not ignored, and not one whose
// default is to be ignored or to stop the process. (The program's own rt_sigaction runs in
// replay, so what the kernel says of the replayed task is what the program set.)
bool ReplaySession::killsProcess(const ReplayTask& t, int sig) const {
  switch (sig) {
    case SIGCHLD:
    case SIGURG:
    case SIGWINCH:
    case SIGCONT:
    case SIGSTOP:
    case SIGTSTP:
    case SIGTTIN:
    case SIGTTOU:
      return false;
  }
  std::ifstream in("/proc/" + std::to_string(t.task->tid()) + "/status");
  std::string line;
  uint64_t handled = 0;
  while (std::getline(in, line)) {
    if (line.rfind("SigIgn:", 0) == 0 || line.rfind("SigCgt:", 0) == 0) {
      handled |= std::stoull(line.substr(7), nullptr, 16);
    }
  }
  return !(handled & (uint64_t(1) << (sig - 1)));
}

// Waits for the end of the task's process, which a signal kills. The kernel reports a leader's
// death only once its other threads are reaped, and they die with it: so they are reaped meanwhile
// (their Exit events are checked when the stream reaches them).
Stop ReplaySession::waitForProcessEnd(ReplayTask& t) {
  for (;;) {
    int status;
    pid_t r = waitpid(t.task->tid(), &status, __WALL | WNOHANG);
    if (r == t.task->tid()) return Stop::fromWaitStatus(status);
    if (r < 0 && errno != EINTR) failErrno("waitpid");
    for (auto& [tid, other] : tasks_) {
      if (&other == &t || other.tgid != t.tgid || other.exited) continue;
      if (waitpid(other.task->tid(), &status, __WALL | WNOHANG) != other.task->tid()) continue;
      Stop s = Stop::fromWaitStatus(status);
      if (s.kind == Stop::Exited || s.kind == Stop::Killed) {
        onExit(other, s);
      } else {
        other.task->resume(PTRACE_CONT);  // a stop on its way out: let it die
      }
    }
    usleep(200);
  }
}

// The task's next event, which ends the segment it is about to run. Usually the next event of
// all; but while a thread runs, the stream may already hold events of other processes, and of
// threads of its own that do not run user code (a fork's record is written when the kernel
// reports the child, a death when it is seen): they are looked past. Any other event of its
// process means the thread gave its turn up in a syscall whose record comes later.
std::optional<Event> ReplaySession::nextEventOf(const ReplayTask& t) {
  if (!haveNext_) return std::nullopt;
  // 1: the task's own; 0: look past it; -1: the task's segment ends with no record of its own.
  // `killed`: whether a syscall record is one the recorder wrote as its task was killed (it
  // comes among the process's ends, whoever held the run token).
  auto verdict = [&](EventType type, uint32_t tid, int32_t nr, const auto& killed) {
    if (tid == t.recordedTid) return 1;
    auto it = tasks_.find(tid);
    if (it == tasks_.end() || it->second.tgid != t.tgid || type == EventType::Exit) return 0;
    bool fork = nr == SYS_clone || nr == kSysClone3 || nr == SYS_fork || nr == SYS_vfork;
    if (type != EventType::Syscall) return -1;
    return fork || killed() ? 0 : -1;
  };
  int first =
      verdict(next_.type, next_.tid(), next_.type == EventType::Syscall ? next_.syscall.nr : 0,
              [&] { return next_.syscall.filtered == SyscallEvent::Filtered::Killed; });
  if (first > 0) return next_;
  if (first < 0) return std::nullopt;
  const uint32_t version = reader_.version();
  auto judge = [&](const uint8_t* record, size_t len) {
    uint32_t tid;
    int32_t nr = 0;
    memcpy(&tid, record + 1, 4);
    if (record[0] == uint8_t(EventType::Syscall) && len >= 9) memcpy(&nr, record + 5, 4);
    return verdict(EventType(record[0]), tid, nr, [&] {
      return decodeEvent(record, len, version).syscall.filtered == SyscallEvent::Filtered::Killed;
    });
  };
  Event e;
  if (reader_.lookAhead(judge, 1 << 16, e)) return e;
  return std::nullopt;
}

// Whether the segment about to run may have the task's buffered syscalls answered without a stop:
// a plain run to a syscall of its own that is the stream's very next event.
bool ReplaySession::mayFeed(const ReplayTask& t, const RunControl& control) const {
  return control.feed && !control.breaks && !control.step && !control.stopAt && !coverage_ &&
         !t.tscBuffer && !t.deliverSig && haveNext_ && next_.type == EventType::Syscall &&
         next_.syscall.tid == t.recordedTid && eventIndex_ == segmentKey_;
}

// The task stopped with records in its feed: those it took are events applied.
void ReplaySession::takeFeed(ReplayTask& t, const Stop& s) {
  std::optional<SyscallFeed::Taken> taken = feed_.take(*t.task, reader_);
  if (!taken) diverged(t, describeStop(s) + ", with recorded syscalls in its feed");
  next_ = std::move(taken->next);
  eventIndex_ = taken->index;
  segmentEnd_ = next_;
}

void ReplaySession::endSegment(ReplayTask& t, const Stop& s) {
  active_ = 0;
  if (s.kind == Stop::Exited || s.kind == Stop::Killed) {
    onExit(t, s);
  } else {
    t.pending = s;
  }
}

bool ReplaySession::checkpointable() const {
  if (tasks_.empty()) return false;
  std::set<uint32_t> processes;
  for (const auto& [tid, t] : tasks_) {
    // A copy of a process is a fork of its leader; a vfork child shares its parent's memory. A
    // signal waiting to be delivered needs the task to stay in its signal stop, which a syscall
    // injected to copy it would end.
    if (t.exited || t.vforkRegs || t.deliverSig || !tasks_.count(t.tgid)) return false;
    processes.insert(t.tgid);
  }
  // A copy of a process shares its shared mappings with the original: what either stores
  // later, and what recorded syscalls write into an emulated file, would show in both.
  for (uint32_t tgid : processes) {
    for (const MapsEntry& m : readMemoryMap(tasks_.at(tgid).task->tid())) {
      if (m.shared) return false;
    }
  }
  return true;
}

ReplayState ReplaySession::saveState() const {
  if (!checkpointable())
    fail(ErrorCode::Unsupported,
         "no checkpoint here: a thread is ending, or processes share memory");
  ReplayState st;
  st.mark = reader_.mark();
  st.next = next_;
  st.eventIndex = eventIndex_;
  st.haveNext = haveNext_;
  for (const auto& [tid, t] : tasks_) st.tasks.push_back(t);
  st.active = active_;
  st.segmentKey = segmentKey_;
  st.segmentResumed = segmentResumed_;
  st.segmentEnd = segmentEnd_;
  st.segmentWrites = segmentWrites_;
  st.waitStatus = waitStatus_;
  st.spaces = spaces_;
  return st;
}

void ReplaySession::restoreState(const ReplayState& st, const std::map<uint32_t, pid_t>& copies) {
  std::vector<pid_t> alive;
  for (auto& [tid, t] : tasks_) {
    if (!t.exited) alive.push_back(t.task->tid());
  }
  killAndReap(alive);
  tasks_.clear();
  for (const ReplayTaskState& saved : st.tasks) {
    ReplayTask& t = tasks_[saved.recordedTid];
    static_cast<ReplayTaskState&>(t) = saved;
    t.watches.clear();  // copies do not inherit debug registers
    t.task = std::make_unique<Task>(copies.at(saved.recordedTid));
    t.task->keepRegs();
  }
  reader_.rewind(st.mark);
  next_ = st.next;
  eventIndex_ = st.eventIndex;
  haveNext_ = st.haveNext;
  active_ = st.active;
  segmentKey_ = st.segmentKey;
  segmentResumed_ = st.segmentResumed;
  segmentEnd_ = st.segmentEnd;
  segmentWrites_ = st.segmentWrites;
  syscallWrites_.clear();
  waitStatus_ = st.waitStatus;
  spaces_ = st.spaces;
}

void ReplaySession::releaseRobustFutexes(ReplayTask& t) {
  rwd::releaseRobustFutexes(*t.task, t.robustList, t.recordedTid);
  t.robustList = 0;
}

void ReplaySession::releaseProcessRobustFutexes(uint32_t tgid) {
  for (auto& [tid, other] : tasks_) {
    if (other.tgid == tgid && !other.exited) releaseRobustFutexes(other);
  }
}

// The stream says the task ended here without a syscall of its own: SIGKILL (which the
// recorder never sees as a signal), or another thread's exit_group or exec.
void ReplaySession::collectDeath(ReplayTask& t) {
  releaseRobustFutexes(t);
  if (WIFSIGNALED(next_.exit.waitStatus) && WTERMSIG(next_.exit.waitStatus) == SIGKILL) {
    kill(t.task->tid(), SIGKILL);
  }
  for (int i = 0; i < 2000; i++) {
    int status;
    pid_t r = waitpid(t.task->tid(), &status, __WALL | WNOHANG);
    if (r == t.task->tid()) {
      Stop s = Stop::fromWaitStatus(status);
      if (s.kind == Stop::Exited || s.kind == Stop::Killed) return onExit(t, s);
    }
    usleep(1000);
  }
  diverged(t, t.pending ? describeStop(*t.pending) : "a task that is still alive");
}

std::string ReplaySession::describeStop(const Stop& s) {
  switch (s.kind) {
    case Stop::SyscallStop:
      return "a syscall";
    case Stop::Signal:
      return signalName(s.sig);
    case Stop::Event:
      return "a ptrace event";
    case Stop::Exited:
    case Stop::Killed:
      return describeWaitStatus(s.status);
  }
  return "?";
}

void ReplaySession::onStop(ReplayTask& t, const Stop& s) {
  switch (s.kind) {
    case Stop::SyscallStop:
      return onSyscall(t);
    case Stop::Signal:
      return onSignal(t, s.sig);
    case Stop::Event:
      return;
    case Stop::Exited:
    case Stop::Killed:
      return onExit(t, s);
  }
}

// The recording noted a task's end when the tracer saw it, which may be after other tasks'
// events: the status is checked when the stream reaches that Exit event.
void ReplaySession::onExit(ReplayTask& t, const Stop& s) {
  t.exited = true;
  t.exitStatus = s.status;
}

void ReplaySession::onSignal(ReplayTask& t, int sig) {
  checkTscRead(t, signalName(sig));
  Regs r = t.task->regs();
  const bool rdtsc = haveNext_ && next_.type == EventType::Rdtsc &&
                     next_.rdtsc.tid == t.recordedTid && next_.rdtsc.rip == r.rip;
  const bool patch = haveNext_ && next_.type == EventType::Patch &&
                     next_.patch.tid == t.recordedTid && next_.patch.site == r.rip;
  if (sig == SIGSEGV && (rdtsc || patch)) {
    reblockForcedSigsegv(*t.task, t.sigmask);
    auto action = segvActions_.find(t.tgid);
    if ((t.sigmask & kSigsegvBit) && action != segvActions_.end() &&
        action->second.handler != uint64_t(SIG_DFL)) {
      RemoteSyscalls remote(*t.task, t.stub.gadget);
      setSignalAction(remote, t.stub.scratch, SIGSEGV, action->second);
    }
  }
  if (sig == SIGSEGV && patch) return applyPatch(t, r);
  const bool vsyscallPatch = haveNext_ && next_.type == EventType::Patch &&
                             next_.patch.tid == t.recordedTid && inVsyscallPage(next_.patch.site) &&
                             next_.patch.resume == r.rip;
  if (sig == SIGTRAP && vsyscallPatch) return applyPatch(t, r);
  if (sig == SIGSEGV && rdtsc) {
    const RdtscEvent& ev = next_.rdtsc;
    r.rax = ev.rax;
    r.rdx = ev.rdx;
    if (ev.rdtscp) r.rcx = ev.rcx;
    r.rip += ev.rdtscp ? 3 : 2;
    t.task->setRegs(r);
    nextEvent();
    return;
  }
  // Signal 0: a fault the program's emulated tracer suppressed (record/emulated_ptrace.h).
  bool expected = haveNext_ && next_.type == EventType::Signal &&
                  next_.signal.tid == t.recordedTid &&
                  (next_.signal.signo == sig || (next_.signal.signo == 0 && next_.signal.fault));
  if (!expected) {
    char where[64];
    snprintf(where, sizeof where, " at ip 0x%llx", (unsigned long long)r.rip);
    diverged(t, signalName(sig) + where);
  }
  siginfo_t info;
  memcpy(&info, next_.signal.info, sizeof info);
  if (next_.signal.fault) {
    // The same fault, raised by the same access: a stack that overflowed at another depth, or
    // an access to another address, is the same signal but not the same moment.
    siginfo_t got = t.task->siginfo();
    if (got.si_code != info.si_code || got.si_addr != info.si_addr) diverged(t, describeFault(got));
  }
  t.task->setSiginfo(info);
  t.deliverSig = next_.signal.signo;
  nextEvent();
  // It kills the process: its threads die holding what they held.
  std::optional<Event> after = nextEventOf(t);
  if (after && after->type == EventType::Exit && WIFSIGNALED(after->exit.waitStatus) &&
      WTERMSIG(after->exit.waitStatus) == sig) {
    releaseProcessRobustFutexes(t.tgid);
  }
}

// The recorder patched the rdtsc the task trapped on (record/rdtsc_patch.h): the same patch here,
// and the task resumes in it.
void ReplaySession::applyPatch(ReplayTask& t, Regs r) {
  const PatchEvent& ev = next_.patch;
  const bool vsyscall = inVsyscallPage(ev.site);  // the task stopped at `resume` (runActive)
  if ((!vsyscall && (ev.resume > ev.site || ev.site - ev.resume > 16)) || ev.page % 4096 ||
      (vsyscall && ev.page)) {
    fail(ErrorCode::BadTrace, "malformed patch at event " + std::to_string(eventIndex_));
  }
  if (ev.page) {
    RemoteSyscalls remote(*t.task, t.stub.gadget);
    if (remote.call(SYS_mmap, ev.page, 4096, PROT_READ | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, uint64_t(-1),
                    0) != long(ev.page)) {
      diverged(t, "no room for the patch's page");
    }
  }
  for (const MemoryWrite& w : ev.writes) t.task->write(w.addr, w.data.data(), w.data.size());
  r.rip = ev.resume;
  t.task->setRegs(r);
  nextEvent();
}

// RWD_SYS_TSC_NEXT, with the task's Tsc event next: its patched rdtsc has no recorded value left
// in its buffer at `header`; the next ones are the event's, written where their records were.
void ReplaySession::giveTsc(ReplayTask& t, const Regs& r, uint64_t header) {
  rwd_buffer_header h;
  t.task->read(header, &h, sizeof h);
  const std::vector<uint64_t>& values = next_.tsc.values;
  if (h.used > h.size || h.size > RWD_BUFFER_SIZE ||
      (h.size - h.used) / sizeof(rwd_tsc_record) < values.size()) {
    diverged(t, "a read of the TSC with no room for its values");
  }
  std::vector<rwd_tsc_record> records(values.size());
  for (size_t i = 0; i < values.size(); i++) {
    records[i] = rwd_tsc_record{sizeof(rwd_tsc_record), RWD_TSC_RECORD, values[i]};
  }
  t.task->write(header + h.used, records.data(), records.size() * sizeof records[0]);
  const auto left = uint32_t(values.size());
  t.task->write(header + offsetof(rwd_buffer_header, tsc_left), &left, sizeof left);
  t.tscBuffer = header;
  nextEvent();
  finishSyscall(t, r, 0);
}

// A task given values of the TSC stopped: it must have read them all, as when it was recorded.
void ReplaySession::checkTscRead(ReplayTask& t, const std::string& got) {
  if (!t.tscBuffer) return;
  uint32_t left = 0;
  t.task->read(t.tscBuffer + offsetof(rwd_buffer_header, tsc_left), &left, sizeof left);
  t.tscBuffer = 0;
  if (left)
    diverged(t, got + ", with " + std::to_string(left) + " recorded reads of the TSC not made");
}

void ReplaySession::onSyscall(ReplayTask& t) {
  Regs r = t.task->regs();
  const std::optional<long> ranInPlace = t.ranInPlace;
  t.ranInPlace.reset();
  // The trampoline's instruction is a 64-bit `syscall` (replay maps the page), and one that ran
  // in place was asked at its entry (atRunningEntry): no need to ask.
  const bool compat =
      !ranInPlace && r.rip != kReplayTrampolineSyscallEnd && t.task->inCompatSyscall();
  if (compat && !recordableCompatSyscall(*t.task)) diverged(t, describeCompatSyscall(*t.task));
  const long traced = traceSyscallNumber(r, compat);
  uint64_t args[6];
  syscallArguments(r, compat, args);
  // An x86-64 number in the range of the 32-bit calls' was refused when recorded.
  const SyscallSpec* spec = compat || !isCompatNumber(traced) ? lookupSyscall(traced) : nullptr;
  const long nr = nativeSyscall(traced);
  int nargs = spec ? spec->nargs : 6;
  if (t.tscBuffer)
    checkTscRead(t, describeSyscall(nr, args, nargs));  // a string per syscall is dear
  if (nr == RWD_SYS_TSC_NEXT && haveNext_ && next_.type == EventType::Tsc &&
      next_.tsc.tid == t.recordedTid) {
    return giveTsc(t, r, args[0]);
  }
  if (coverage_ && t.tgid == coverage_->tgid()) {
    coverage_->beforeSyscall(*t.task, t.stub.gadget, nr, args);
  }
  bool isExec = haveNext_ && next_.type == EventType::Exec && next_.exec.tid == t.recordedTid;
  if (isExec && (nr == SYS_execve || nr == SYS_execveat)) return execInPlace(t, r);
  if (!spec || !haveNext_ || next_.type != EventType::Syscall ||
      next_.syscall.tid != t.recordedTid || next_.syscall.nr != traced ||
      memcmp(next_.syscall.args, args, size_t(nargs) * sizeof(uint64_t)) != 0) {
    diverged(t, describeSyscall(traced, args, nargs));
  }
  if (next_.syscall.filtered == SyscallEvent::Filtered::Unknown) {
    // What the program printed up to here is what it printed when recorded; past it, replay
    // could print what the recording did not, or miss what it did.
    fail(ErrorCode::Unsupported,
         "replay cannot go on at event " + std::to_string(eventIndex_) + " (task " +
             std::to_string(t.recordedTid) + "): a SIGKILL ended the task in " +
             describeSyscall(traced, args, nargs) +
             " before the recorder could see whether it ran, so the recording does not know "
             "what it did (what it sent to stdout or stderr may be missing from this replay)");
  }
  SyscallEvent ev = std::move(next_.syscall);
  nextEvent();
  if (ev.filtered == SyscallEvent::Filtered::Returned) {
    forceFilterTrap(t);
    return finishSyscall(t, r, ev.result);
  }
  if (ev.filtered != SyscallEvent::Filtered::No && ev.filtered != SyscallEvent::Filtered::Killed) {
    return killAsFiltered(t, r, ev);
  }
  switch (spec->replay) {
    case ReplayAction::Emulate:
      if (nr == SYS_set_robust_list && !isError(ev.result)) t.robustList = ev.args[0];
      if (interruptedUnderOwnMask(t, r, ev)) return;
      emulate(t, r, ev);
      applyThreadArea(t, ev);
      applyStackLimit(t, ev);
      t.maskKept = true;
      return;
    case ReplayAction::Refused:
    case ReplayAction::Execve:  // a failed execve
      return emulate(t, r, ev);
    case ReplayAction::Execute:
    case ReplayAction::Mremap:
      if (ranInPlace) return checkExecuted(t, ev, ev.args, *ranInPlace);
      return replayExecuted(t, ev);
    case ReplayAction::Mmap:
      return replayMmap(t, r, ev);
    case ReplayAction::Brk:
      return replayBrk(t, r, ev);
    case ReplayAction::Fork:
      return replayFork(t, r, ev);
    case ReplayAction::InPlace: {
      // A 32-bit exit or exit_group runs as its x86-64 self, from the stub's syscall instruction:
      // a sandboxed replay lets no 32-bit syscall through.
      if (compat) r = entryAt(t.stub.gadget, r, nr, args);
      if (nr == SYS_exit_group) return exitGroupInPlace(t, r);
      if (nr == SYS_exit) releaseRobustFutexes(t);
      if (nr == SYS_exit && leadsLiveThreads(t)) {
        // Its end is reported once its threads have ended: it waits for its Exit event.
        if (std::optional<Stop> early = enterInPlace(t, r)) return onStop(t, *early);
        t.task->resume(PTRACE_SYSCALL);
        t.parked = true;
        return;
      }
      Stop s = runInPlace(t, r);
      if (s.kind == Stop::Exited || s.kind == Stop::Killed) onExit(t, s);
      return;
    }
    case ReplayAction::Unsupported:
      diverged(t, describeSyscall(nr, args, nargs));
  }
}

// A syscall that waits with a signal mask of its own (pselect6, ppoll, epoll_pwait, rt_sigsuspend),
// interrupted by a signal that the program's own mask blocks: the kernel delivered that signal with
// the syscall's mask in force, and saved the program's in the signal frame. Replay emulates the
// syscall, so it has the kernel do the same: the signal sent, rt_sigsuspend on the syscall's mask
// run in the syscall's place. The task is left in the signal's delivery stop, with the registers
// the syscall returned with, for the Signal event that comes next.
bool ReplaySession::interruptedUnderOwnMask(ReplayTask& t, const Regs& r, const SyscallEvent& ev) {
  if (ev.result != -EINTR && !isRestartCode(ev.result)) return false;
  uint64_t maskAt = 0;
  if (ev.nr == SYS_pselect6) {
    uint64_t arg[2];  // {const sigset_t *ss, size_t ss_len}
    if (!ev.args[5] || !t.task->tryRead(ev.args[5], arg, sizeof arg)) return false;
    maskAt = arg[0];
  } else if (ev.nr == SYS_ppoll) {
    maskAt = ev.args[3];
  } else if (ev.nr == SYS_epoll_pwait || ev.nr == kSysEpollPwait2) {
    maskAt = ev.args[4];
  } else if (ev.nr == SYS_rt_sigsuspend) {
    maskAt = ev.args[0];
  }
  uint64_t during = 0, own = 0;
  if (!maskAt || !t.task->tryRead(maskAt, &during, sizeof during)) return false;
  if (ptrace(PTRACE_GETSIGMASK, t.task->tid(), sizeof own, &own) < 0) return false;
  std::optional<Event> next = nextEventOf(t);
  if (!next || next->type != EventType::Signal || next->signal.fault) return false;
  const int sig = next->signal.signo;
  const uint64_t bit = uint64_t(1) << (sig - 1);
  if (!(own & bit) || (during & bit)) return false;  // deliverable as it is, or not even then
  writeResults(t, ev);
  t.task->sendSignal(sig);
  Regs suspend = r;
  suspend.orig_rax = SYS_rt_sigsuspend;
  suspend.rdi = maskAt;
  suspend.rsi = sizeof during;
  if (runInPlace(t, suspend).kind != Stop::SyscallStop) diverged(t, "no return from rt_sigsuspend");
  Stop s = resumeInKernel(t);  // a replayed child's end may come first
  if (s.kind != Stop::Signal || s.sig != sig) diverged(t, describeStop(s));
  // The program's syscall, as interrupted: delivery turns the restart code into EINTR.
  Regs back = r;
  back.rax = uint64_t(ev.result);
  t.task->setRegs(back);
  t.pending = s;
  return true;
}

// How far the stack may grow is the process's RLIMIT_STACK: where a deep recursion overflows
// it, and faults, depends on it. So a limit the program set on itself is set in replay too (the
// recorded results stay). Should the kernel refuse it here, a fault that comes elsewhere because
// of it is a divergence that onSignal names.
void ReplaySession::applyStackLimit(ReplayTask& t, const SyscallEvent& ev) {
  bool own = ev.nr == SYS_setrlimit ||
             (ev.nr == SYS_prlimit64 && (ev.args[0] == 0 || ev.args[0] == t.tgid));
  uint64_t resource = ev.args[ev.nr == SYS_setrlimit ? 0 : 1];
  uint64_t limit = ev.args[ev.nr == SYS_setrlimit ? 1 : 2];
  if (!own || resource != RLIMIT_STACK || !limit || ev.result != 0) return;
  RemoteSyscalls remote(*t.task, t.stub.gadget);
  remote.call(SYS_prlimit64, 0, RLIMIT_STACK, limit, 0);
}

// A TLS entry of the GDT that a 32-bit set_thread_area filled in when recorded: filled in again
// through ptrace, with the descriptor as recorded, at the entry the kernel chose then (written
// back into it). No x86-64 syscall does it, and a sandboxed replay lets no 32-bit one through.
void ReplaySession::applyThreadArea(ReplayTask& t, const SyscallEvent& ev) {
  if (!isCompatNumber(ev.nr) || nativeSyscall(ev.nr) != SYS_set_thread_area || ev.result != 0) {
    return;
  }
  user_desc desc{};
  t.task->read(ev.args[0], &desc, sizeof desc);
  if (ptrace(PTRACE_SET_THREAD_AREA, t.task->tid(), uintptr_t(desc.entry_number), &desc) < 0) {
    divergedResult(ev, -errno);
  }
}

// Returns the recorded result of a syscall (the stream is past its event). A syscall that a
// signal interrupted returns to the program only through a handler of that signal, whose
// delivery is the task's next event. Without one (the signal was ignored, or the recorder's
// own), the kernel made the task go back and make the syscall again (or restart_syscall): so
// does replay, and the stream has that syscall next.
void ReplaySession::finishSyscall(ReplayTask& t, Regs r, int64_t result) {
  r.rax = uint64_t(result);
  if (isRestartCode(result)) {
    std::optional<Event> next = nextEventOf(t);
    if (!next || next->type != EventType::Signal || next->signal.fault) {
      r = restartedRegs(r, result);
    }
  }
  t.task->setRegs(r);
}

// Writes what the recorded syscall wrote into the program's memory; `child`: into another
// process's, which the program wrote into through /proc/PID/mem (it waits at a stop meanwhile).
void ReplaySession::writeResults(ReplayTask& t, const SyscallEvent& ev) {
  ReplayTask* into = ev.child ? task(ev.child) : &t;
  if (!into || into->exited) {
    failDiverged(eventIndex_ - 1, ": it writes into task " + std::to_string(ev.child) +
                                      ", which replay does not have");
  }
  for (const MemoryWrite& w : ev.writes) {
    into->task->write(w.addr, w.data.data(), w.data.size());
    if (into == &t) syscallWrites_.emplace_back(w.addr, w.data.size());
  }
}

void ReplaySession::emulate(ReplayTask& t, Regs r, const SyscallEvent& ev) {
  writeResults(t, ev);
  sharedFiles_.apply(ev);
  const SyscallSpec& spec = *lookupSyscall(ev.nr);
  if (spec.sent != Sent::None) {
    // What the program sends now must be what it sent when recorded: else its output, or a file
    // it writes, would silently differ.
    SentData sent = sentData(*t.task, ev.nr, spec, ev.args, ev.result);
    if (sent.hash() != ev.sentHash) divergedSent(ev, sent.payload);
    if (ev.echoFd) echo(ev, sent.payload);
  }
  finishSyscall(t, r, ev.result);
}

void ReplaySession::divergedSent(const SyscallEvent& ev, const std::vector<uint8_t>& data) {
  std::string shown;
  for (size_t i = 0; i < data.size() && i < 48; i++) {
    char c = char(data[i]);
    if (c == '\n') {
      shown += "\\n";
    } else if (c >= 32 && c < 127 && c != '"' && c != '\\') {
      shown += c;
    } else {
      char hex[8];
      snprintf(hex, sizeof hex, "\\x%02x", data[i]);
      shown += hex;
    }
  }
  if (data.size() > 48) shown += "...";
  failDiverged(eventIndex_ - 1,
               " (task " + std::to_string(ev.tid) +
                   "): " + describeSyscall(ev.nr, ev.args, lookupSyscall(ev.nr)->nargs) +
                   " sent other data than when recorded: " + std::to_string(data.size()) +
                   " bytes \"" + shown + "\"");
}

void ReplaySession::echo(const SyscallEvent& ev, const std::vector<uint8_t>& data) {
  // A debugger takes replay back and forth: output is written the first time only.
  uint64_t index = eventIndex_ - 1;
  if (index < echoed_) return;
  echoed_ = index + 1;
  int fd = ev.echoFd == 2 ? options_.stderrFd : options_.stdoutFd;
  if (fd < 0) return;
  int err = writeOut(fd, data.data(), data.size());
  // A reader that went away (`rewind replay | head`) ends nothing: replay goes on, as the program
  // did. Any other failure (a full disk, a file size limit) would lose output without a word.
  if (err != 0 && err != EPIPE) {
    fail(ErrorCode::System, std::string("cannot write the program's recorded ") +
                                (ev.echoFd == 2 ? "stderr" : "stdout") + ": " + strerror(err));
  }
}

// A filter's SECCOMP_RET_TRAP raises a SIGSYS the kernel forces: one the program blocked or
// ignored is unblocked, and its action reset to the default. Replay sends it as a signal of
// its own, so it forces it so first.
void ReplaySession::forceFilterTrap(ReplayTask& t) {
  std::optional<Event> next = nextEventOf(t);
  if (!next || next->type != EventType::Signal || next->signal.signo != SIGSYS) return;
  const uint64_t bit = uint64_t(1) << (SIGSYS - 1);
  uint64_t blocked = blockedSignals(*t.task);
  const bool ignored = uint64_t(procStatus(t.task->tid()).number("SigIgn", 16, 0)) & bit;
  if (!(blocked & bit) && !ignored) return;
  blocked &= ~bit;
  ptrace(PTRACE_SETSIGMASK, t.task->tid(), sizeof blocked, &blocked);
  RemoteSyscalls remote(*t.task, t.stub.gadget);
  setSignalAction(remote, t.stub.scratch, SIGSYS, KernelSigaction{});
}

void ReplaySession::replayExecuted(ReplayTask& t, const SyscallEvent& ev) {
  uint64_t a[6];
  memcpy(a, ev.args, sizeof a);
  if (ev.nr == SYS_set_tid_address) {
    // It returns the caller's tid, which replay's task has another of.
    { RemoteSyscalls(*t.task, t.stub.gadget).call(ev.nr, a[0]); }
    t.clearChildTid = a[0];
    return finishSyscall(t, t.task->regs(), ev.result);
  }
  if (ev.nr == SYS_mremap && !isError(ev.result) && uint64_t(ev.result) != a[0]) {
    // It moved when recorded: move it to the same place.
    a[3] |= MREMAP_MAYMOVE | MREMAP_FIXED;
    a[4] = uint64_t(ev.result);
  }
  long got;
  {
    RemoteSyscalls remote(*t.task, t.stub.gadget);
    got = remote.call(ev.nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  }
  checkExecuted(t, ev, a, got);
}

// Whether the task's next syscall, when `next` is its next event, may run where the program
// makes it: one that replay executes as recorded, with nothing to change (not set_tid_address,
// whose result is another tid here, nor a moving mremap), nor a 32-bit one (a sandboxed replay
// lets none through), nor under code coverage, which sees syscalls before they run.
bool ReplaySession::runsInPlace(const ReplayTask& t, const std::optional<Event>& next) const {
  if (!next || next->type != EventType::Syscall || next->syscall.tid != t.recordedTid) return false;
  const SyscallEvent& ev = next->syscall;
  if (ev.filtered != SyscallEvent::Filtered::No || isCompatNumber(ev.nr) || ev.child) return false;
  if (coverage_ && t.tgid == coverage_->tgid()) return false;
  const SyscallSpec* spec = lookupSyscall(ev.nr);
  return spec && spec->replay == ReplayAction::Execute && ev.nr != SYS_set_tid_address;
}

// The task stopped at the entry of a syscall that the kernel runs when it resumes (runActive
// resumed it with PTRACE_SYSCALL). When it is the syscall of the stream's very next event (no
// other task's event comes first, whose effect could matter to it), it runs to its exit there;
// any other is skipped, leaving the task as PTRACE_SYSEMU would, with its registers as they were
// at the entry, before anything else sees it (a checkpoint injects syscalls into a waiting task).
Stop ReplaySession::atRunningEntry(ReplayTask& t, Stop entry) {
  const Regs r = t.task->regs();
  bool runs = r.rip != kReplayTrampolineSyscallEnd && haveNext_ &&
              runsInPlace(t, std::optional<Event>(next_)) && !t.task->inCompatSyscall();
  if (runs) {
    uint64_t args[6];
    syscallArguments(r, false, args);
    const SyscallEvent& ev = next_.syscall;
    runs = ev.nr == traceSyscallNumber(r, false) &&
           memcmp(ev.args, args, size_t(lookupSyscall(ev.nr)->nargs) * sizeof args[0]) == 0;
  }
  Regs skip = r;
  if (!runs) {
    skip.orig_rax = ~0ull;
    t.task->setRegs(skip);
  }
  Stop s;
  do {
    s = resumeInKernel(t);
    // A debugger's SIGSTOP meant for the task's own code, as in RemoteSyscalls: not for this.
  } while (s.kind == Stop::Signal && s.sig == SIGSTOP && kick::take());
  if (s.kind != Stop::SyscallStop) diverged(t, describeStop(s));
  if (runs) {
    t.ranInPlace = long(t.task->regs().rax);
  } else {
    t.task->setRegs(r);
  }
  return entry;
}

// An executed syscall returned `got`, having been given `args`.
void ReplaySession::checkExecuted(ReplayTask& t, const SyscallEvent& ev, const uint64_t* args,
                                  long got) {
  KernelSigaction action;
  if (ev.nr == SYS_rt_sigaction && got == 0 && args[0] == SIGSEGV && args[1] &&
      t.task->tryRead(args[1], &action, sizeof action)) {
    segvActions_[t.tgid] = action;  // as the recorder keeps it
  }
  if (got != ev.result) divergedResult(ev, got);
  // Registers as the syscall left them: arch_prctl changes fs_base.
  finishSyscall(t, t.task->regs(), ev.result);
}

void ReplaySession::replayMmap(ReplayTask& t, Regs r, const SyscallEvent& ev) {
  if (isError(ev.result)) return finishSyscall(t, r, ev.result);
  if (ev.nr == SYS_shmat || ev.nr == SYS_shmdt) return replayShm(t, r, ev);
  uint64_t addr = uint64_t(ev.result), len = ev.args[1], prot = ev.args[2], flags = ev.args[3];
  flags = (flags & ~uint64_t(MAP_FIXED_NOREPLACE)) | MAP_FIXED;
  long got;
  {
    RemoteSyscalls remote(*t.task, t.stub.gadget);
    if (ev.blob.empty()) {
      // Anonymous memory, or a device like /dev/zero that maps as anonymous memory.
      got = remote.call(SYS_mmap, addr, len, prot, flags | MAP_ANONYMOUS, uint64_t(-1), 0);
    } else {
      if (!ev.file) flags = (flags & ~uint64_t(MAP_SHARED | MAP_SHARED_VALIDATE)) | MAP_PRIVATE;
      long fd = mapSource(t, remote, ev);
      got = remote.call(SYS_mmap, addr, len, prot, flags, uint64_t(fd), ev.args[5]);
    }
  }
  if (got != ev.result) divergedResult(ev, got);
  finishSyscall(t, r, ev.result);
}

// shmat maps the segment's emulated file where the recording attached it; shmdt unmaps what an
// attach there mapped, as the kernel does: every piece left of it.
void ReplaySession::replayShm(ReplayTask& t, Regs r, const SyscallEvent& ev) {
  {
    RemoteSyscalls remote(*t.task, t.stub.gadget);
    if (ev.nr == SYS_shmat) {
      shmAttach(t, remote, ev);
    } else {
      shmDetach(t, remote, ev);
    }
  }
  finishSyscall(t, r, ev.result);
}

void ReplaySession::shmAttach(ReplayTask& t, RemoteSyscalls& remote, const SyscallEvent& ev) {
  uint64_t prot = (ev.args[2] & SHM_RDONLY) ? PROT_READ : PROT_READ | PROT_WRITE;
  if (ev.args[2] & SHM_EXEC) prot |= PROT_EXEC;
  long fd = mapSource(t, remote, ev);
  long got = remote.call(SYS_mmap, uint64_t(ev.result), ev.fileSize, prot, MAP_SHARED | MAP_FIXED,
                         uint64_t(fd), 0);
  if (got != ev.result) divergedResult(ev, got);
}

void ReplaySession::shmDetach(ReplayTask& t, RemoteSyscalls& remote, const SyscallEvent& ev) {
  const uint64_t at = ev.args[0];
  std::vector<MapsEntry> maps = readMemoryMap(t.task->tid());
  // What is left of the attach: mappings of its segment that start as far into it as they lie
  // past `at` (the program may have unmapped its start).
  auto ofAttach = [&](const MapsEntry& m) {
    return m.shared && m.start >= at && m.start - m.offset == at;
  };
  auto attach = std::find_if(maps.begin(), maps.end(), ofAttach);
  if (attach == maps.end()) divergedResult(ev, -EINVAL);
  for (const MapsEntry& m : maps) {
    if (ofAttach(m) && m.dev == attach->dev && m.inode == attach->inode) {
      remote.check("detaching a segment", SYS_munmap, m.start, m.end - m.start);
    }
  }
}

// The descriptor, in the task, of what replay maps for the file `ev` maps: a file mapped shared
// is its emulated file, another the captured file. It stays open in the address space: all the
// mappings of one file are of one open file, which the kernel merges into one mapping where it
// did when recorded (and mremap needs).
long ReplaySession::mapSource(ReplayTask& t, RemoteSyscalls& remote, const SyscallEvent& ev) {
  std::map<std::string, long>& sources = space(t).sources;
  const std::string key = ev.file ? "shared file " + std::to_string(ev.file) : ev.blob;
  std::string path =
      ev.file ? sharedFiles_.reset(ev.file, blobs_, ev.blob, ev.fileSize) : blobs_.pathOf(ev.blob);
  auto it = sources.find(key);
  if (it != sources.end()) return it->second;
  uint64_t at = putScratchString(*t.task, t.stub, path);
  long fd = ev.file ? remote.check("opening a shared file", SYS_open, at, O_RDWR | O_CLOEXEC)
                    : remote.check("opening a captured file", SYS_open, at,
                                   O_RDONLY | O_CLOEXEC | blobs_.noFollow(ev.blob));
  sources[key] = fd;
  return fd;
}

void ReplaySession::replayBrk(ReplayTask& t, Regs r, const SyscallEvent& ev) {
  uint64_t target = pageUp(uint64_t(ev.result));
  uint64_t& end = space(t).brkEnd;
  if (target != end) {
    RemoteSyscalls remote(*t.task, t.stub.gadget);
    if (target > end) {
      remote.check("growing the heap", SYS_mmap, end, target - end, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, uint64_t(-1), 0);
    } else {
      remote.check("shrinking the heap", SYS_munmap, target, end - target);
    }
    end = target;
  }
  finishSyscall(t, r, ev.result);
}

void ReplaySession::replayFork(ReplayTask& t, const Regs& at, const SyscallEvent& ev) {
  if (isError(ev.result)) return finishSyscall(t, at, ev.result);
  uint64_t flags = 0, ptid = 0, ctid = 0;
  if (ev.nr == SYS_vfork) flags = CLONE_VM | CLONE_VFORK;
  if (ev.nr == SYS_clone) {
    flags = ev.args[0];
    ptid = ev.args[2];
    ctid = ev.args[3];
  }
  if (ev.nr == kSysClone3) {
    uint64_t cl[4];  // flags, pidfd, child_tid, parent_tid
    t.task->read(ev.args[0], cl, sizeof cl);
    flags = cl[0];
    ctid = cl[2];
    ptid = cl[3];
  }
  // The namespaces and cgroup the recorded child was put in are not replay's to make (every pid
  // and result is in the recording, and replay may lack the privilege): it forks without them.
  constexpr uint64_t kCloneNewTime = 0x80, kCloneIntoCgroup = 0x200000000ull;
  constexpr uint64_t kPlacement = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                  CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
  Regs run = at;
  // Nor untraced: the recorder forked it traced.
  if (ev.nr == SYS_clone) run.rdi &= ~(kPlacement | uint64_t(CLONE_UNTRACED));
  const uint64_t placement = kPlacement | kCloneNewTime | kCloneIntoCgroup;
  const bool strip3 = ev.nr == kSysClone3 && (flags & placement);
  if (strip3) {
    const uint64_t without = flags & ~placement;
    t.task->write(ev.args[0], &without, sizeof without);
  }
  Stop s = runInPlace(t, run);
  if (strip3) t.task->write(ev.args[0], &flags, sizeof flags);
  if (s.kind != Stop::Event) fail(ErrorCode::System, "replay could not fork");
  unsigned long child = 0;
  ptrace(PTRACE_GETEVENTMSG, t.task->tid(), nullptr, &child);
  // A vfork parent sleeps in the kernel until its child execs or exits, as it did when recorded;
  // its syscall is finished when the stream comes back to it.
  bool vfork = flags & CLONE_VFORK;
  if (!vfork) resumeInKernel(t);

  const uint32_t tid = ev.child;
  if (tid == 0) fail(ErrorCode::BadTrace, "a fork record names no new task");
  ReplayTask& c = tasks_[tid];
  c.recordedTid = tid;
  c.tgid = (flags & CLONE_THREAD) ? t.tgid : tid;
  c.task = std::make_unique<Task>(pid_t(child));
  c.task->keepRegs();
  c.stub = t.stub;
  // Threads share the address space; a new process has a copy of it.
  c.space = (flags & CLONE_VM) ? t.space : tid;
  if (!(flags & CLONE_VM)) spaces_[c.space] = space(t);
  c.clearChildTid = (flags & CLONE_CHILD_CLEARTID) ? ctid : 0;
  Stop first = c.task->wait();  // the SIGSTOP every traced child starts with
  if (first.kind != Stop::Signal) fail(ErrorCode::System, "the replayed child did not start");
  // The kernel wrote the child's real tid where the program asked for it: write the pids the
  // recorded child (CLONE_CHILD_SETTID: its recorded write) and parent saw. The parent's other
  // recorded write is its pidfd's number (CLONE_PIDFD).
  for (const MemoryWrite& w : ev.writes) {
    Task& into = (flags & CLONE_CHILD_SETTID) && w.addr == ctid ? *c.task : *t.task;
    into.write(w.addr, w.data.data(), w.data.size());
  }
  if (strip3) c.task->write(ev.args[0], &flags, sizeof flags);  // its copy of clone_args
  const auto seen = uint32_t(ev.result);
  if ((flags & CLONE_PARENT_SETTID) && ptid) t.task->write(ptid, &seen, sizeof seen);
  if (vfork) {
    t.vforkResult = ev.result;
    t.vforkRegs = at;
  } else {
    finishSyscall(t, at, ev.result);
  }
  // Both run when the stream says so (their Run events), as the recorder let them.
  t.parked = true;
  c.parked = true;
}

// The program's seccomp filter killed the thread or the process at this syscall when recorded:
// replay has the kernel do the same, through a filter of its own that kills at this syscall.
void ReplaySession::killAsFiltered(ReplayTask& t, const Regs& at, const SyscallEvent& ev) {
  const uint32_t action = ev.filtered == SyscallEvent::Filtered::KilledThread
                              ? SECCOMP_RET_KILL_THREAD
                              : SECCOMP_RET_KILL_PROCESS;
  const sock_filter kill = BPF_STMT(BPF_RET | BPF_K, action);
  const uint64_t prog = t.stub.scratch, code = prog + sizeof(sock_fprog);
  const sock_fprog fprog{1, reinterpret_cast<sock_filter*>(code)};
  t.task->write(prog, &fprog, sizeof fprog);
  t.task->write(code, &kill, sizeof kill);
  {
    RemoteSyscalls remote(*t.task, t.stub.gadget);
    remote.check("preparing a seccomp kill", SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    remote.check("installing a seccomp kill", SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog);
  }
  // The syscall's exit stop comes first, then the end.
  Stop s = runInPlace(t, at);
  for (int i = 0; i < 4 && s.kind == Stop::SyscallStop; i++) s = resumeInKernel(t);
  if (s.kind != Stop::Exited && s.kind != Stop::Killed) diverged(t, describeStop(s));
  onExit(t, s);
}

bool ReplaySession::leadsLiveThreads(const ReplayTask& t) const {
  if (t.recordedTid != t.tgid) return false;
  for (const auto& [tid, other] : tasks_) {
    if (other.tgid == t.tgid && tid != t.recordedTid && !other.exited) return true;
  }
  return false;
}

// exit_group ends every thread of the process; the kernel reports the leader's end only after
// the others', so all of them are collected here (their Exit events are checked in turn).
void ReplaySession::exitGroupInPlace(ReplayTask& t, const Regs& at) {
  releaseProcessRobustFutexes(t.tgid);
  if (std::optional<Stop> early = enterInPlace(t, at)) {
    if (early->kind == Stop::Exited || early->kind == Stop::Killed) return onExit(t, *early);
    fail(ErrorCode::System, "exit_group did not run");
  }
  std::optional<Event> end = nextEventOf(t);
  if (end && end->type == EventType::Exit && WIFSIGNALED(end->exit.waitStatus) &&
      WTERMSIG(end->exit.waitStatus) == SIGKILL) {
    // Recorded, a SIGKILL (from another process, which replay does not send) came as the task
    // entered exit_group: the kernel skips the syscall, and the process dies of it.
    t.task->sendSignal(SIGKILL);
  } else {
    t.task->resume(PTRACE_SYSCALL);
  }
  uint32_t process = t.tgid;
  for (int round = 0; round < 5000; round++) {
    bool left = false;
    for (auto& [tid, other] : tasks_) {
      if (other.tgid != process || other.exited) continue;
      int status;
      if (waitpid(other.task->tid(), &status, __WALL | WNOHANG) == other.task->tid()) {
        Stop s = Stop::fromWaitStatus(status);
        if (s.kind == Stop::Exited || s.kind == Stop::Killed) {
          onExit(other, s);
          continue;
        }
        other.task->resume(PTRACE_CONT);  // a stop on its way out: let it die
      }
      left = true;
    }
    if (!left) return;
    usleep(1000);
  }
  fail(ErrorCode::System, "the threads of an exiting process did not end");
}

// Brings the task, at a PTRACE_SYSEMU stop, into its syscall for real: it stops at the entry.
// Returns the stop instead if the task stopped otherwise on the way.
std::optional<Stop> ReplaySession::enterInPlace(ReplayTask& t, const Regs& at) {
  Regs r = at;
  uint64_t insn = r.rip - 2;
  r.rip = insn;
  r.rax = r.orig_rax;
  t.task->setRegs(r);
  // As in RemoteSyscalls: skip the exit stop of the syscall PTRACE_SYSEMU skipped.
  for (;;) {
    Stop s = resumeInKernel(t);
    if (s.kind != Stop::SyscallStop) return s;
    if (t.task->regs().rip == insn + 2) return std::nullopt;
  }
}

Stop ReplaySession::runInPlace(ReplayTask& t, const Regs& at) {
  if (std::optional<Stop> early = enterInPlace(t, at)) return *early;
  return resumeInKernel(t);
}

// Resumes the task with PTRACE_SYSCALL, for a syscall replay runs for real, and waits for its
// next stop. A SIGCHLD the kernel sends meanwhile for a replayed child is passed over, as
// runActive does: the recording's SIGCHLDs are events of their own.
Stop ReplaySession::resumeInKernel(ReplayTask& t) {
  for (;;) {
    t.task->resume(PTRACE_SYSCALL);
    Stop s = t.task->wait();
    if (!isChildEnd(*t.task, s)) return s;
  }
}

// The exec kills the process's other threads, and goes on only once their ends are collected
// (traced, they stay zombies until then): their Exit events come after the exec's.
void ReplaySession::collectEndedByExec(const ReplayTask& t) {
  for (auto& [tid, other] : tasks_) {
    if (&other == &t || other.tgid != t.tgid || other.exited) continue;
    if (tid == t.tgid) continue;  // the first thread, when another execs: never reported
    for (;;) {
      Stop s = other.task->wait();
      if (s.kind == Stop::Exited || s.kind == Stop::Killed) {
        onExit(other, s);
        break;
      }
      other.task->resume(PTRACE_CONT);  // a stop it reached before the kill
    }
  }
}

void ReplaySession::execInPlace(ReplayTask& t, const Regs& at) {
  releaseProcessRobustFutexes(t.tgid);
  segvActions_.erase(t.tgid);  // exec resets the actions of caught signals  // the threads exec
                               // ends, and the one that execs
  // Exec the stub again: the kernel resets what exec resets, then the recorded address space
  // is rebuilt around the stub as at the start.
  Regs r = at;
  uint64_t path = putScratchString(*t.task, t.stub, options_.stubPath);
  uint64_t argv[2] = {path, 0};
  uint64_t arrays = t.stub.scratch + 4096;
  t.task->write(arrays, argv, sizeof argv);
  r.orig_rax = SYS_execve;
  r.rdi = path;
  r.rsi = arrays;
  r.rdx = arrays + 8;
  std::optional<Stop> early = enterInPlace(t, r);
  Stop s{};
  if (early) {
    s = *early;
  } else {
    t.task->resume(PTRACE_SYSCALL);
    collectEndedByExec(t);
    // From another thread than the first, the kernel ends the first and gives the exec'ing
    // thread its tid (which it reports the exec under); in the stream, the thread's events are
    // the first's from now on.
    if (t.recordedTid != t.tgid) {
      auto leader = tasks_.find(t.tgid);
      if (leader == tasks_.end() || leader->second.exited) {
        fail(ErrorCode::BadTrace, "an exec by a thread whose process has no first thread");
      }
      t.task = std::move(leader->second.task);
    }
    s = t.task->wait();
    if (isChildEnd(*t.task, s)) s = resumeInKernel(t);
  }
  if (s.kind != Stop::Event || s.event != PTRACE_EVENT_EXEC) {
    fail(ErrorCode::System, "replay could not exec the stub");
  }
  resumeInKernel(t);
  t.clearChildTid = 0;  // exec forgets it
  if (t.recordedTid == t.tgid) return rebuild(t);
  const uint32_t leader = t.tgid;
  ReplayTask moved = std::move(t);
  tasks_.erase(moved.recordedTid);
  moved.recordedTid = leader;
  ReplayTask& now = tasks_[leader] = std::move(moved);
  rebuild(now);
}

}  // namespace rwd
