#include "core/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>

#include "core/error.h"

namespace rwd {
namespace {

// A NULL-terminated array of the strings, for exec (they must outlive it).
std::vector<char*> cStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// Runs in the forked child before exec: only async-signal-safe calls. A child to be seized
// (`pgid` >= 0) joins process group `pgid` instead of asking to be traced.
[[noreturn]] void execTracee(const char* exe, char* const* argv, char* const* envp, int errFd,
                             pid_t pgid) {
  if (pgid < 0) {
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
  } else {
    setpgid(0, pgid);
  }
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

}  // namespace

int pinToCpu(int cpu) {
  if (cpu < 0) cpu = sched_getcpu();
  if (cpu < 0 || cpu >= CPU_SETSIZE) return -1;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0 ? cpu : -1;
}

pid_t spawnTraced(const std::string& exe, const std::vector<std::string>& argv,
                  const std::vector<std::string>& env, int* execErrFd) {
  std::vector<char*> cargv = cStrings(argv), cenv = cStrings(env);

  int errPipe[2];
  if (pipe2(errPipe, O_CLOEXEC) < 0) failErrno("pipe");
  pid_t pid = fork();
  if (pid < 0) failErrno("fork");
  if (pid == 0) execTracee(exe.c_str(), cargv.data(), cenv.data(), errPipe[1], -1);
  close(errPipe[1]);
  *execErrFd = errPipe[0];
  int status;
  if (waitpid(pid, &status, __WALL) != pid || !WIFSTOPPED(status)) {
    fail(ErrorCode::System, "the traced process did not start: " + exe);
  }
  if (ptrace(PTRACE_SETOPTIONS, pid, nullptr, reinterpret_cast<void*>(kPtraceOptions)) < 0) {
    failErrno("PTRACE_SETOPTIONS");
  }
  return pid;
}

TerminalForeground::TerminalForeground(pid_t pgid) {
  handedOver_ = isatty(0) && tcgetpgrp(0) == getpgrp() && tcsetpgrp(0, pgid) == 0;
}

TerminalForeground::~TerminalForeground() {
  if (!handedOver_) return;
  // Taken back from the background, which the kernel allows only with SIGTTOU blocked.
  sigset_t ttou, old;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  pthread_sigmask(SIG_BLOCK, &ttou, &old);
  tcsetpgrp(0, getpgrp());
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// The recorded program's process group. It must not lead it: a group leader cannot call setsid(),
// which a program run from a shell can (daemons do). A helper that only holds the group open
// until the program joins it leads it, as a shell leads the group of the commands it forks.
pid_t spawnRecorded(const std::string& exe, const std::vector<std::string>& argv,
                    const std::vector<std::string>& env, int* execErrFd, pid_t* pgid) {
  std::vector<char*> cargv = cStrings(argv), cenv = cStrings(env);

  int errPipe[2];
  if (pipe2(errPipe, O_CLOEXEC) < 0) failErrno("pipe");
  pid_t leader = fork();
  if (leader < 0) failErrno("fork");
  if (leader == 0) {
    setpgid(0, 0);
    for (;;) pause();
  }
  setpgid(leader, leader);  // the child does the same: whichever comes first
  pid_t pid = fork();
  if (pid < 0) failErrno("fork");
  if (pid == 0) execTracee(exe.c_str(), cargv.data(), cenv.data(), errPipe[1], leader);
  close(errPipe[1]);
  *execErrFd = errPipe[0];
  setpgid(pid, leader);
  int status;
  bool stopped = waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status);
  kill(leader, SIGKILL);  // the program is in the group (it stopped itself after joining)
  while (waitpid(leader, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (!stopped) fail(ErrorCode::System, "the traced process did not start: " + exe);
  *pgid = leader;
  // Seized, not traced by request: a stop of its group is then a stop of its own kind
  // (PTRACE_EVENT_STOP), which the tracer can leave in force (PTRACE_LISTEN) as the kernel would.
  if (ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(kRecordPtraceOptions)) < 0) {
    failErrno("PTRACE_SEIZE");
  }
  // Seized while stopped, it stops again for the tracer; then its own SIGSTOP is undone.
  if (waitpid(pid, &status, __WALL) != pid || !WIFSTOPPED(status)) {
    fail(ErrorCode::System, "the traced process did not stop: " + exe);
  }
  kill(pid, SIGCONT);
  return pid;
}

}  // namespace rwd
