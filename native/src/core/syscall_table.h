// The declarative syscall table: one entry per syscall saying how recording captures its
// effects and what replay does with it. Both sessions are driven by it; a syscall that is not
// in the table stops recording with a message naming it.
#pragma once

#include <climits>
#include <cstdint>
#include <string>

#include "core/task.h"

namespace rwd {

enum class ReplayAction : uint8_t {
  Emulate,      // skipped in replay: the recorded result and output buffers are written back
  Execute,      // shapes the address space or task state: run again with the same arguments
  InPlace,      // must run where the task made it (exit, rt_sigreturn)
  Mmap,         // executed at the recorded address; file mappings map the captured blob (shmat
                // and shmdt map and unmap a SysV segment's emulated file)
  Mremap,       // executed, moved to the recorded address
  Brk,          // emulated with anonymous mappings at the recorded addresses
  Execve,       // replay execs the stub and rebuilds the recorded address space
  Refused,      // skipped with ENOSYS in record and replay: rseq (glibc does without), numbers
                // the kernel has no syscall for
  Fork,         // a new process: replay forks too and gives it the recorded pid
  Unsupported,  // recording stops with "not supported yet"
};

// How big an output buffer is once the syscall returned.
enum class OutputSize : uint8_t {
  None,
  Fixed,     // `bytes`
  Result,    // the syscall's result, in bytes
  ArgValue,  // the value of argument `sizeArg`
  SockLen,  // min(value at entry, value at exit) of the socklen_t that argument `sizeArg` points to
  Custom,   // computed by the recorder for this syscall (iovecs, msghdr, ioctl requests...)
};

struct Output {
  int8_t arg = -1;  // argument holding the buffer's address
  OutputSize size = OutputSize::None;
  uint32_t bytes = 0;
  int8_t sizeArg = -1;
};

// The data a syscall sends out of the process (to a file, a pipe, a socket). Recording keeps a
// hash of it; replay, which does not run the syscall, checks that the program sends the same.
enum class Sent : uint8_t {
  None,
  Buffer,    // the buffer at argument 1, as many bytes as the result says
  Iovec,     // the iovec array at argument 1 (argument 2 of them), as many bytes as the result
  Message,   // the msghdr at argument 1: its name, iovecs (result bytes) and control data
  Messages,  // the mmsghdr array at argument 1: the result's count of messages, each msg_len
  Sized,     // the buffer at argument 1, as many bytes as argument 2 says (msgsnd: and its mtype)
  Copied,    // copied by the kernel from another fd (sendfile, splice): never in the process's
             // memory, so replay cannot echo it; recording refuses it when it reaches stdout
};

struct SyscallSpec {
  const char* name = nullptr;  // nullptr: not in the table
  uint8_t nargs = 0;           // arguments compared in replay to detect divergence
  ReplayAction replay = ReplayAction::Emulate;
  Output outputs[3];
  Sent sent = Sent::None;
  int8_t fdArg = 0;       // the argument naming the fd the data goes to
  bool echo = false;      // replay echoes the data sent when the fd was stdout or stderr
  bool buffered = false;  // the syscall buffer's library may make it without a stop
};

// The syscall number the kernel acts on: the low 32 bits of orig_rax, sign-extended.
inline long syscallNumber(uint64_t origRax) { return long(int32_t(uint32_t(origRax))); }

// A syscall made through the 32-bit entry (int $0x80) is named in the trace by its i386 number
// past kCompatBase. The x86-64 numbers there are negative ones the kernel answers with ENOSYS;
// recording refuses them, as they would read as 32-bit calls.
constexpr long kCompatBase = INT32_MIN;
constexpr long kCompatCount = 512;
inline bool isCompatNumber(long nr) { return nr >= kCompatBase && nr < kCompatBase + kCompatCount; }

// The syscall a task entered, as the trace names it, with its arguments as its ABI passes them
// (i386: ebx, ecx, edx, esi, edi, ebp, zero-extended). `compat`: it came through a 32-bit entry.
long traceSyscallNumber(const Regs& r, bool compat);
void syscallArguments(const Regs& r, bool compat, uint64_t* args);
// Whether recording and replay can take a 32-bit syscall the task entered: one the i386 table
// has, made with int $0x80 (replay makes some again in place, stepping back over those two bytes).
bool recordableCompatSyscall(const Task& task);
// The x86-64 syscall an i386 one of the table is (the same arguments, the same effects), by which
// recording and replay single out the syscalls they treat apart (exit, exit_group...). An x86-64
// number is itself.
long nativeSyscall(long nr);

// nullptr when the syscall is not in the table. A number x86-64 gives no syscall (negative, in
// the gap the 32-bit ABIs use, past the last one, or retired) has an entry: the kernel answers
// ENOSYS, and so do recording and replay. A trace number of an i386 syscall: the i386 table's.
const SyscallSpec* lookupSyscall(long nr);
// The table's name, or "syscall_N" for one it does not know.
const char* syscallName(long nr);
// A syscall the task made through a 32-bit entry, named for a refusal ("32-bit syscall
// set_thread_area (243) via int $0x80"): the task is at its entry stop.
std::string describeCompatSyscall(const Task& task);

}  // namespace rwd
