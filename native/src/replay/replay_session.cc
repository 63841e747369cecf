#include "replay/replay_session.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "core/error.h"
#include "core/remote_syscalls.h"
#include "core/syscall_buffers.h"
#include "core/syscall_table.h"

namespace rwd {
namespace {

constexpr long kPtraceOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;

uint64_t pageUp(uint64_t a) { return (a + 4095) & ~uint64_t(4095); }
bool isError(int64_t result) { return result < 0 && result > -4096; }

void entryArgs(const Regs& r, uint64_t* args) {
  args[0] = r.rdi;
  args[1] = r.rsi;
  args[2] = r.rdx;
  args[3] = r.r10;
  args[4] = r.r8;
  args[5] = r.r9;
}

// Writes all of `data` to `fd`, waiting when the fd is non-blocking and full.
void writeOut(int fd, const uint8_t* data, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, -1);
        continue;
      }
      return;  // the reader went away: replay goes on, as the program did
    }
    data += n;
    len -= size_t(n);
  }
}

}  // namespace

[[noreturn]] static void execStub(const char* stub) {
  ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  kill(getpid(), SIGSTOP);
  char* argv[] = {const_cast<char*>(stub), nullptr};
  char* envp[] = {nullptr};
  execve(stub, argv, envp);
  _exit(127);
}

ReplaySession::ReplaySession(ReplayOptions options)
    : options_(std::move(options)),
      blobDir_(options_.traceDir + "/blobs"),
      reader_(blobDir_ + "/" + options_.eventsBlob) {}

ReplaySession::~ReplaySession() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, __WALL);
  }
}

bool ReplaySession::nextEvent() {
  eventIndex_ = reader_.position();
  haveNext_ = reader_.next(next_);
  return haveNext_;
}

void ReplaySession::diverged(const std::string& got) {
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
  fail(ErrorCode::Diverged, "replay diverged at event " + std::to_string(eventIndex_) +
                                ": expected " + expected + ", got " + got);
}

void ReplaySession::spawnStub() {
  // Same CPU for tracer and tracee, as when recording.
  int cpu = sched_getcpu();
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  if (access(options_.stubPath.c_str(), X_OK) != 0) failErrno("replay stub " + options_.stubPath);
  pid_ = fork();
  if (pid_ < 0) failErrno("fork");
  if (pid_ == 0) execStub(options_.stubPath.c_str());
  task_ = std::make_unique<Task>(pid_);
  Stop s = task_->wait();
  if (s.kind != Stop::Signal) fail(ErrorCode::System, "the replay stub did not start");
  if (ptrace(PTRACE_SETOPTIONS, pid_, nullptr, reinterpret_cast<void*>(kPtraceOptions)) < 0) {
    failErrno("PTRACE_SETOPTIONS");
  }
  // execve entry, the exec event, then the exit stop where the address space is rebuilt.
  for (;;) {
    task_->resume(PTRACE_SYSCALL);
    s = task_->wait();
    if (s.kind == Stop::Event && s.event == PTRACE_EVENT_EXEC) break;
    if (s.kind != Stop::SyscallStop) fail(ErrorCode::System, "the replay stub did not exec");
  }
  task_->resume(PTRACE_SYSCALL);
  task_->wait();
  task_->reopenMemory();
}

ReplayResult ReplaySession::run() {
  if (!nextEvent() || next_.type != EventType::Exec) {
    fail(ErrorCode::BadTrace, "the trace does not start with an exec");
  }
  spawnStub();
  stub_ = buildAddressSpace(*task_, next_.exec, blobDir_);
  brkEnd_ = pageUp(next_.exec.brkStart);
  nextEvent();
  while (!done_) {
    injectPendingSignal();
    task_->resume(PTRACE_SYSEMU, deliverSig_);
    deliverSig_ = 0;
    Stop s = task_->wait();
    switch (s.kind) {
      case Stop::SyscallStop:
        onSyscall();
        break;
      case Stop::Signal:
        onSignal(s.sig);
        break;
      case Stop::Event:
        break;
      case Stop::Exited:
      case Stop::Killed: {
        pid_ = -1;
        std::string got = s.kind == Stop::Exited
                              ? "exit with status " + std::to_string(WEXITSTATUS(s.status))
                              : "death by " + signalName(s.sig);
        if (!haveNext_ || next_.type != EventType::Exit || next_.exit.waitStatus != s.status) {
          diverged(got);
        }
        waitStatus_ = s.status;
        done_ = true;
        break;
      }
    }
  }
  ReplayResult result;
  result.waitStatus = waitStatus_;
  result.events = eventIndex_ + 1;
  return result;
}

// A signal the recording saw delivered right here but that replay will not raise by itself
// (it came from another process or from an emulated syscall): send it now.
void ReplaySession::injectPendingSignal() {
  if (!haveNext_ || next_.type != EventType::Signal || next_.signal.fault) return;
  syscall(SYS_tgkill, pid_, pid_, next_.signal.signo);
}

void ReplaySession::onSignal(int sig) {
  Regs r = task_->regs();
  if (sig == SIGSEGV && haveNext_ && next_.type == EventType::Rdtsc && next_.rdtsc.rip == r.rip) {
    const RdtscEvent& t = next_.rdtsc;
    r.rax = t.rax;
    r.rdx = t.rdx;
    if (t.rdtscp) r.rcx = t.rcx;
    r.rip += t.rdtscp ? 3 : 2;
    task_->setRegs(r);
    nextEvent();
    return;
  }
  if (!haveNext_ || next_.type != EventType::Signal || next_.signal.signo != sig) {
    char where[64];
    snprintf(where, sizeof where, " at ip 0x%llx", (unsigned long long)r.rip);
    diverged(signalName(sig) + where);
  }
  siginfo_t info;
  memcpy(&info, next_.signal.info, sizeof info);
  task_->setSiginfo(info);
  deliverSig_ = sig;
  nextEvent();
}

void ReplaySession::onSyscall() {
  Regs r = task_->regs();
  long nr = long(r.orig_rax);
  uint64_t args[6];
  entryArgs(r, args);
  const SyscallSpec* spec = lookupSyscall(nr);
  int nargs = spec ? spec->nargs : 6;
  bool isExec = haveNext_ && next_.type == EventType::Exec;
  if (isExec && (nr == SYS_execve || nr == SYS_execveat)) return execInPlace(r);
  if (!spec || !haveNext_ || next_.type != EventType::Syscall || next_.syscall.nr != nr ||
      memcmp(next_.syscall.args, args, size_t(nargs) * sizeof(uint64_t)) != 0) {
    diverged(describeSyscall(nr, args, nargs));
  }
  SyscallEvent ev = std::move(next_.syscall);
  nextEvent();
  switch (spec->replay) {
    case ReplayAction::Emulate:
    case ReplayAction::Rseq:
    case ReplayAction::Execve:  // a failed execve
      return emulate(r, ev);
    case ReplayAction::Execute:
    case ReplayAction::Mremap:
      return replayExecuted(ev);
    case ReplayAction::Mmap:
      return replayMmap(r, ev);
    case ReplayAction::Brk:
      return replayBrk(r, ev);
    case ReplayAction::InPlace: {
      Stop s = runInPlace(r);
      if (s.kind == Stop::Exited || s.kind == Stop::Killed) {
        pid_ = -1;
        if (!haveNext_ || next_.type != EventType::Exit || next_.exit.waitStatus != s.status) {
          diverged("exit with status " + std::to_string(s.status));
        }
        waitStatus_ = s.status;
        done_ = true;
      }
      return;
    }
    case ReplayAction::Unsupported:
      diverged(describeSyscall(nr, args, nargs));
  }
}

void ReplaySession::finishSyscall(Regs r, int64_t result) {
  r.rax = uint64_t(result);
  task_->setRegs(r);
}

void ReplaySession::emulate(Regs r, const SyscallEvent& ev) {
  for (const MemoryWrite& w : ev.writes) task_->write(w.addr, w.data.data(), w.data.size());
  if (ev.echoFd) echo(ev);
  finishSyscall(r, ev.result);
}

void ReplaySession::echo(const SyscallEvent& ev) {
  std::vector<uint8_t> data = writtenBytes(*task_, ev.nr, ev.args, ev.result);
  writeOut(ev.echoFd == 2 ? options_.stderrFd : options_.stdoutFd, data.data(), data.size());
}

void ReplaySession::replayExecuted(const SyscallEvent& ev) {
  uint64_t a[6];
  memcpy(a, ev.args, sizeof a);
  if (ev.nr == SYS_mremap && !isError(ev.result) && uint64_t(ev.result) != a[0]) {
    // It moved when recorded: move it to the same place.
    a[3] |= MREMAP_MAYMOVE | MREMAP_FIXED;
    a[4] = uint64_t(ev.result);
  }
  long got;
  {
    RemoteSyscalls remote(*task_, stub_.gadget);
    got = remote.call(ev.nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  }
  if (got != ev.result) {
    fail(ErrorCode::Diverged, "replay diverged at event " + std::to_string(eventIndex_ - 1) + ": " +
                                  describeSyscall(ev.nr, ev.args, 6) + " returned " +
                                  std::to_string(got) + ", recorded " + std::to_string(ev.result));
  }
  // Registers as the syscall left them: arch_prctl changes fs_base.
  finishSyscall(task_->regs(), ev.result);
}

void ReplaySession::replayMmap(Regs r, const SyscallEvent& ev) {
  if (isError(ev.result)) return finishSyscall(r, ev.result);
  uint64_t addr = uint64_t(ev.result), len = ev.args[1], prot = ev.args[2], flags = ev.args[3];
  flags = (flags & ~uint64_t(MAP_FIXED_NOREPLACE)) | MAP_FIXED;
  long got;
  {
    RemoteSyscalls remote(*task_, stub_.gadget);
    if (ev.blob.empty()) {
      // Anonymous memory, or a device like /dev/zero that maps as anonymous memory.
      got = remote.call(SYS_mmap, addr, len, prot, flags | MAP_ANONYMOUS, uint64_t(-1), 0);
    } else {
      uint64_t path = putScratchString(*task_, stub_, blobDir_ + "/" + ev.blob);
      long fd = remote.check("opening a captured file", SYS_open, path, O_RDONLY | O_CLOEXEC);
      // Writes to a shared file mapping stay in the replayed process.
      flags = (flags & ~uint64_t(MAP_SHARED | MAP_SHARED_VALIDATE)) | MAP_PRIVATE;
      got = remote.call(SYS_mmap, addr, len, prot, flags, uint64_t(fd), ev.args[5]);
      remote.call(SYS_close, uint64_t(fd));
    }
  }
  if (got != ev.result) {
    fail(ErrorCode::Diverged, "replay diverged at event " + std::to_string(eventIndex_ - 1) +
                                  ": mmap at the recorded address failed (" + std::to_string(got) +
                                  ")");
  }
  finishSyscall(r, ev.result);
}

void ReplaySession::replayBrk(Regs r, const SyscallEvent& ev) {
  uint64_t target = pageUp(uint64_t(ev.result));
  if (target != brkEnd_) {
    RemoteSyscalls remote(*task_, stub_.gadget);
    if (target > brkEnd_) {
      remote.check("growing the heap", SYS_mmap, brkEnd_, target - brkEnd_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, uint64_t(-1), 0);
    } else {
      remote.check("shrinking the heap", SYS_munmap, target, brkEnd_ - target);
    }
    brkEnd_ = target;
  }
  finishSyscall(r, ev.result);
}

Stop ReplaySession::runInPlace(const Regs& at) {
  Regs r = at;
  uint64_t insn = r.rip - 2;
  r.rip = insn;
  r.rax = r.orig_rax;
  task_->setRegs(r);
  // As in RemoteSyscalls: skip the exit stop of the syscall PTRACE_SYSEMU skipped.
  for (;;) {
    task_->resume(PTRACE_SYSCALL);
    Stop s = task_->wait();
    if (s.kind != Stop::SyscallStop) return s;
    if (task_->regs().rip == insn + 2) break;
  }
  task_->resume(PTRACE_SYSCALL);
  return task_->wait();
}

void ReplaySession::execInPlace(const Regs& at) {
  // Exec the stub again: the kernel resets what exec resets, then the recorded address space
  // is rebuilt around the stub as at the start.
  Regs r = at;
  uint64_t path = putScratchString(*task_, stub_, options_.stubPath);
  uint64_t argv[2] = {path, 0};
  uint64_t arrays = stub_.scratch + 4096;
  task_->write(arrays, argv, sizeof argv);
  r.orig_rax = SYS_execve;
  r.rdi = path;
  r.rsi = arrays;
  r.rdx = arrays + 8;
  Stop s = runInPlace(r);
  if (s.kind != Stop::Event || s.event != PTRACE_EVENT_EXEC) {
    fail(ErrorCode::System, "replay could not exec the stub");
  }
  task_->resume(PTRACE_SYSCALL);
  task_->wait();
  task_->reopenMemory();
  stub_ = buildAddressSpace(*task_, next_.exec, blobDir_);
  brkEnd_ = pageUp(next_.exec.brkStart);
  nextEvent();
}

}  // namespace rwd
