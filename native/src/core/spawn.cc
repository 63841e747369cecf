#include "core/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "core/error.h"

namespace rwd {
namespace {

// Runs in the forked child before exec: only async-signal-safe calls.
[[noreturn]] void execTracee(const char* exe, char* const* argv, char* const* envp, int errFd) {
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
  std::vector<char*> cargv, cenv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const std::string& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  int errPipe[2];
  if (pipe2(errPipe, O_CLOEXEC) < 0) failErrno("pipe");
  pid_t pid = fork();
  if (pid < 0) failErrno("fork");
  if (pid == 0) execTracee(exe.c_str(), cargv.data(), cenv.data(), errPipe[1]);
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

}  // namespace rwd
