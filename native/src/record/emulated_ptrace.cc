// The recorded program's own ptrace, emulated by the recorder (record/emulated_ptrace.h).
#include "record/emulated_ptrace.h"

#include <asm/prctl.h>
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/spawn.h"
#include "record/record_session.h"

namespace rwd {
namespace {

constexpr uint32_t kRusageBytes = 144;
constexpr size_t kMaxRegset = 1 << 16;
// The options rewind emulates; the events of the others are refused when they happen.
constexpr long kKnownOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                               PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEVFORKDONE |
                               PTRACE_O_TRACEEXIT | PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL |
                               PTRACE_O_SUSPEND_SECCOMP;

void syscallArgs(const Regs& r, uint64_t* args) {
  const uint64_t values[6] = {r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9};
  memcpy(args, values, sizeof values);
}

bool isWait(long nr) { return nr == SYS_wait4 || nr == SYS_waitid; }

std::optional<WaitRequest> waitRequest(long nr, const uint64_t* args, pid_t waiter) {
  WaitRequest w;
  if (nr == SYS_wait4) {
    const pid_t pid = pid_t(int32_t(args[0]));
    w.options = int(args[2]);
    w.result = args[1];
    w.rusage = args[3];
    if (pid > 0) {
      w.kind = WaitRequest::Pid;
      w.id = pid;
    } else if (pid == 0 || pid < -1) {
      w.kind = WaitRequest::Group;
      w.id = pid == 0 ? getpgid(waiter) : -pid;
    }
    return w;
  }
  if (nr != SYS_waitid) return std::nullopt;
  w.waitid = true;
  w.options = int(args[3]);
  w.result = args[2];
  w.rusage = args[4];
  w.id = pid_t(args[1]);
  switch (int(args[0])) {
    case P_ALL:
      w.kind = WaitRequest::Any;
      return w;
    case P_PID:
      w.kind = WaitRequest::Pid;
      return w;
    case P_PGID:
      w.kind = WaitRequest::Group;
      if (w.id == 0) w.id = getpgid(waiter);
      return w;
  }
  return std::nullopt;  // P_PIDFD: not for emulated tracees
}

[[noreturn]] void refuse(const std::string& what) {
  fail(ErrorCode::Unsupported, what + " is not supported yet");
}

// Changes to a tracee are replayed where it stopped: not in a group-stop that may be anywhere
// (one that came where its last syscall returned is there), an event stop, or the restart of an
// interrupted syscall.
void checkEditable(const EmulatedStop& stop, const std::string& what) {
  const bool eventStop = stop.sig == 0 && !stop.group && !stop.syscallEntry && !stop.syscallExit;
  if ((stop.group && !stop.atBoundary) || eventStop || stop.inRestart) {
    refuse(what + " of a traced task in a group-stop, an event stop or an interrupted syscall");
  }
}

// DR0-DR3 and DR7: the hardware breakpoints and watchpoints set in the task.
std::array<uint64_t, 5> debugRegisters(pid_t tid) {
  std::array<uint64_t, 5> regs{};
  const int which[5] = {0, 1, 2, 3, 7};
  for (int i = 0; i < 5; i++) {
    const uint64_t at = offsetof(struct user, u_debugreg) + sizeof(uint64_t) * uint64_t(which[i]);
    regs[size_t(i)] = uint64_t(ptrace(PTRACE_PEEKUSER, tid, at, nullptr));
  }
  return regs;
}

}  // namespace

std::string ptraceRequestName(long request) {
  static const std::map<long, const char*> names = {
      {PTRACE_TRACEME, "PTRACE_TRACEME"},
      {PTRACE_PEEKTEXT, "PTRACE_PEEKTEXT"},
      {PTRACE_PEEKDATA, "PTRACE_PEEKDATA"},
      {PTRACE_PEEKUSER, "PTRACE_PEEKUSER"},
      {PTRACE_POKETEXT, "PTRACE_POKETEXT"},
      {PTRACE_POKEDATA, "PTRACE_POKEDATA"},
      {PTRACE_POKEUSER, "PTRACE_POKEUSER"},
      {PTRACE_CONT, "PTRACE_CONT"},
      {PTRACE_KILL, "PTRACE_KILL"},
      {PTRACE_SINGLESTEP, "PTRACE_SINGLESTEP"},
      {PTRACE_GETREGS, "PTRACE_GETREGS"},
      {PTRACE_SETREGS, "PTRACE_SETREGS"},
      {PTRACE_GETFPREGS, "PTRACE_GETFPREGS"},
      {PTRACE_SETFPREGS, "PTRACE_SETFPREGS"},
      {PTRACE_ATTACH, "PTRACE_ATTACH"},
      {PTRACE_DETACH, "PTRACE_DETACH"},
      {PTRACE_GETFPXREGS, "PTRACE_GETFPXREGS"},
      {PTRACE_SETFPXREGS, "PTRACE_SETFPXREGS"},
      {PTRACE_SYSCALL, "PTRACE_SYSCALL"},
      {PTRACE_GET_THREAD_AREA, "PTRACE_GET_THREAD_AREA"},
      {PTRACE_SET_THREAD_AREA, "PTRACE_SET_THREAD_AREA"},
      {PTRACE_ARCH_PRCTL, "PTRACE_ARCH_PRCTL"},
      {PTRACE_SYSEMU, "PTRACE_SYSEMU"},
      {PTRACE_SYSEMU_SINGLESTEP, "PTRACE_SYSEMU_SINGLESTEP"},
      {PTRACE_SINGLEBLOCK, "PTRACE_SINGLEBLOCK"},
      {PTRACE_SETOPTIONS, "PTRACE_SETOPTIONS"},
      {PTRACE_GETEVENTMSG, "PTRACE_GETEVENTMSG"},
      {PTRACE_GETSIGINFO, "PTRACE_GETSIGINFO"},
      {PTRACE_SETSIGINFO, "PTRACE_SETSIGINFO"},
      {PTRACE_GETREGSET, "PTRACE_GETREGSET"},
      {PTRACE_SETREGSET, "PTRACE_SETREGSET"},
      {PTRACE_SEIZE, "PTRACE_SEIZE"},
      {PTRACE_INTERRUPT, "PTRACE_INTERRUPT"},
      {PTRACE_LISTEN, "PTRACE_LISTEN"},
      {PTRACE_PEEKSIGINFO, "PTRACE_PEEKSIGINFO"},
      {PTRACE_GETSIGMASK, "PTRACE_GETSIGMASK"},
      {PTRACE_SETSIGMASK, "PTRACE_SETSIGMASK"},
      {PTRACE_SECCOMP_GET_FILTER, "PTRACE_SECCOMP_GET_FILTER"},
      {PTRACE_GET_SYSCALL_INFO, "PTRACE_GET_SYSCALL_INFO"},
  };
  auto it = names.find(request);
  const std::string name = it != names.end() ? it->second : "ptrace request";
  return name + " (" + std::to_string(request) + ")";
}

bool RecordSession::tracedByProgram(pid_t tid) const { return ptrace_.tracees.count(tid) > 0; }

// At a syscall's entry: true when the recorder answers it instead of the kernel (cancelled now,
// answered at its exit): every ptrace request, and a wait that an emulated stop answers.
bool RecordSession::ptraceEntry(RecordedTask& t, long nr, const uint64_t* args) {
  const pid_t tid = t.task->tid();
  auto tracee = ptrace_.tracees.find(tid);
  if (tracee != ptrace_.tracees.end()) tracee->second.restarting = false;
  if (nr == SYS_ptrace) {
    ptrace_.answering[tid] = std::nullopt;
    return true;
  }
  std::optional<WaitRequest> w = waitRequest(nr, args, tid);
  if (!w) return false;
  auto stop = ptraceTakeStop(t, *w, !(w->options & WNOWAIT));
  if (!stop) return false;
  ptrace_.answering[tid] = stop;
  return true;
}

// The stop of a tracee of the waiter's process that the wait reports, if one is unreported;
// taken (reported) if `take`.
std::optional<std::pair<pid_t, EmulatedStop>> RecordSession::ptraceTakeStop(
    const RecordedTask& waiter, const WaitRequest& w, bool take) {
  for (auto& [tid, e] : ptrace_.tracees) {
    if (!e.stop || e.stop->reported) continue;
    auto tracer = tasks_.find(e.tracer);
    if (tracer == tasks_.end() || tracer->second.tgid != waiter.tgid) continue;
    if ((w.options & __WNOTHREAD) && e.tracer != waiter.task->tid()) continue;
    if (w.kind == WaitRequest::Pid && w.id != tid) continue;
    if (w.kind == WaitRequest::Group && getpgid(tid) != w.id) continue;
    if (take) e.stop->reported = true;
    return std::make_pair(tid, *e.stop);
  }
  return std::nullopt;
}

// Whether the wait could report a stop of an emulated tracee later.
bool RecordSession::ptraceMayReport(const RecordedTask& waiter, const WaitRequest& w) const {
  for (const auto& [tid, e] : ptrace_.tracees) {
    auto tracer = tasks_.find(e.tracer);
    if (tracer == tasks_.end() || tracer->second.tgid != waiter.tgid) continue;
    if (w.kind == WaitRequest::Pid && w.id != tid) continue;
    if (w.kind == WaitRequest::Group && getpgid(tid) != w.id) continue;
    return true;
  }
  return false;
}

// At a syscall's exit, with the token: the answer of a syscall the recorder took over, written
// as the kernel would have (the recorder then captures its outputs as any syscall's).
int64_t RecordSession::ptraceExit(RecordedTask& t, int64_t result) {
  const pid_t tid = t.task->tid();
  const long nr = syscallNumber(t.entryRegs.orig_rax);
  uint64_t args[6];
  syscallArgs(t.entryRegs, args);
  auto answer = ptrace_.answering.find(tid);
  if (answer == ptrace_.answering.end()) {
    // A wait the kernel found nothing for but an emulated tracee that may stop later: WNOHANG's
    // answer is that nothing has changed yet.
    std::optional<WaitRequest> w = waitRequest(nr, args, tid);
    if (result != -ECHILD || !w || !ptraceMayReport(t, *w)) return result;
    result = 0;
  } else if (nr == SYS_ptrace) {
    ptrace_.answering.erase(answer);
    result = ptraceRequest(t, args);
  } else {
    const auto [tracee, stop] = *answer->second;
    ptrace_.answering.erase(answer);
    const WaitRequest w = *waitRequest(nr, args, tid);
    std::vector<uint8_t> rusage(kRusageBytes);
    if (w.rusage) t.task->tryWrite(w.rusage, rusage.data(), rusage.size());
    if (w.waitid) {
      siginfo_t info{};
      info.si_signo = SIGCHLD;
      info.si_code = CLD_TRAPPED;
      info.si_pid = tracee;
      info.si_uid = getuid();
      info.si_status = stop.status >> 8;
      if (w.result) t.task->tryWrite(w.result, &info, sizeof info);
      result = 0;
    } else {
      if (w.result) t.task->tryWrite(w.result, &stop.status, sizeof stop.status);
      result = tracee;
    }
  }
  Regs regs = t.task->regs();
  regs.rax = uint64_t(result);
  t.task->setRegs(regs);
  return result;
}

// At a wait's exit: the kernel said ECHILD, but the waiter's emulated tracees may stop later, so
// natively it would wait on. It is held at its exit, and made to enter the wait again once one
// stops (nothing recorded of this try).
bool RecordSession::ptraceWaitBlocks(RecordedTask& t, int64_t result) {
  const long nr = syscallNumber(t.entryRegs.orig_rax);
  if (result != -ECHILD || !isWait(nr) || ptrace_.answering.count(t.task->tid())) return false;
  uint64_t args[6];
  syscallArgs(t.entryRegs, args);
  std::optional<WaitRequest> w = waitRequest(nr, args, t.task->tid());
  if (!w || (w->options & WNOHANG) || !ptraceMayReport(t, *w)) return false;
  ptrace_.parkedWaiters.insert(t.task->tid());
  if (ptraceTakeStop(t, *w, false)) ptraceWakeWaiters(t.tgid);
  return true;
}

// The waits of the tracer's process go on: one held at its exit enters its wait again, one the
// kernel has asleep is interrupted (PTRACE_INTERRUPT; the kernel restarts it, and its entry
// finds the stop).
void RecordSession::ptraceWakeWaiters(pid_t tracerTgid) {
  for (auto& [tid, w] : tasks_) {
    if (w.tgid != tracerTgid) continue;
    if (ptrace_.parkedWaiters.erase(tid)) {
      try {
        Regs r = w.task->regs();
        r.rip -= 2;  // the syscall instruction
        r.rax = r.orig_rax;
        w.task->setRegs(r);
        w.task->resume(PTRACE_SYSCALL);
      } catch (const TaskGone&) {
        // its end comes next
      }
    } else if (w.inSyscall && isWait(syscallNumber(w.entryRegs.orig_rax))) {
      ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
    }
  }
}

// A stop of the recorder's that a tracee took while its tracer's PTRACE_INTERRUPT was due may
// have cleared the kernel's pending trap (any ptrace stop does): it is asked for again after each
// one, until the tracee stops for it (a PTRACE_EVENT_STOP, or a syscall it interrupts).
void RecordSession::ptraceInterruptAgain(pid_t tid) {
  auto tracee = ptrace_.tracees.find(tid);
  if (tracee != ptrace_.tracees.end() && tracee->second.interrupting && tasks_.count(tid)) {
    ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
  }
}

// A syscall of an emulated tracee was interrupted, and restarts when it goes on. If its tracer's
// PTRACE_INTERRUPT did it, this is where it stops: the kernel's trap for it is gone, as any
// ptrace stop (this syscall-exit stop of the recorder's) clears a pending one.
bool RecordSession::ptraceSwallowed(RecordedTask& t) {
  auto tracee = ptrace_.tracees.find(t.task->tid());
  if (tracee == ptrace_.tracees.end()) return false;
  EmulatedTracee& e = tracee->second;
  e.restarting = true;
  if (!e.interrupting) return false;
  e.interrupting = false;
  EmulatedStop stop;
  stop.group = true;
  // While its process's stop is in force, the kernel's trap names that stop's signal.
  const int sig = e.outOfGroupStop ? e.outOfGroupStop : SIGTRAP;
  stop.status = (PTRACE_EVENT_STOP << 16) | (sig << 8) | 0x7f;
  ptraceEnterStop(t, stop);
  return true;
}

// A signal stops an emulated tracee where it comes when the kernel restarts the syscall it
// interrupted: replay need not stop there if the tracer lets it go on as it was.
bool RecordSession::ptraceStopsHere(const RecordedTask& t) const {
  auto tracee = ptrace_.tracees.find(t.task->tid());
  return tracee != ptrace_.tracees.end() && tracee->second.restarting;
}

// A signal about to be delivered to an emulated tracee: a signal-delivery stop for its tracer.
// It stays in the kernel's stop until the tracer resumes it.
bool RecordSession::ptraceSignalStop(RecordedTask& t, int sig, const siginfo_t& info, bool fault,
                                     bool positioned, bool atBoundary) {
  auto tracee = ptrace_.tracees.find(t.task->tid());
  if (tracee == ptrace_.tracees.end()) return false;
  siginfo_t given = info;
  if (sig == SIGTRAP && tracee->second.execTrap) {
    // The recorder's stands for the kernel's, which the tracee sends itself.
    tracee->second.execTrap = false;
    memset(&given, 0, sizeof given);
    given.si_signo = SIGTRAP;
    given.si_code = SI_USER;
    given.si_pid = t.tgid;
    given.si_uid = getuid();
    t.task->setSiginfo(given);
  }
  EmulatedStop stop;
  stop.status = (sig << 8) | 0x7f;
  stop.sig = sig;
  stop.fault = fault;
  stop.positioned = positioned;
  stop.inRestart = tracee->second.restarting;
  stop.atBoundary = atBoundary && !positioned && !fault && !stop.inRestart;
  stop.info = given;
  release(t);
  ptraceEnterStop(t, stop);
  return true;
}

// A ptrace event of a recorded task: an emulated tracee's stop if its tracer asked for it;
// events the emulation does not report yet are refused by name.
bool RecordSession::ptraceEventStop(RecordedTask& t, int event) {
  auto it = ptrace_.tracees.find(t.task->tid());
  if (it == ptrace_.tracees.end()) return false;
  const EmulatedTracee& e = it->second;
  const long wanted = event == PTRACE_EVENT_FORK    ? PTRACE_O_TRACEFORK
                      : event == PTRACE_EVENT_VFORK ? PTRACE_O_TRACEVFORK
                      : event == PTRACE_EVENT_CLONE ? PTRACE_O_TRACECLONE
                      : event == PTRACE_EVENT_EXEC  ? PTRACE_O_TRACEEXEC
                      : event == PTRACE_EVENT_EXIT  ? PTRACE_O_TRACEEXIT
                                                    : 0;
  // An exec's stops come at its exit, once the exec is recorded (ptraceExecStop).
  if (event == PTRACE_EVENT_EXEC || !(e.options & wanted)) return false;
  if (event != PTRACE_EVENT_EXIT) {
    const char* name = event == PTRACE_EVENT_FORK    ? "PTRACE_EVENT_FORK"
                       : event == PTRACE_EVENT_VFORK ? "PTRACE_EVENT_VFORK"
                                                     : "PTRACE_EVENT_CLONE";
    refuse(std::string(name) + " (" + std::to_string(event) + ") of a task the program traces");
  }
  EmulatedStop stop;
  stop.status = (event << 16) | (SIGTRAP << 8) | 0x7f;
  ptrace(PTRACE_GETEVENTMSG, t.task->tid(), nullptr, &stop.eventMsg);
  ptraceEnterStop(t, stop);
  return true;
}

// A tracee's exec is recorded, at its exit: it stops there as natively. With PTRACE_O_TRACEEXEC,
// the exec event; attached without it, the SIGTRAP the kernel sends it (a real one, delivered
// where it returns to user code); then PTRACE_SYSCALL's exit stop. True if it stopped.
bool RecordSession::ptraceExecStop(RecordedTask& t) {
  auto it = ptrace_.tracees.find(t.task->tid());
  if (it == ptrace_.tracees.end()) return false;
  EmulatedTracee& e = it->second;
  if (e.options & PTRACE_O_TRACEEXEC) {
    EmulatedStop stop;
    stop.syscallExit = true;  // where the recorder holds it
    stop.execEvent = true;
    stop.status = (PTRACE_EVENT_EXEC << 16) | (SIGTRAP << 8) | 0x7f;
    stop.eventMsg = unsigned(t.task->tid());
    // The kernel stops it there before the exec returns: the result is not set yet.
    Regs r = t.task->regs();
    r.rax = uint64_t(-ENOSYS);
    t.task->setRegs(r);
    release(t);
    ptraceEnterStop(t, stop);
    return true;
  }
  if (!e.seized) {
    if (e.syscallStops) {
      refuse("an exec by a task the program attached without PTRACE_O_TRACEEXEC and traces with " +
             std::string("PTRACE_SYSCALL"));
    }
    e.execTrap = true;
    syscall(SYS_tgkill, t.tgid, t.task->tid(), SIGTRAP);
    t.pendingAtBoundary.insert(SIGTRAP);  // delivered as it returns to user code
    next_ = t.task->tid();
    return false;
  }
  return ptraceSyscallStop(t, false);
}

// A stop of the seized kind of an emulated tracee: its process's group-stop, or the trap its
// tracer's PTRACE_INTERRUPT asked for. It stays in the kernel's stop (not PTRACE_LISTEN) until
// its tracer resumes it: it then runs, stopped process or not, as natively.
bool RecordSession::ptraceGroupStop(RecordedTask& t, int sig) {
  auto it = ptrace_.tracees.find(t.task->tid());
  if (it == ptrace_.tracees.end()) return false;
  EmulatedTracee& e = it->second;
  const bool stopSignal = sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
  if (!stopSignal && !e.interrupting) return false;
  const bool attaching = e.interrupting && !e.seized;
  e.interrupting = false;
  if (stopSignal) t.groupStopped = true;
  release(t);
  EmulatedStop stop;
  stop.group = true;
  stop.atBoundary = t.groupStopped && t.stopAtBoundary;
  stop.status = (e.seized ? PTRACE_EVENT_STOP << 16 : 0) | (sig << 8) | 0x7f;
  if (attaching) stop.status = (SIGSTOP << 8) | 0x7f;
  ptraceEnterStop(t, stop);
  return true;
}

// The tracer learns of the stop as natively: a SIGCHLD if it catches it (the kernel's carries
// CLD_TRAPPED, which the recorder cannot send, so it sends a plain one and rewrites it when it
// is delivered), and its waits wake.
void RecordSession::ptraceEnterStop(RecordedTask& t, const EmulatedStop& stop) {
  EmulatedTracee& e = ptrace_.tracees.at(t.task->tid());
  e.stop = stop;
  auto tracer = tasks_.find(e.tracer);
  if (tracer == tasks_.end()) return;
  const pid_t tgid = tracer->second.tgid;
  if (!ignoresSignal(e.tracer, SIGCHLD)) {
    siginfo_t info{};
    info.si_signo = SIGCHLD;
    info.si_code = CLD_TRAPPED;
    info.si_pid = t.task->tid();
    info.si_uid = getuid();
    info.si_status = stop.status >> 8 & 0xff;
    ptrace_.sigchld[tgid].push_back(info);
    kill(tgid, SIGCHLD);
  }
  ptraceWakeWaiters(tgid);
}

// A SIGCONT ended the stop of the process: its tracees' traps no longer name it.
void RecordSession::ptraceContinued(pid_t tgid) {
  for (auto& [tid, e] : ptrace_.tracees) {
    auto it = tasks_.find(tid);
    if (it != tasks_.end() && it->second.tgid == tgid) e.outOfGroupStop = 0;
  }
}

void RecordSession::fixSyntheticSigchld(RecordedTask& t, siginfo_t& info) {
  if (info.si_signo != SIGCHLD || info.si_code != SI_USER || info.si_pid != getpid()) return;
  std::deque<siginfo_t>& queue = ptrace_.sigchld[t.tgid];
  if (queue.empty()) return;
  info = queue.front();
  queue.pop_front();
  t.task->setSiginfo(info);
}

// The tracer resumes its tracee with `sig` (0: none). A tracee stopped at a signal runs user
// code again: it takes its turn first.
void RecordSession::ptraceResume(pid_t tid, int sig) {
  EmulatedTracee& e = ptrace_.tracees.at(tid);
  EmulatedStop from = *e.stop;
  e.stop.reset();
  RecordedTask& t = tasks_.at(tid);
  if (from.syscallEntry || from.syscallExit) {
    if (sig) refuse("resuming a traced task with a signal at a syscall stop");
  } else if (from.group) {
    if (t.groupStopped) e.outOfGroupStop = from.status >> 8 & 0xff;
    t.groupStopped = false;
    t.stopAtBoundary = false;
    sig = 0;                   // the kernel injects no signal at these stops
  } else if (from.sig == 0) {  // an event stop: it is in the kernel, and goes on without a signal
    try {
      t.task->resume(PTRACE_SYSCALL);
    } catch (const TaskGone&) {
    }
    return;
  }
  if (sig && !defaultStop(tid, sig) && from.inRestart) {
    refuse("resuming a traced task with a signal where it stopped in an interrupted syscall");
  }
  if (sig && from.fault && sig != from.sig) {
    refuse("resuming a traced task with another signal than its fault's");
  }
  ptrace_.resuming[tid] = EmulatedResume{from, sig};
  try {
    if (acquire(t, Deferred::PtraceResume)) ptraceResumeGranted(t);
  } catch (const TaskGone&) {
    // Killed meanwhile (its tracer's SIGKILL): its end comes next. Not the tracer's error.
  }
}

// The tracee's turn: the stream says how it goes on. Where it stopped in user code, a Run; the
// signal it is given, as a Signal event that replay delivers there (a fault's with signal 0 when
// the tracer suppressed it: replay meets the fault and lets it go). A stop signal that only stops
// it is not recorded, as without a tracer.
void RecordSession::ptraceResumeGranted(RecordedTask& t) {
  const pid_t tid = t.task->tid();
  const EmulatedResume r = ptrace_.resuming.at(tid);
  ptrace_.resuming.erase(tid);
  if (r.from.positioned) {
    Event run;
    run.type = EventType::Run;
    run.run.tid = uint32_t(tid);
    append(run);
  }
  siginfo_t info = r.from.info;
  if (r.sig && r.sig != r.from.sig) {
    // What the kernel makes of a signal the tracer changed.
    memset(&info, 0, sizeof info);
    info.si_signo = r.sig;
    info.si_code = SI_USER;
    auto tracee = ptrace_.tracees.find(tid);
    auto tracer =
        tracee != ptrace_.tracees.end() ? tasks_.find(tracee->second.tracer) : tasks_.end();
    info.si_pid = tracer != tasks_.end() ? tracer->second.tgid : 0;
    info.si_uid = getuid();
  }
  if (r.from.fault || (r.sig && !defaultStop(tid, r.sig))) {
    Event e;
    e.type = EventType::Signal;
    e.signal.tid = uint32_t(tid);
    e.signal.signo = r.sig;
    e.signal.fault = r.from.fault;
    memcpy(e.signal.info, &info, sizeof e.signal.info);
    append(e);
  }
  EmulatedStop from = r.from;
  if (from.execEvent) {
    // The exec returns 0, as recorded, unless its tracer set another result.
    Regs regs = t.task->regs();
    if (regs.rax == uint64_t(-ENOSYS)) regs.rax = 0;
    t.task->setRegs(regs);
    if (from.edit.before) from.edit.before->rax = 0;
  }
  ptraceAppendEdit(t, from);
  if (from.execEvent && ptraceSyscallStop(t, false)) return;
  if (r.from.syscallEntry) {
    // The syscall goes on as its tracer left it, recorded as any.
    auto tracee = ptrace_.tracees.find(tid);
    if (tracee != ptrace_.tracees.end()) tracee->second.entryDone = true;
    onSyscallEntry(t);
    return;
  }
  if (r.sig) t.task->setSiginfo(info);
  if (defaultStop(tid, r.sig)) t.stopAtBoundary = from.atBoundary;
  // Still where its syscall returned: a signal sent meanwhile (an attach's SIGSTOP) is taken
  // there, before any user code, as natively, not held and delivered later in user code.
  if (from.atBoundary) t.pendingAtBoundary = t.task->pendingSignals();
  t.task->resume(PTRACE_SYSCALL, r.sig);
}

bool RecordSession::ptraceSyscallStops(const RecordedTask& t) const {
  auto it = ptrace_.tracees.find(t.task->tid());
  return it != ptrace_.tracees.end() && it->second.syscallStops;
}

// A syscall of a tracee its tracer resumed with PTRACE_SYSCALL: it stops at its entry (before
// the recorder looks at it: its tracer may change it) and at its exit (after its event).
// `runs`: it goes on from there with a Run event (a parent back from its fork).
bool RecordSession::ptraceSyscallStop(RecordedTask& t, bool entry, bool runs) {
  if (!t.execed || !ptraceSyscallStops(t)) return false;
  EmulatedTracee& e = ptrace_.tracees.at(t.task->tid());
  if (entry && e.entryDone) {
    e.entryDone = false;
    return false;
  }
  EmulatedStop stop;
  stop.syscallEntry = entry;
  stop.syscallExit = !entry;
  stop.positioned = runs;
  const int trap = SIGTRAP | (e.options & PTRACE_O_TRACESYSGOOD ? 0x80 : 0);
  stop.status = (trap << 8) | 0x7f;
  release(t);
  ptraceEnterStop(t, stop);
  return true;
}

// What the tracer changed in the tracee while it was stopped, as the tracee's event, where it
// goes on: replay applies it there (docs/ptrace.md).
void RecordSession::ptraceAppendEdit(RecordedTask& t, const EmulatedStop& stop) {
  const EmulatedEdit& edit = stop.edit;
  if (!edit.before) return;
  if (edit.debugBefore && *edit.debugBefore != debugRegisters(t.task->tid())) {
    refuse("the hardware breakpoints and watchpoints (debug registers) a traced task's tracer set");
  }
  Event ev;
  ev.type = EventType::PtraceSet;
  PtraceSetEvent& p = ev.ptraceSet;
  p.tid = uint32_t(t.task->tid());
  p.at = stop.syscallEntry ? PtraceSetEvent::SyscallEntry : PtraceSetEvent::AfterLast;
  p.before = *edit.before;
  p.after = t.task->regs();
  if (edit.xstate) {
    p.xstate.resize(kMaxXstate);
    iovec iov{p.xstate.data(), p.xstate.size()};
    if (ptrace(PTRACE_GETREGSET, t.task->tid(), NT_X86_XSTATE, &iov) < 0) {
      failErrno("PTRACE_GETREGSET");
    }
    p.xstate.resize(iov.iov_len);
  }
  p.writes = edit.writes;
  if (memcmp(&p.before, &p.after, sizeof p.after) == 0 && p.xstate.empty() && p.writes.empty()) {
    return;
  }
  append(ev);
}

// A request that changes the stopped tracee, applied to it now.
int64_t RecordSession::ptraceEdit(RecordedTask& tracer, RecordedTask& tracee, EmulatedStop& stop,
                                  const uint64_t* args) {
  const long request = long(args[0]);
  const uint64_t addr = args[2], data = args[3];
  const pid_t pid = tracee.task->tid();
  checkEditable(stop, ptraceRequestName(request));
  EmulatedEdit& edit = stop.edit;
  if (!edit.before) edit.before = tracee.task->regs();
  auto forward = [&](uint64_t a, void* buf) -> int64_t {
    return ptrace(static_cast<__ptrace_request>(request), pid, a, buf) < 0 ? -errno : 0;
  };
  auto fetch = [&](void* buf, size_t len) { return tracer.task->tryRead(data, buf, len); };
  switch (request) {
    case PTRACE_POKETEXT:
    case PTRACE_POKEDATA: {
      // Written now, recorded where the tracee goes on: nothing else may see its memory between.
      for (const auto& [tid, other] : tasks_) {
        auto o = ptrace_.tracees.find(tid);
        const bool stopped = o != ptrace_.tracees.end() && o->second.stop;
        if (tid != pid && other.token == tracee.token && !stopped) {
          refuse(ptraceRequestName(request) + " of a task whose memory other tasks share");
        }
      }
      MemoryWrite w{addr, std::vector<uint8_t>(sizeof(uint64_t))};
      memcpy(w.data.data(), &data, sizeof data);
      if (!tracee.task->tryWrite(addr, w.data.data(), w.data.size())) return -EIO;
      edit.writes.push_back(std::move(w));
      return 0;
    }
    case PTRACE_POKEUSER: {
      const uint64_t debug = offsetof(struct user, u_debugreg);
      if (addr >= debug && addr < debug + sizeof(user::u_debugreg) && !edit.debugBefore) {
        edit.debugBefore = debugRegisters(pid);
      }
      return ptrace(PTRACE_POKEUSER, pid, addr, data) < 0 ? -errno : 0;
    }
    case PTRACE_SETREGS: {
      user_regs_struct regs;
      return fetch(&regs, sizeof regs) ? forward(0, &regs) : -EFAULT;
    }
    case PTRACE_SETFPREGS: {
      user_fpregs_struct regs;
      if (!fetch(&regs, sizeof regs)) return -EFAULT;
      edit.xstate = true;
      return forward(0, &regs);
    }
    case PTRACE_SETREGSET: {
      if (addr != NT_PRSTATUS && addr != NT_PRFPREG && addr != NT_X86_XSTATE) break;
      iovec iov;
      if (!fetch(&iov, sizeof iov)) return -EFAULT;
      std::vector<uint8_t> buf(std::min<size_t>(iov.iov_len, kMaxRegset));
      if (!tracer.task->tryRead(uint64_t(iov.iov_base), buf.data(), buf.size())) return -EFAULT;
      if (addr != NT_PRSTATUS) edit.xstate = true;
      iovec local{buf.data(), buf.size()};
      return forward(addr, &local);
    }
    case PTRACE_ARCH_PRCTL: {
      if (data == ARCH_SET_FS || data == ARCH_SET_GS) {
        return ptrace(PTRACE_ARCH_PRCTL, pid, addr, data) < 0 ? -errno : 0;
      }
      if (data != ARCH_GET_FS && data != ARCH_GET_GS) break;
      uint64_t base = 0;
      if (ptrace(PTRACE_ARCH_PRCTL, pid, &base, data) < 0) return -errno;
      return tracer.task->tryWrite(addr, &base, sizeof base) ? 0 : -EFAULT;
    }
  }
  refuse("ptrace request " + ptraceRequestName(request) + " with these arguments");
}

// A recorded task ended: as a tracee it is gone from its tracer's relations; as a tracer, its
// tracees are let go as the kernel does (killed with PTRACE_O_EXITKILL, else resumed without the
// signal they stopped for).
void RecordSession::ptraceGone(pid_t tid) {
  ptrace_.tracees.erase(tid);
  ptrace_.resuming.erase(tid);
  ptrace_.answering.erase(tid);
  ptrace_.parkedWaiters.erase(tid);
  std::vector<pid_t> orphans;
  for (const auto& [tracee, e] : ptrace_.tracees) {
    if (e.tracer == tid) orphans.push_back(tracee);
  }
  for (pid_t tracee : orphans) {
    EmulatedTracee& e = ptrace_.tracees.at(tracee);
    if (e.options & PTRACE_O_EXITKILL) {
      syscall(SYS_tgkill, tasks_.at(tracee).tgid, tracee, SIGKILL);
    }
    std::optional<EmulatedStop> stop = e.stop;
    if (stop) ptraceResume(tracee, 0);
    ptrace_.tracees.erase(tracee);
  }
}

// The tracer's request, at its ptrace syscall's exit: the result it returns.
int64_t RecordSession::ptraceRequest(RecordedTask& t, const uint64_t* args) {
  const long request = long(args[0]);
  const pid_t pid = pid_t(int32_t(args[1]));
  const uint64_t addr = args[2], data = args[3];
  const pid_t self = t.task->tid();
  if (request == PTRACE_TRACEME) {
    if (ptrace_.tracees.count(self)) return -EPERM;
    pid_t parent = 0;
    for (const ProcessInfo& p : processes_) {
      if (p.pid == t.tgid) parent = p.parent;
    }
    if (!tasks_.count(parent)) refuse("PTRACE_TRACEME by a task whose parent is not recorded");
    ptrace_.tracees[self].tracer = parent;
    return 0;
  }
  auto target = tasks_.find(pid);
  if (request == PTRACE_ATTACH || request == PTRACE_SEIZE) {
    if (target == tasks_.end()) {
      refuse(ptraceRequestName(request) + " of a process outside the recording");
    }
    RecordedTask& tracee = target->second;
    if (tracee.tgid == t.tgid || ptrace_.tracees.count(pid)) return -EPERM;
    if (request == PTRACE_SEIZE && (addr != 0 || (long(data) & ~kKnownOptions))) return -EIO;
    EmulatedTracee e;
    e.tracer = self;
    e.seized = request == PTRACE_SEIZE;
    e.options = e.seized ? long(data) : 0;
    ptrace_.tracees[pid] = e;
    if (tracee.groupStopped) {
      // It is in its process's stop, listening: it reports that stop to its new tracer.
      ptrace_.tracees[pid].interrupting = true;
      ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr);
    } else if (request == PTRACE_ATTACH) {
      syscall(SYS_tgkill, tracee.tgid, pid, SIGSTOP);
    }
    return 0;
  }
  auto link = ptrace_.tracees.find(pid);
  if (target == tasks_.end() || link == ptrace_.tracees.end() || link->second.tracer != self) {
    return -ESRCH;
  }
  EmulatedTracee& e = link->second;
  RecordedTask& tracee = target->second;
  if (request == PTRACE_KILL) {
    syscall(SYS_tgkill, tracee.tgid, pid, SIGKILL);
    return 0;
  }
  if (request == PTRACE_INTERRUPT) {
    if (!e.seized) return -EIO;
    if (!e.stop && !e.interrupting) {
      e.interrupting = true;
      ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr);
    }
    return 0;
  }
  if (!e.stop) return -ESRCH;  // running: the kernel refuses requests then
  auto put = [&](const void* buf, size_t len) {
    return data && t.task->tryWrite(data, buf, len) ? 0 : -EFAULT;
  };
  // A request the kernel answers for the recorder as it would for the tracer: the tracee is in
  // a ptrace stop of the recorder's.
  auto forward = [&](void* buf, size_t len) -> int64_t {
    if (ptrace(static_cast<__ptrace_request>(request), pid, addr, buf) < 0) return -errno;
    return put(buf, len);
  };
  switch (request) {
    case PTRACE_PEEKTEXT:
    case PTRACE_PEEKDATA: {
      uint64_t word = 0;
      if (!tracee.task->tryRead(addr, &word, sizeof word)) return -EIO;
      return put(&word, sizeof word);
    }
    case PTRACE_PEEKUSER: {
      errno = 0;
      long word = ptrace(PTRACE_PEEKUSER, pid, addr, nullptr);
      if (errno) return -errno;
      return put(&word, sizeof word);
    }
    case PTRACE_GETREGS: {
      user_regs_struct regs;
      return forward(&regs, sizeof regs);
    }
    case PTRACE_GETFPREGS: {
      user_fpregs_struct regs;
      return forward(&regs, sizeof regs);
    }
    case PTRACE_GETSIGINFO: {
      siginfo_t info;
      return forward(&info, sizeof info);
    }
    case PTRACE_GETREGSET: {
      iovec iov;
      if (!t.task->tryRead(data, &iov, sizeof iov)) return -EFAULT;
      std::vector<uint8_t> buf(std::min<size_t>(iov.iov_len, kMaxRegset));
      iovec local{buf.data(), buf.size()};
      if (ptrace(PTRACE_GETREGSET, pid, addr, &local) < 0) return -errno;
      if (!t.task->tryWrite(uint64_t(iov.iov_base), buf.data(), local.iov_len)) return -EFAULT;
      iov.iov_len = local.iov_len;
      return put(&iov, sizeof iov);
    }
    case PTRACE_GETEVENTMSG:
      return put(&e.stop->eventMsg, sizeof e.stop->eventMsg);
    case PTRACE_GET_SYSCALL_INFO: {
      __ptrace_syscall_info info{};
      long n = ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info);
      if (n < 0) return -errno;
      if (info.op == PTRACE_SYSCALL_INFO_SECCOMP && e.stop->syscallEntry) {
        // The recorder's filter stopped the syscall: for the tracer, its entry.
        info.op = PTRACE_SYSCALL_INFO_ENTRY;
        n = long(offsetof(__ptrace_syscall_info, entry) + sizeof info.entry);
      }
      const size_t len = std::min<size_t>(size_t(n), addr);
      if (len && !t.task->tryWrite(data, &info, len)) return -EFAULT;
      return n;
    }
    case PTRACE_SETOPTIONS: {
      if (long(data) & ~kKnownOptions) return -EINVAL;
      e.options = long(data);
      return 0;
    }
    case PTRACE_POKETEXT:
    case PTRACE_POKEDATA:
    case PTRACE_POKEUSER:
    case PTRACE_SETREGS:
    case PTRACE_SETFPREGS:
    case PTRACE_SETREGSET:
    case PTRACE_ARCH_PRCTL:
      return ptraceEdit(t, tracee, *e.stop, args);
    case PTRACE_CONT:
    case PTRACE_SYSCALL:
    case PTRACE_DETACH: {
      const int sig = int(data);
      if (sig < 0 || sig > 64) return -EIO;
      e.syscallStops = request == PTRACE_SYSCALL;
      if (e.syscallStops && buffers_) {
        // Every syscall of the tracee stops: its library buffers none from now on. What that
        // wrote into its memory goes in the tracee's changes.
        std::vector<pid_t> threads;
        for (const auto& [tid, other] : tasks_) {
          if (other.tgid == tracee.tgid) threads.push_back(tid);
        }
        buffers_->disable(*tracee.task, threads);
        SyscallEvent taken;
        buffers_->addWrites(pid, taken);
        if (!taken.writes.empty()) checkEditable(*e.stop, "PTRACE_SYSCALL with the syscall buffer");
        EmulatedEdit& edit = e.stop->edit;
        if (!taken.writes.empty() && !edit.before) edit.before = tracee.task->regs();
        for (MemoryWrite& w : taken.writes) edit.writes.push_back(std::move(w));
      }
      if (request == PTRACE_DETACH) {
        ptraceResume(pid, sig);
        ptrace_.tracees.erase(pid);
      } else {
        ptraceResume(pid, sig);
      }
      return 0;
    }
  }
  refuse("ptrace request " + ptraceRequestName(request));
}

}  // namespace rwd
