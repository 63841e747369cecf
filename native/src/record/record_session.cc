#include "record/record_session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <tuple>

#include "core/error.h"
#include "core/forced_sigsegv.h"
#include "core/memory_image.h"
#include "core/memory_map.h"
#include "core/proc_files.h"
#include "core/spawn.h"
#include "core/stub_layout.h"
#include "core/syscall_buffer_abi.h"
#include "core/syscall_restart.h"
#include "core/syscall_table.h"
#include "core/vdso.h"
#include "core/x86_instruction.h"
#include "record/exec_snapshot.h"
#include "record/pid_namespace.h"

namespace rwd {
namespace {

constexpr long kSysClone3 = 435;

uint64_t arg(const Regs& r, int i) {
  switch (i) {
    case 0:
      return r.rdi;
    case 1:
      return r.rsi;
    case 2:
      return r.rdx;
    case 3:
      return r.r10;
    case 4:
      return r.r8;
    default:
      return r.r9;
  }
}

bool isError(int64_t result) { return result < 0 && result > -4096; }

// Signals an instruction raises itself: replay meets them again without help.
bool isFault(int sig, const siginfo_t& info) {
  return (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP) &&
         info.si_code > 0;
}

// The flags of a clone or clone3 (0 for fork and vfork), and where CLONE_CHILD_SETTID has the
// kernel write the child's tid.
uint64_t cloneFlags(const Task& task, long nr, const uint64_t* args, uint64_t* childTid) {
  uint64_t flags = 0;
  *childTid = 0;
  if (nr == SYS_clone) {
    flags = args[0];
    *childTid = args[3];
  }
  if (nr == 435) {  // clone3: clone_args {flags, pidfd, child_tid, ...}
    uint64_t cl[3] = {};
    task.tryRead(args[0], cl, sizeof cl);
    flags = cl[0];
    *childTid = cl[2];
  }
  if (!(flags & CLONE_CHILD_SETTID)) *childTid = 0;
  return flags;
}

// Scratch memory on a task's stack for an injected syscall: below the red zone (whose 128 bytes
// leaf functions use without moving the stack pointer).
constexpr uint64_t kBelowRedZone = 256;

// Whether one of the signals queued for the task (`queued`, read at this stop) is one it does not
// block, so it stops for it as soon as it returns to user code. The mask is read only when
// something is queued: this runs at every syscall exit.
bool signalDue(const Task& task, const std::set<int>& queued) {
  if (queued.empty()) return false;
  uint64_t blocked = 0;
  if (ptrace(PTRACE_GETSIGMASK, task.tid(), sizeof blocked, &blocked) < 0) return false;
  for (int sig : queued) {
    if (sig > 0 && sig <= 64 && !(blocked & (uint64_t(1) << (sig - 1)))) return true;
  }
  return false;
}

// Signals whose default action stops the process.
bool isStopSignal(int sig) {
  return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

// A task's signal sets, from /proc/PID/status. `blocked` is the mask in force, which during
// pselect6 and the like is the syscall's (PTRACE_GETSIGMASK gives the program's own then).
struct SignalSets {
  uint64_t blocked = 0, ignored = 0, caught = 0;
};

SignalSets signalSets(pid_t tid) {
  ProcFields status = procStatus(tid);
  return SignalSets{uint64_t(status.number("SigBlk", 16, 0)),
                    uint64_t(status.number("SigIgn", 16, 0)),
                    uint64_t(status.number("SigCgt", 16, 0))};
}

// A signal the task neither catches nor lets kill it has no effect.
bool hasNoEffect(const SignalSets& sets, int sig) {
  uint64_t bit = uint64_t(1) << (sig - 1);
  if (sets.ignored & bit) return true;
  // SIGCONT's effect (resuming a stopped process) comes when it is sent, not delivered.
  bool defaultIgnore = sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
  return defaultIgnore && !(sets.caught & bit);
}

// Whether the signals queued for the task, unblocked, do nothing but maybe stop it (they are
// ignored, or stop signals without a handler): a syscall they interrupt is restarted.
bool onlyStopsDue(const RecordedTask& t) {
  const SignalSets sets = signalSets(t.task->tid());
  for (int sig : t.task->pendingSignals()) {
    if (sig <= 0 || sig > 64) continue;
    uint64_t bit = uint64_t(1) << (sig - 1);
    if (sets.blocked & bit) continue;
    bool stops = isStopSignal(sig) && !(sets.caught & bit);
    if (!stops && !hasNoEffect(sets, sig)) return false;
  }
  return true;
}

// futex operations that never wait in the kernel.
bool futexWakesOnly(uint64_t op) {
  switch (int(op) & FUTEX_CMD_MASK) {
    case FUTEX_WAKE:
    case FUTEX_WAKE_OP:
    case FUTEX_WAKE_BITSET:
    case FUTEX_REQUEUE:
    case FUTEX_CMP_REQUEUE:
    case FUTEX_CMP_REQUEUE_PI:
    case FUTEX_TRYLOCK_PI:
    case FUTEX_UNLOCK_PI:
      return true;
  }
  return false;
}

// Time the task spent on a CPU.
std::chrono::nanoseconds cpuTime(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/schedstat");
  uint64_t ns = 0;
  in >> ns;
  return std::chrono::nanoseconds(ns);
}

// Whether a task still runs: not a zombie, nor gone.
bool alive(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  size_t paren = stat.rfind(')');
  char state = paren != std::string::npos && paren + 2 < stat.size() ? stat[paren + 2] : 'X';
  return state != 'Z' && state != 'X';
}

// The wait status of a PTRACE_EVENT_EXIT stop, and whether the task is in one now (the kernel's
// siginfo for a ptrace event stop has the event in si_code), whoever waited for it.
constexpr int kExitStopStatus = (PTRACE_EVENT_EXIT << 16) | (SIGTRAP << 8) | 0x7f;

bool atExitStop(pid_t tid) {
  siginfo_t info{};
  return ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info) == 0 && info.si_signo == SIGTRAP &&
         info.si_code == (SIGTRAP | (PTRACE_EVENT_EXIT << 8));
}

// Where in its file a write that returned put its data.
uint64_t writtenAt(const RecordedTask& t, const SyscallEvent& s) {
  const long nr = nativeSyscall(s.nr);
  if (nr != SYS_write && nr != SYS_writev) return s.args[3];  // pwrite*: the offset argument
  uint64_t pos = uint64_t(procFdinfo(t.task->tid(), s.args[0]).number("pos", 10, 0));
  return pos - uint64_t(s.result);
}

}  // namespace

RecordSession::RecordSession(RecordOptions options)
    : options_(std::move(options)),
      blobs_(options_.traceDir),
      eventsPath_(options_.traceDir + "/events.partial"),
      events_(eventsPath_) {
  if (!options_.preload.empty()) buffers_.emplace();
  fstat(1, &stdout_);
  fstat(2, &stderr_);
}

RecordSession::~RecordSession() {
  // Only reached with tasks left when recording failed: nothing may outlive the recorder.
  std::vector<pid_t> alive;
  for (auto& [tid, t] : tasks_) alive.push_back(tid);
  killAndReap(alive);
  if (execErrFd_ >= 0) close(execErrFd_);
}

RecordedTask& RecordSession::addTask(pid_t tid) {
  RecordedTask& t = tasks_[tid];
  t.task = std::make_unique<Task>(tid);
  taskCount_++;
  return t;
}

uint8_t RecordSession::echoTarget(pid_t tid, uint64_t fd) const {
  struct stat st;
  std::string path = "/proc/" + std::to_string(tid) + "/fd/" + std::to_string(fd);
  if (stat(path.c_str(), &st) < 0) return 0;
  bool out = st.st_dev == stdout_.st_dev && st.st_ino == stdout_.st_ino;
  bool err = st.st_dev == stderr_.st_dev && st.st_ino == stderr_.st_ino;
  if (err && (fd == 2 || !out)) return 2;
  return out ? 1 : 0;
}

// A signal without effect is dropped, not recorded, so replay need not deliver it at an exact
// point (SIGCHLD, SIGWINCH...).
bool RecordSession::ignoresSignal(pid_t tid, int sig) const {
  const SignalSets sets = signalSets(tid);
  if (hasNoEffect(sets, sig)) return true;
  // A pid namespace's init drops the signals it does not catch, but SIGKILL and SIGSTOP.
  const bool caught = sets.caught & (uint64_t(1) << (sig - 1));
  return !caught && sig != SIGKILL && sig != SIGSTOP && inNamespaceInit(tid);
}

// A stop signal the task does not catch: all it does is stop the process.
bool RecordSession::defaultStop(pid_t tid, int sig) const {
  return isStopSignal(sig) && !(signalSets(tid).caught & (uint64_t(1) << (sig - 1)));
}

// Whether a task is gone or on its way out: it ends within a while (a task killed in the middle
// of a syscall or a ptrace request takes a moment to reach its PTRACE_EVENT_EXIT). One that a
// wait of the recorder's own (an injected syscall's) found at that stop, where it expected
// another, has that stop handled next by the main loop.
bool RecordSession::dying(pid_t tid) {
  for (int i = 0; i < 200; i++) {
    if (!alive(tid)) return true;
    auto it = tasks_.find(tid);
    if (it != tasks_.end() && it->second.leaving) return true;
    if (atExitStop(tid)) {
      const bool queued = std::any_of(requeued_.begin(), requeued_.end(), [&](const auto& q) {
        return q.first == tid && q.second == kExitStopStatus;
      });
      int status = 0;
      if (waitpid(tid, &status, __WALL | WNOHANG) == tid) {
        requeued_.emplace_back(tid, status);
      } else if (!queued) {
        requeued_.emplace_back(tid, kExitStopStatus);
      }
      return true;
    }
    usleep(1000);
  }
  return false;
}

// Runs `f`, which acts on task `tid`: if the task was killed meanwhile (its ptrace requests
// refused, its /proc files gone while it dies), that is no failure of the recording: its end
// comes next, and is handled then. Other failures stand.
template <typename F>
void RecordSession::guarded(pid_t tid, F&& f) {
  try {
    f();
  } catch (const TaskGone&) {
  } catch (const Error& e) {
    if (e.code() != ErrorCode::System || !dying(tid)) throw;
  }
}

RecordResult RecordSession::run() {
  cpu_ = pinToCpu(-1);
  pid_t pgid = 0;
  initial_ = spawnRecorded(options_.exe, options_.argv,
                           buffers_ ? withPreload(options_.env, options_.preload) : options_.env,
                           &execErrFd_, &pgid);
  terminal_.emplace(pgid);
  group_.emplace(pgid);
  RecordedTask& first = addTask(initial_);
  first.tgid = initial_;
  first.token = initial_;
  first.execed = false;
  first.execArgv = options_.argv;
  processes_.push_back(ProcessInfo{initial_, 0, {}, {}});
  first.task->resume(PTRACE_SYSCALL);
  while (!tasks_.empty()) {
    int status;
    pid_t tid;
    if (!requeued_.empty()) {
      std::tie(tid, status) = requeued_.front();
      requeued_.pop_front();
    } else {
      tid = next_ ? waitNext(&status) : 0;
      if (tid <= 0) tid = waitpid(-1, &status, __WALL | (contended() ? WNOHANG : 0));
    }
    if (tid == 0) {
      try {
        if (!memWriters_.empty()) retryMemWriters();
        preemptOverdue();
        resendOverdue();
        releaseExited();
        releaseLeaving();
      } catch (const TaskGone&) {
        // its end comes next
      }
      usleep(200);
      continue;
    }
    if (tid < 0) {
      if (errno == EINTR) continue;
      failErrno("waitpid");
    }
    if (frozen_.count(tid)) {
      frozenStops_.emplace_back(tid, status);  // written into meanwhile: it waits (thaw)
      continue;
    }
    Stop s = Stop::fromWaitStatus(status);
    if (s.kind == Stop::Event && s.event == PTRACE_EVENT_EXEC) takeOverLeader(tid);
    auto it = tasks_.find(tid);
    if (it == tasks_.end()) {
      // A new child can report its first stop before its parent reports the fork.
      addTask(tid).newborn = true;
      it = tasks_.find(tid);
    }
    // Killed while the recorder handled its stop (another thread's exit_group, a SIGKILL, its
    // pid namespace's end): its end comes next.
    guarded(tid, [&] {
      onStop(it->second, s);
      if (!ptrace_.tracees.empty()) ptraceInterruptAgain(tid);
      if (!memWriters_.empty()) retryMemWriters();
    });
  }
  terminal_.reset();
  events_.finish();
  blobs_.adopt(eventsPath_, "events", events_.sha256(), events_.size());
  RecordResult result;
  result.waitStatus = waitStatus_;
  result.events = events_.eventCount();
  result.syscalls = syscalls_;
  result.tasks = taskCount_;
  result.syscallBuffer = bufferFilter_ == BufferFilter::On;
  result.processes = processes_;
  result.blobs = blobs_.blobs();
  return result;
}

void RecordSession::onStop(RecordedTask& t, const Stop& s) {
  const pid_t tid = t.task->tid();
  switch (s.kind) {
    case Stop::Exited:
    case Stop::Killed: {
      if (!t.execed) {
        int err = 0;
        std::string why = "it did not start";
        if (read(execErrFd_, &err, sizeof err) == sizeof err) why = strerror(err);
        tasks_.clear();
        fail(ErrorCode::Exec, "cannot execute " + options_.exe + ": " + why);
      }
      if (std::optional<Event> killed = std::move(t.killedRecord)) {
        t.killedRecord.reset();
        appendKilled(t, std::move(*killed));  // killed again at that stop
      } else if (t.syscallOpen && t.echo && outputBusy_ == tid) {
        // Its write to stdout or stderr had started, and neither its exit stop nor its
        // PTRACE_EVENT_EXIT told what it did: replay must not print a guess (onExitStop).
        Event unknown = syscallEvent(t, 0);
        unknown.syscall.filtered = SyscallEvent::Filtered::Unknown;
        append(unknown);
        syscalls_++;
      }
      Event e;
      e.type = EventType::Exit;
      e.exit = ExitEvent{uint32_t(tid), s.status};
      if (tid != t.tgid && execUnderWay(t.tgid)) {
        endedByExec_[t.tgid].push_back(e);
      } else {
        append(e);
        // Replay kills the whole process at its first end by SIGKILL: a thread that gets to its
        // own end later (one held past the wait for the others) is gone there from this record on.
        if (WIFSIGNALED(s.status) && WTERMSIG(s.status) == SIGKILL) groupExited_.insert(t.tgid);
      }
      if (tid == initial_) {
        // The recording ends with the program, as rr's does: what it left running (a daemon
        // that outlives it) is killed, and its end recorded, so the trace ends there too.
        waitStatus_ = s.status;
        for (const auto& [other, task] : tasks_) {
          if (other != tid) kill(other, SIGKILL);
        }
      }
      dropTask(t);
      break;
    }
    case Stop::SyscallStop:
      t.inSyscall = !t.inSyscall;
      t.task->setInSyscall(t.inSyscall);
      if (t.inSyscall) {
        onSyscallEntry(t);
      } else {
        onSyscallExit(t);
      }
      break;
    case Stop::Event:
      if (s.event == PTRACE_EVENT_STOP) {
        onEventStop(t, s.sig);
        break;
      }
      if (s.event == PTRACE_EVENT_SECCOMP) {
        onSeccompStop(t);
        break;
      }
      if (s.event == PTRACE_EVENT_EXIT) {
        onExitStop(t);
        break;
      }
      if (ptraceEventStop(t, s.event)) break;
      if (s.event == PTRACE_EVENT_EXEC) t.execPending = true;
      if (s.event == PTRACE_EVENT_FORK || s.event == PTRACE_EVENT_VFORK ||
          s.event == PTRACE_EVENT_CLONE) {
        onFork(t, s.event == PTRACE_EVENT_VFORK);
      }
      t.task->resume(PTRACE_SYSCALL);
      break;
    case Stop::Signal:
      onSignal(t, s.sig);
      break;
  }
}

// PTRACE_EVENT_EXIT: the task is on its way out (its exit, or a SIGKILL, another thread's
// exit_group or exec), its registers and memory still whole. A SIGKILL that came as it was in a
// syscall took away that syscall's exit stop (the kernel does not stop a task with SIGKILL
// pending), or came before the recorder wrote its event (the task waited at that stop for its
// turn): the syscall is recorded from the result rax still holds. Whatever the task waited for,
// it waits no more: it runs no more code.
void RecordSession::onExitStop(RecordedTask& t) {
  const pid_t tid = t.task->tid();
  if (t.leaving) return;  // its stop taken twice (dying)
  t.leaving = true;
  if (t.deferred != Deferred::None) {
    std::deque<pid_t>& queue = waiting_[t.token];
    queue.erase(std::remove(queue.begin(), queue.end(), tid), queue.end());
    t.deferred = Deferred::None;
  }
  outputWaiting_.erase(std::remove(outputWaiting_.begin(), outputWaiting_.end(), tid),
                       outputWaiting_.end());
  memWriters_.erase(tid);
  if (t.syscallOpen) {
    const int64_t result = int64_t(t.task->regs().rax);
    const long nr = nativeSyscall(traceSyscallNumber(t.entryRegs, t.compat));
    const SyscallSpec* spec = lookupSyscall(traceSyscallNumber(t.entryRegs, t.compat));
    // Nothing to record where the syscall did nothing the program could see: interrupted by the
    // kill (a restart code; EINTR, nothing moved), skipped at its entry (the kernel runs no
    // syscall whose entry stop ends with SIGKILL pending: ENOSYS, as for one the recorder
    // cancelled), or one whose record comes elsewhere (an exec's, the buffer's requests).
    const bool ran = !isRestartCode(result) && result != -EINTR && result != -ENOSYS;
    const bool own = t.execPending || nr == RWD_SYS_BUFFER_INIT || nr == RWD_SYS_BUFFER_FLUSH ||
                     !spec || spec->replay == ReplayAction::Fork;
    if (ran && !own && t.filtered == SyscallEvent::Filtered::No) {
      t.killedRecord = exitRecord(t, result);
      t.killedRecord->syscall.filtered = SyscallEvent::Filtered::Killed;
    }
    t.syscallOpen = false;
  }
  t.heldAtExit = true;
  t.leftAt = std::chrono::steady_clock::now();
  // Killed by SIGKILL (its exit code says so), it waits for the other threads the kill ends;
  // an exec's end of it (code 0) or its own exit (its record written already) waits for none.
  // Another fatal signal is in the stream already (a signal record, which replay delivers:
  // the process is gone there from that record on), as an exit_group is. Not a thread its
  // program's filter killed (SECCOMP_RET_KILL_THREAD: SIGSYS ends that thread alone).
  unsigned long code = 0;
  ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &code);
  const int sig = int(code & 0x7f);
  if (sig != 0 && sig != SIGKILL && t.filtered != SyscallEvent::Filtered::KilledThread) {
    groupExited_.insert(t.tgid);
  }
  // The records its syscall buffer holds are read while its memory is still there.
  if (!groupExited_.count(t.tgid)) appendBuffered();
  if (sig == SIGKILL) {
    settleLeaving(t.tgid, false);
  } else {
    letGo(t);
  }
}

// Records the syscall a kill cut short, if any, and lets the task go on to its end.
void RecordSession::letGo(RecordedTask& t) {
  const pid_t tid = t.task->tid();
  t.heldAtExit = false;
  if (std::optional<Event> e = std::move(t.killedRecord)) {
    t.killedRecord.reset();
    appendKilled(t, std::move(*e));
  }
  releaseOutput(tid);
  thaw(tid);
  guarded(tid, [&] {
    if (!ptraceEventStop(t, PTRACE_EVENT_EXIT)) t.task->resume(PTRACE_SYSCALL);
  });
}

// A syscall a kill cut short. After its process's end (an exit_group or a fatal signal, which
// replay runs for real, or a first end by SIGKILL, at which replay kills the process), the thread
// is gone in replay: the syscall did nothing the program could see, unless it wrote to stdout or
// stderr, where replay stops at this record, loudly.
void RecordSession::appendKilled(RecordedTask& t, Event e) {
  if (groupExited_.count(t.tgid)) {
    if (!e.syscall.echoFd) return;
    e.syscall.filtered = SyscallEvent::Filtered::Unknown;
  }
  append(e);
  syscalls_++;
}

// Once every thread of a process is at its PTRACE_EVENT_EXIT (or past it, or is the one whose
// exec ends the others), the syscalls the kill cut short are recorded, all before the first
// thread's end: replay kills the whole process at the first end by SIGKILL. `overdue`: a thread
// never got there (waited for too long): they go on anyway.
void RecordSession::settleLeaving(pid_t tgid, bool overdue) {
  bool some = false;
  for (const auto& [tid, other] : tasks_) {
    if (other.tgid != tgid) continue;
    const long nr = syscallNumber(other.entryRegs.orig_rax);
    const bool execing = other.inSyscall && (nr == SYS_execve || nr == SYS_execveat);
    if (!overdue && !other.leaving && !other.exiting && !execing && alive(tid)) return;
    some = some || other.heldAtExit;
  }
  if (!some) return;
  std::vector<pid_t> released;
  for (auto& [tid, other] : tasks_) {
    if (other.tgid != tgid || !other.heldAtExit) continue;
    letGo(other);
    released.push_back(tid);
  }
  collectKilled(tgid, released);
}

// Replay kills a task a SIGKILL ended at its Exit record, and on its way out the kernel clears
// the task's CLONE_CHILD_CLEARTID word and wakes that futex. A task woken so (or one that reads
// the word after) must find it cleared in replay too, so those ends are collected now, before
// any other task's stop is taken, and recorded first. Non-leaders first: a leader's end is
// reported only once its other threads are reaped, so it is waited for only if none other is
// left. Bounded: an end that takes longer (a thread held by a core dump) comes as before.
void RecordSession::collectKilled(pid_t tgid, std::vector<pid_t> released) {
  std::stable_partition(released.begin(), released.end(), [&](pid_t tid) { return tid != tgid; });
  std::set<pid_t> collected;
  for (pid_t tid : released) {
    if (tid == tgid && std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& other) {
          return other.second.tgid == tgid && other.first != tgid && !collected.count(other.first);
        })) {
      return;
    }
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 500 && got == 0; i++) {
      got = waitpid(tid, &status, __WALL | WNOHANG);
      if (got == 0) usleep(200);
    }
    if (got != tid) return;
    requeued_.emplace_back(tid, status);
    collected.insert(tid);
  }
}

// Forgets a task that ended (or that an exec by another thread of its process ended): whatever
// it waited for or held goes to the others.
void RecordSession::dropTask(RecordedTask& t) {
  const pid_t tid = t.task->tid();
  releaseVforkParent(t);
  thaw(tid);
  if (buffers_) buffers_->forget(tid);
  releaseOutput(tid);
  outputWaiting_.erase(std::remove(outputWaiting_.begin(), outputWaiting_.end(), tid),
                       outputWaiting_.end());
  std::deque<pid_t>& queue = waiting_[t.token];
  queue.erase(std::remove(queue.begin(), queue.end(), tid), queue.end());
  pid_t token = t.token;
  bool held = holder_[token] == tid;
  ptraceGone(tid);
  const pid_t tgid = t.tgid;
  tasks_.erase(tid);
  if (std::none_of(tasks_.begin(), tasks_.end(),
                   [&](const auto& other) { return other.second.tgid == tgid; })) {
    groupExited_.erase(tgid);  // its pid may name another process later
  }
  if (held) {
    holder_[token] = 0;
    grantNext(token);
  }
}

// PTRACE_EVENT_EXEC of process `leader`, which a thread other than its first may have reported:
// the kernel ended the first thread (which is never reported: the kernel releases it itself)
// and gave the exec'ing thread its tid, by which the stream names it from its exec event on
// (which names it by its former tid: replay follows the same change there).
void RecordSession::takeOverLeader(pid_t leader) {
  unsigned long msg = 0;
  pid_t former = 0;
  if (ptrace(PTRACE_GETEVENTMSG, leader, nullptr, &msg) == 0) {
    former = pid_t(msg);
  } else {
    // Killed meanwhile: the thread of the process that was in execve is the one. (Of several
    // that called it at once, the kernel let one through and ended the others.)
    for (const auto& [tid, other] : tasks_) {
      long nr = syscallNumber(other.entryRegs.orig_rax);
      if (other.tgid == leader && tid != leader && other.inSyscall &&
          (nr == SYS_execve || nr == SYS_execveat)) {
        former = tid;
      }
    }
  }
  auto it = tasks_.find(former);
  if (former == leader || it == tasks_.end()) return;
  auto old = tasks_.find(leader);
  if (old != tasks_.end()) dropTask(old->second);
  RecordedTask moved = std::move(it->second);
  tasks_.erase(former);
  auto task = std::make_unique<Task>(leader);
  task->setSeccompStops(moved.task->seccompStops());
  task->setInSyscall(moved.inSyscall);
  moved.task = std::move(task);
  moved.formerTid = former;
  tasks_.emplace(leader, std::move(moved));
  if (buffers_) buffers_->forget(former);
  auto rename = [&](pid_t& tid) {
    if (tid == former) tid = leader;
  };
  for (auto& [token, holder] : holder_) rename(holder);
  for (auto& [token, queue] : waiting_) std::for_each(queue.begin(), queue.end(), rename);
  std::for_each(outputWaiting_.begin(), outputWaiting_.end(), rename);
  rename(outputBusy_);
  rename(next_);
  for (auto& [tid, status] : requeued_) rename(tid);
}

// Whether a thread of the process traces, or is traced by, another (the program's own ptrace).
bool RecordSession::ptraceInvolves(pid_t tgid) const {
  auto ofProcess = [&](pid_t tid) {
    auto it = tasks_.find(tid);
    return it != tasks_.end() && it->second.tgid == tgid;
  };
  for (const auto& [tracee, e] : ptrace_.tracees) {
    if (ofProcess(tracee) || ofProcess(e.tracer)) return true;
  }
  return false;
}

// A stop of the seized kind: a new task's first, a stop of its process (group-stop: SIGSTOP and
// the like), or the kernel telling a stopped task that its process was continued.
void RecordSession::onEventStop(RecordedTask& t, int sig) {
  if (t.newborn) {
    t.newborn = false;
    // It runs once its parent's fork is in the stream, so its events come after it.
    if (t.forkSeen) {
      startTask(t);
    } else {
      t.held = true;
    }
    return;
  }
  if (ptraceGroupStop(t, sig)) return;
  if (isStopSignal(sig)) {
    // It stays stopped until a SIGCONT, as it would natively, and its parent's waitpid sees it
    // stopped once all its threads are: it lets the next one run. Nothing to record: replay
    // need not stop it, as what others see of the stop comes from syscalls that replay emulates.
    t.groupStopped = true;
    release(t);
    t.task->resume(PTRACE_LISTEN);
    return;
  }
  // Continued (SIGCONT): it waits for its turn to run user code again.
  ptraceContinued(t.tgid);
  t.stopAtBoundary = false;
  if (t.groupStopped) {
    t.groupStopped = false;
    if (!acquire(t, Deferred::Continue)) return;
  }
  t.task->resume(PTRACE_SYSCALL);
}

// Data written to a file shows in the process's private mappings of it (in the pages it never
// wrote). Replay maps a private copy and emulates the write, so the bytes those mappings now
// show go into the event. (Shared mappings are record/shared_files.h's.)
void RecordSession::captureMappedWrite(const RecordedTask& t, SyscallEvent& s,
                                       const struct stat& st) {
  if (!mappedFiles_[t.tgid].count({st.st_dev, st.st_ino})) return;
  uint64_t start = writtenAt(t, s);
  uint64_t end = start + uint64_t(s.result);
  for (const MapsEntry& m : readMemoryMap(t.task->tid())) {
    // Shared mappings show the emulated file, which replay writes itself.
    if (m.inode != st.st_ino || m.dev != st.st_dev || m.shared) continue;
    uint64_t lo = std::max(start, m.offset), hi = std::min(end, m.offset + (m.end - m.start));
    if (lo >= hi) continue;
    MemoryWrite w{m.start + (lo - m.offset), std::vector<uint8_t>(hi - lo)};
    if (t.task->tryRead(w.addr, w.data.data(), w.data.size())) s.writes.push_back(std::move(w));
  }
}

// The process whose /proc/PID/mem (or /proc/PID/task/TID/mem) the task's descriptor is, if any.
pid_t RecordSession::procMemTarget(const RecordedTask& t, uint64_t fd, std::string* path) const {
  std::string fdPath = "/proc/" + std::to_string(t.task->tid()) + "/fd/" + std::to_string(fd);
  char link[256];
  ssize_t n = readlink(fdPath.c_str(), link, sizeof link - 1);
  if (n <= 0) return 0;
  link[n] = 0;
  unsigned pid = 0, tid = 0;
  int end = 0;
  if (!(sscanf(link, "/proc/%u/mem%n", &pid, &end) == 1 && end == n) &&
      !(sscanf(link, "/proc/%u/task/%u/mem%n", &pid, &tid, &end) == 2 && end == n)) {
    return 0;
  }
  if (path) *path = link;
  return pid_t(pid);
}

// Data written to /proc/PID/mem lands in that process's memory: the bytes go into the event, as a
// syscall's output does, the program's own or another recorded process's (`child` names it; see
// freezeWrittenProcess). A process not recorded is the world outside.
void RecordSession::captureProcMemWrite(const RecordedTask& t, SyscallEvent& s) {
  auto owner = tasks_.find(procMemTarget(t, s.args[0]));
  if (owner == tasks_.end()) return;
  if (owner->second.tgid != t.tgid) s.child = uint32_t(owner->first);
  MemoryWrite w{writtenAt(t, s), std::vector<uint8_t>(size_t(s.result))};
  if (owner->second.task->tryRead(w.addr, w.data.data(), w.data.size())) {
    s.writes.push_back(std::move(w));
  }
}

// A write through /proc/PID/mem into another process of the recording lands in its memory while
// the kernel runs the writer's syscall; replay puts it there where the writer's event comes. So
// that process runs no user code meanwhile, nor goes on before that event is in the stream: each
// of its threads must be in a syscall, stopped by its emulated tracer or its process's stop, or
// not started yet, and their stops wait until the writer's syscall is recorded (thaw). False if
// one of them runs user code: the writer waits at its entry until none does (retryMemWriters).
bool RecordSession::freezeWrittenProcess(const RecordedTask& t, uint64_t fd) {
  auto owner = tasks_.find(procMemTarget(t, fd));
  if (owner == tasks_.end() || owner->second.tgid == t.tgid) return true;
  const pid_t tgid = owner->second.tgid;
  for (const auto& [tid, other] : tasks_) {
    if (other.tgid != tgid) continue;
    auto traced = ptrace_.tracees.find(tid);
    const bool still = other.inSyscall || other.newborn || other.held || other.groupStopped ||
                       (traced != ptrace_.tracees.end() && traced->second.stop);
    if (!still) return false;
  }
  for (const auto& [tid, other] : tasks_) {
    if (other.tgid == tgid) frozen_[tid] = t.task->tid();
  }
  return true;
}

// The writers waiting for the process they write into to be still go on once it is. One that
// waits more than 2 s (the process computes, or waits for the writer) stops recording.
void RecordSession::retryMemWriters() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = memWriters_.begin(); it != memWriters_.end();) {
    auto w = tasks_.find(it->first);
    if (w == tasks_.end()) {
      it = memWriters_.erase(it);
      continue;
    }
    RecordedTask& t = w->second;
    uint64_t args[6];
    syscallArguments(t.entryRegs, t.compat, args);
    if (!freezeWrittenProcess(t, args[0])) {
      if (now - it->second > std::chrono::seconds(2)) {
        std::string path;
        procMemTarget(t, args[0], &path);
        fail(ErrorCode::Unsupported, "the program wrote into another process's memory through " +
                                         path + " while that process ran, which rewind cannot " +
                                         "replay yet");
      }
      ++it;
      continue;
    }
    it = memWriters_.erase(it);
    if (!t.echo || claimOutput(t)) t.task->resume(PTRACE_SYSCALL);
  }
}

void RecordSession::thaw(pid_t writer) {
  for (auto it = frozen_.begin(); it != frozen_.end();) {
    it = it->second == writer ? frozen_.erase(it) : std::next(it);
  }
  std::vector<std::pair<pid_t, int>> still;
  for (const auto& stop : frozenStops_) {
    if (frozen_.count(stop.first)) {
      still.push_back(stop);
    } else {
      requeued_.push_back(stop);
    }
  }
  frozenStops_.swap(still);
}

bool RecordSession::sharesMemory(pid_t tid) const {
  for (const MapsEntry& m : readMemoryMap(tid)) {
    if (m.shared) return true;
  }
  return false;
}

// Whether the task's descriptor was opened for writing: a mapping of it may become writable.
bool RecordSession::openedForWriting(const RecordedTask& t, uint64_t fd) const {
  int64_t flags = procFdinfo(t.task->tid(), uint64_t(int(fd))).number("flags", 8, -1);
  return flags < 0 || (flags & O_ACCMODE) != O_RDONLY;  // unknown: it may be written
}

// A file (or SysV segment) the task maps shared may be mapped shared by other processes too. Replay
// keeps their stores in the recorded order only for processes that take turns on one run token (a
// fork child and its parent); any other sharer that may store into it, in the tree or outside
// it, stops recording. Mappings that are all read-only (glibc maps gconv-modules.cache so) carry
// no stores: what others write() into the file is what a private mapping's unwritten pages
// would show too.
void RecordSession::checkSharedMapping(const RecordedTask& t, const struct stat& file,
                                       bool writable) {
  std::string mappedAs;  // the other process's name for the file, for the message
  auto mapsIt = [&](pid_t pid, bool anyProt) {
    for (const MapsEntry& m : readMemoryMap(pid)) {
      if (m.shared && m.dev == file.st_dev && m.inode == file.st_ino &&
          (anyProt || (m.prot & PROT_WRITE))) {
        mappedAs = m.name;
        return true;
      }
    }
    return false;
  };
  std::set<pid_t> recorded;
  for (const auto& [tid, other] : tasks_) {
    recorded.insert(other.tgid);
    if (other.token != t.token && other.tgid == tid && other.execed && mapsIt(tid, writable)) {
      fail(ErrorCode::Unsupported,
           "processes " + std::to_string(t.tgid) + " and " + std::to_string(tid) +
               " of the recording map one file shared without one having it from the other "
               "(fork), which rewind cannot replay yet");
    }
  }
  DIR* proc = opendir("/proc");
  if (!proc) failErrno("open /proc");
  while (dirent* e = readdir(proc)) {
    pid_t pid = pid_t(atoi(e->d_name));
    if (pid <= 0 || pid == getpid() || recorded.count(pid)) continue;
    try {
      if (!mapsIt(pid, false)) continue;
    } catch (const std::exception&) {
      continue;  // gone, or not ours to read
    }
    closedir(proc);
    std::string comm;
    std::ifstream("/proc/" + std::to_string(pid) + "/comm") >> comm;
    fail(ErrorCode::Unsupported,
         "the program maps a file shared with process " + std::to_string(pid) + " (" + comm +
             ", which maps it as " + mappedAs +
             "), which is not recorded: rewind cannot replay memory shared with it");
  }
  closedir(proc);
}

// A SysV segment the task attached is shared memory as a file mapped shared is: replay maps an
// emulated file for it, which takes the content the segment has now.
void RecordSession::captureShmat(const RecordedTask& t, SyscallEvent& s) {
  for (const MapsEntry& m : readMemoryMap(t.task->tid())) {
    if (m.start != uint64_t(s.result)) continue;
    struct stat segment {};
    segment.st_dev = m.dev;
    segment.st_ino = ino_t(m.inode);
    checkSharedMapping(t, segment, !(s.args[2] & SHM_RDONLY));
    std::vector<uint8_t> content(m.end - m.start);
    t.task->read(m.start, content.data(), content.size());
    s.blob = blobs_.put(content.data(), content.size(), "file");
    s.file = sharedFiles_.mapped(m.dev, ino_t(m.inode));
    s.fileSize = content.size();
    return;
  }
  fail(ErrorCode::System, "shmat returned an address where nothing is mapped");
}

Event RecordSession::syscallEvent(const RecordedTask& t, int64_t result) const {
  Event e;
  e.type = EventType::Syscall;
  SyscallEvent& s = e.syscall;
  s.tid = uint32_t(t.task->tid());
  s.nr = int32_t(traceSyscallNumber(t.entryRegs, t.compat));
  syscallArguments(t.entryRegs, t.compat, s.args);
  s.result = result;
  return e;
}

bool RecordSession::execUnderWay(pid_t tgid) const {
  for (const auto& [tid, other] : tasks_) {
    long nr = syscallNumber(other.entryRegs.orig_rax);
    if (other.tgid == tgid && other.inSyscall && (nr == SYS_execve || nr == SYS_execveat)) {
      return true;
    }
  }
  return false;
}

void RecordSession::appendEndedByExec(pid_t tgid) {
  auto it = endedByExec_.find(tgid);
  if (it == endedByExec_.end()) return;
  for (const Event& e : it->second) append(e);
  endedByExec_.erase(it);
}

// Every event goes after the buffered syscalls made before it, which the buffers hold until now.
void RecordSession::append(const Event& e) {
  appendBuffered();
  events_.append(e);
}

void RecordSession::appendBuffered() {
  if (!buffers_) return;
  buffers_->drain([this](const Event& b) {
    events_.append(b);
    syscalls_++;
  });
}

// A syscall our filter stopped (SECCOMP_RET_TRACE) at its entry. After an entry stop of its own
// (the task's syscalls stop through PTRACE_SYSCALL), there is nothing more to do. A stop that the
// program's own filter asked for is answered as natively, where no tracer takes it: ENOSYS.
void RecordSession::onSeccompStop(RecordedTask& t) {
  unsigned long data = 0;
  if (ptrace(PTRACE_GETEVENTMSG, t.task->tid(), nullptr, &data) < 0)
    failErrno("PTRACE_GETEVENTMSG");
  if (data != RWD_SECCOMP_DATA) {
    Regs r = t.task->regs();
    r.orig_rax = uint64_t(-1);
    r.rax = uint64_t(-ENOSYS);
    t.task->setRegs(r);
  }
  if (t.inSyscall) {
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  if (data == RWD_SECCOMP_DATA && inVsyscallPage(t.task->regs().rip)) return patchVsyscall(t);
  t.inSyscall = true;
  t.task->setInSyscall(true);
  onSyscallEntry(t);
}

// A call into the vsyscall page (core/vdso.h), which no syscall stop follows, and replay would
// not see: skipped, its caller patched into the syscall (a patch event whose site is the entry
// called), and the task sent back to the start of the patched bytes to make it.
void RecordSession::patchVsyscall(RecordedTask& t) {
  Regs r = t.task->regs();
  const uint64_t entry = r.rip;
  uint64_t ret = 0;
  uint8_t code[kVsyscallCallSize];
  const bool read = t.task->tryRead(r.rsp, &ret, sizeof ret) &&
                    t.task->tryRead(ret - kVsyscallCallSize, code, sizeof code);
  const uint64_t site = ret - kVsyscallCallSize;
  const std::vector<MapsEntry> maps = readMemoryMap(t.task->tid());
  auto map = std::find_if(maps.begin(), maps.end(),
                          [&](const MapsEntry& m) { return m.start <= site && ret <= m.end; });
  if (!read || map == maps.end() || map->shared || !patchVsyscallCall(code, entry)) {
    char at[80];
    snprintf(at, sizeof at, "0x%llx (returning to 0x%llx)", (unsigned long long)entry,
             (unsigned long long)ret);
    fail(ErrorCode::Unsupported, std::string("the program called the vsyscall page at ") + at +
                                     " other than by `mov $entry,%rax; call *%rax`, which rewind "
                                     "cannot record yet");
  }
  for (const auto& [tid, other] : tasks_) {
    if (other.tgid != t.tgid || tid == t.task->tid() || other.inSyscall) continue;
    user_regs_struct o;
    if (ptrace(PTRACE_GETREGS, tid, nullptr, &o) == 0 && o.rip > site && o.rip < ret) {
      fail(ErrorCode::Unsupported,
           "a thread stopped inside a call of the vsyscall page that another one makes, which "
           "rewind cannot patch yet");
    }
  }
  r.orig_rax = uint64_t(-1);  // the kernel skips it and returns to the caller
  t.task->setRegs(r);
  if (runTo(t, ret, std::chrono::milliseconds(1000)) != RunTo::Reached) {
    fail(ErrorCode::System, "a task skipping a call of the vsyscall page did not return from it");
  }
  Regs back = t.task->regs();
  back.rip = site;
  t.task->setRegs(back);
  t.task->write(site, code, sizeof code);
  Event e;
  e.type = EventType::Patch;
  e.patch.tid = uint32_t(t.task->tid());
  e.patch.site = entry;
  e.patch.resume = site;
  e.patch.writes.push_back(MemoryWrite{site, std::vector<uint8_t>(code, code + sizeof code)});
  // The call pushed its return address below the stack pointer, which replay's task, stopped
  // before the call, has not.
  const uint8_t* pushed = reinterpret_cast<const uint8_t*>(&ret);
  e.patch.writes.push_back(MemoryWrite{r.rsp, std::vector<uint8_t>(pushed, pushed + 8)});
  append(e);
  t.task->resume(PTRACE_SYSCALL);
}

// Steps a task out of a buffered syscall whose record is not committed yet: no position may be
// named there, the syscall having run without its event in the stream. A few instructions (the
// record's copy of the output). False if the task left user code meanwhile (see settle).
bool RecordSession::leaveBufferedCall(RecordedTask& t) {
  if (!buffers_) return true;
  for (int i = 0; buffers_->inCall(t.task->tid(), t.task->regs().rip); i++) {
    if (i > 1000000) fail(ErrorCode::System, "a buffered syscall that does not end");
    switch (stepOne(t)) {
      case Step::Done:
        continue;
      case Step::Faulted:
        fail(ErrorCode::System, "the syscall buffer's library faulted");
      case Step::Left:
        return false;
    }
  }
  return true;
}

// Names the position right after the buffered syscall the task just returned from, once its
// record is committed: the first time the task is there since that syscall's event, so
// registers and stack name it without a loop's words. False if the task left user code.
bool RecordSession::positionAfterBufferedCall(RecordedTask& t) {
  if (!leaveBufferedCall(t)) return false;
  Event e;
  e.type = EventType::Preempt;
  e.preempt.tid = uint32_t(t.task->tid());
  e.preempt.regs = t.task->regs();
  e.preempt.stackHash = stackHash(*t.task, e.preempt.regs.rsp);
  append(e);
  return true;
}

void RecordSession::onSyscallEntry(RecordedTask& t) {
  appendBuffered();             // what the task (or another) buffered comes before this syscall
  t.pendingAtBoundary.clear();  // it ran user code
  if (ptraceSyscallStop(t, true)) return;  // its tracer's syscall-entry stop comes first
  Regs regs = t.task->regs();
  if (regs.rip == RWD_TRAMPOLINE_SYSCALL_END) {
    // A buffered syscall of a task resumed to stop at every one: the library records it
    // itself, so it passes unrecorded (recorded here too, it would be in the trace twice).
    t.bufferedStop = true;
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  t.entryRegs = regs;
  t.compat = t.task->inCompatSyscall();
  long nr = syscallNumber(t.entryRegs.orig_rax);
  t.restarting.reset();
  if (!t.compat && nr == SYS_restart_syscall && t.interrupted) {
    if (t.interrupted->swallowed) {
      // Natively, nothing interrupted it: the stream has the syscall as the program made it.
      t.entryRegs = t.interrupted->entry;
      nr = syscallNumber(t.entryRegs.orig_rax);
    } else {
      t.restarting = t.interrupted;
    }
  }
  t.interrupted.reset();
  if (!t.execed) {
    // The child's own execve of the program: nothing to record before it.
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  t.syscallOpen = true;
  if (t.compat) {
    // Its number means another syscall in the 64-bit table: never read it with that one. (The
    // program's own filters would see its i386 number, which they are not asked about.)
    if (!recordableCompatSyscall(*t.task) || !t.seccomp.empty()) {
      fail(ErrorCode::Unsupported,
           describeCompatSyscall(*t.task) +
               (t.seccomp.empty() ? " is not supported: rewind records a few i386 syscalls only"
                                  : " is not supported under the program's seccomp filter"));
    }
    nr = traceSyscallNumber(t.entryRegs, true);
  } else if (isCompatNumber(nr)) {
    fail(ErrorCode::Unsupported, "the program used syscall " + std::to_string(nr) +
                                     ", a number rewind's traces give 32-bit syscalls");
  }
  const SyscallSpec* spec = lookupSyscall(nr);
  if (!spec) {
    fail(ErrorCode::Unsupported,
         "the program used syscall " + std::to_string(nr) + ", which rewind does not support yet");
  }
  if ((nr == SYS_execve || nr == SYS_execveat) && t.task->tid() != t.tgid &&
      ptraceInvolves(t.tgid)) {
    // The exec'ing thread takes its process's first tid (takeOverLeader), which the program's
    // emulated tracer or tracees know by tid.
    fail(ErrorCode::Unsupported, std::string("the program called ") + spec->name +
                                     " in a thread other than its main one while it traces or is "
                                     "traced by another, which rewind cannot record yet");
  }
  // While it waits in the kernel, another thread may run. Not during a syscall that changes the
  // address space (replay maps at the recorded addresses in the stream's order, so those must
  // reach the stream in the order the kernel ran them), nor while a thread exits (the kernel
  // then clears its tid for pthread_join): those do not block, and keep the token.
  // Nor during a futex operation that wakes without waiting: what it stores (FUTEX_WAKE_OP's
  // second word, a PI futex's owner) is seen by the threads it wakes once they run, so they
  // must not run before its record is in the stream.
  uint64_t args[6];
  syscallArguments(t.entryRegs, t.compat, args);
  nr = nativeSyscall(nr);  // what it is, for what follows
  bool keepsToken = spec->replay == ReplayAction::Execute || spec->replay == ReplayAction::Mmap ||
                    spec->replay == ReplayAction::Mremap || spec->replay == ReplayAction::Brk ||
                    spec->replay == ReplayAction::InPlace ||
                    (nr == SYS_futex && futexWakesOnly(args[1]));
  if (!keepsToken) release(t);
  if (spec->replay == ReplayAction::Unsupported) {
    fail(ErrorCode::Unsupported,
         std::string("the program used ") + spec->name + ", which is not supported yet");
  }
  if (nr == SYS_futex) refuseContendedPiFutex(t, args);
  // The patched vDSO makes syscalls where natively the vDSO answers without one, which no filter
  // sees: they pass as rewind's own.
  auto vdso = vdso_.find(t.tgid);
  const bool fromVdso = !t.seccomp.empty() && vdso != vdso_.end() &&
                        t.entryRegs.rip >= vdso->second.first &&
                        t.entryRegs.rip < vdso->second.second;
  t.filtered =
      t.seccomp.empty() || fromVdso ? SyscallEvent::Filtered::No : t.seccomp.classify(t.entryRegs);
  if (t.filtered != SyscallEvent::Filtered::No && spec->replay == ReplayAction::InPlace) {
    fail(ErrorCode::Unsupported, std::string("the program's seccomp filter stopped ") + spec->name +
                                     ", which rewind cannot replay");
  }
  if (t.filtered == SyscallEvent::Filtered::No && !t.compat) {
    t.filterInstall = FilterInstall::begin(*t.task, t.entryRegs);
  }
  t.entryValues = t.restarting ? t.restarting->values : readEntryValues(*t.task, nr, *spec, args);
  if (nr == SYS_execve || nr == SYS_execveat) {
    t.execArgv.clear();
    uint64_t argv = args[nr == SYS_execve ? 1 : 2];
    for (int i = 0; i < 256 && argv; i++) {
      uint64_t p = 0;
      if (!t.task->tryRead(argv + 8 * uint64_t(i), &p, sizeof p) || !p) break;
      t.execArgv.push_back(t.task->readCString(p));
    }
  }
  // rseq is skipped: the kernel returns -ENOSYS and glibc does without it. The program's own
  // PR_SET_TSC/PR_GET_TSC are skipped too and answered at the exit stop: rdtsc stays trapped.
  t.fakeTsc = nr == SYS_prctl && (args[0] == PR_SET_TSC || args[0] == PR_GET_TSC);
  // The program's sched_setaffinity is skipped and succeeds: it stays on the recorder's CPU.
  t.fakeAffinity = nr == SYS_sched_setaffinity;
  // The program's filter stops it as natively: nothing to skip.
  if (t.filtered != SyscallEvent::Filtered::No) t.fakeTsc = t.fakeAffinity = false;
  // The program's ptrace requests, and its waits for the stops of its emulated tracees.
  const bool emulated = t.filtered == SyscallEvent::Filtered::No && ptraceEntry(t, nr, args);
  const bool cancel =
      t.filtered == SyscallEvent::Filtered::No &&
      (spec->replay == ReplayAction::Refused || t.fakeTsc || t.fakeAffinity || emulated);
  // The program's filters would see the cancelled syscall, which is rewind's: it claims the
  // address they let through, and gets its own back at the exit stop.
  t.claimed = !t.seccomp.empty() && (cancel || fromVdso);
  if (cancel || t.claimed) {
    Regs r = t.entryRegs;
    if (cancel) r.orig_rax = uint64_t(-1);
    if (t.claimed) r.rip = kRewindSyscallIp;
    t.task->setRegs(r);
  }
  if (nr == SYS_clone && (args[0] & CLONE_UNTRACED)) {
    // A child the recorder could not follow would run unrecorded: it is forked traced, and so
    // is it in replay.
    Regs r = t.entryRegs;
    r.rdi &= ~uint64_t(CLONE_UNTRACED);
    t.task->setRegs(r);
  }
  const bool killed = t.filtered == SyscallEvent::Filtered::KilledThread ||
                      t.filtered == SyscallEvent::Filtered::KilledProcess;
  if (nr == SYS_exit || nr == SYS_exit_group || killed) {
    // No exit stop follows (a filter that kills a thread of several ends it at once; one that
    // kills the process leaves it the syscall number, as it rolls the syscall back): the event
    // is complete now.
    Event e = syscallEvent(t, killed ? nr : 0);
    e.syscall.filtered = t.filtered;
    append(e);
    syscalls_++;
    t.syscallOpen = false;
    if (nr == SYS_exit_group || t.filtered == SyscallEvent::Filtered::KilledProcess) {
      groupExited_.insert(t.tgid);
    }
    t.exiting = nr == SYS_exit;
  }
  t.echo = spec->echo ? echoTarget(t.task->tid(), args[spec->fdArg]) : 0;
  if (t.filtered == SyscallEvent::Filtered::No &&
      (spec->sent == Sent::Buffer || spec->sent == Sent::Iovec) &&
      !freezeWrittenProcess(t, args[0])) {
    memWriters_[t.task->tid()] = std::chrono::steady_clock::now();
    return;  // it waits at its entry for the process it writes into to be still
  }
  if (t.echo && !claimOutput(t)) return;  // it waits at its entry for its turn
  t.task->resume(PTRACE_SYSCALL);
}

// A thread that waits for a priority-inheritance futex has the kernel store into the futex word
// (FUTEX_WAITERS in the holder's word, then the new owner's tid at the hand-over) while it waits:
// the holder's user code reads those stores, which no event of the stream carries, at moments
// the recorder cannot name. Uncontended, the PI operations store only what their own records
// carry (the caller's tid, or 0).
void RecordSession::refuseContendedPiFutex(const RecordedTask& t, const uint64_t* args) const {
  const int cmd = int(args[1]) & FUTEX_CMD_MASK;
  const char* name = nullptr;
  if (cmd == FUTEX_WAIT_REQUEUE_PI) name = "FUTEX_WAIT_REQUEUE_PI";
  if (cmd == FUTEX_CMP_REQUEUE_PI) name = "FUTEX_CMP_REQUEUE_PI";
  if (cmd == FUTEX_LOCK_PI || cmd == FUTEX_LOCK_PI2) {
    uint32_t word = 0;
    const pid_t self = childPids(t.task->tid(), t.task->tid()).seenByItself;
    const uint32_t owner = t.task->tryRead(args[0], &word, sizeof word) ? word & FUTEX_TID_MASK : 0;
    if (owner != 0 && owner != uint32_t(self)) {
      name = cmd == FUTEX_LOCK_PI ? "FUTEX_LOCK_PI" : "FUTEX_LOCK_PI2";
    }
  }
  if (!name) return;
  fail(ErrorCode::Unsupported,
       std::string("the program waited for a priority-inheritance futex (futex ") + name +
           "), which rewind cannot replay yet: the kernel changes the futex word on behalf of "
           "the waiting thread");
}

bool RecordSession::claimOutput(RecordedTask& t) {
  if (outputBusy_ == 0 || outputBusy_ == t.task->tid()) {  // again: a restarted syscall
    outputBusy_ = t.task->tid();
    return true;
  }
  outputWaiting_.push_back(t.task->tid());
  return false;
}

// The write under way is recorded (or its task is gone): the next one waiting may start.
void RecordSession::releaseOutput(pid_t tid) {
  if (outputBusy_ != tid) return;
  outputBusy_ = 0;
  while (!outputWaiting_.empty()) {
    auto it = tasks_.find(outputWaiting_.front());
    outputWaiting_.pop_front();
    if (it == tasks_.end()) continue;
    outputBusy_ = it->first;
    guarded(it->first, [&] { it->second.task->resume(PTRACE_SYSCALL); });
    return;
  }
}

// The kernel wakes a vfork parent while its child is still inside execve, so the parent could
// act before the child's exec is recorded. Replay cannot follow that order (its parent sleeps
// until the child's exec replays), so the recorder holds the parent until then.
void RecordSession::releaseVforkParent(RecordedTask& child) {
  auto it = tasks_.find(child.vforkParent);
  child.vforkParent = 0;
  if (it == tasks_.end()) return;
  RecordedTask& parent = it->second;
  parent.vforkChild = 0;
  if (parent.parked) {
    parent.parked = false;
    if (acquire(parent, Deferred::Start)) guarded(parent.task->tid(), [&] { runFrom(parent); });
  }
}

bool RecordSession::acquire(RecordedTask& t, Deferred ifBusy) {
  pid_t& holder = holder_[t.token];
  if (holder == 0 || holder == t.task->tid()) {
    holder = t.task->tid();
    t.grantedAt = std::chrono::steady_clock::now();
    return true;
  }
  t.deferred = ifBusy;
  waiting_[t.token].push_back(t.task->tid());
  return false;
}

void RecordSession::release(RecordedTask& t) {
  auto it = holder_.find(t.token);
  if (it == holder_.end() || it->second != t.task->tid()) return;
  it->second = 0;
  grantNext(t.token);
}

void RecordSession::grantNext(pid_t token) {
  std::deque<pid_t>& queue = waiting_[token];
  while (!queue.empty()) {
    auto it = tasks_.find(queue.front());
    queue.pop_front();
    if (it == tasks_.end()) continue;
    RecordedTask& t = it->second;
    holder_[token] = t.task->tid();
    t.grantedAt = std::chrono::steady_clock::now();
    Deferred d = t.deferred;
    t.deferred = Deferred::None;
    // If it was killed meanwhile, it keeps the token until its end is seen.
    guarded(t.task->tid(), [&] {
      if (d == Deferred::SyscallExit) {
        onSyscallExit(t);
      } else if (d == Deferred::Continue) {
        t.task->resume(PTRACE_SYSCALL);
      } else if (d == Deferred::PtraceResume) {
        ptraceResumeGranted(t);
      } else {
        runFrom(t);
      }
    });
    return;
  }
}

// A task runs user code from a point that no syscall marks (its start, or after a preemption):
// the Run event tells replay when.
void RecordSession::runFrom(RecordedTask& t) {
  Event e;
  e.type = EventType::Run;
  e.run.tid = uint32_t(t.task->tid());
  append(e);
  t.task->resume(PTRACE_SYSCALL);
}

void RecordSession::startTask(RecordedTask& t) {
  if (acquire(t, Deferred::Start)) runFrom(t);
}

bool RecordSession::contended() const {
  if (!memWriters_.empty()) return true;
  for (const auto& [tgid, queue] : waiting_) {
    if (!queue.empty()) return true;
  }
  for (const auto& [tid, t] : tasks_) {
    if (!t.heldSignals.empty() || t.heldAtExit) return true;
  }
  return false;
}

// A thread held at its PTRACE_EVENT_EXIT for one of its process that never gets to its own (a
// thread the kill does not end): after a while they go on without it.
void RecordSession::releaseLeaving() {
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [tid, t] : tasks_) {
    if (t.heldAtExit && now - t.leftAt > std::chrono::milliseconds(500)) {
      settleLeaving(t.tgid, true);
      return;  // tasks_ may have changed
    }
  }
}

void RecordSession::resendHeld(RecordedTask& t) {
  if (t.heldSignals.empty() || t.resending) return;
  t.resending = t.heldSignals.front().si_signo;
  syscall(SYS_tgkill, t.tgid, t.task->tid(), t.resending);
}

// Holds an asynchronous signal that landed in user code. A standard signal already held is
// not held twice: the kernel keeps one of each pending.
// A signal that comes while the recorder injects syscalls into the task waits, as one held in
// user code does, to be sent again once the task runs its own code; a fault cannot wait. One
// whose only effect is to stop the process does so at once, as in user code (onSignal): a
// SIGCONT that came since it was queued undoes it then, which one sent again later would miss.
RemoteSyscalls::SignalTaker RecordSession::signalTaker(RecordedTask& t) {
  using Fate = RemoteSyscalls::Fate;
  return [this, &t](const siginfo_t& info) {
    const pid_t tid = t.task->tid();
    if (isFault(info.si_signo, info)) return Fate::Refused;
    if (defaultStop(tid, info.si_signo) && !tracedByProgram(tid)) return Fate::Now;
    if (!ignoresSignal(tid, info.si_signo)) hold(t, info);
    return Fate::Later;
  };
}

void RecordSession::hold(RecordedTask& t, const siginfo_t& info) {
  if (info.si_signo < SIGRTMIN) {
    for (const siginfo_t& h : t.heldSignals) {
      if (h.si_signo == info.si_signo) return;
    }
  }
  if (t.heldSignals.empty()) t.heldSince = std::chrono::steady_clock::now();
  t.heldSignals.push_back(info);
}

// A task that makes no syscall (a pure compute loop) gets its held signal where it is after
// 5 ms, so it is not starved of it; the stream names the position (see onSignal).
void RecordSession::resendOverdue() {
  auto now = std::chrono::steady_clock::now();
  for (auto& [tid, t] : tasks_) {
    if (!t.heldSignals.empty() && now - t.heldSince > std::chrono::milliseconds(5)) {
      resendHeld(t);
    }
  }
}

// A process's first thread that ends before the others is reported only once they have all
// ended: it gives up its token once it is a zombie (its tid cleared for pthread_join).
void RecordSession::releaseExited() {
  for (auto& [tid, t] : tasks_) {
    if (t.exiting && holder_[t.tgid] == tid && !alive(tid)) release(t);
  }
}

// Takes the stop of next_, due at once (it was resumed into it). Not if it is a zombie or gone
// (killed meanwhile): a leader is reported only once its other threads are reaped, which the
// main loop must do first. Returns 0 then.
pid_t RecordSession::waitNext(int* status) {
  const pid_t want = next_;
  next_ = 0;
  for (;;) {
    pid_t r = waitpid(want, status, __WALL | WNOHANG);
    if (r == want) return r;
    if (r < 0 && errno != EINTR) return 0;
    if (r == 0 && !alive(want)) return 0;
    sched_yield();
  }
}

// A thread that keeps the token too long while others wait is stopped with SIGSTOP, where it
// is, and waits its turn again (a thread spinning on a flag another thread sets must not hang).
void RecordSession::preemptOverdue() {
  auto now = std::chrono::steady_clock::now();
  for (const auto& [token, queue] : waiting_) {
    if (queue.empty()) continue;
    auto it = tasks_.find(holder_[token]);
    if (it == tasks_.end()) continue;
    RecordedTask& t = it->second;
    if (!t.preemptSent && now - t.grantedAt > std::chrono::milliseconds(10)) {
      syscall(SYS_tgkill, t.tgid, t.task->tid(), SIGSTOP);
      t.preemptSent = true;
    }
  }
}

void RecordSession::onPreempt(RecordedTask& t) {
  pid_t tid = t.task->tid();
  if (holder_[t.token] != tid || waiting_[t.token].empty()) {
    t.task->resume(PTRACE_SYSCALL);  // it gave the token up by itself meanwhile
    return;
  }
  if (!namePosition(t)) return;
  holder_[t.token] = 0;
  t.deferred = Deferred::Resume;
  waiting_[t.token].push_back(tid);
  grantNext(t.token);
}

// Moves a task stopped in user code a few instructions on, to one that replay finds without a
// stop at every pass (one a jump can replace: replay/position_trap.h). A loop too tight to have
// one is left at full speed, up to its way out. A signal that comes meanwhile is held like any
// signal landing in user code. False if the task left user code meanwhile (a syscall, its end):
// the main loop takes that stop next.
bool RecordSession::settle(RecordedTask& t) {
  std::map<uint64_t, int> passes;
  for (int i = 0; i < 4096; i++) {
    uint8_t code[15];
    uint64_t rip = t.task->regs().rip;
    if (!t.task->tryRead(rip, code, sizeof code)) return true;
    X86Instruction insn = decodeX86(code, sizeof code);
    if (insn.length == 0 || insn.traps || relocatable(insn)) return true;
    // A rep string instruction stepped would take a step per iteration here, and as many in
    // replay to find the one named: it is run to its end (a memset of megabytes in cc1 was 40 s
    // of replay).
    if (repeatedString(code, insn) || (backwardConditionalJump(code, insn) && ++passes[rip] >= 3)) {
      switch (runTo(t, rip + insn.length, std::chrono::milliseconds(20))) {
        case RunTo::Reached:
          passes.clear();
          continue;
        case RunTo::Stopped:
          return true;
        case RunTo::Left:
          return false;
      }
    }
    switch (stepOne(t)) {
      case Step::Done:
        continue;
      case Step::Faulted:
        return true;
      case Step::Left:
        return false;
    }
  }
  return true;
}

// Runs the task's next instruction. A signal that comes instead is held like one landing in
// user code, and the step is tried again; a fault comes back by itself when the task goes on.
RecordSession::Step RecordSession::stepOne(RecordedTask& t) {
  for (;;) {
    t.task->resume(PTRACE_SINGLESTEP);
    Stop s = t.task->wait();
    if (s.kind == Stop::Signal && s.sig == SIGTRAP) return Step::Done;
    if (s.kind == Stop::Signal) {
      siginfo_t info = t.task->siginfo();
      if (isFault(s.sig, info)) return Step::Faulted;
      if (!ignoresSignal(t.task->tid(), s.sig)) hold(t, info);
      continue;
    }
    requeued_.emplace_back(t.task->tid(), s.status);
    return Step::Left;
  }
}

// Names where the task is in user code, for replay (a Preempt event): settles it on an
// instruction a trampoline can carry, then lets it pass there again for a while, noting the
// words of memory the loop changes: from one pass to the next (an inner loop's state) and
// over the whole while (an outer loop's). Registers and stack alone name the first pass with
// them; those words tell this pass from the earlier ones when the loop keeps its state in
// memory (docs/positions.md). False if the task left user code meanwhile (see settle).
bool RecordSession::namePosition(RecordedTask& t) {
  if (!settle(t) || !leaveBufferedCall(t)) return false;
  std::vector<MemoryWord> words;
  const uint64_t at = t.task->regs().rip;
  const std::set<pid_t> pending = pendingStops(t);
  MemoryImage first = MemoryImage::capture(t.tgid, t.task->tid());
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
  Pass pass = nextPass(t, at);
  for (int n = 0; pass == Pass::Again && n < 256 && std::chrono::steady_clock::now() < until; n++) {
    pass = nextPass(t, at);
  }
  std::optional<MemoryImage> previous;
  if (pass == Pass::Again) {
    previous = MemoryImage::capture(t.tgid, t.task->tid());
    pass = nextPass(t, at);
  }
  // Another thread's syscall that returned meanwhile wrote memory the loop did not: the words
  // would be its, so none are named.
  if (pass == Pass::Again && pendingStops(t) == pending) {
    MemoryImage last = MemoryImage::capture(t.tgid, t.task->tid());
    words = previous->changedWords(last, kMaxPositionWords / 2);
    for (const MemoryWord& w : first.changedWords(last, kMaxPositionWords)) {
      bool known = false;
      for (const MemoryWord& k : words) known = known || k.addr == w.addr;
      if (!known && words.size() < kMaxPositionWords) words.push_back(w);
    }
  }
  if (pass == Pass::Left) return false;
  // Not back there soon (no tight loop, so nothing to tell apart): settle where it is now.
  if (pass == Pass::Elsewhere && (!settle(t) || !leaveBufferedCall(t))) return false;
  // Faulted: it stays before the instruction, named as it is.
  Event e;
  e.type = EventType::Preempt;
  e.preempt.tid = uint32_t(t.task->tid());
  e.preempt.regs = t.task->regs();
  e.preempt.stackHash = stackHash(*t.task, e.preempt.regs.rsp);
  e.preempt.words = std::move(words);
  append(e);
  return true;
}

// Runs the task from instruction `at` on to its next pass there, for 2 ms of its CPU time at most.
RecordSession::Pass RecordSession::nextPass(RecordedTask& t, uint64_t at) {
  switch (stepOne(t)) {
    case Step::Left:
      return Pass::Left;
    case Step::Faulted:
      return Pass::Faulted;
    case Step::Done:
      break;
  }
  if (t.task->regs().rip == at) return Pass::Again;
  switch (runTo(t, at, std::chrono::milliseconds(2))) {
    case RunTo::Reached:
      return Pass::Again;
    case RunTo::Stopped:
      return Pass::Elsewhere;
    case RunTo::Left:
      return Pass::Left;
  }
  return Pass::Left;
}

// The other threads of the task's process that have a stop the recorder has not taken yet.
std::set<pid_t> RecordSession::pendingStops(const RecordedTask& t) const {
  std::set<pid_t> pending;
  for (const auto& [tid, other] : tasks_) {
    if (other.token != t.token || tid == t.task->tid()) continue;
    siginfo_t info{};
    if (waitid(P_PID, id_t(tid), &info, WEXITED | WSTOPPED | WNOHANG | WNOWAIT | __WALL) == 0 &&
        info.si_pid == tid) {
      pending.insert(tid);
    }
  }
  return pending;
}

// Lets the task run to `addr` at full speed, for `limit` of its CPU time at most (then it is
// stopped where it is). CPU time, not elapsed time: on a loaded machine the task gets the same
// chance to get there, so a busy recorder names the same kinds of positions as an idle one.
RecordSession::RunTo RecordSession::runTo(RecordedTask& t, uint64_t addr,
                                          std::chrono::milliseconds limit) {
  const pid_t tid = t.task->tid();
  uint8_t original;
  const uint8_t int3 = 0xcc;
  if (!t.task->tryRead(addr, &original, 1) || !t.task->tryWrite(addr, &int3, 1)) {
    return RunTo::Stopped;
  }
  const std::chrono::nanoseconds cpuDeadline = cpuTime(tid) + limit;
  const auto deadline = std::chrono::steady_clock::now() + 20 * limit;  // however loaded
  bool stopSent = false;
  std::optional<RunTo> outcome;
  t.task->resume(PTRACE_SYSCALL);
  for (;;) {
    int status;
    pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
    if (r == 0) {
      if (!stopSent &&
          (cpuTime(tid) > cpuDeadline || std::chrono::steady_clock::now() > deadline)) {
        syscall(SYS_tgkill, t.tgid, tid, SIGSTOP);
        stopSent = true;
      }
      usleep(100);
      continue;
    }
    if (r < 0) failErrno("waitpid");
    Stop s = Stop::fromWaitStatus(status);
    if (s.kind == Stop::Signal && s.sig == SIGTRAP && t.task->regs().rip == addr + 1) {
      Regs regs = t.task->regs();
      regs.rip = addr;
      t.task->setRegs(regs);
      outcome = RunTo::Reached;
    } else if (s.kind == Stop::Signal && s.sig == SIGSTOP && stopSent) {
      stopSent = false;
      if (!outcome) outcome = RunTo::Stopped;
    } else if (s.kind == Stop::Signal && !outcome) {
      siginfo_t info = t.task->siginfo();
      if (isFault(s.sig, info)) {
        outcome = RunTo::Stopped;  // it comes back when the task goes on
      } else if (!ignoresSignal(tid, s.sig)) {
        hold(t, info);
      }
    } else if (!outcome) {
      // A syscall or an end: the main loop takes it. Our SIGSTOP, if sent, comes later and
      // is taken as a preemption.
      requeued_.emplace_back(tid, status);
      if (stopSent) t.preemptSent = true;
      t.task->tryWrite(addr, &original, 1);
      return RunTo::Left;
    }
    // Stopped in user code: wait for our SIGSTOP if it is on its way (it comes before the
    // task runs another instruction).
    if (outcome && !stopSent) break;
    t.task->resume(PTRACE_SYSCALL);
  }
  t.task->tryWrite(addr, &original, 1);
  return *outcome;
}

void RecordSession::onFork(RecordedTask& t, bool vfork) {
  unsigned long child = 0;
  if (ptrace(PTRACE_GETEVENTMSG, t.task->tid(), nullptr, &child) < 0) {
    failErrno("PTRACE_GETEVENTMSG");
  }
  uint64_t args[6];
  for (int i = 0; i < 6; i++) args[i] = arg(t.entryRegs, i);
  uint64_t childTid;
  const uint64_t flags = cloneFlags(*t.task, syscallNumber(t.entryRegs.orig_rax), args, &childTid);
  // clone and clone3 with CLONE_VM but not CLONE_VFORK share the address space, and run along
  // with their parent: a thread, or a process of its own (without CLONE_THREAD).
  const bool sharedVm = (flags & CLONE_VM) && !(flags & CLONE_VFORK);
  const bool thread = flags & CLONE_THREAD;
  // Written now, not at the syscall's exit: a vfork parent only gets there after its child
  // exec'd, and the child's events must follow its creation in the stream.
  const ChildPids ids = childPids(t.task->tid(), pid_t(child));
  Event e = syscallEvent(t, ids.seenByParent);
  e.syscall.child = uint32_t(child);
  if (childTid) {
    const auto* self = reinterpret_cast<const uint8_t*>(&ids.seenByItself);
    e.syscall.writes.push_back(MemoryWrite{childTid, {self, self + sizeof(pid_t)}});
  }
  // The pidfd the kernel made for the parent (CLONE_PIDFD): its number, written where asked.
  uint64_t pidfdAt = 0;
  if (syscallNumber(t.entryRegs.orig_rax) == SYS_clone && (args[0] & CLONE_PIDFD))
    pidfdAt = args[2];
  uint64_t cl[2] = {};  // clone3: clone_args.flags, .pidfd
  if (syscallNumber(t.entryRegs.orig_rax) == kSysClone3 &&
      t.task->tryRead(args[0], cl, sizeof cl) && (cl[0] & CLONE_PIDFD)) {
    pidfdAt = cl[1];
  }
  if (pidfdAt) {
    MemoryWrite w{pidfdAt, std::vector<uint8_t>(sizeof(int))};
    if (t.task->tryRead(pidfdAt, w.data.data(), w.data.size())) e.syscall.writes.push_back(w);
  }
  if (buffers_ && sharedVm && !(flags & CLONE_SETTLS)) {
    // The child shares its creator's memory and thread variables (a raw clone): the library
    // would give it its creator's buffer. The process stops buffering before the child runs
    // (the write is the clone's, in memory both share, so replay makes it at the same point),
    // and its tasks stop at every syscall, so that no thread's set-up turns buffering on again.
    std::vector<pid_t> threads;
    for (auto& [tid, other] : tasks_) {
      if (other.tgid != t.tgid) continue;
      threads.push_back(tid);
      other.task->setSeccompStops(false);
    }
    buffers_->disable(*t.task, threads);
    buffers_->addWrites(t.task->tid(), e.syscall);
  }
  append(e);
  syscalls_++;
  t.forkRecorded = true;
  t.syscallOpen = false;
  if (thread) {
    for (ProcessInfo& p : processes_) {
      if (p.pid == t.tgid) p.threads.push_back(pid_t(child));
    }
  } else {
    processes_.push_back(ProcessInfo{pid_t(child), t.task->tid(), {}, {}});
  }
  // A child that shares memory with its parent (MAP_SHARED mappings it inherits) runs user code
  // only when none of them does, as threads do, so the stream has their stores in the order
  // they ran.
  pid_t token = sharedVm || sharesMemory(t.task->tid()) ? t.token : pid_t(child);
  auto it = tasks_.find(pid_t(child));
  if (it == tasks_.end()) {
    addTask(pid_t(child)).newborn = true;
    it = tasks_.find(pid_t(child));
  }
  RecordedTask& c = it->second;
  c.forkSeen = true;
  c.tgid = thread ? t.tgid : pid_t(child);
  c.token = token;
  c.seccomp = t.seccomp;  // inherited, and so is where the vDSO is
  c.task->setSeccompStops(t.task->seccompStops());
  if (buffers_) buffers_->onFork(t.task->tid(), pid_t(child), sharedVm, vfork);
  if (!thread) rdtscPatcher_.onFork(t.tgid, pid_t(child));
  if (vdso_.count(t.tgid)) vdso_[c.tgid] = vdso_[t.tgid];
  auto mapped = mappedFiles_.find(t.tgid);
  if (mapped != mappedFiles_.end()) mappedFiles_[c.tgid] = mapped->second;  // inherited
  if (vfork) {
    t.vforkChild = pid_t(child);
    c.vforkParent = t.task->tid();
  }
  if (c.held) {
    // Its first stop came before this event. It runs only now, as the others do: resumed
    // before its seccomp stops were set, it stopped at the trampoline's syscalls too, and each
    // was recorded twice, traced and buffered.
    c.held = false;
    startTask(c);
  }
}

// The event of a syscall that returned `result`, with what it wrote and sent.
Event RecordSession::exitRecord(RecordedTask& t, int64_t result) {
  const long traced = traceSyscallNumber(t.entryRegs, t.compat);
  const long nr = nativeSyscall(traced);
  const SyscallSpec* spec = lookupSyscall(traced);
  Event e = syscallEvent(t, result);
  SyscallEvent& s = e.syscall;
  s.filtered = t.filtered;
  if (s.filtered != SyscallEvent::Filtered::No) {
    // Stopped by the program's filter: it wrote and sent nothing.
  } else if (spec->replay == ReplayAction::Emulate) {
    if (t.restarting) {
      // It writes what the syscall it goes on with writes.
      long was = syscallNumber(t.restarting->entry.orig_rax);
      uint64_t args[6];
      for (int i = 0; i < 6; i++) args[i] = arg(t.restarting->entry, i);
      s.writes = captureOutputs(*t.task, was, *lookupSyscall(was), args, result, t.entryValues);
    } else {
      s.writes = captureOutputs(*t.task, nr, *spec, s.args, result, t.entryValues);
    }
    if (!isError(result)) s.echoFd = t.echo;
    if (spec->sent == Sent::Copied && result > 0 && t.echo) {
      fail(ErrorCode::Unsupported, std::string("the program sent data to its ") +
                                       (t.echo == 2 ? "stderr" : "stdout") + " with " + spec->name +
                                       ", which rewind cannot replay yet");
    }
    if (spec->sent != Sent::None) s.sentHash = sentData(*t.task, nr, *spec, s.args, result).hash();
  }
  const bool ran = s.filtered == SyscallEvent::Filtered::No;
  if (ran && result > 0 && (spec->sent == Sent::Buffer || spec->sent == Sent::Iovec)) {
    // write, pwrite...: one look at the descriptor for both. Only a regular file can be mapped
    // or be a /proc/PID/mem, and that only on a file system without a device (procfs, of
    // whichever mount), so a pipe or a file on disk costs no readlink.
    struct stat st;
    std::string fd = "/proc/" + std::to_string(t.task->tid()) + "/fd/" + std::to_string(s.args[0]);
    if (stat(fd.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (mappedFiles_.count(t.tgid)) captureMappedWrite(t, s, st);
      if (major(st.st_dev) == 0) captureProcMemWrite(t, s);
    }
  }
  if (ran) sharedFiles_.captureChange(*t.task, nr, result, s);
  if (ran && nr == SYS_mmap && !isError(result) && !(s.args[3] & MAP_ANONYMOUS)) {
    std::string fdPath =
        "/proc/" + std::to_string(t.task->tid()) + "/fd/" + std::to_string(int(s.args[4]));
    char link[4096];
    ssize_t n = readlink(fdPath.c_str(), link, sizeof link - 1);
    std::string target = n > 0 ? std::string(link, size_t(n)) : fdPath;
    if (target.rfind("anon_inode:", 0) == 0) {
      // Memory the kernel keeps writing (a perf_event ring buffer, a bpf map): replay's copy
      // could not follow it.
      fail(ErrorCode::Unsupported, "the program mapped a descriptor of " + target +
                                       " into memory, which rewind cannot replay");
    }
    int fd = openTraceeFile(fdPath);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      bool shared = (s.args[3] & MAP_TYPE) != MAP_PRIVATE;
      // A file mapped shared may change at any moment: captured afresh, never from the cache.
      s.blob = blobs_.putFile(fd, target, !shared);
      if (shared) {
        checkSharedMapping(t, st, (s.args[2] & PROT_WRITE) || openedForWriting(t, s.args[4]));
        s.file = sharedFiles_.mapped(fd);
        s.fileSize = uint64_t(st.st_size);
      } else {
        mappedFiles_[t.tgid].insert({st.st_dev, st.st_ino});
        // Mapped past its end through a descriptor that may grow it: its pages there fault until
        // it grows (rr's mmap_private_grow_under_map), so replay maps an emulated file that
        // follows its size (record/shared_files.h), privately still; so are its later mappings,
        // which the kernel may merge with that one.
        const bool pastEnd = s.args[5] + s.args[1] > ((uint64_t(st.st_size) + 4095) & ~4095ull);
        if (growable_.count({st.st_dev, st.st_ino}) ||
            (pastEnd && openedForWriting(t, s.args[4]))) {
          growable_.insert({st.st_dev, st.st_ino});
          s.file = sharedFiles_.mapped(fd);
          s.fileSize = uint64_t(st.st_size);
        }
      }
    }
    if (fd >= 0) close(fd);
  }
  if (nr == SYS_shmat && !isError(result)) captureShmat(t, s);
  // The writes the buffers keep for the task's own memory wait for an event of its own memory.
  if (buffers_ && !s.child) buffers_->addWrites(t.task->tid(), s);
  return e;
}

void RecordSession::onSyscallExit(RecordedTask& t) {
  if (t.bufferedStop) {
    t.bufferedStop = false;
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  Regs regs = t.task->regs();
  const long traced = traceSyscallNumber(t.entryRegs, t.compat);
  const long nr = nativeSyscall(traced);
  int64_t result = int64_t(regs.rax);
  // Our SIGSTOP, or a stop of its process, interrupted the syscall: the kernel restarts it once
  // the task goes on, so this return never reaches the program (a restart_syscall that continues
  // it is recorded as the syscall itself, which is what replay meets).
  const bool swallowed = isRestartCode(result) && (t.preemptSent || onlyStopsDue(t));
  if (result == kErestartRestartBlock) {
    const Regs& entry = t.restarting ? t.restarting->entry : t.entryRegs;
    t.interrupted = RecordedTask::Interrupted{entry, t.entryValues, swallowed};
  }
  // Or a filter killed it: recorded at its entry.
  if (swallowed || t.filtered == SyscallEvent::Filtered::KilledThread ||
      t.filtered == SyscallEvent::Filtered::KilledProcess) {
    t.syscallOpen = false;
    if (swallowed && ptraceSwallowed(t)) return;  // its tracer's PTRACE_INTERRUPT stops it here
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  if (ptraceWaitBlocks(t, result)) return;
  // Only these syscalls and a signal's delivery change the mask (the rdtsc traps need it).
  if (t.sigmaskStale || nr == SYS_rt_sigprocmask || nr == SYS_rt_sigreturn) {
    t.sigmask = blockedSignals(*t.task);
    t.sigmaskStale = false;
  }
  if (t.claimed) {
    t.claimed = false;
    regs.rip = t.entryRegs.rip;
    t.task->setRegs(regs);
  }
  if (t.filterInstall) {
    if (std::shared_ptr<const BpfProgram> program = t.filterInstall->finish(*t.task, result)) {
      t.seccomp.add(std::move(program));
      std::vector<pid_t> threads;
      for (auto& [tid, other] : tasks_) {
        if (t.filterInstall->tsync() && other.tgid == t.tgid) other.seccomp = t.seccomp;
        if (other.tgid == t.tgid) threads.push_back(tid);
        // The program's filter may answer a syscall before ours stops it: each one stops.
        if (!other.seccomp.empty()) other.task->setSeccompStops(false);
      }
      if (buffers_) buffers_->disable(*t.task, threads);
    }
    t.filterInstall.reset();
    regs = t.task->regs();
  }
  KernelSigaction action;
  if (nr == SYS_rt_sigaction && result == 0 && arg(t.entryRegs, 0) == SIGSEGV &&
      arg(t.entryRegs, 1) && t.task->tryRead(arg(t.entryRegs, 1), &action, sizeof action)) {
    segvActions_[t.tgid] = {action, t.entryRegs.rip - 2};
  }
  if (!acquire(t, Deferred::SyscallExit)) return;
  if (t.fakeTsc) {
    t.fakeTsc = false;
    uint64_t what = t.entryRegs.rdi, arg1 = t.entryRegs.rsi;
    result = 0;
    if (what == PR_SET_TSC && (arg1 == PR_TSC_ENABLE || arg1 == PR_TSC_SIGSEGV)) {
      t.tscMode = int(arg1);
    } else if (what == PR_GET_TSC && arg1) {
      t.task->write(arg1, &t.tscMode, sizeof t.tscMode);
    } else {
      result = -EINVAL;
    }
    regs.rax = uint64_t(result);
    t.task->setRegs(regs);
  }
  // The syscall buffer's filter is rewind's: a task with no filter of its own is told it has none.
  if (nr == SYS_prctl && arg(t.entryRegs, 0) == PR_GET_SECCOMP && result == SECCOMP_MODE_FILTER &&
      bufferFilter_ == BufferFilter::On && t.seccomp.empty()) {
    result = SECCOMP_MODE_DISABLED;
    regs.rax = uint64_t(result);
    t.task->setRegs(regs);
  }
  if (t.fakeAffinity) {
    t.fakeAffinity = false;
    result = 0;
    regs.rax = 0;
    t.task->setRegs(regs);
  }
  if (buffers_ && (nr == RWD_SYS_BUFFER_INIT || nr == RWD_SYS_BUFFER_FLUSH)) {
    appendBuffered();  // before the buffer starts again
    result = buffers_->request(*t.task, t.entryRegs, t.task->seccompStops(), tscClock_);
    regs.rax = uint64_t(result);
    t.task->setRegs(regs);
  }
  result = ptraceExit(t, result);
  resendHeld(t);
  t.pendingAtBoundary = t.task->pendingSignals();
  if (t.execPending) {
    // Its record is the exec's, written here; a fork's was written at PTRACE_EVENT_FORK.
    t.syscallOpen = false;
    t.execPending = false;
    t.execed = true;
    segvActions_.erase(t.tgid);  // exec resets the actions of caught signals
    t.task->reopenMemory();
    char exe[4096];
    std::string link = "/proc/" + std::to_string(t.task->tid()) + "/exe";
    ssize_t n = readlink(link.c_str(), exe, sizeof exe - 1);
    Event e;
    e.type = EventType::Exec;
    if (buffers_) buffers_->forget(t.task->tid());
    rdtscPatcher_.forget(t.tgid);
    const bool firstExec = bufferFilter_ == BufferFilter::NotYet;
    auto trampoline = [&](RemoteSyscalls& remote) {
      const bool on = buffers_->onExec(remote, firstExec);
      if (firstExec) bufferFilter_ = on ? BufferFilter::On : BufferFilter::Refused;
    };
    e.exec = captureExec(*t.task, blobs_, n > 0 ? std::string(exe, size_t(n)) : options_.exe,
                         signalTaker(t),
                         buffers_ ? std::function<void(RemoteSyscalls&)>(trampoline) : nullptr);
    if (buffers_ && firstExec) {
      t.task->setSeccompStops(bufferFilter_ == BufferFilter::On && t.seccomp.empty());
    }
    e.exec.cpu = cpu_;
    if (t.formerTid) e.exec.tid = uint32_t(t.formerTid);  // the thread that called execve
    t.formerTid = 0;
    for (const MappedRegion& r : e.exec.regions) {
      if (r.name == "[vdso]") vdso_[t.tgid] = {r.start, r.end};
    }
    append(e);
    appendEndedByExec(t.tgid);
    for (ProcessInfo& p : processes_) {
      if (p.pid == t.task->tid()) p.execs.push_back(ProcessInfo::Exec{e.exec.exe, t.execArgv});
    }
    releaseVforkParent(t);
    if (ptraceExecStop(t)) return;
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  if (!t.execed) {
    t.syscallOpen = false;
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  if (t.forkRecorded) {
    t.syscallOpen = false;
    t.forkRecorded = false;
    if (t.vforkChild) {
      if (ptraceSyscallStops(t)) {
        fail(ErrorCode::Unsupported,
             "a vfork by a task the program traces with PTRACE_SYSCALL is not supported yet");
      }
      t.parked = true;
      release(t);  // its child may share its token (memory shared with it) and must run
    } else if (!ptraceSyscallStop(t, false, true)) {
      runFrom(t);
    }
    return;
  }
  if (!groupExited_.count(t.tgid)) {
    append(exitRecord(t, result));
  } else {
    // Its process's end is in the stream (an exit_group, a fatal signal), which replay runs for
    // real: the thread is gone there by then. Output it sent is not dropped in silence: replay
    // stops at it, loudly.
    Event e = exitRecord(t, result);
    if (e.syscall.echoFd) {
      e.syscall.filtered = SyscallEvent::Filtered::Unknown;
      append(e);
    }
  }
  t.syscallOpen = false;
  thaw(t.task->tid());
  if (nr == SYS_execve || nr == SYS_execveat) appendEndedByExec(t.tgid);  // it failed
  syscalls_++;
  releaseOutput(t.task->tid());
  // A signal the syscall raised (SIGPIPE) or that waited for it is delivered as the task returns
  // to user code: take that stop next, so its event follows this one with no other task's
  // between (replay delivers it right after the syscall).
  if (ptraceSyscallStop(t, false)) return;
  if (signalDue(*t.task, t.pendingAtBoundary)) next_ = t.task->tid();
  t.task->resume(PTRACE_SYSCALL);
}

bool RecordSession::emulateRdtsc(RecordedTask& t) {
  Regs r = t.task->regs();
  uint8_t insn[3] = {};
  if (!t.task->tryRead(r.rip, insn, sizeof insn)) return false;
  bool rdtsc = insn[0] == 0x0f && insn[1] == 0x31;
  bool rdtscp = insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9;
  if (!rdtsc && !rdtscp) return false;
  reblockForcedSigsegv(*t.task, t.sigmask);
  auto action = segvActions_.find(t.tgid);
  uint8_t gadget[2] = {};
  if ((t.sigmask & kSigsegvBit) && action != segvActions_.end() &&
      action->second.first.handler != uint64_t(SIG_DFL) &&
      t.task->tryRead(action->second.second, gadget, sizeof gadget) && gadget[0] == 0x0f &&
      gadget[1] == 0x05) {
    RemoteSyscalls remote(*t.task, action->second.second, signalTaker(t));
    remote.claimOrigin(kRewindSyscallIp);
    setSignalAction(remote, r.rsp - kBelowRedZone, SIGSEGV, action->second.first);
  }
  Event e;
  if (rdtsc && buffers_ && t.tscMode == PR_TSC_ENABLE) {
    std::vector<pid_t> threads, others;
    for (const auto& [tid, other] : tasks_) {
      if (other.tgid != t.tgid) continue;
      threads.push_back(tid);
      if (tid != t.task->tid() && !other.inSyscall) others.push_back(tid);
    }
    if (uint64_t hook = buffers_->tscHook(threads)) {
      if (std::optional<PatchEvent> patch =
              rdtscPatcher_.patch(*t.task, t.tgid, hook, others, signalTaker(t))) {
        e.type = EventType::Patch;
        e.patch = std::move(*patch);
        append(e);
        t.task->resume(PTRACE_SYSCALL);
        return true;
      }
    }
  }
  e.type = EventType::Rdtsc;
  RdtscEvent& ev = e.rdtsc;
  ev.tid = uint32_t(t.task->tid());
  ev.rip = r.rip;
  ev.rdtscp = rdtscp;
  unsigned aux = 0;
  uint64_t tsc = tscClock_.now();
  if (rdtscp) __rdtscp(&aux);
  ev.rax = tsc & 0xffffffff;
  ev.rdx = tsc >> 32;
  ev.rcx = rdtscp ? aux : r.rcx;
  r.rax = ev.rax;
  r.rdx = ev.rdx;
  r.rcx = ev.rcx;
  r.rip += rdtscp ? 3 : 2;
  t.task->setRegs(r);
  append(e);
  t.task->resume(PTRACE_SYSCALL);
  return true;
}

void RecordSession::onSignal(RecordedTask& t, int sig) {
  if (!t.execed) {
    t.task->resume(PTRACE_SYSCALL);  // the child's SIGSTOP before exec
    return;
  }
  // Whether the task is where its last syscall returned: the registers cannot tell, as a loop
  // may come back to the same ones.
  const bool atBoundary = t.pendingAtBoundary.count(sig) > 0;
  t.pendingAtBoundary.clear();
  if (sig == SIGCONT) ptraceContinued(t.tgid);
  if (sig == SIGSTOP && t.preemptSent) {
    t.preemptSent = false;
    onPreempt(t);
    return;
  }
  if (defaultStop(t.task->tid(), sig) && !tracedByProgram(t.task->tid())) {
    // It stops its process wherever it comes (each thread then reports its group-stop), which
    // replay need not do: not recorded.
    t.stopAtBoundary = atBoundary;
    t.task->resume(PTRACE_SYSCALL, sig);
    return;
  }
  siginfo_t info = t.task->siginfo();
  if (sig == SIGSEGV && info.si_code == SI_KERNEL && emulateRdtsc(t)) return;
  t.sigmaskStale = true;
  if (t.resending != sig) fixSyntheticSigchld(t, info);
  bool fault = isFault(sig, info);
  if (fault && ignoresSignal(t.task->tid(), sig) && inNamespaceInit(t.task->tid())) {
    return dieOfFaultInInit(t, info);
  }
  if (ignoresSignal(t.task->tid(), sig)) {
    t.task->resume(PTRACE_SYSCALL);
    return;
  }
  bool positioned = false;
  if (t.resending == sig) {
    // A held signal, re-sent: it is delivered with what it carried when it first came.
    t.resending = 0;
    info = t.heldSignals.front();
    t.heldSignals.pop_front();
    // An emulated tracee's syscall it interrupted restarts: it stops there, as on first arrival.
    if (!atBoundary && !ptraceStopsHere(t)) {
      // Re-sent where the task computes, after it made no syscall for too long: the stream
      // names the position, and replay delivers it there.
      if (!namePosition(t)) {
        // It made a syscall first: the signal waits for its exit, where it is exact.
        t.heldSignals.push_front(info);
        return;
      }
      positioned = true;
    }
    t.task->setSiginfo(info);
  } else if (!fault) {
    if (!atBoundary && !ptraceStopsHere(t)) {
      if (t.task->regs().rip == RWD_TRAMPOLINE_SYSCALL_END && positionAfterBufferedCall(t)) {
        // Natively it comes as the syscall returns (a dnotify SIGIO of the program's own
        // openat): delivered before the library returns to the program, not at a later stop.
        positioned = true;
        t.task->setSiginfo(info);
      } else {
        hold(t, info);
        t.task->resume(PTRACE_SYSCALL);
        return;
      }
    }
  }
  if (ptraceSignalStop(t, sig, info, fault, positioned, atBoundary)) return;
  Event e;
  e.type = EventType::Signal;
  e.signal.tid = uint32_t(t.task->tid());
  e.signal.signo = sig;
  e.signal.fault = fault;
  memcpy(e.signal.info, &info, sizeof e.signal.info);
  append(e);
  t.task->resume(PTRACE_SYSCALL, sig);
}

// A pid namespace's init whose instruction raised a signal it does not catch: natively the kernel
// lets that kill it, but not under ptrace (it drops the signal, and the instruction faults again
// and again). The recorder records the fault and lets go of the task, which faults once more
// and dies as natively; its end is taken as the kernel would have reported it.
void RecordSession::dieOfFaultInInit(RecordedTask& t, const siginfo_t& info) {
  Event e;
  e.type = EventType::Signal;
  e.signal.tid = uint32_t(t.task->tid());
  e.signal.signo = info.si_signo;
  e.signal.fault = true;
  memcpy(e.signal.info, &info, sizeof e.signal.info);
  append(e);
  if (ptrace(PTRACE_DETACH, t.task->tid(), nullptr, nullptr) < 0) failErrno("PTRACE_DETACH");
  requeued_.emplace_back(t.task->tid(), info.si_signo);  // the wait status of death by it
}

}  // namespace rwd
