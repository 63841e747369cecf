// N-API glue: Recorder and replayer exposed to JavaScript as promise-returning functions.
// Each session runs entirely on one worker thread (the kernel ties a tracee to the thread
// that traces it), never on the event loop.
#include <napi.h>

#include <memory>

#include "core/error.h"
#include "record/record_session.h"
#include "replay/replay_session.h"

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

// record({exe, argv, env, traceDir}) -> Promise<{waitStatus, events, syscalls, tasks, blobs}>
Napi::Value Record(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  rwd::RecordOptions options;
  options.exe = o.Get("exe").As<Napi::String>();
  options.argv = stringArray(o.Get("argv"));
  options.env = stringArray(o.Get("env"));
  options.traceDir = o.Get("traceDir").As<Napi::String>();
  auto* worker = new RecordWorker(info.Env(), std::move(options));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// replay({traceDir, eventsPath, stubPath, stdoutFd?, stderrFd?}) -> Promise<{waitStatus, events}>
Napi::Value Replay(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  rwd::ReplayOptions options;
  options.traceDir = o.Get("traceDir").As<Napi::String>();
  options.eventsPath = o.Get("eventsPath").As<Napi::String>();
  options.stubPath = o.Get("stubPath").As<Napi::String>();
  if (o.Has("stdoutFd")) options.stdoutFd = o.Get("stdoutFd").As<Napi::Number>().Int32Value();
  if (o.Has("stderrFd")) options.stderrFd = o.Get("stderrFd").As<Napi::Number>().Int32Value();
  auto* worker = new ReplayWorker(info.Env(), std::move(options));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("record", Napi::Function::New(env, Record));
  exports.Set("replay", Napi::Function::New(env, Replay));
  return exports;
}

}  // namespace

NODE_API_MODULE(rewind, Init)
