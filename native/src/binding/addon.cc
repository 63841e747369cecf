// N-API glue. Recording and replay are promise-returning functions, each session running
// entirely on one worker thread (the kernel ties a tracee to the thread that traces it). A
// debug session is an object whose synchronous methods run on the calling (tracer) thread: it
// answers a debugger one request at a time.
#include <napi.h>

#include <algorithm>
#include <memory>

#include "core/compression.h"
#include "core/error.h"
#include "core/event_stream.h"
#include "record/program_group.h"
#include "record/record_session.h"
#include "replay/debug_session.h"
#include "replay/query.h"
#include "replay/replay_session.h"
#include "sandbox/sandbox.h"

namespace {

using rwd::Error;

std::vector<std::string> stringArray(const Napi::Value& v) {
  std::vector<std::string> out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>());
  return out;
}

// An AsyncWorker that turns rwd::Error into a rejection with a `code` property.
class SessionWorker : public Napi::AsyncWorker {
 public:
  explicit SessionWorker(Napi::Env env)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      run();
    } catch (const Error& e) {
      code_ = rwd::errorCodeName(e.code());
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "ESYSTEM";
      SetError(e.what());
    }
  }
  void OnError(const Napi::Error& e) override {
    Napi::Object err = e.Value();
    err.Set("code", Napi::String::New(Env(), code_));
    deferred_.Reject(err);
  }
  void OnOK() override { deferred_.Resolve(result(Env())); }
  virtual void run() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;

 private:
  Napi::Promise::Deferred deferred_;
  std::string code_;
};

class RecordWorker : public SessionWorker {
 public:
  RecordWorker(Napi::Env env, rwd::RecordOptions options)
      : SessionWorker(env), options_(std::move(options)) {}

 protected:
  void run() override { result_ = rwd::RecordSession(options_).run(); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("waitStatus", result_.waitStatus);
    o.Set("events", double(result_.events));
    o.Set("syscalls", double(result_.syscalls));
    o.Set("tasks", result_.tasks);
    o.Set("syscallBuffer", result_.syscallBuffer);
    Napi::Array blobs = Napi::Array::New(env, result_.blobs.size());
    for (size_t i = 0; i < result_.blobs.size(); i++) {
      const rwd::BlobRef& b = result_.blobs[i];
      Napi::Object bo = Napi::Object::New(env);
      bo.Set("sha256", b.sha256);
      bo.Set("size", double(b.size));
      bo.Set("role", b.role);
      if (!b.path.empty()) bo.Set("path", b.path);
      blobs.Set(uint32_t(i), bo);
    }
    o.Set("blobs", blobs);
    Napi::Array processes = Napi::Array::New(env, result_.processes.size());
    for (size_t i = 0; i < result_.processes.size(); i++) {
      const rwd::ProcessInfo& p = result_.processes[i];
      Napi::Object po = Napi::Object::New(env);
      po.Set("pid", p.pid);
      po.Set("parent", p.parent);
      Napi::Array execs = Napi::Array::New(env, p.execs.size());
      for (size_t j = 0; j < p.execs.size(); j++) {
        Napi::Object eo = Napi::Object::New(env);
        eo.Set("exe", p.execs[j].exe);
        Napi::Array argv = Napi::Array::New(env, p.execs[j].argv.size());
        for (size_t k = 0; k < p.execs[j].argv.size(); k++)
          argv.Set(uint32_t(k), p.execs[j].argv[k]);
        eo.Set("argv", argv);
        execs.Set(uint32_t(j), eo);
      }
      po.Set("execs", execs);
      Napi::Array threads = Napi::Array::New(env, p.threads.size());
      for (size_t k = 0; k < p.threads.size(); k++) threads.Set(uint32_t(k), p.threads[k]);
      po.Set("threads", threads);
      processes.Set(uint32_t(i), po);
    }
    o.Set("processes", processes);
    return o;
  }

 private:
  rwd::RecordOptions options_;
  rwd::RecordResult result_;
};

class ReplayWorker : public SessionWorker {
 public:
  ReplayWorker(Napi::Env env, rwd::ReplayOptions options)
      : SessionWorker(env), options_(std::move(options)) {}

 protected:
  void run() override { result_ = rwd::ReplaySession(options_).run(); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("waitStatus", result_.waitStatus);
    o.Set("events", double(result_.events));
    return o;
  }

 private:
  rwd::ReplayOptions options_;
  rwd::ReplayResult result_;
};

// record({exe, argv, env, traceDir, preload?})
//   -> Promise<{waitStatus, events, syscalls, tasks, syscallBuffer, blobs}>
Napi::Value Record(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  rwd::RecordOptions options;
  options.exe = o.Get("exe").As<Napi::String>();
  options.argv = stringArray(o.Get("argv"));
  options.env = stringArray(o.Get("env"));
  options.traceDir = o.Get("traceDir").As<Napi::String>();
  if (o.Has("preload") && o.Get("preload").IsString()) {
    options.preload = o.Get("preload").As<Napi::String>();
  }
  auto* worker = new RecordWorker(info.Env(), std::move(options));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// signalRecordings(signal): to the process group of each program being recorded.
void SignalRecordings(const Napi::CallbackInfo& info) {
  rwd::ProgramGroup::signalAll(info[0].As<Napi::Number>().Int32Value());
}

// replay({traceDir, eventsPath, stubPath, traceName?, stdoutFd?, stderrFd?})
//   -> Promise<{waitStatus, events}>
Napi::Value Replay(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  rwd::ReplayOptions options;
  options.traceDir = o.Get("traceDir").As<Napi::String>();
  options.eventsPath = o.Get("eventsPath").As<Napi::String>();
  options.stubPath = o.Get("stubPath").As<Napi::String>();
  if (o.Get("traceName").IsString()) options.traceName = o.Get("traceName").As<Napi::String>();
  if (o.Has("stdoutFd")) options.stdoutFd = o.Get("stdoutFd").As<Napi::Number>().Int32Value();
  if (o.Has("stderrFd")) options.stderrFd = o.Get("stderrFd").As<Napi::Number>().Int32Value();
  auto* worker = new ReplayWorker(info.Env(), std::move(options));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

[[noreturn]] void throwJs(Napi::Env env, const std::string& message, const char* code) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

uint64_t address(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  return uint64_t(v.As<Napi::Number>().Int64Value());
}

rwd::WatchKind watchKind(Napi::Env env, const Napi::Value& v) {
  std::string k = v.As<Napi::String>();
  if (k == "write") return rwd::WatchKind::Write;
  if (k == "read") return rwd::WatchKind::Read;
  if (k == "access") return rwd::WatchKind::Access;
  if (k == "execute") return rwd::WatchKind::Execute;
  throwJs(env, "unknown watchpoint kind " + k, "EUNSUPPORTED");
}

const char* watchKindName(rwd::WatchKind k) {
  return k == rwd::WatchKind::Write    ? "write"
         : k == rwd::WatchKind::Read   ? "read"
         : k == rwd::WatchKind::Access ? "access"
                                       : "execute";
}

class DebugSessionObject : public Napi::ObjectWrap<DebugSessionObject> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "DebugSession",
                       {InstanceAccessor<&DebugSessionObject::pid>("pid"),
                        InstanceMethod<&DebugSessionObject::threads>("threads"),
                        InstanceMethod<&DebugSessionObject::registers>("registers"),
                        InstanceMethod<&DebugSessionObject::readMemory>("readMemory"),
                        InstanceMethod<&DebugSessionObject::auxv>("auxv"),
                        InstanceMethod<&DebugSessionObject::exe>("exe"),
                        InstanceMethod<&DebugSessionObject::memoryMap>("memoryMap"),
                        InstanceMethod<&DebugSessionObject::setBreakpoint>("setBreakpoint"),
                        InstanceMethod<&DebugSessionObject::removeBreakpoint>("removeBreakpoint"),
                        InstanceMethod<&DebugSessionObject::setWatchpoint>("setWatchpoint"),
                        InstanceMethod<&DebugSessionObject::removeWatchpoint>("removeWatchpoint"),
                        InstanceMethod<&DebugSessionObject::catchSyscalls>("catchSyscalls"),
                        InstanceMethod<&DebugSessionObject::resume>("resume"),
                        InstanceMethod<&DebugSessionObject::when>("when"),
                        InstanceMethod<&DebugSessionObject::seek>("seek"),
                        InstanceMethod<&DebugSessionObject::openMoment>("openMoment"),
                        InstanceMethod<&DebugSessionObject::stats>("stats"),
                        InstanceMethod<&DebugSessionObject::watchInterrupt>("watchInterrupt"),
                        InstanceMethod<&DebugSessionObject::watchProgress>("watchProgress"),
                        InstanceMethod<&DebugSessionObject::close>("close")});
  }

  explicit DebugSessionObject(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<DebugSessionObject>(info) {
    Napi::Object o = info[0].As<Napi::Object>();
    rwd::ReplayOptions options;
    options.traceDir = o.Get("traceDir").As<Napi::String>();
    options.eventsPath = o.Get("eventsPath").As<Napi::String>();
    options.stubPath = o.Get("stubPath").As<Napi::String>();
    if (o.Get("traceName").IsString()) options.traceName = o.Get("traceName").As<Napi::String>();
    // The program's output goes to stderr by default: stdout may carry the debugger's protocol.
    options.stdoutFd = o.Has("stdoutFd") ? o.Get("stdoutFd").As<Napi::Number>().Int32Value() : 2;
    options.stderrFd = o.Has("stderrFd") ? o.Get("stderrFd").As<Napi::Number>().Int32Value() : 2;
    uint32_t pid = o.Get("pid").IsNumber() ? o.Get("pid").As<Napi::Number>().Uint32Value() : 0;
    std::string exe = o.Get("exe").IsString() ? std::string(o.Get("exe").As<Napi::String>()) : "";
    guard(info.Env(),
          [&] { session_ = std::make_unique<rwd::DebugSession>(std::move(options), pid, exe); });
  }

 private:
  // Runs f, turning engine errors into JavaScript errors with a code.
  template <typename F>
  auto guard(Napi::Env env, F f) -> decltype(f()) {
    try {
      return f();
    } catch (const Error& e) {
      throwJs(env, e.what(), rwd::errorCodeName(e.code()));
    } catch (const std::exception& e) {
      throwJs(env, e.what(), "ESYSTEM");
    }
  }

  rwd::DebugSession& session(Napi::Env env) {
    if (!session_) throwJs(env, "the debug session is closed", "ESYSTEM");
    return *session_;
  }

  Napi::Value stop(Napi::Env env, const rwd::DebugStop& s) {
    static const char* reasons[] = {
        "breakpoint",  "watchpoint", "step",          "begin",          "end",
        "interrupted", "signal",     "syscall-entry", "syscall-return", "exec"};
    Napi::Object o = Napi::Object::New(env);
    o.Set("reason", reasons[s.reason]);
    o.Set("thread", s.tid);
    if (s.reason == rwd::DebugStop::Watchpoint) {
      Napi::Object w = Napi::Object::New(env);
      w.Set("kind", watchKindName(s.watch.kind));
      w.Set("address", Napi::BigInt::New(env, s.watch.addr));
      o.Set("watch", w);
    }
    if (s.reason == rwd::DebugStop::Signal) o.Set("signal", s.signal);
    if (s.reason == rwd::DebugStop::SyscallEntry || s.reason == rwd::DebugStop::SyscallReturn) {
      o.Set("syscall", double(s.syscall));
    }
    return o;
  }

  Napi::Value pid(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), session(info.Env()).pid());
  }

  Napi::Value threads(const Napi::CallbackInfo& info) {
    std::vector<uint32_t> tids = session(info.Env()).threads();
    Napi::Array a = Napi::Array::New(info.Env(), tids.size());
    for (size_t i = 0; i < tids.size(); i++) a.Set(uint32_t(i), tids[i]);
    return a;
  }

  Napi::Value registers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t tid = info[0].As<Napi::Number>().Uint32Value();
    user_fpregs_struct fp;
    rwd::Regs r = guard(env, [&] { return session(env).registers(tid, &fp); });
    Napi::Object o = Napi::Object::New(env);
    o.Set("general", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(&r), sizeof r));
    o.Set("fp", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(&fp), sizeof fp));
    return o;
  }

  Napi::Value readMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t addr = address(info[0]);
    size_t len = size_t(info[1].As<Napi::Number>().Uint32Value());
    if (len > (64u << 20)) throwJs(env, "a memory read is limited to 64 MiB", "EUNSUPPORTED");
    std::vector<uint8_t> bytes = guard(env, [&] { return session(env).readMemory(addr, len); });
    return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
  }

  Napi::Value auxv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::vector<uint8_t>& a =
        guard(env, [&]() -> const std::vector<uint8_t>& { return session(env).program().auxv; });
    return Napi::Buffer<uint8_t>::Copy(env, a.data(), a.size());
  }

  Napi::Value exe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::String::New(env, guard(env, [&] { return session(env).program().exe; }));
  }

  Napi::Value memoryMap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return Napi::String::New(env, guard(env, [&] { return session(env).memoryMap(); }));
  }

  Napi::Value setBreakpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    // Conditions: an array of Buffers, each an agent expression.
    std::vector<rwd::Condition> conditions;
    if (info.Length() > 1 && info[1].IsArray()) {
      Napi::Array a = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value v = a.Get(i);
        if (!v.IsBuffer()) continue;
        Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
        conditions.emplace_back(b.Data(), b.Data() + b.Length());
      }
    }
    guard(env, [&] { session(env).setBreakpoint(address(info[0]), std::move(conditions)); });
    return env.Undefined();
  }

  Napi::Value removeBreakpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    guard(env, [&] { session(env).removeBreakpoint(address(info[0])); });
    return env.Undefined();
  }

  rwd::Watch watch(const Napi::CallbackInfo& info) {
    uint32_t len = info[2].As<Napi::Number>().Uint32Value();
    return rwd::Watch{watchKind(info.Env(), info[0]), address(info[1]),
                      uint8_t(len > 255 ? 0 : len)};
  }

  Napi::Value setWatchpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rwd::Watch w = watch(info);
    guard(env, [&] { session(env).setWatchpoint(w); });
    return env.Undefined();
  }

  Napi::Value removeWatchpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rwd::Watch w = watch(info);
    guard(env, [&] { session(env).removeWatchpoint(w); });
    return env.Undefined();
  }

  // catchSyscalls(null): off; catchSyscalls([]): all; catchSyscalls([nr...]): those.
  Napi::Value catchSyscalls(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::set<long> nrs;
    bool on = info[0].IsArray();
    if (on) {
      Napi::Array a = info[0].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        nrs.insert(long(a.Get(i).As<Napi::Number>().Int64Value()));
      }
    }
    guard(env, [&] { session(env).catchSyscalls(on, on && nrs.empty(), nrs); });
    return env.Undefined();
  }

  Napi::Value resume(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    bool reverse = o.Get("reverse").ToBoolean();
    bool step = o.Get("step").ToBoolean();
    uint32_t tid = o.Has("thread") && o.Get("thread").IsNumber()
                       ? o.Get("thread").As<Napi::Number>().Uint32Value()
                       : 0;
    if (o.Has("range") && o.Get("range").IsObject()) {
      // Range stepping: forwards, while the thread stays in [start, end).
      Napi::Object r = o.Get("range").As<Napi::Object>();
      uint64_t start = address(r.Get("start")), end = address(r.Get("end"));
      rwd::DebugStop s = guard(env, [&] { return session(env).stepRange(tid, start, end); });
      return stop(env, s);
    }
    rwd::DebugStop s = guard(env, [&] { return session(env).resume(reverse, step, tid); });
    return stop(env, s);
  }

  Napi::Value when(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("event", double(session(env).when()));
    o.Set("events", double(session(env).events()));
    return o;
  }

  Napi::Value stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rwd::HistoryStats st = session(env).stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("checkpoints", double(st.checkpoints));
    o.Set("windowsReplayed", double(st.windowsReplayed));
    o.Set("windowsSkipped", double(st.windowsSkipped));
    return o;
  }

  Napi::Value watchProgress(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[0].As<Napi::Int32Array>().ElementLength() < 1) {
      throwJs(env, "watchProgress takes an Int32Array of at least one element", "EUNSUPPORTED");
    }
    Napi::Int32Array word = info[0].As<Napi::Int32Array>();
    // Kept referenced: the engine writes the word while a resume runs.
    progressWord_ = Napi::Persistent(word);
    session(env).watchProgress(word.Data());
    return env.Undefined();
  }

  Napi::Value watchInterrupt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[0].As<Napi::Int32Array>().ElementLength() < 1) {
      throwJs(env, "watchInterrupt takes an Int32Array of at least one element", "EUNSUPPORTED");
    }
    Napi::Int32Array flag = info[0].As<Napi::Int32Array>();
    // Kept referenced: the engine reads the word while a resume runs.
    interruptFlag_ = Napi::Persistent(flag);
    session(env).watchInterrupt(flag.Data());
    return env.Undefined();
  }

  Napi::Value seek(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t event = uint64_t(info[0].As<Napi::Number>().Int64Value());
    rwd::DebugStop s = guard(env, [&] { return session(env).seek(event); });
    return stop(env, s);
  }

  // openMoment({segment, thread, breakpoint?, watch?: {address, length}, count, toEnd})
  Napi::Value openMoment(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    rwd::Breakpoints stops;
    if (o.Has("breakpoint")) stops.code.insert(address(o.Get("breakpoint")));
    rwd::DebugStop s = guard(env, [&] {
      if (o.Has("watch")) {
        Napi::Object w = o.Get("watch").As<Napi::Object>();
        stops.watches =
            rwd::watchesFor(address(w.Get("address")), w.Get("length").As<Napi::Number>());
      }
      return session(env).openMoment(uint64_t(o.Get("segment").As<Napi::Number>().Int64Value()),
                                     o.Get("thread").As<Napi::Number>().Uint32Value(), stops,
                                     uint64_t(o.Get("count").As<Napi::Number>().Int64Value()),
                                     o.Get("toEnd").ToBoolean());
    });
    return stop(env, s);
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    session_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<rwd::DebugSession> session_;
  Napi::Reference<Napi::Int32Array> interruptFlag_;
  Napi::Reference<Napi::Int32Array> progressWord_;
};

// dumpEvents(eventsPath, from, to) -> [{index, task, kind, text}]: events to be shown, as
// `rewind dump`.
Napi::Value DumpEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  uint64_t from = uint64_t(info[1].As<Napi::Number>().Int64Value());
  uint64_t to = uint64_t(info[2].As<Napi::Number>().Int64Value());
  std::vector<rwd::DumpedEvent> lines;
  try {
    lines = rwd::dumpEvents(path, from, to);
  } catch (const Error& e) {
    throwJs(env, e.what(), rwd::errorCodeName(e.code()));
  }
  Napi::Array out = Napi::Array::New(env, lines.size());
  for (uint32_t i = 0; i < lines.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", double(lines[i].index));
    o.Set("task", lines[i].tid);
    o.Set("kind", lines[i].kind);
    o.Set("text", lines[i].text);
    out.Set(i, o);
  }
  return out;
}

class QueryWorker : public SessionWorker {
 public:
  QueryWorker(Napi::Env env, rwd::ReplayOptions options, rwd::QueryRequest request, size_t maxHits,
              Napi::Int32Array progress)
      : SessionWorker(env),
        options_(std::move(options)),
        request_(request),
        maxHits_(maxHits),
        progress_(Napi::Persistent(progress)),
        word_(progress.Data()) {}

 protected:
  void run() override { result_ = rwd::runQuery(options_, request_, maxHits_, word_); }
  Napi::Value result(Napi::Env env) override {
    auto bytes = [&](const void* p, size_t n) {
      return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(p), n);
    };
    Napi::Object o = Napi::Object::New(env);
    o.Set("events", double(result_.events));
    o.Set("bias", Napi::BigInt::New(env, result_.bias));
    o.Set("address", Napi::BigInt::New(env, result_.address));
    Napi::Array hits = Napi::Array::New(env, result_.hits.size());
    for (size_t i = 0; i < result_.hits.size(); i++) {
      const rwd::QueryHit& h = result_.hits[i];
      Napi::Object ho = Napi::Object::New(env);
      ho.Set("segment", double(h.segment));
      ho.Set("thread", h.tid);
      ho.Set("count", double(h.count));
      ho.Set("general", bytes(&h.regs, sizeof h.regs));
      if (request_.kind == rwd::QueryRequest::Calls) {
        ho.Set("xmm", bytes(h.fp.xmm_space, 8 * 16));  // xmm0-7: floating-point arguments
        ho.Set("stack", bytes(h.stack.data(), h.stack.size()));
      } else {
        ho.Set("before", bytes(h.before.data(), h.before.size()));
        ho.Set("after", bytes(h.after.data(), h.after.size()));
        ho.Set("cause", h.bySyscall ? "syscall" : h.unexplained ? "unexplained" : "instruction");
        if (h.insn) ho.Set("instruction", Napi::BigInt::New(env, h.insn));
      }
      hits.Set(uint32_t(i), ho);
    }
    o.Set("hits", hits);
    return o;
  }

 private:
  rwd::ReplayOptions options_;
  rwd::QueryRequest request_;
  size_t maxHits_;
  Napi::Reference<Napi::Int32Array> progress_;  // written by the engine while the query runs
  int32_t* word_;
  rwd::QueryResult result_;
};

// query({traceDir, eventsPath, stubPath, traceName?, kind: 'calls'|'writes', address, length?,
//        relative, entry, maxHits}, progress: Int32Array) -> Promise<{events, bias, address, hits}>
Napi::Value Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  if (info.Length() < 2 || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[1].As<Napi::Int32Array>().ElementLength() < 1) {
    throwJs(env, "query takes an Int32Array of at least one element for its progress",
            "EUNSUPPORTED");
  }
  rwd::ReplayOptions options;
  options.traceDir = o.Get("traceDir").As<Napi::String>();
  options.eventsPath = o.Get("eventsPath").As<Napi::String>();
  options.stubPath = o.Get("stubPath").As<Napi::String>();
  if (o.Get("traceName").IsString()) options.traceName = o.Get("traceName").As<Napi::String>();
  options.stdoutFd = -1;
  options.stderrFd = -1;
  rwd::QueryRequest request;
  std::string kind = o.Get("kind").As<Napi::String>();
  if (kind != "calls" && kind != "writes") throwJs(env, "unknown query " + kind, "EUNSUPPORTED");
  request.kind = kind == "calls" ? rwd::QueryRequest::Calls : rwd::QueryRequest::Writes;
  request.addr = address(o.Get("address"));
  if (o.Has("length")) request.len = o.Get("length").As<Napi::Number>().Uint32Value();
  request.relative = o.Get("relative").ToBoolean();
  request.entry = address(o.Get("entry"));
  if (o.Get("starts").IsTypedArray() &&
      o.Get("starts").As<Napi::TypedArray>().TypedArrayType() == napi_biguint64_array) {
    Napi::BigUint64Array starts = o.Get("starts").As<Napi::BigUint64Array>();
    request.starts.assign(starts.Data(), starts.Data() + starts.ElementLength());
    std::sort(request.starts.begin(), request.starts.end());
  }
  size_t maxHits = size_t(o.Get("maxHits").As<Napi::Number>().Int64Value());
  auto* worker =
      new QueryWorker(env, std::move(options), request, maxHits, info[1].As<Napi::Int32Array>());
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// debug({traceDir, eventsPath, stubPath, traceName?, stdoutFd?, stderrFd?, pid?, exe?})
//   -> DebugSession
Napi::Value Debug(const Napi::CallbackInfo& info) {
  Napi::FunctionReference* ctor = info.Env().GetInstanceData<Napi::FunctionReference>();
  return ctor->New({info[0]});
}

// confine(traceDir, stubPath) -> whether the worker was in a sandbox (and now is confined)
Napi::Value Confine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string traceDir = info[0].As<Napi::String>();
  std::string stubPath = info[1].As<Napi::String>();
  try {
    return Napi::Boolean::New(env, rwd::sandbox::confine(traceDir, stubPath));
  } catch (const Error& e) {
    throwJs(env, e.what(), rwd::errorCodeName(e.code()));
  } catch (const std::exception& e) {
    throwJs(env, e.what(), "ESYSTEM");
  }
}

// zstdCompress(bytes) -> Buffer: one zstd frame, as the event stream's chunks hold.
Napi::Value ZstdCompress(const Napi::CallbackInfo& info) {
  Napi::Uint8Array in = info[0].As<Napi::Uint8Array>();
  std::vector<uint8_t> out;
  try {
    rwd::zstdCompress(in.Data(), in.ByteLength(), rwd::kEventChunkLevel, out);
  } catch (const Error& e) {
    throwJs(info.Env(), e.what(), rwd::errorCodeName(e.code()));
  }
  return Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), out.size());
}

// zstdDecompress(frame, size) -> Buffer of `size` bytes; throws when the frame holds another size.
Napi::Value ZstdDecompress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array in = info[0].As<Napi::Uint8Array>();
  int64_t size = info[1].As<Napi::Number>().Int64Value();
  // Sizes come from traces: no more than a chunk may hold (event_stream.cc's bound).
  if (size < 0 || size > (int64_t(64) << 20))
    throwJs(env, "zstd frame size out of range", "EBADTRACE");
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, size_t(size));
  if (!rwd::zstdDecompress(in.Data(), in.ByteLength(), out.Data(), out.Length())) {
    throwJs(env, "not a zstd frame of " + std::to_string(size) + " bytes", "EBADTRACE");
  }
  return out;
}

// chunkCheck(bytes, version) -> number: a chunk header's check of its compressed bytes.
Napi::Value ChunkCheck(const Napi::CallbackInfo& info) {
  Napi::Uint8Array in = info[0].As<Napi::Uint8Array>();
  uint32_t version = info[1].As<Napi::Number>().Uint32Value();
  return Napi::Number::New(info.Env(), rwd::chunkCheck(version, in.Data(), in.ByteLength()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(DebugSessionObject::define(env)));
  env.SetInstanceData(ctor);
  exports.Set("record", Napi::Function::New(env, Record));
  exports.Set("signalRecordings", Napi::Function::New(env, SignalRecordings));
  exports.Set("replay", Napi::Function::New(env, Replay));
  exports.Set("debug", Napi::Function::New(env, Debug));
  exports.Set("confine", Napi::Function::New(env, Confine));
  exports.Set("dumpEvents", Napi::Function::New(env, DumpEvents));
  exports.Set("query", Napi::Function::New(env, Query));
  exports.Set("zstdCompress", Napi::Function::New(env, ZstdCompress));
  exports.Set("zstdDecompress", Napi::Function::New(env, ZstdDecompress));
  exports.Set("chunkCheck", Napi::Function::New(env, ChunkCheck));
  return exports;
}

}  // namespace

NODE_API_MODULE(rewind, Init)
