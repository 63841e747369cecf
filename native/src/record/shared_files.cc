#include "record/shared_files.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/proc_files.h"
#include "core/syscall_table.h"

namespace rwd {
namespace {

// An offset of -1 (pwritev2): the write went where the file position was.
constexpr uint64_t kAtPosition = ~uint64_t(0);
// The most of a file mapped shared that one fallocate may zero (it is recorded as zeros).
constexpr uint64_t kMaxZeroedRange = uint64_t(64) << 20;

// The file position of the task's descriptor `fd`, from /proc/PID/fdinfo.
uint64_t filePosition(pid_t tid, uint64_t fd) {
  return uint64_t(procFdinfo(tid, fd).number("pos", 10, 0));
}

std::string fdPath(pid_t tid, uint64_t fd) {
  return "/proc/" + std::to_string(tid) + "/fd/" + std::to_string(fd);
}

}  // namespace

uint64_t SharedFiles::mapped(int tracerFd) {
  struct stat st;
  if (fstat(tracerFd, &st) < 0) failErrno("stat a file mapped shared");
  return mapped(st.st_dev, st.st_ino);
}

uint64_t SharedFiles::mapped(dev_t dev, ino_t inode) {
  auto [it, added] = ids_.emplace(std::make_pair(dev, inode), ids_.size() + 1);
  return it->second;
}

void SharedFiles::captureChange(const Task& task, long nr, int64_t result, SyscallEvent& s) const {
  if (ids_.empty() || (result < 0 && result > -4096)) return;
  int fdArg = 0;
  switch (nr) {
    case SYS_write:
    case SYS_writev:
    case SYS_pwrite64:
    case SYS_pwritev:
    case SYS_pwritev2:
    case SYS_ftruncate:
    case SYS_fallocate:
    case SYS_sendfile:
      break;
    case SYS_copy_file_range:
    case SYS_splice:
      fdArg = 2;
      break;
    case SYS_truncate:
      fdArg = -1;
      break;
    default:
      return;
  }
  std::string path = fdArg >= 0 ? fdPath(task.tid(), s.args[fdArg]) : task.readCString(s.args[0]);
  if (fdArg < 0 && path.rfind('/', 0) != 0) {
    path = "/proc/" + std::to_string(task.tid()) + "/cwd/" + path;
  }
  struct stat st;
  if (stat(path.c_str(), &st) < 0 || !S_ISREG(st.st_mode)) return;
  auto it = ids_.find({st.st_dev, st.st_ino});
  if (it == ids_.end()) return;
  // A hole punched or a range zeroed reads as zeros: replay writes them (a bounded amount).
  const bool zeroed = nr == SYS_fallocate &&
                      (s.args[1] & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) &&
                      !(s.args[1] & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) &&
                      s.args[3] <= kMaxZeroedRange;
  const bool moved = nr == SYS_fallocate && !zeroed &&
                     (s.args[1] & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
                                   FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE));
  if (nr == SYS_sendfile || nr == SYS_copy_file_range || nr == SYS_splice || moved) {
    fail(ErrorCode::Unsupported, std::string("the program changed a file it maps shared with ") +
                                     syscallName(nr) + ", which rewind cannot record yet");
  }
  s.file = it->second;
  s.fileSize = uint64_t(st.st_size);
  if (zeroed && result == 0 && s.args[2] < s.fileSize) {
    uint64_t len = std::min(s.args[3], s.fileSize - s.args[2]);
    s.fileWrites.push_back(MemoryWrite{s.args[2], std::vector<uint8_t>(size_t(len))});
    return;
  }
  if (nr == SYS_ftruncate || nr == SYS_truncate || nr == SYS_fallocate || result <= 0) return;
  uint64_t start = s.args[3];
  if (nr == SYS_write || nr == SYS_writev || (nr == SYS_pwritev2 && start == kAtPosition)) {
    start = filePosition(task.tid(), s.args[0]) - uint64_t(result);
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) failErrno("read back a write to a file mapped shared");
  MemoryWrite w{start, std::vector<uint8_t>(size_t(result))};
  ssize_t n = pread(fd, w.data.data(), w.data.size(), off_t(start));
  close(fd);
  if (n < 0) failErrno("read back a write to a file mapped shared");
  w.data.resize(size_t(n));  // a later write of another process may have shrunk it
  s.fileWrites.push_back(std::move(w));
}

}  // namespace rwd
