// The records of the event stream (docs/trace-format.md) and their binary encoding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/task.h"

namespace rwd {

enum class EventType : uint8_t {
  Exec = 1,
  Syscall = 2,
  Signal = 3,
  Rdtsc = 4,
  Exit = 5,
  Run = 6,        // the task runs user code from here (a new task, or one that was preempted)
  Preempt = 7,    // the task was stopped in user code, at the position named here
  PtraceSet = 8,  // the program's emulated tracer changed the task in one of its stops
  Patch = 9,      // the recorder patched the task's code (an rdtsc: record/rdtsc_patch.h)
  Tsc = 10,       // values of the TSC that patched rdtsc instructions read, in order
};

// A region of the address space right after exec.
struct MappedRegion {
  enum Source : uint8_t { Data = 0, File = 1, Zero = 2 };
  uint64_t start = 0, end = 0;
  uint32_t prot = 0;
  Source source = Data;
  // File: offset in the file; Data: offset in the exec's snapshot blob (before version 4)
  uint64_t offset = 0;
  std::string blob;  // File: sha256 of the captured file; Data: of its snapshot (version 4 on)
  std::string name;  // the path or [stack], [vdso]... as /proc/PID/maps showed it
};

struct ExecEvent {
  uint32_t tid = 0;
  std::string exe;
  Regs regs{};
  std::vector<MappedRegion> regions;
  std::string snapshotBlob;  // before version 4: the Data regions' bytes, one after another
  // How the Data regions are stored (core/snapshot_image.h). Not in the record: it follows from
  // the stream's version.
  enum class Snapshot : uint8_t {
    Raw,        // version 2: snapshotBlob holds the raw bytes
    Whole,      // version 3: snapshotBlob is one encoded snapshot of them all
    PerRegion,  // version 4 on: each region names an encoded snapshot of its own
  };
  Snapshot snapshot = Snapshot::PerRegion;
  std::vector<uint8_t> auxv;
  uint64_t brkStart = 0;  // where the program break starts (brk is emulated in replay)
  // The CPU the recorder kept the process on, -1 if none: `cpuid` (which cannot be trapped here)
  // tells code which CPU it runs on, and glibc keeps what it says in its memory.
  int32_t cpu = -1;
};

struct MemoryWrite {
  uint64_t addr;
  std::vector<uint8_t> data;
};

// An aligned 8-byte word of memory and its value.
struct MemoryWord {
  uint64_t addr;
  uint64_t value;
};

struct SyscallEvent {
  uint32_t tid = 0;
  int32_t nr = 0;
  uint64_t args[6] = {};
  int64_t result = 0;
  uint8_t echoFd = 0;  // 1 or 2 when the data written went to the recording's stdout/stderr
  std::vector<MemoryWrite> writes;
  std::string blob;  // mmap of a file: sha256 of the captured file
  // FNV-1a of the bytes the syscall sent, for those whose table entry sends data
  // (core/syscall_buffers.h): replay checks the program sends the same.
  uint64_t sentHash = 0;
  // fork, vfork, clone, clone3: the new task's tid as the recorder knew it, by which the stream
  // names it. `result` is what the caller saw, another number when it lives in a pid namespace
  // of its own; `writes` are then the child's (what CLONE_CHILD_SETTID wrote, as it saw itself).
  uint32_t child = 0;
  // How the program's own seccomp filter stopped the syscall (the kernel did not run it):
  // replay does not run it either, whatever its table entry says. Returned: with an errno,
  // ENOSYS or SIGSYS; the others: the filter killed the thread or the process.
  // Not the filter's, but a SIGKILL's, which took the syscall's exit stop away: Killed, recorded
  // at the task's PTRACE_EVENT_EXIT (replayed as No; it ends no other thread's stretch of user
  // code); Unknown, no stop told whether it ran (the result is 0): replay cannot go past it.
  enum class Filtered : uint8_t { No, Returned, KilledThread, KilledProcess, Unknown, Killed };
  Filtered filtered = Filtered::No;
  // A file mapped shared somewhere in the recorded tree (docs/memory.md), which the syscall
  // mapped or changed: its number in the trace (0: none), its size after the syscall, and the
  // bytes the syscall wrote into it (`addr` is the offset in the file).
  uint64_t file = 0;
  uint64_t fileSize = 0;
  std::vector<MemoryWrite> fileWrites;
};

struct SignalEvent {
  uint32_t tid = 0;
  int32_t signo = 0;
  bool fault = false;  // raised by the instruction itself: replay meets it without help
  uint8_t info[128] = {};
};

struct RdtscEvent {
  uint32_t tid = 0;
  uint64_t rip = 0;
  uint64_t rax = 0, rdx = 0, rcx = 0;
  bool rdtscp = false;
};

constexpr size_t kMaxPatchWrites = 4;
constexpr size_t kMaxPatchBytes = 64;

// An rdtsc that trapped at `site` was patched: the page `page` mapped (0: none), `writes` made,
// and the task resumes at `resume` (the patched code, which reads the TSC itself).
struct PatchEvent {
  uint32_t tid = 0;
  uint64_t site = 0;
  uint64_t resume = 0;
  uint64_t page = 0;
  std::vector<MemoryWrite> writes;
};

struct TscEvent {
  uint32_t tid = 0;
  std::vector<uint64_t> values;
};

struct RunEvent {
  uint32_t tid = 0;
};

// A position in user code without a branch counter: the registers, a hash of the top of the
// stack, and the words of memory that tell the passes of a loop apart (those the loop changed
// from the previous pass to this one). Replay stops at the first time the task reaches the
// same state.
constexpr size_t kMaxPositionWords = 16;

struct PreemptEvent {
  uint32_t tid = 0;
  Regs regs{};
  uint64_t stackHash = 0;
  std::vector<MemoryWord> words;
};

// What the program's emulated tracer changed in a stopped tracee (record/emulated_ptrace.h):
// its registers, its extended state, its memory. Applied where the tracee stopped: right after
// its previous event, or at the entry of the syscall it stopped in.
constexpr size_t kMaxXstate = 1 << 16;

struct PtraceSetEvent {
  enum At : uint8_t { AfterLast = 0, SyscallEntry = 1 };
  uint32_t tid = 0;
  At at = AfterLast;
  Regs before{};                    // as it stopped: replay checks it is there
  Regs after{};                     // as its tracer left them
  std::vector<uint8_t> xstate;      // NT_X86_XSTATE as its tracer left it; empty: unchanged
  std::vector<MemoryWrite> writes;  // PTRACE_POKEDATA/POKETEXT, in order
};

struct ExitEvent {
  uint32_t tid = 0;
  int32_t waitStatus = 0;
};

// One decoded event; only the member of `type` is meaningful.
struct Event {
  EventType type = EventType::Exit;
  ExecEvent exec;
  SyscallEvent syscall;
  SignalEvent signal;
  RdtscEvent rdtsc;
  ExitEvent exit;
  RunEvent run;
  PreemptEvent preempt;
  PtraceSetEvent ptraceSet;
  PatchEvent patch;
  TscEvent tsc;

  uint32_t tid() const;
};

void encodeEvent(const Event& e, std::vector<uint8_t>& out);
// Decodes one record from [data, data+len) of a stream of that version; throws BadTrace on a
// malformed record.
Event decodeEvent(const uint8_t* data, size_t len, uint32_t version);

// A one-line human description, used in divergence messages.
std::string describeEvent(const Event& e);
// The same with what the event carries (memory written, echo, signal details), as a dump shows.
std::string dumpEvent(const Event& e);
// The event's kind as `rewind dump --json` names it.
const char* eventKindName(EventType type);
std::string describeSyscall(long nr, const uint64_t* args, int nargs);
std::string signalName(int signo);
// A signal an instruction raised, with the code and address that tell one fault from another.
std::string describeFault(const siginfo_t& info);
// A task's end as waitpid reports it: "exit with status N" or "death by SIGNAME".
std::string describeWaitStatus(int status);

}  // namespace rwd
