// rewind-sandbox: starts a replay or debug worker in a sandbox (docs/security.md).
//
//   rewind-sandbox --trace DIR [--memory BYTES] [--cpu SECONDS] [--file-size BYTES]
//                  [--processes N] -- PROGRAM [ARG...]
//
// A process of its own because node has threads and a process with threads cannot enter a new
// user namespace. It enters new user (its uid as root inside, which owns the rest), mount,
// network (no interface up), IPC, UTS and pid namespaces, bounds resources with rlimits (they
// work unprivileged, as root and with cgroups v1; all are inherited by the worker and what it
// starts), and runs:
//
//   rewind-sandbox            waits, and ends as the worker ended (the same status or signal)
//   └ init (pid 1)            mounts the namespace's own /proc, reaps orphans, reports the status
//     └ PROGRAM (pid 2)       the worker; it calls confine() (sandbox.h) once it has loaded
//       └ replayed program    never pid 1, so signals act on it as they did when recorded
//
// Killing rewind-sandbox kills everything inside (init dies with it, and the kernel ends a pid
// namespace with its init). Setup failures exit with 125, as a replay that cannot run does.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "sandbox/sandbox.h"

namespace {

using rwd::sandbox::kConfinedFileSize;

constexpr int kSetupFailed = 125;

struct Options {
  const char* traceDir = nullptr;
  rlim_t memory = rlim_t(4) << 30;
  rlim_t cpuSeconds = 3600;
  rlim_t fileSize = rlim_t(16) << 20;
  rlim_t processes = 1024;
  char** argv = nullptr;
};

[[noreturn]] void die(const std::string& what) {
  fprintf(stderr, "rewind-sandbox: %s: %s\n", what.c_str(), strerror(errno));
  _exit(kSetupFailed);
}

[[noreturn]] void usage(const char* why) {
  fprintf(stderr,
          "rewind-sandbox: %s\nusage: rewind-sandbox --trace DIR [--memory BYTES] [--cpu SECONDS] "
          "[--file-size BYTES] [--processes N] -- PROGRAM [ARG...]\n",
          why);
  _exit(kSetupFailed);
}

rlim_t number(const char* text) {
  char* end;
  errno = 0;
  unsigned long long n = strtoull(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-') usage("not a number");
  return rlim_t(n);
}

Options parse(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
    if (i + 1 >= argc) usage("an option lacks its value");
    std::string opt = argv[i];
    const char* v = argv[i + 1];
    if (opt == "--trace") {
      o.traceDir = v;
    } else if (opt == "--memory") {
      o.memory = number(v);
    } else if (opt == "--cpu") {
      o.cpuSeconds = number(v);
    } else if (opt == "--file-size") {
      o.fileSize = number(v);
    } else if (opt == "--processes") {
      o.processes = number(v);
    } else {
      usage("unknown option");
    }
  }
  if (!o.traceDir || o.traceDir[0] != '/') usage("--trace takes an absolute directory");
  if (i + 1 >= argc) usage("no program to run");
  o.argv = argv + i + 1;
  return o;
}

void writeFile(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text.data(), text.size()) != ssize_t(text.size())) die(path);
  close(fd);
}

void limit(int resource, rlim_t soft, rlim_t hard, const char* name) {
  rlimit r{soft, hard};
  if (setrlimit(resource, &r) != 0) die(name);
}

void enterNamespaces() {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
              CLONE_NEWPID) != 0) {
    die("cannot create namespaces (user namespaces must be enabled)");
  }
  writeFile("/proc/self/setgroups", "deny");
  writeFile("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1");
  writeFile("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
  // Mounts made inside stay inside, and none from outside arrive.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) die("private mounts");
}

void setLimits(const Options& o) {
  // RLIMIT_DATA counts writable private memory: node's large PROT_NONE reservations are not
  // counted (RLIMIT_AS would count them), what the worker allocates is. confine() bounds the
  // replayed program's whole address space by the same number.
  limit(RLIMIT_DATA, o.memory, o.memory, "RLIMIT_DATA");
  // SIGXCPU at the soft limit (the launcher says why the worker died); SIGKILL a little later.
  limit(RLIMIT_CPU, o.cpuSeconds, o.cpuSeconds + 5, "RLIMIT_CPU");
  // --file-size until confine(), which lifts it to the hard limit (sandbox.h), never past the
  // hard limit the server was given.
  rlimit given;
  if (getrlimit(RLIMIT_FSIZE, &given) != 0) die("RLIMIT_FSIZE");
  rlim_t hard = std::min(given.rlim_max, std::max<rlim_t>(o.fileSize, kConfinedFileSize));
  limit(RLIMIT_FSIZE, std::min(o.fileSize, hard), hard, "RLIMIT_FSIZE");
  // Counted per user in the new user namespace, so it bounds the tasks of this sandbox.
  limit(RLIMIT_NPROC, o.processes, o.processes, "RLIMIT_NPROC");
  // 1 byte disables core dumps to files and to a piped core_pattern alike (0 does not stop a
  // pipe): a replayed crash must not hand its memory to a crash handler outside.
  limit(RLIMIT_CORE, 1, 1, "RLIMIT_CORE");
}

// pid 1 of the new pid namespace. `statusFd` takes the worker's wait status; `lifeFd` reads the
// launcher's end of a pipe it never writes, so it hangs up when the launcher is gone.
[[noreturn]] void init(const Options& o, int statusFd, int lifeFd) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die("PR_SET_PDEATHSIG");
  pollfd p{lifeFd, POLLIN, 0};
  if (poll(&p, 1, 0) != 0) _exit(kSetupFailed);  // the launcher died before PDEATHSIG was set
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    die("mount /proc");
  }
  // init leaves the worker its working directory but keeps none itself outside "/": pivot_root
  // moves the root and "/" of every process of the namespace, and nothing else.
  int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cwd < 0 || chdir("/") != 0) die("working directory");
  pid_t worker = fork();
  if (worker < 0) die("fork");
  if (worker == 0) {
    if (fchdir(cwd) != 0) die("working directory");
    if (setenv(rwd::sandbox::kTraceEnv, o.traceDir, 1) != 0) die("setenv");
    execvp(o.argv[0], o.argv);
    die(std::string("cannot run ") + o.argv[0]);
  }
  close(cwd);
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) die("waitpid");
    if (pid != worker) continue;  // an orphan
    if (write(statusFd, &status, sizeof status) != sizeof status) die("report the status");
    _exit(0);  // the kernel kills what is left in the namespace
  }
}

// Ends the launcher the way the worker ended.
[[noreturn]] void endAs(int status, const Options& o) {
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  if (sig == SIGXCPU) {
    fprintf(stderr, "rewind-sandbox: the worker used up its CPU time (%llu s) and was stopped\n",
            static_cast<unsigned long long>(o.cpuSeconds));
  } else if (sig == SIGXFSZ) {
    fprintf(stderr, "rewind-sandbox: the worker wrote a file past the limit (%llu bytes)\n",
            static_cast<unsigned long long>(o.fileSize));
  }
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  raise(sig);
  _exit(128 + sig);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  // Nothing the server had open goes in (the catalogue, sockets).
  if (close_range(3, ~0U, 0) != 0) die("close_range");
  enterNamespaces();
  setLimits(o);
  int status[2], life[2];
  if (pipe2(status, O_CLOEXEC) != 0 || pipe2(life, O_CLOEXEC) != 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(status[0]);
    close(life[1]);
    init(o, status[1], life[0]);
  }
  close(status[1]);
  close(life[0]);
  int st = 0;
  ssize_t n;
  do {
    n = read(status[0], &st, sizeof st);
  } while (n < 0 && errno == EINTR);
  waitpid(child, nullptr, 0);
  if (n != sizeof st) {
    fprintf(stderr, "rewind-sandbox: the sandbox ended before its worker did\n");
    return kSetupFailed;
  }
  endAs(st, o);
}
