#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "replay/trace_blobs.h"
#include "sandbox/sandbox.h"
#include "sandbox/seccomp.h"

namespace rwd::sandbox {
namespace {

// A file descriptor closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int openPath(const std::string& path, int flags) {
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC | flags);
  if (fd < 0) failErrno("open " + path);
  return fd;
}

// Creates `root` + every directory of `path` (an absolute path).
void makeDirs(const std::string& root, const std::string& path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string dir = root + path.substr(0, slash);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) failErrno("mkdir " + dir);
  }
  std::string last = root + path;
  if (mkdir(last.c_str(), 0755) != 0 && errno != EEXIST) failErrno("mkdir " + last);
}

// The flags of the mount `path` is on that a user namespace may not change (they are locked
// when the mount comes from a more privileged namespace): a remount must repeat them.
unsigned long lockedFlags(const std::string& path) {
  struct statvfs s;
  if (statvfs(path.c_str(), &s) != 0) failErrno("statvfs " + path);
  unsigned long flags = 0;
  if (s.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (s.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (s.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (s.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (s.f_flag & ST_NOATIME) {
    flags |= MS_NOATIME;
  } else if (s.f_flag & ST_RELATIME) {
    flags |= MS_RELATIME;
  } else {
    flags |= MS_STRICTATIME;
  }
  return flags;
}

// Binds the file or directory `fd` names at `target`, read-only. Through /proc/self/fd, so that
// the source is the one opened before the new root was mounted over it.
void bindReadOnly(const Fd& fd, const std::string& target) {
  std::string source = "/proc/self/fd/" + std::to_string(fd.get());
  if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    failErrno("bind " + target);
  }
  unsigned long flags =
      MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | lockedFlags(target);
  if (mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0) {
    failErrno("remount read-only " + target);
  }
}

// A /proc of this pid namespace (the sandbox's processes), and only of its processes where the
// kernel can hide the rest (subset=pid, Linux 5.8).
void mountProc(const std::string& target) {
  unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (mount("proc", target.c_str(), "proc", flags, "subset=pid") == 0) return;
  if (errno != EINVAL || mount("proc", target.c_str(), "proc", flags, nullptr) != 0) {
    failErrno("mount /proc");
  }
}

// A directory open from before would lead out of the new root (openat(fd, "..")).
void checkNoDirectoryOpen() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) failErrno("opendir /proc/self/fd");
  std::string open;
  while (dirent* e = readdir(d)) {
    int fd = atoi(e->d_name);
    struct stat st;
    if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) open += " " + std::to_string(fd);
  }
  closedir(d);
  if (!open.empty())
    fail(ErrorCode::System, "sandbox: directories are still open (fd" + open + ")");
}

static_assert(kConfinedFileSize == kMaxFileSize, "a confined worker can hold any file of a trace");

rlim_t traceeAddressSpace = RLIM_INFINITY;

// In every process forked after confinement (the replayed program, whose checkpoints are forks
// of it): an address-space bound, which counts shared memory too. The worker itself has
// RLIMIT_DATA instead: node reserves far more address space than it uses.
void limitChild() {
  rlimit r{traceeAddressSpace, traceeAddressSpace};
  setrlimit(RLIMIT_AS, &r);
}

// An absolute path without ".", ".." or empty components: it names the same place before and
// after the root changes.
bool normalAbsolute(const std::string& p) {
  if (p.size() < 2 || p[0] != '/' || p.back() == '/') return false;
  std::string padded = p + "/";
  for (const char* bad : {"//", "/./", "/../"}) {
    if (padded.find(bad) != std::string::npos) return false;
  }
  return true;
}

// Builds the new root over `traceDir`: a small tmpfs (mounted over the trace directory of this
// mount namespace only; the launcher's namespace sees nothing of it) holding the trace and the
// stub, read-only, at their own paths, and a /proc.
void buildRoot(const std::string& traceDir, const std::string& stubPath) {
  Fd trace(openPath(traceDir, O_DIRECTORY));
  Fd stub(openPath(stubPath, 0));
  const std::string& root = traceDir;
  if (mount("tmpfs", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0) {
    failErrno("mount the sandbox's root");
  }
  makeDirs(root, traceDir);
  bindReadOnly(trace, root + traceDir);
  makeDirs(root, stubPath.substr(0, stubPath.rfind('/')));
  std::string stubAt = root + stubPath;
  if (Fd(open(stubAt.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0755)).get() < 0) {
    failErrno("create " + stubAt);
  }
  bindReadOnly(stub, stubAt);
  makeDirs(root, "/proc");
  mountProc(root + "/proc");
  if (mount(nullptr, root.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
            nullptr) != 0) {
    failErrno("remount the sandbox's root read-only");
  }
}

}  // namespace

bool confine(const std::string& traceDir, const std::string& stubPath) {
  const char* expected = getenv(kTraceEnv);
  if (!expected) return false;
  if (traceDir != expected) {
    fail(ErrorCode::System,
         "sandbox: started for " + std::string(expected) + ", not for " + traceDir);
  }
  for (const std::string* p : {&traceDir, &stubPath}) {
    if (!normalAbsolute(*p)) fail(ErrorCode::System, "sandbox: not a normal absolute path: " + *p);
  }
  buildRoot(traceDir, stubPath);

  // Every thread (their root and working directory) moves to the new root; the old one is
  // detached from the namespace and unreachable by any path. (The new root is mounted at
  // traceDir; then traceDir is the trace's path inside it.)
  if (chdir(traceDir.c_str()) != 0) failErrno("chdir " + traceDir);
  if (syscall(SYS_pivot_root, ".", ".") != 0) failErrno("pivot_root");
  if (umount2(".", MNT_DETACH) != 0) failErrno("detach the old root");
  if (chdir(traceDir.c_str()) != 0) failErrno("chdir " + traceDir);
  checkNoDirectoryOpen();

  // Only memfds are writable now: their length is a trace's to say (replay refuses lengths past
  // kConfinedFileSize), what they hold the memory bound's (replay/file_memory.h).
  rlimit fileSize;
  if (getrlimit(RLIMIT_FSIZE, &fileSize) != 0) failErrno("getrlimit");
  fileSize.rlim_cur = fileSize.rlim_max;
  if (setrlimit(RLIMIT_FSIZE, &fileSize) != 0) failErrno("lift the file-size bound");

  rlimit data;
  if (getrlimit(RLIMIT_DATA, &data) != 0) failErrno("getrlimit");
  traceeAddressSpace = data.rlim_cur;
  if (traceeAddressSpace != RLIM_INFINITY && pthread_atfork(nullptr, nullptr, limitChild) != 0) {
    fail(ErrorCode::System, "pthread_atfork failed");
  }
  installSeccompFilter();
  return true;
}

}  // namespace rwd::sandbox
