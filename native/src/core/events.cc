#include "core/events.h"

#include <sys/wait.h>

#include <cstring>

#include "core/error.h"
#include "core/syscall_table.h"
#include "core/vdso.h"

namespace rwd {
namespace {

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out_.insert(out_.end(), p, p + sizeof v);
  }
  void bytes(const void* data, size_t len) {
    put<uint32_t>(uint32_t(len));
    const auto* p = static_cast<const uint8_t*>(data);
    out_.insert(out_.end(), p, p + len);
  }
  void str(const std::string& s) { bytes(s.data(), s.size()); }

 private:
  std::vector<uint8_t>& out_;
};

class Reader {
 public:
  Reader(const uint8_t* data, size_t len) : p_(data), end_(data + len) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return v;
  }
  std::vector<uint8_t> bytes() {
    uint32_t n = get<uint32_t>();
    need(n);
    std::vector<uint8_t> v(p_, p_ + n);
    p_ += n;
    return v;
  }
  std::string str() {
    uint32_t n = get<uint32_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  void raw(void* out, size_t n) {
    need(n);
    memcpy(out, p_, n);
    p_ += n;
  }

 private:
  void need(size_t n) {
    if (size_t(end_ - p_) < n) fail(ErrorCode::BadTrace, "malformed event record");
  }
  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace

void encodeEvent(const Event& e, std::vector<uint8_t>& out) {
  Writer w(out);
  w.put<uint8_t>(uint8_t(e.type));
  switch (e.type) {
    case EventType::Exec: {
      const ExecEvent& x = e.exec;
      w.put(x.tid);
      w.str(x.exe);
      w.bytes(&x.regs, sizeof x.regs);
      w.put<uint32_t>(uint32_t(x.regions.size()));
      for (const MappedRegion& r : x.regions) {
        w.put(r.start);
        w.put(r.end);
        w.put(r.prot);
        w.put<uint8_t>(r.source);
        w.put(r.offset);
        w.str(r.blob);
        w.str(r.name);
      }
      w.str(x.snapshotBlob);
      w.bytes(x.auxv.data(), x.auxv.size());
      w.put(x.brkStart);
      w.put(x.cpu);
      break;
    }
    case EventType::Syscall: {
      const SyscallEvent& s = e.syscall;
      w.put(s.tid);
      w.put(s.nr);
      for (uint64_t a : s.args) w.put(a);
      w.put(s.result);
      w.put(s.echoFd);
      w.put<uint32_t>(uint32_t(s.writes.size()));
      for (const MemoryWrite& m : s.writes) {
        w.put(m.addr);
        w.bytes(m.data.data(), m.data.size());
      }
      w.str(s.blob);
      w.put(s.sentHash);
      w.put(s.child);
      w.put<uint8_t>(uint8_t(s.filtered));
      w.put(s.file);
      w.put(s.fileSize);
      w.put<uint32_t>(uint32_t(s.fileWrites.size()));
      for (const MemoryWrite& m : s.fileWrites) {
        w.put(m.addr);
        w.bytes(m.data.data(), m.data.size());
      }
      break;
    }
    case EventType::Signal:
      w.put(e.signal.tid);
      w.put(e.signal.signo);
      w.put<uint8_t>(e.signal.fault);
      w.bytes(e.signal.info, sizeof e.signal.info);
      break;
    case EventType::Rdtsc:
      w.put(e.rdtsc.tid);
      w.put(e.rdtsc.rip);
      w.put(e.rdtsc.rax);
      w.put(e.rdtsc.rdx);
      w.put(e.rdtsc.rcx);
      w.put<uint8_t>(e.rdtsc.rdtscp);
      break;
    case EventType::Exit:
      w.put(e.exit.tid);
      w.put(e.exit.waitStatus);
      break;
    case EventType::Run:
      w.put(e.run.tid);
      break;
    case EventType::Preempt:
      w.put(e.preempt.tid);
      w.bytes(&e.preempt.regs, sizeof e.preempt.regs);
      w.put(e.preempt.stackHash);
      w.put<uint32_t>(uint32_t(e.preempt.words.size()));
      for (const MemoryWord& m : e.preempt.words) {
        w.put(m.addr);
        w.put(m.value);
      }
      break;
    case EventType::PtraceSet: {
      const PtraceSetEvent& p = e.ptraceSet;
      w.put(p.tid);
      w.put<uint8_t>(p.at);
      w.bytes(&p.before, sizeof p.before);
      w.bytes(&p.after, sizeof p.after);
      w.bytes(p.xstate.data(), p.xstate.size());
      w.put<uint32_t>(uint32_t(p.writes.size()));
      for (const MemoryWrite& m : p.writes) {
        w.put(m.addr);
        w.bytes(m.data.data(), m.data.size());
      }
      break;
    }
    case EventType::Patch:
      w.put(e.patch.tid);
      w.put(e.patch.site);
      w.put(e.patch.resume);
      w.put(e.patch.page);
      w.put<uint32_t>(uint32_t(e.patch.writes.size()));
      for (const MemoryWrite& m : e.patch.writes) {
        w.put(m.addr);
        w.bytes(m.data.data(), m.data.size());
      }
      break;
    case EventType::Tsc:
      w.put(e.tsc.tid);
      w.bytes(e.tsc.values.data(), e.tsc.values.size() * sizeof(uint64_t));
      break;
  }
}

uint32_t Event::tid() const {
  switch (type) {
    case EventType::Exec:
      return exec.tid;
    case EventType::Syscall:
      return syscall.tid;
    case EventType::Signal:
      return signal.tid;
    case EventType::Rdtsc:
      return rdtsc.tid;
    case EventType::Exit:
      return exit.tid;
    case EventType::Run:
      return run.tid;
    case EventType::Preempt:
      return preempt.tid;
    case EventType::PtraceSet:
      return ptraceSet.tid;
    case EventType::Patch:
      return patch.tid;
    case EventType::Tsc:
      return tsc.tid;
  }
  return 0;
}

Event decodeEvent(const uint8_t* data, size_t len, uint32_t version) {
  Reader r(data, len);
  Event e;
  auto type = r.get<uint8_t>();
  switch (type) {
    case uint8_t(EventType::Exec): {
      e.type = EventType::Exec;
      ExecEvent& x = e.exec;
      x.tid = r.get<uint32_t>();
      x.exe = r.str();
      std::vector<uint8_t> regs = r.bytes();
      if (regs.size() != sizeof x.regs) fail(ErrorCode::BadTrace, "malformed exec record");
      memcpy(&x.regs, regs.data(), sizeof x.regs);
      uint32_t n = r.get<uint32_t>();
      for (uint32_t i = 0; i < n; i++) {
        MappedRegion m;
        m.start = r.get<uint64_t>();
        m.end = r.get<uint64_t>();
        m.prot = r.get<uint32_t>();
        m.source = MappedRegion::Source(r.get<uint8_t>());
        m.offset = r.get<uint64_t>();
        m.blob = r.str();
        m.name = r.str();
        x.regions.push_back(std::move(m));
      }
      x.snapshotBlob = r.str();
      // From version 4 on, each Data region names its own snapshot.
      if (version >= 4 && !x.snapshotBlob.empty())
        fail(ErrorCode::BadTrace, "malformed exec record");
      x.snapshot = version >= 4   ? ExecEvent::Snapshot::PerRegion
                   : version == 3 ? ExecEvent::Snapshot::Whole
                                  : ExecEvent::Snapshot::Raw;
      x.auxv = r.bytes();
      x.brkStart = r.get<uint64_t>();
      x.cpu = r.get<int32_t>();
      break;
    }
    case uint8_t(EventType::Syscall): {
      e.type = EventType::Syscall;
      SyscallEvent& s = e.syscall;
      s.tid = r.get<uint32_t>();
      s.nr = r.get<int32_t>();
      for (uint64_t& a : s.args) a = r.get<uint64_t>();
      s.result = r.get<int64_t>();
      s.echoFd = r.get<uint8_t>();
      uint32_t n = r.get<uint32_t>();
      for (uint32_t i = 0; i < n; i++) {
        uint64_t addr = r.get<uint64_t>();
        s.writes.push_back(MemoryWrite{addr, r.bytes()});
      }
      s.blob = r.str();
      s.sentHash = r.get<uint64_t>();
      if (version < 3) {
        // Before pid namespaces, a fork's new task was named by the pid its caller saw.
        const SyscallSpec* spec = lookupSyscall(s.nr);
        if (spec && spec->replay == ReplayAction::Fork && s.result > 0) {
          s.child = uint32_t(s.result);
        }
        break;
      }
      s.child = r.get<uint32_t>();
      uint8_t filtered = r.get<uint8_t>();
      if (filtered > uint8_t(SyscallEvent::Filtered::Killed)) {
        fail(ErrorCode::BadTrace, "malformed syscall record");
      }
      s.filtered = SyscallEvent::Filtered(filtered);
      s.file = r.get<uint64_t>();
      s.fileSize = r.get<uint64_t>();
      n = r.get<uint32_t>();
      for (uint32_t i = 0; i < n; i++) {
        uint64_t offset = r.get<uint64_t>();
        s.fileWrites.push_back(MemoryWrite{offset, r.bytes()});
      }
      break;
    }
    case uint8_t(EventType::Signal): {
      e.type = EventType::Signal;
      e.signal.tid = r.get<uint32_t>();
      e.signal.signo = r.get<int32_t>();
      e.signal.fault = r.get<uint8_t>() != 0;
      std::vector<uint8_t> info = r.bytes();
      if (info.size() != sizeof e.signal.info) fail(ErrorCode::BadTrace, "malformed signal record");
      memcpy(e.signal.info, info.data(), sizeof e.signal.info);
      break;
    }
    case uint8_t(EventType::Rdtsc):
      e.type = EventType::Rdtsc;
      e.rdtsc.tid = r.get<uint32_t>();
      e.rdtsc.rip = r.get<uint64_t>();
      e.rdtsc.rax = r.get<uint64_t>();
      e.rdtsc.rdx = r.get<uint64_t>();
      e.rdtsc.rcx = r.get<uint64_t>();
      e.rdtsc.rdtscp = r.get<uint8_t>() != 0;
      break;
    case uint8_t(EventType::Exit):
      e.type = EventType::Exit;
      e.exit.tid = r.get<uint32_t>();
      e.exit.waitStatus = r.get<int32_t>();
      break;
    case uint8_t(EventType::Run):
      e.type = EventType::Run;
      e.run.tid = r.get<uint32_t>();
      break;
    case uint8_t(EventType::Preempt): {
      e.type = EventType::Preempt;
      e.preempt.tid = r.get<uint32_t>();
      std::vector<uint8_t> regs = r.bytes();
      if (regs.size() != sizeof e.preempt.regs)
        fail(ErrorCode::BadTrace, "malformed preempt record");
      memcpy(&e.preempt.regs, regs.data(), sizeof e.preempt.regs);
      e.preempt.stackHash = r.get<uint64_t>();
      uint32_t n = r.get<uint32_t>();
      if (n > kMaxPositionWords) fail(ErrorCode::BadTrace, "malformed preempt record");
      for (uint32_t i = 0; i < n; i++) {
        uint64_t addr = r.get<uint64_t>();
        e.preempt.words.push_back(MemoryWord{addr, r.get<uint64_t>()});
      }
      break;
    }
    case uint8_t(EventType::PtraceSet): {
      e.type = EventType::PtraceSet;
      PtraceSetEvent& p = e.ptraceSet;
      p.tid = r.get<uint32_t>();
      const uint8_t at = r.get<uint8_t>();
      std::vector<uint8_t> before = r.bytes(), after = r.bytes();
      p.xstate = r.bytes();
      if (at > PtraceSetEvent::SyscallEntry || before.size() != sizeof p.before ||
          after.size() != sizeof p.after || p.xstate.size() > kMaxXstate) {
        fail(ErrorCode::BadTrace, "malformed ptrace-set record");
      }
      p.at = PtraceSetEvent::At(at);
      memcpy(&p.before, before.data(), sizeof p.before);
      memcpy(&p.after, after.data(), sizeof p.after);
      uint32_t n = r.get<uint32_t>();
      for (uint32_t i = 0; i < n; i++) {
        uint64_t addr = r.get<uint64_t>();
        p.writes.push_back(MemoryWrite{addr, r.bytes()});
      }
      break;
    }
    case uint8_t(EventType::Patch): {
      e.type = EventType::Patch;
      e.patch.tid = r.get<uint32_t>();
      e.patch.site = r.get<uint64_t>();
      e.patch.resume = r.get<uint64_t>();
      e.patch.page = r.get<uint64_t>();
      uint32_t n = r.get<uint32_t>();
      if (n > kMaxPatchWrites) fail(ErrorCode::BadTrace, "malformed patch record");
      for (uint32_t i = 0; i < n; i++) {
        uint64_t addr = r.get<uint64_t>();
        std::vector<uint8_t> data = r.bytes();
        if (data.size() > kMaxPatchBytes) fail(ErrorCode::BadTrace, "malformed patch record");
        e.patch.writes.push_back(MemoryWrite{addr, std::move(data)});
      }
      break;
    }
    case uint8_t(EventType::Tsc): {
      e.type = EventType::Tsc;
      e.tsc.tid = r.get<uint32_t>();
      std::vector<uint8_t> values = r.bytes();
      if (values.empty() || values.size() % sizeof(uint64_t)) {
        fail(ErrorCode::BadTrace, "malformed tsc record");
      }
      e.tsc.values.resize(values.size() / sizeof(uint64_t));
      memcpy(e.tsc.values.data(), values.data(), values.size());
      break;
    }
    default:
      fail(ErrorCode::BadTrace, "unknown event type " + std::to_string(type));
  }
  return e;
}

std::string signalName(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}

std::string describeSyscall(long nr, const uint64_t* args, int nargs) {
  std::string s = syscallName(nr);
  s += "(";
  for (int i = 0; i < nargs; i++) {
    char buf[32];
    snprintf(buf, sizeof buf, "%s0x%llx", i ? ", " : "", (unsigned long long)args[i]);
    s += buf;
  }
  return s + ")";
}

const char* eventKindName(EventType type) {
  switch (type) {
    case EventType::Exec:
      return "exec";
    case EventType::Syscall:
      return "syscall";
    case EventType::Signal:
      return "signal";
    case EventType::Rdtsc:
      return "rdtsc";
    case EventType::Exit:
      return "exit";
    case EventType::Run:
      return "run";
    case EventType::Preempt:
      return "preempt";
    case EventType::PtraceSet:
      return "ptrace-set";
    case EventType::Patch:
      return "patch";
    case EventType::Tsc:
      return "tsc";
  }
  return "?";
}

std::string dumpEvent(const Event& e) {
  std::string line = describeEvent(e);
  char buf[96];
  switch (e.type) {
    case EventType::Exec:
      snprintf(buf, sizeof buf, ", %zu regions, ip 0x%llx, cpu %d", e.exec.regions.size(),
               (unsigned long long)e.exec.regs.rip, e.exec.cpu);
      return line + buf;
    case EventType::Syscall: {
      const SyscallEvent& s = e.syscall;
      if (s.echoFd) line += s.echoFd == 2 ? ", to stderr" : ", to stdout";
      for (const MemoryWrite& w : s.writes) {
        snprintf(buf, sizeof buf, ", writes %zu bytes at 0x%llx", w.data.size(),
                 (unsigned long long)w.addr);
        line += buf;
      }
      if (!s.blob.empty()) line += ", maps file " + s.blob;
      if (s.child) line += ", new task " + std::to_string(s.child);
      if (s.filtered == SyscallEvent::Filtered::Returned) line += ", stopped by seccomp";
      if (s.filtered == SyscallEvent::Filtered::KilledThread ||
          s.filtered == SyscallEvent::Filtered::KilledProcess) {
        line += ", killed by seccomp";
      }
      if (s.filtered == SyscallEvent::Filtered::Unknown) line += ", killed in it: result unknown";
      if (s.filtered == SyscallEvent::Filtered::Killed) line += ", seen as it was killed";
      if (s.file) {
        snprintf(buf, sizeof buf, ", shared file %llu of %llu bytes", (unsigned long long)s.file,
                 (unsigned long long)s.fileSize);
        line += buf;
      }
      for (const MemoryWrite& w : s.fileWrites) {
        snprintf(buf, sizeof buf, ", writes %zu bytes at offset 0x%llx of it", w.data.size(),
                 (unsigned long long)w.addr);
        line += buf;
      }
      return line;
    }
    case EventType::Signal:
      return line;
    case EventType::Rdtsc:
      snprintf(buf, sizeof buf, " at ip 0x%llx = 0x%llx", (unsigned long long)e.rdtsc.rip,
               (unsigned long long)((e.rdtsc.rdx << 32) | e.rdtsc.rax));
      return line + buf;
    case EventType::Exit:
      snprintf(buf, sizeof buf, "exit with wait status 0x%x", unsigned(e.exit.waitStatus));
      return buf;
    case EventType::Run:
      return line;
    case EventType::Preempt:
      snprintf(buf, sizeof buf, ", stack hash %016llx, %zu words of memory",
               (unsigned long long)e.preempt.stackHash, e.preempt.words.size());
      return line + buf;
    case EventType::PtraceSet:
      snprintf(buf, sizeof buf, ", ip 0x%llx, %s, %zu writes",
               (unsigned long long)e.ptraceSet.after.rip,
               e.ptraceSet.xstate.empty() ? "extended state kept" : "extended state set",
               e.ptraceSet.writes.size());
      return line + buf;
    case EventType::Patch:
      if (e.patch.page) {
        snprintf(buf, sizeof buf, ", maps a page at 0x%llx", (unsigned long long)e.patch.page);
        line += buf;
      }
      for (const MemoryWrite& w : e.patch.writes) {
        snprintf(buf, sizeof buf, ", writes %zu bytes at 0x%llx", w.data.size(),
                 (unsigned long long)w.addr);
        line += buf;
      }
      return line;
    case EventType::Tsc:
      snprintf(buf, sizeof buf, ", from 0x%llx to 0x%llx", (unsigned long long)e.tsc.values.front(),
               (unsigned long long)e.tsc.values.back());
      return line + buf;
  }
  return line;
}

// An error as its name (-2 ENOENT), an address in hex, a count in decimal.
static std::string describeResult(int64_t result) {
  if (result < 0 && result >= -4095) {
    const char* name = strerrorname_np(int(-result));
    return std::to_string(result) + (name ? std::string(" ") + name : "");
  }
  if (result > 0xffff) {
    char buf[24];
    snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)result);
    return buf;
  }
  return std::to_string(result);
}

std::string describeWaitStatus(int status) {
  return WIFEXITED(status) ? "exit with status " + std::to_string(WEXITSTATUS(status))
                           : "death by " + signalName(WTERMSIG(status));
}

std::string describeFault(const siginfo_t& info) {
  char buf[96];
  snprintf(buf, sizeof buf, " (raised by the instruction: code %d, address 0x%llx)", info.si_code,
           (unsigned long long)(uintptr_t)info.si_addr);
  return signalName(info.si_signo) + buf;
}

std::string describeEvent(const Event& e) {
  switch (e.type) {
    case EventType::Exec:
      return "exec of " + e.exec.exe;
    case EventType::Syscall: {
      const SyscallSpec* spec = lookupSyscall(e.syscall.nr);
      return describeSyscall(e.syscall.nr, e.syscall.args, spec ? spec->nargs : 6) + " = " +
             describeResult(e.syscall.result);
    }
    case EventType::Signal: {
      if (!e.signal.fault) return "signal " + signalName(e.signal.signo);
      siginfo_t info;
      memcpy(&info, e.signal.info, sizeof info);
      return "signal " + describeFault(info);
    }
    case EventType::Rdtsc:
      return e.rdtsc.rdtscp ? "rdtscp" : "rdtsc";
    case EventType::Exit:
      return describeWaitStatus(int(e.exit.waitStatus));
    case EventType::Run:
      return "run";
    case EventType::Preempt: {
      char buf[64];
      snprintf(buf, sizeof buf, "preemption at ip 0x%llx", (unsigned long long)e.preempt.regs.rip);
      return buf;
    }
    case EventType::PtraceSet:
      return e.ptraceSet.at == PtraceSetEvent::SyscallEntry
                 ? "its tracer's changes at its syscall's entry"
                 : "its tracer's changes";
    case EventType::Patch: {
      char buf[96];
      if (inVsyscallPage(e.patch.site)) {
        snprintf(buf, sizeof buf, "patch of the call of the vsyscall page at 0x%llx (to 0x%llx)",
                 (unsigned long long)e.patch.resume, (unsigned long long)e.patch.site);
      } else {
        snprintf(buf, sizeof buf, "patch of the rdtsc at ip 0x%llx",
                 (unsigned long long)e.patch.site);
      }
      return buf;
    }
    case EventType::Tsc:
      return std::to_string(e.tsc.values.size()) + " reads of the TSC";
  }
  return "?";
}

}  // namespace rwd
