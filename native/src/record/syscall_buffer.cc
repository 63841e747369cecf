#include "record/syscall_buffer.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <set>
#include <string>

#include "core/error.h"
#include "core/spawn.h"
#include "core/stub_layout.h"
#include "core/syscall_buffer_abi.h"
#include "core/syscall_table.h"
#include "core/syscall_trampoline.h"

namespace rwd {
namespace {

constexpr uint32_t kHeaderSize = sizeof(rwd_buffer_header);
constexpr uint64_t kFilterScratch = RWD_TRAMPOLINE + 64;  // in the trampoline page, then cleared

bool isError(int64_t result) { return result < 0 && result > -4096; }

[[noreturn]] void corrupt(pid_t tid, const std::string& what) {
  fail(ErrorCode::Unsupported, "the syscall buffer of task " + std::to_string(tid) +
                                   " holds a record rewind cannot take (" + what +
                                   "): the program wrote over it");
}

// Whether a record says what the table says the syscall writes: no more, nowhere else.
bool outputAsTable(const rwd_record& rec, const SyscallSpec& spec) {
  for (int i = 1; i < 3; i++) {
    if (spec.outputs[i].arg >= 0 && rec.args[spec.outputs[i].arg]) return false;
  }
  const Output& out = spec.outputs[0];
  if (isError(rec.result) || out.arg < 0 || !rec.args[out.arg]) return rec.out_len == 0;
  uint64_t expected = 0;
  if (out.size == OutputSize::Fixed) {
    expected = out.bytes;
  } else if (out.size == OutputSize::Result) {
    expected = uint64_t(rec.result);
  } else {
    return false;
  }
  return rec.out_addr == rec.args[out.arg] && rec.out_len == expected;
}

}  // namespace

std::vector<std::string> withPreload(std::vector<std::string> env, const std::string& library) {
  for (std::string& v : env) {
    if (v.rfind("LD_PRELOAD=", 0) == 0) {
      v = "LD_PRELOAD=" + library + (v.size() > 11 ? ":" + v.substr(11) : "");
      return env;
    }
  }
  env.push_back("LD_PRELOAD=" + library);
  return env;
}

SyscallBuffers::Buffer::~Buffer() {
  if (memFd >= 0) close(memFd);
}

bool SyscallBuffers::onExec(RemoteSyscalls& remote, bool first) {
  mapSyscallTrampoline(remote, false);
  if (!first) return true;
  // Syscalls from the trampoline and rewind's own (injected, or claimed: seccomp_filter.h) pass;
  // every other one stops in the recorder. Both addresses share their upper half.
  static_assert((RWD_TRAMPOLINE_SYSCALL_END >> 32) == (kRewindSyscallIp >> 32), "one upper half");
  const uint32_t ipLow = offsetof(seccomp_data, instruction_pointer);
  const sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ipLow + 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(kRewindSyscallIp >> 32), 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ipLow),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(RWD_TRAMPOLINE_SYSCALL_END), 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(kRewindSyscallIp), 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | RWD_SECCOMP_DATA),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  Task& task = remote.task();
  const uint64_t at = kFilterScratch + sizeof(sock_fprog);
  sock_fprog prog{uint16_t(sizeof filter / sizeof filter[0]), reinterpret_cast<sock_filter*>(at)};
  task.write(kFilterScratch, &prog, sizeof prog);
  task.write(at, filter, sizeof filter);
  // Refused without CAP_SYS_ADMIN unless the process set no_new_privs, which rewind does not set
  // for it (it would change what a setuid program does): then nothing is buffered.
  long r = remote.call(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, kFilterScratch);
  std::vector<uint8_t> zero(sizeof prog + sizeof filter);
  task.write(kFilterScratch, zero.data(), zero.size());
  if (r != 0) return false;
  if (ptrace(PTRACE_SETOPTIONS, task.tid(), nullptr, kRecordPtraceOptions | PTRACE_O_TRACESECCOMP) <
      0) {
    failErrno("PTRACE_SETOPTIONS");
  }
  return true;
}

std::shared_ptr<SyscallBuffers::Buffer> SyscallBuffers::open(pid_t tid, uint64_t addr,
                                                             uint64_t control) {
  auto b = std::make_shared<Buffer>();
  b->owner = b->writer = tid;
  b->addr = addr;
  b->size = RWD_BUFFER_SIZE;
  b->control = control;
  b->memFd = ::open(("/proc/" + std::to_string(tid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (b->memFd < 0) failErrno("open /proc/PID/mem");
  return b;
}

bool SyscallBuffers::readHeader(const Buffer& b, uint32_t* used, uint32_t* inCall) const {
  rwd_buffer_header h;
  if (pread(b.memFd, &h, sizeof h, off_t(b.addr)) != ssize_t(sizeof h)) return false;
  *used = h.used;
  *inCall = h.in_call;
  return true;
}

int64_t SyscallBuffers::request(Task& task, const Regs& entry, bool allowed, TscClock& tsc) {
  const pid_t tid = task.tid();
  if (syscallNumber(entry.orig_rax) == RWD_SYS_BUFFER_INIT) {
    if (!allowed || refused_.count(tid) || entry.rdx != RWD_BUFFER_SIZE || entry.rsi % 4096) {
      return -ENOSYS;
    }
    std::shared_ptr<Buffer> b = open(tid, entry.rsi, entry.rdi);
    uint32_t used, inCall;
    if (!readHeader(*b, &used, &inCall) || used != kHeaderSize) return -ENOSYS;
    b->taken = used;
    byTask_[tid] = b;
    rwd_control c;
    if (pread(b->memFd, &c, sizeof c, off_t(b->control)) == ssize_t(sizeof c)) {
      b->tscCode[0] = c.tsc_code_start;
      b->tscCode[1] = c.tsc_code_end;
    }
    // The clock its patched rdtsc reads.
    uint64_t params[3];
    tsc.params(params);
    const uint64_t at = b->control + offsetof(rwd_control, tsc_base);
    task.write(at, params, sizeof params);
    const auto* p = reinterpret_cast<const uint8_t*>(params);
    pendingWrites_[tid].push_back(MemoryWrite{at, {p, p + sizeof params}});
    return 1;
  }
  // RWD_SYS_BUFFER_FLUSH: its records are in the stream; it starts again from the top.
  auto it = byTask_.find(tid);
  if (it == byTask_.end()) return -ENOSYS;
  Buffer& b = *it->second;
  const uint32_t used = kHeaderSize;
  task.write(b.addr + offsetof(rwd_buffer_header, used), &used, sizeof used);
  b.taken = used;
  const auto* p = reinterpret_cast<const uint8_t*>(&used);
  pendingWrites_[tid].push_back(
      MemoryWrite{b.addr + offsetof(rwd_buffer_header, used), {p, p + sizeof used}});
  return -ENOSYS;
}

void SyscallBuffers::addWrites(pid_t tid, SyscallEvent& s) {
  auto it = pendingWrites_.find(tid);
  if (it == pendingWrites_.end()) return;
  for (MemoryWrite& w : it->second) s.writes.push_back(std::move(w));
  pendingWrites_.erase(it);
}

void SyscallBuffers::disable(Task& task, const std::vector<pid_t>& threads) {
  refused_.insert(threads.begin(), threads.end());
  auto it = byTask_.end();
  for (pid_t tid : threads) {
    if (it == byTask_.end()) it = byTask_.find(tid);
  }
  if (it == byTask_.end()) return;  // none buffers, and none will: the recorder says no now
  const uint64_t at = it->second->control + offsetof(rwd_control, enabled);
  const uint32_t off = 0;
  task.write(at, &off, sizeof off);
  const auto* p = reinterpret_cast<const uint8_t*>(&off);
  pendingWrites_[task.tid()].push_back(MemoryWrite{at, {p, p + sizeof off}});
}

void SyscallBuffers::onFork(pid_t parent, pid_t child, bool thread, bool vfork) {
  if (refused_.count(parent)) refused_.insert(child);
  auto it = byTask_.find(parent);
  if (it == byTask_.end() || thread) return;  // a thread sets up a buffer of its own
  if (vfork) {
    // It runs in its parent's memory, with its parent's buffer, while its parent waits.
    it->second->writer = child;
    byTask_[child] = it->second;
    return;
  }
  const Buffer& b = *it->second;
  std::shared_ptr<Buffer> copy = open(child, b.addr, b.control);
  copy->taken = b.taken;
  memcpy(copy->tscCode, b.tscCode, sizeof b.tscCode);
  byTask_[child] = copy;
}

void SyscallBuffers::forget(pid_t tid) {
  auto it = byTask_.find(tid);
  if (it != byTask_.end()) {
    // A vfork child that exec'd or ended: its parent writes the buffer they shared again.
    if (it->second->owner != tid) it->second->writer = it->second->owner;
    byTask_.erase(it);
  }
  pendingWrites_.erase(tid);
  refused_.erase(tid);  // an exec keeps only its own thread's filter, which stops it anyway
}

uint64_t SyscallBuffers::tscHook(const std::vector<pid_t>& threads) const {
  for (pid_t tid : threads) {
    auto it = byTask_.find(tid);
    if (it == byTask_.end()) continue;
    rwd_control c;
    if (pread(it->second->memFd, &c, sizeof c, off_t(it->second->control)) != ssize_t(sizeof c)) {
      return 0;
    }
    return c.enabled ? c.tsc_hook : 0;
  }
  return 0;
}

bool SyscallBuffers::inCall(pid_t tid, uint64_t rip) const {
  auto it = byTask_.find(tid);
  if (it == byTask_.end() || it->second->writer != tid) return false;
  if (rip >= it->second->tscCode[0] && rip < it->second->tscCode[1]) return true;
  uint32_t used, inCall;
  return readHeader(*it->second, &used, &inCall) && inCall;
}

void SyscallBuffers::drain(const std::function<void(const Event&)>& take) {
  // One event of each kind, filled again for every record: a busy reader makes a record every
  // few microseconds, and a fresh event each time costs more than taking its bytes.
  Event syscall, tscRun;
  syscall.type = EventType::Syscall;
  tscRun.type = EventType::Tsc;
  std::set<const Buffer*> seen;
  for (auto& [tid, ptr] : byTask_) {
    Buffer& b = *ptr;
    if (!seen.insert(&b).second) continue;
    uint32_t used, inCall;
    if (!readHeader(b, &used, &inCall) || used == b.taken) continue;  // gone, or nothing new
    if (used < b.taken || used > b.size) corrupt(b.writer, "its length");
    const size_t n = used - b.taken;
    if (scratch_.size() < n) scratch_.resize(n);
    if (pread(b.memFd, scratch_.data(), n, off_t(b.addr + b.taken)) != ssize_t(n)) {
      continue;  // it vanished meanwhile
    }
    const uint8_t* bytes = scratch_.data();
    tscRun.tsc.tid = uint32_t(b.writer);
    auto endTscRun = [&] {
      if (tscRun.tsc.values.empty()) return;
      take(tscRun);
      tscRun.tsc.values.clear();
    };
    for (size_t off = 0; off < n;) {
      // A patched rdtsc's values: those in a row make one event.
      rwd_tsc_record tsc;
      if (n - off >= sizeof tsc) memcpy(&tsc, bytes + off, sizeof tsc);
      if (n - off >= sizeof tsc && tsc.nr == RWD_TSC_RECORD) {
        if (tsc.size != sizeof tsc) corrupt(b.writer, "a TSC record's size");
        tscRun.tsc.values.push_back(tsc.tsc);
        off += sizeof tsc;
        continue;
      }
      endTscRun();
      rwd_record rec;
      if (n - off < sizeof rec) corrupt(b.writer, "a record cut short");
      memcpy(&rec, bytes + off, sizeof rec);
      const size_t padded = (size_t(rec.out_len) + 7) & ~size_t(7);
      if (rec.out_len > RWD_MAX_OUTPUT || rec.size != sizeof rec + padded || rec.size > n - off) {
        corrupt(b.writer, "a record's size");
      }
      const SyscallSpec* spec = lookupSyscall(rec.nr);
      if (!spec || !spec->buffered) corrupt(b.writer, "syscall " + std::to_string(rec.nr));
      if (!outputAsTable(rec, *spec))
        corrupt(b.writer, std::string(syscallName(rec.nr)) + "'s output");
      SyscallEvent& s = syscall.syscall;
      s.tid = uint32_t(b.writer);
      s.nr = rec.nr;
      memcpy(s.args, rec.args, sizeof s.args);
      s.result = rec.result;
      if (rec.out_len) {
        const uint8_t* data = bytes + off + sizeof rec;
        s.writes.resize(1);
        s.writes[0].addr = rec.out_addr;
        s.writes[0].data.assign(data, data + rec.out_len);
      } else {
        s.writes.clear();
      }
      take(syscall);
      off += rec.size;
    }
    endTscRun();
    b.taken = used;
  }
}

}  // namespace rwd
