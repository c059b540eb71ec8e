// Work off the JS thread.
//  - RunAsync: a bounded piece of work (tokenize, a template) on the libuv pool.
//  - ThreadJob: a long run (model load, generation) on its own native thread, so
//    it never starves the libuv pool that fs/dns/zlib share. The thread reaches
//    JS through one ThreadSafeFunction (Post), and the promise settles there.
// Every job registers its CancelFlag with the JobTracker, so env teardown
// (process exit, worker_threads termination) cancels and waits for it.
#pragma once
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>

#include "util/errors.h"

namespace genai {

struct CancelFlag {
  std::atomic<bool> cancelled{false};
  bool IsCancelled() const { return cancelled.load(std::memory_order_relaxed); }
};

// JS-visible cancel token: `new CancelToken()`, `.cancel()`, `.cancelled`.
class CancelToken : public Napi::ObjectWrap<CancelToken> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit CancelToken(const Napi::CallbackInfo& info);
  std::shared_ptr<CancelFlag> flag = std::make_shared<CancelFlag>();
  // The token's flag, or a fresh one when the value is undefined.
  static std::shared_ptr<CancelFlag> From(Napi::Value v);

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Cancelled(const Napi::CallbackInfo& info);
};

// Running jobs of one env (one per main thread / worker_thread).
class JobTracker {
 public:
  void Add(const std::shared_ptr<CancelFlag>& f);
  void Remove(const std::shared_ptr<CancelFlag>& f);
  // Cancels everything and waits (up to timeout_ms) for the jobs to finish.
  void CancelAllAndWait(int timeout_ms);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::shared_ptr<CancelFlag>> running_;
};

struct AddonData {
  napi_env env = nullptr;
  Napi::FunctionReference error_ctor;  // lib/errors.ts GenaiError, from init()
  Napi::FunctionReference cancel_token_ctor;
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference context_ctor;
  Napi::FunctionReference diffusion_ctor;  // only with GENAI_WITH_DIFFUSION
  Napi::FunctionReference upscaler_ctor;   // only with GENAI_WITH_DIFFUSION
  std::shared_ptr<JobTracker> jobs = std::make_shared<JobTracker>();
};
AddonData& Data(Napi::Env env);

// Runs on the JS thread with the job's callback (a no-op function when none was given).
using JsThunk = std::function<void(Napi::Env, Napi::Function)>;

// A native thread with a channel to the JS thread.
class ThreadJob {
 public:
  // `work` runs on the new thread and returns a maker of the resolved value,
  // which runs on the JS thread. A CodedError thrown by work rejects with its
  // code; any other exception rejects with BACKEND_ERROR.
  using ValueMaker = std::function<Napi::Value(Napi::Env)>;
  using Work = std::function<ValueMaker(ThreadJob&)>;
  // `callback` (may be empty) is held by the ThreadSafeFunction and passed to
  // every posted thunk; it is released on the JS thread when the job ends.
  static Napi::Promise Start(Napi::Env env, const char* name, std::shared_ptr<CancelFlag> cancel, Napi::Function callback, Work work);

  // Queue fn to run on the JS thread (never blocks; dropped if the env is going away).
  void Post(JsThunk fn);
  const std::shared_ptr<CancelFlag>& cancel() const { return cancel_; }

 private:
  ThreadJob() = default;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<CancelFlag> cancel_;
};

// Bounded work on the libuv pool; resolves with toJs(result) on the JS thread.
template <typename R>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> toJs)
      : Napi::AsyncWorker(env, "genai.async"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), toJs_(std::move(toJs)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = work_();
    } catch (const CodedError& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(toJs_(Env(), result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(MakeError(Env(), code_, e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<R()> work_;
  std::function<Napi::Value(Napi::Env, R&)> toJs_;
  R result_{};
  std::string code_ = code::BACKEND_ERROR;
};

template <typename R>
Napi::Promise RunAsync(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> toJs) {
  auto* w = new PromiseWorker<R>(env, std::move(work), std::move(toJs));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace genai
