#include "record/exec_snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/memory_map.h"
#include "core/remote_syscalls.h"
#include "core/snapshot_image.h"
#include "core/stub_layout.h"
#include "core/vdso.h"

namespace rwd {
namespace {

bool startsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// start_brk from /proc/PID/stat (field 47): replay emulates brk from there.
uint64_t readStartBrk(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name, which may itself hold spaces and parentheses.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) fail(ErrorCode::System, "cannot parse /proc/PID/stat");
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 47 && (fields >> field); i++) {
    if (i == 47) return std::stoull(field);
  }
  fail(ErrorCode::System, "cannot read start_brk from /proc/PID/stat");
}

// map_files needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE): without it, the file is opened by
// its path as the task sees it (through its root, in its mount namespace), if it is still the
// file mapped there.
int openByPath(pid_t tid, const MapsEntry& m) {
  std::string path = "/proc/" + std::to_string(tid) + "/root" + m.name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_ino != m.inode || st.st_dev != m.dev)) {
    close(fd);
    errno = ESTALE;
    return -1;
  }
  return fd;
}

}  // namespace

int openTraceeFile(const std::string& procPath) {
  return open(procPath.c_str(), O_RDONLY | O_CLOEXEC);
}

ExecEvent captureExec(Task& task, BlobStore& blobs, const std::string& exe,
                      const RemoteSyscalls::SignalTaker& taker,
                      const std::function<void(RemoteSyscalls&)>& inject) {
  ExecEvent ev;
  ev.tid = uint32_t(task.tid());
  ev.exe = exe;
  ev.regs = task.regs();
  ev.brkStart = readStartBrk(task.tid());

  std::vector<MapsEntry> maps = readMemoryMap(task.tid());
  uint64_t gadget = 0;
  for (const MapsEntry& m : maps) {
    if (m.name == "[vdso]") gadget = patchVdso(task, m.start, m.end).syscallGadget;
  }
  if (!gadget) fail(ErrorCode::System, "the traced process has no vDSO");

  std::vector<uint8_t> contents;
  for (const MapsEntry& m : maps) {
    if (m.name == "[vsyscall]") continue;
    MappedRegion r;
    r.start = m.start;
    r.end = m.end;
    r.prot = uint32_t(m.prot);
    r.name = m.name;
    if (startsWith(m.name, "[vvar") || m.prot == PROT_NONE) {
      // Kernel data the patched vDSO no longer reads, or address space without contents.
      r.source = MappedRegion::Zero;
    } else if (m.inode != 0 && !(m.prot & PROT_WRITE) && !m.shared) {
      char procPath[96];
      snprintf(procPath, sizeof procPath, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, task.tid(),
               m.start, m.end);
      int fd = openTraceeFile(procPath);
      if (fd < 0 && errno == EPERM) fd = openByPath(task.tid(), m);
      if (fd < 0) failErrno(std::string("capture ") + m.name);
      r.source = MappedRegion::File;
      r.offset = m.offset;
      r.blob = blobs.putFile(fd, m.name);
      close(fd);
    } else {
      // A blob per region: what does not change between recordings (the program's and the
      // loader's data) is then shared by its hash, apart from the stack, which does.
      contents.resize(m.end - m.start);
      task.read(m.start, contents.data(), contents.size());
      std::vector<uint8_t> stored = encodeSnapshot(contents.data(), contents.size());
      if (stored.empty()) {
        r.source = MappedRegion::Zero;  // all zero pages (.bss)
      } else {
        r.source = MappedRegion::Data;
        r.blob = blobs.put(stored.data(), stored.size(), "snapshot");
      }
    }
    ev.regions.push_back(std::move(r));
  }
  ev.auxv = readAuxv(task.tid());

  RemoteSyscalls remote(task, gadget, taker);
  remote.claimOrigin(kRewindSyscallIp);  // seccomp filters kept across exec let it through
  remote.check("reserving the replay stub's address range", SYS_mmap, kStubBase, kStubSize,
               PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE,
               uint64_t(-1), 0);
  remote.check("trapping rdtsc", SYS_prctl, PR_SET_TSC, PR_TSC_SIGSEGV);
  if (inject) inject(remote);
  return ev;
}

}  // namespace rwd
