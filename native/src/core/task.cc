#include "core/task.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"

namespace rwd {
namespace {

// Throws TaskGone for a task that vanished (ESRCH), a System error otherwise.
[[noreturn]] void failPtrace(const std::string& what) {
  if (errno == ESRCH) throw TaskGone(what + ": " + strerror(errno));
  failErrno(what);
}

}  // namespace

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::Unsupported:
      return "EUNSUPPORTED";
    case ErrorCode::Diverged:
      return "EDIVERGED";
    case ErrorCode::BadTrace:
      return "EBADTRACE";
    case ErrorCode::Exec:
      return "EEXEC";
    case ErrorCode::System:
      return "ESYSTEM";
  }
  return "ESYSTEM";
}

void failErrno(const std::string& what) { fail(ErrorCode::System, what + ": " + strerror(errno)); }

Stop Stop::fromWaitStatus(int status) {
  Stop s{};
  s.status = status;
  if (WIFEXITED(status)) {
    s.kind = Exited;
  } else if (WIFSIGNALED(status)) {
    s.kind = Killed;
    s.sig = WTERMSIG(status);
  } else if (WSTOPSIG(status) == (SIGTRAP | 0x80)) {
    s.kind = SyscallStop;
  } else if ((status >> 16) != 0) {
    s.kind = Event;
    s.event = status >> 16;
    s.sig = WSTOPSIG(status);
  } else {
    s.kind = Signal;
    s.sig = WSTOPSIG(status);
  }
  return s;
}

void killAndReap(std::vector<pid_t> tids) {
  for (pid_t tid : tids) kill(tid, SIGKILL);
  for (int round = 0; round < 2000 && !tids.empty(); round++) {
    for (size_t i = 0; i < tids.size();) {
      int status;
      pid_t r = waitpid(tids[i], &status, __WALL | WNOHANG);
      if ((r == tids[i] && (WIFEXITED(status) || WIFSIGNALED(status))) ||
          (r < 0 && errno == ECHILD)) {
        tids.erase(tids.begin() + long(i));
      } else {
        // The recorder's tracees stop on their way out (PTRACE_EVENT_EXIT): on they go.
        if (r == tids[i] && WIFSTOPPED(status)) ptrace(PTRACE_CONT, tids[i], nullptr, nullptr);
        i++;
      }
    }
    if (!tids.empty()) usleep(1000);
  }
}

uint64_t stackHash(const Task& task, uint64_t rsp) {
  uint8_t top[256] = {};
  task.tryRead(rsp, top, sizeof top);
  return fnv1a(top, sizeof top);
}

bool samePosition(const Regs& a, const Regs& b) {
  constexpr uint64_t kPtraceFlags = 0x10100;  // TF, RF
  return a.rip == b.rip && a.rsp == b.rsp && a.rax == b.rax && a.rbx == b.rbx && a.rcx == b.rcx &&
         a.rdx == b.rdx && a.rsi == b.rsi && a.rdi == b.rdi && a.rbp == b.rbp && a.r8 == b.r8 &&
         a.r9 == b.r9 && a.r10 == b.r10 && a.r11 == b.r11 && a.r12 == b.r12 && a.r13 == b.r13 &&
         a.r14 == b.r14 && a.r15 == b.r15 &&
         (a.eflags & ~kPtraceFlags) == (b.eflags & ~kPtraceFlags) && a.fs_base == b.fs_base;
}

Task::Task(pid_t tid) : tid_(tid) { reopenMemory(); }

Task::~Task() {
  if (memFd_ >= 0) close(memFd_);
}

void Task::reopenMemory() {
  if (memFd_ >= 0) close(memFd_);
  std::string path = "/proc/" + std::to_string(tid_) + "/mem";
  memFd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  // A task that vanished already (killed as it was created) has no memory to read: its end is
  // reported next.
  if (memFd_ < 0 && errno != ESRCH && errno != ENOENT) failErrno("open " + path);
}

Regs Task::regs() const {
  if (regsKnown_) return regs_;
  Regs r;
  if (ptrace(PTRACE_GETREGS, tid_, nullptr, &r) < 0) failPtrace("PTRACE_GETREGS");
  regs_ = r;
  regsKnown_ = keepRegs_;
  return r;
}

void Task::setRegs(const Regs& r) {
  // The kernel keeps the flags' bits a tracer may not set: what it stored is `r` only when the
  // flags are those it gave.
  const bool same = regsKnown_ && r.eflags == regs_.eflags;
  regsKnown_ = false;
  if (ptrace(PTRACE_SETREGS, tid_, nullptr, &r) < 0) failPtrace("PTRACE_SETREGS");
  regs_ = r;
  regsKnown_ = same;
}

siginfo_t Task::siginfo() const {
  siginfo_t info;
  if (ptrace(PTRACE_GETSIGINFO, tid_, nullptr, &info) < 0) failPtrace("PTRACE_GETSIGINFO");
  return info;
}

std::set<int> Task::pendingSignals() const {
  std::set<int> sigs;
  for (uint32_t queue : {0u, uint32_t(PTRACE_PEEKSIGINFO_SHARED)}) {
    siginfo_t infos[16];
    __ptrace_peeksiginfo_args args{0, queue, 16};
    long n = ptrace(PTRACE_PEEKSIGINFO, tid_, &args, infos);
    for (long i = 0; i < n; i++) sigs.insert(infos[i].si_signo);
  }
  return sigs;
}

void Task::sendSignal(int sig) {
  if (syscall(SYS_tkill, tid_, sig) < 0) failErrno("tkill");
}

void Task::setSiginfo(const siginfo_t& info) {
  if (ptrace(PTRACE_SETSIGINFO, tid_, nullptr, &info) < 0) failPtrace("PTRACE_SETSIGINFO");
}

bool Task::tryRead(uint64_t addr, void* buf, size_t len) const {
  auto* out = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = pread(memFd_, out, len, static_cast<off_t>(addr));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    out += n;
    addr += n;
    len -= n;
  }
  return true;
}

void Task::read(uint64_t addr, void* buf, size_t len) const {
  if (!tryRead(addr, buf, len)) {
    char where[64];
    snprintf(where, sizeof where, "read %zu bytes at 0x%llx", len, (unsigned long long)addr);
    failErrno(where);
  }
}

std::vector<uint8_t> Task::readBytes(uint64_t addr, size_t len) const {
  std::vector<uint8_t> out(len);
  read(addr, out.data(), len);
  return out;
}

std::string Task::readCString(uint64_t addr, size_t max) const {
  std::string s;
  char chunk[256];
  while (s.size() < max) {
    // Read up to the end of the page so an unmapped next page does not fail the read.
    size_t toPageEnd = 4096 - (addr & 4095);
    size_t n = std::min(sizeof chunk, toPageEnd);
    if (!tryRead(addr, chunk, n)) break;
    for (size_t i = 0; i < n; i++) {
      if (chunk[i] == 0) return s;
      s.push_back(chunk[i]);
    }
    addr += n;
  }
  return s;
}

bool Task::tryWrite(uint64_t addr, const void* buf, size_t len) {
  return pwrite(memFd_, buf, len, static_cast<off_t>(addr)) == ssize_t(len);
}

void Task::write(uint64_t addr, const void* buf, size_t len) {
  auto* in = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = pwrite(memFd_, in, len, static_cast<off_t>(addr));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      char where[64];
      snprintf(where, sizeof where, "write %zu bytes at 0x%llx", len, (unsigned long long)addr);
      failErrno(where);
    }
    in += n;
    addr += n;
    len -= n;
  }
}

bool Task::inCompatSyscall() const {
  __ptrace_syscall_info info{};
  if (ptrace(PTRACE_GET_SYSCALL_INFO, tid_, sizeof info, &info) <= 0) return false;
  return info.arch == AUDIT_ARCH_I386;
}

bool Task::atSyscallEntry() const {
  __ptrace_syscall_info info{};
  if (ptrace(PTRACE_GET_SYSCALL_INFO, tid_, sizeof info, &info) <= 0)
    failPtrace("PTRACE_GET_SYSCALL_INFO");
  return info.op == PTRACE_SYSCALL_INFO_ENTRY;
}

void Task::resume(int request, int sig) {
  regsKnown_ = false;
  if (request == PTRACE_SYSCALL && seccompStops_ && !inSyscall_) request = PTRACE_CONT;
  if (ptrace(static_cast<__ptrace_request>(request), tid_, nullptr,
             reinterpret_cast<void*>(static_cast<intptr_t>(sig))) < 0) {
    failPtrace("ptrace resume");
  }
}

Stop Task::wait() {
  int status;
  for (;;) {
    pid_t r = waitpid(tid_, &status, __WALL);
    if (r == tid_) return Stop::fromWaitStatus(status);
    if (r < 0 && errno != EINTR) failErrno("waitpid");
  }
}

uint64_t blockedSignals(const Task& task) {
  uint64_t mask = 0;
  if (ptrace(PTRACE_GETSIGMASK, task.tid(), sizeof mask, &mask) < 0) return 0;
  return mask;
}

void reblockForcedSigsegv(const Task& task, uint64_t mask) {
  const uint64_t segv = uint64_t(1) << (SIGSEGV - 1);
  if (!(mask & segv)) return;  // nothing was unblocked
  uint64_t now = blockedSignals(task);
  if (now != mask && (now | segv) == mask) {
    ptrace(PTRACE_SETSIGMASK, task.tid(), sizeof mask, &mask);
  }
}

bool isChildEnd(const Task& task, const Stop& s) {
  return s.kind == Stop::Signal && s.sig == SIGCHLD && task.siginfo().si_code > 0;
}

}  // namespace rwd
