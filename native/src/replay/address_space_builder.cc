#include "replay/address_space_builder.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "core/memory_map.h"
#include "core/remote_syscalls.h"
#include "core/snapshot_image.h"
#include "core/stub_layout.h"
#include "core/syscall_trampoline.h"

namespace rwd {

uint64_t putScratchString(Task& task, const StubLayout& stub, const std::string& s,
                          uint64_t offset) {
  task.write(stub.scratch + offset, s.c_str(), s.size() + 1);
  return stub.scratch + offset;
}

StubLayout buildAddressSpace(Task& task, const ExecEvent& exec, TraceBlobs& blobs) {
  StubLayout stub;
  stub.gadget = task.regs().rip;  // the stub's entry point is its syscall instruction
  std::vector<MapsEntry> maps = readMemoryMap(task.tid());
  for (const MapsEntry& m : maps) {
    if (inStubRange(m.start) && (m.prot & PROT_WRITE)) stub.scratch = m.start;
  }
  if (!inStubRange(stub.gadget) || !stub.scratch) {
    fail(ErrorCode::System, "the replay stub is not where rewind expects it");
  }

  // Before version 4, one snapshot of all Data regions, one after another.
  SnapshotPages whole;
  if (exec.snapshot != ExecEvent::Snapshot::PerRegion) {
    uint64_t snapshotSize = 0;
    for (const MappedRegion& r : exec.regions) {
      if (r.source == MappedRegion::Data) snapshotSize += r.end - r.start;
    }
    std::vector<uint8_t> stored = blobs.read(exec.snapshotBlob);
    if (exec.snapshot == ExecEvent::Snapshot::Whole) {
      whole = decodeSnapshot(stored, snapshotSize);
    } else {
      whole.size = stored.size();
      whole.runs = {{0, stored.size()}};
      whole.data = std::move(stored);
    }
  }
  {
    RemoteSyscalls remote(task, stub.gadget);
    for (const MapsEntry& m : maps) {
      if (inStubRange(m.start) || m.name == "[vsyscall]") continue;
      remote.check("unmapping the stub's memory", SYS_munmap, m.start, m.end - m.start);
    }
    remote.check("trapping rdtsc", SYS_prctl, PR_SET_TSC, PR_TSC_SIGSEGV);
    // Where the syscall buffer's library calls it, if recorded so.
    mapSyscallTrampoline(remote, true);
    for (const MappedRegion& r : exec.regions) {
      uint64_t len = r.end - r.start;
      if (r.source == MappedRegion::File) {
        uint64_t path = putScratchString(task, stub, blobs.pathOf(r.blob));
        long fd = remote.check("opening a captured file", SYS_open, path,
                               O_RDONLY | O_CLOEXEC | blobs.noFollow(r.blob));
        remote.check("mapping a captured file", SYS_mmap, r.start, len, r.prot,
                     MAP_PRIVATE | MAP_FIXED, uint64_t(fd), r.offset);
        remote.call(SYS_close, uint64_t(fd));
      } else if (r.source == MappedRegion::Zero) {
        remote.check("mapping memory", SYS_mmap, r.start, len, r.prot,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, uint64_t(-1), 0);
      } else {
        const SnapshotPages* pages = &whole;
        uint64_t from = r.offset;
        SnapshotPages own;
        if (exec.snapshot == ExecEvent::Snapshot::PerRegion) {
          own = decodeSnapshot(blobs.read(r.blob), len);
          pages = &own;
          from = 0;
        } else if (r.offset > whole.size || len > whole.size - r.offset) {
          fail(ErrorCode::BadTrace, "the exec snapshot is shorter than its regions");
        }
        // The stack keeps growing down in replay as it did when recorded.
        int grows = r.name == "[stack]" ? MAP_GROWSDOWN : 0;
        remote.check("mapping memory", SYS_mmap, r.start, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | grows, uint64_t(-1), 0);
        // Fresh anonymous memory is zero: only the runs that are not are written.
        pages->forEachIn(from, len, [&](uint64_t off, const uint8_t* bytes, size_t n) {
          task.write(r.start + off, bytes, n);
        });
        if (r.prot != (PROT_READ | PROT_WRITE)) {
          remote.check("protecting memory", SYS_mprotect, r.start, len, r.prot);
        }
      }
    }
  }
  task.setRegs(exec.regs);
  return stub;
}

}  // namespace rwd
