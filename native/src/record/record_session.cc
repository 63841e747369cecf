#include "record/record_session.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <cstring>

#include "core/error.h"
#include "core/syscall_table.h"
#include "record/exec_snapshot.h"

namespace rwd {
namespace {

constexpr long kPtraceOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;

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

}  // namespace

// Runs in the forked child before exec: only async-signal-safe calls.
[[noreturn]] static void execTracee(const char* exe, char* const* argv, char* const* envp,
                                    int errFd) {
  ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
  // A program starts with default signal dispositions and nothing blocked, whatever the
  // recorder's own process had set.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // The program gets the recorder's stdin, stdout and stderr even where those are close-on-exec.
  for (int fd = 0; fd <= 2; fd++) fcntl(fd, F_SETFD, 0);
  kill(getpid(), SIGSTOP);
  execve(exe, argv, envp);
  int err = errno;
  if (write(errFd, &err, sizeof err) < 0) _exit(126);
  _exit(127);
}

pid_t spawnTraced(const std::string& exe, const std::vector<std::string>& argv,
                  const std::vector<std::string>& env, int* execErrFd) {
  std::vector<char*> cargv, cenv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const std::string& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  // Tracer and tracee on one CPU: a ptrace stop costs several times less than across CPUs.
  int cpu = sched_getcpu();
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  int errPipe[2];
  if (pipe2(errPipe, O_CLOEXEC) < 0) failErrno("pipe");
  pid_t pid = fork();
  if (pid < 0) failErrno("fork");
  if (pid == 0) execTracee(exe.c_str(), cargv.data(), cenv.data(), errPipe[1]);
  close(errPipe[1]);
  *execErrFd = errPipe[0];
  int status;
  if (waitpid(pid, &status, __WALL) != pid || !WIFSTOPPED(status)) {
    fail(ErrorCode::System, "the traced process did not start");
  }
  if (ptrace(PTRACE_SETOPTIONS, pid, nullptr, reinterpret_cast<void*>(kPtraceOptions)) < 0) {
    failErrno("PTRACE_SETOPTIONS");
  }
  return pid;
}

RecordSession::RecordSession(RecordOptions options)
    : options_(std::move(options)),
      blobs_(options_.traceDir),
      eventsPath_(options_.traceDir + "/events.partial"),
      events_(eventsPath_) {
  fstat(1, &stdout_);
  fstat(2, &stderr_);
}

RecordSession::~RecordSession() {
  if (pid_ > 0 && task_) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, __WALL);
  }
}

uint8_t RecordSession::echoTarget(uint64_t fd) const {
  struct stat st;
  std::string path = "/proc/" + std::to_string(pid_) + "/fd/" + std::to_string(fd);
  if (stat(path.c_str(), &st) < 0) return 0;
  bool out = st.st_dev == stdout_.st_dev && st.st_ino == stdout_.st_ino;
  bool err = st.st_dev == stderr_.st_dev && st.st_ino == stderr_.st_ino;
  if (err && (fd == 2 || !out)) return 2;
  return out ? 1 : 0;
}

RecordResult RecordSession::run() {
  int execErrFd = -1;
  pid_ = spawnTraced(options_.exe, options_.argv, options_.env, &execErrFd);
  task_ = std::make_unique<Task>(pid_);
  task_->resume(PTRACE_SYSCALL);
  RecordResult result;
  for (;;) {
    Stop s = task_->wait();
    if (s.kind == Stop::Exited || s.kind == Stop::Killed) {
      if (!execed_) {
        int err = 0;
        std::string why = "it did not start";
        if (read(execErrFd, &err, sizeof err) == sizeof err) why = strerror(err);
        close(execErrFd);
        pid_ = -1;
        fail(ErrorCode::Exec, "cannot execute " + options_.exe + ": " + why);
      }
      Event e;
      e.type = EventType::Exit;
      e.exit = ExitEvent{uint32_t(pid_), s.status};
      events_.append(e);
      result.waitStatus = s.status;
      pid_ = -1;
      break;
    }
    switch (s.kind) {
      case Stop::SyscallStop:
        inSyscall_ = !inSyscall_;
        if (inSyscall_) {
          onSyscallEntry();
        } else {
          onSyscallExit();
        }
        break;
      case Stop::Event:
        if (s.event == PTRACE_EVENT_EXEC) execPending_ = true;
        task_->resume(PTRACE_SYSCALL);
        break;
      case Stop::Signal:
        onSignal(s.sig);
        break;
      default:
        break;
    }
  }
  close(execErrFd);
  events_.finish();
  blobs_.adopt(eventsPath_, "events");
  result.events = events_.eventCount();
  result.syscalls = syscalls_;
  result.tasks = 1;
  result.blobs = blobs_.blobs();
  return result;
}

void RecordSession::onSyscallEntry() {
  entryRegs_ = task_->regs();
  long nr = long(entryRegs_.orig_rax);
  if (!execed_) {
    // The child's own execve of the program: nothing to record before it.
    task_->resume(PTRACE_SYSCALL);
    return;
  }
  const SyscallSpec* spec = lookupSyscall(nr);
  if (!spec) {
    fail(ErrorCode::Unsupported,
         "the program used syscall " + std::to_string(nr) + ", which rewind cannot record yet");
  }
  if (spec->replay == ReplayAction::Unsupported) {
    bool threadOrProcess = nr == SYS_clone || nr == 435 || nr == SYS_fork || nr == SYS_vfork;
    fail(ErrorCode::Unsupported,
         threadOrProcess
             ? std::string("the program started a new thread or process (") + spec->name +
                   "): recording threads and child processes is not supported yet"
             : std::string("the program used ") + spec->name + ", which is not supported yet");
  }
  uint64_t args[6];
  for (int i = 0; i < 6; i++) args[i] = arg(entryRegs_, i);
  entryValues_ = readEntryValues(*task_, *spec, args);
  if (spec->replay == ReplayAction::Rseq) {
    // Skip it: the kernel returns -ENOSYS and glibc does without rseq.
    Regs r = entryRegs_;
    r.orig_rax = uint64_t(-1);
    task_->setRegs(r);
  }
  if (nr == SYS_exit || nr == SYS_exit_group) {
    // No exit stop follows: the event is complete now.
    Event e;
    e.type = EventType::Syscall;
    e.syscall.tid = uint32_t(pid_);
    e.syscall.nr = int32_t(nr);
    memcpy(e.syscall.args, args, sizeof args);
    events_.append(e);
    syscalls_++;
  }
  task_->resume(PTRACE_SYSCALL);
}

void RecordSession::onSyscallExit() {
  Regs regs = task_->regs();
  long nr = long(entryRegs_.orig_rax);
  int64_t result = int64_t(regs.rax);
  if (execPending_) {
    execPending_ = false;
    execed_ = true;
    task_->reopenMemory();
    Event e;
    e.type = EventType::Exec;
    e.exec = captureExec(*task_, blobs_, options_.exe);
    events_.append(e);
    task_->resume(PTRACE_SYSCALL);
    return;
  }
  if (!execed_) {
    task_->resume(PTRACE_SYSCALL);
    return;
  }
  const SyscallSpec* spec = lookupSyscall(nr);
  Event e;
  e.type = EventType::Syscall;
  SyscallEvent& s = e.syscall;
  s.tid = uint32_t(pid_);
  s.nr = int32_t(nr);
  for (int i = 0; i < 6; i++) s.args[i] = arg(entryRegs_, i);
  s.result = result;
  if (spec->replay == ReplayAction::Emulate) {
    s.writes = captureOutputs(*task_, nr, *spec, s.args, result, entryValues_);
    if (spec->echo && !isError(result)) s.echoFd = echoTarget(s.args[0]);
  }
  if (nr == SYS_mmap && !isError(result) && !(s.args[3] & MAP_ANONYMOUS)) {
    std::string fdPath = "/proc/" + std::to_string(pid_) + "/fd/" + std::to_string(int(s.args[4]));
    int fd = openTraceeFile(fdPath);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      char link[4096];
      ssize_t n = readlink(fdPath.c_str(), link, sizeof link - 1);
      s.blob = blobs_.putFile(fd, n > 0 ? std::string(link, size_t(n)) : fdPath);
    }
    if (fd >= 0) close(fd);
  }
  events_.append(e);
  syscalls_++;
  task_->resume(PTRACE_SYSCALL);
}

bool RecordSession::emulateRdtsc() {
  Regs r = task_->regs();
  uint8_t insn[3] = {};
  if (!task_->tryRead(r.rip, insn, sizeof insn)) return false;
  bool rdtsc = insn[0] == 0x0f && insn[1] == 0x31;
  bool rdtscp = insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9;
  if (!rdtsc && !rdtscp) return false;
  Event e;
  e.type = EventType::Rdtsc;
  RdtscEvent& t = e.rdtsc;
  t.tid = uint32_t(pid_);
  t.rip = r.rip;
  t.rdtscp = rdtscp;
  unsigned aux = 0;
  uint64_t tsc = rdtscp ? __rdtscp(&aux) : __rdtsc();
  t.rax = tsc & 0xffffffff;
  t.rdx = tsc >> 32;
  t.rcx = rdtscp ? aux : r.rcx;
  r.rax = t.rax;
  r.rdx = t.rdx;
  r.rcx = t.rcx;
  r.rip += rdtscp ? 3 : 2;
  task_->setRegs(r);
  events_.append(e);
  task_->resume(PTRACE_SYSCALL);
  return true;
}

void RecordSession::onSignal(int sig) {
  if (!execed_) {
    task_->resume(PTRACE_SYSCALL);  // the child's SIGSTOP before exec
    return;
  }
  siginfo_t info = task_->siginfo();
  if (sig == SIGSEGV && info.si_code == SI_KERNEL && emulateRdtsc()) return;
  Event e;
  e.type = EventType::Signal;
  e.signal.tid = uint32_t(pid_);
  e.signal.signo = sig;
  e.signal.fault = isFault(sig, info);
  memcpy(e.signal.info, &info, sizeof e.signal.info);
  events_.append(e);
  task_->resume(PTRACE_SYSCALL, sig);
}

}  // namespace rwd
