// Work off the JS thread.
//  - RunAsync: a bounded piece of work (tokenize, a template) on the libuv pool.
//  - ThreadJob: a long run (model load, generation) on a native thread of the
//    addon's own (long-lived, one per running job), so it never starves the
//    libuv pool that fs/dns/zlib share. The thread reaches JS through one
//    ThreadSafeFunction (Post), and the promise settles there.
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
#include <string>

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
  Napi::FunctionReference lora_ctor;
  Napi::FunctionReference diffusion_ctor;  // only with GENAI_WITH_DIFFUSION
  Napi::FunctionReference upscaler_ctor;   // only with GENAI_WITH_DIFFUSION
  std::shared_ptr<JobTracker> jobs = std::make_shared<JobTracker>();
};
AddonData& Data(Napi::Env env);

// After freeing a model or a context (megabytes of buffers): hands the free
// pages of every malloc arena back to the OS. glibc keeps them otherwise:
// buffers of a few MB land in arenas once its mmap threshold has risen, and
// RSS crept up over load/dispose cycles. Any thread; a no-op off glibc.
void ReleaseFreedMemory();

// Runs on the JS thread with the job's callback (a no-op function when none was given).
using JsThunk = std::function<void(Napi::Env, Napi::Function)>;

// Runs fn on the JS thread from a callback Node calls (a thread-safe
// function's call_js, an async work's completion), where no exception may
// escape. A JS error thrown by fn (a user callback threw) becomes an uncaught
// exception, as Node does for throwing event listeners; while the env is
// going away (worker.terminate(), exit) no JS can run and errors are dropped.
void CallIntoJs(Napi::Env env, const std::function<void()>& fn) noexcept;

// Settles `deferred` on the JS thread with make()'s value (resolve) or error
// (reject); a maker that throws a JS error rejects with it. Never throws:
// while the env is going away the promise simply stays pending.
void SettleDeferred(Napi::Env env, napi_deferred deferred, bool resolve, const std::function<Napi::Value()>& make) noexcept;

// A long run (model load, context creation, generation) on a long-lived
// native thread with a channel to the JS thread.
class ThreadJob {
 public:
  // `work` runs on a native thread and returns a maker of the resolved value,
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

// Bounded work on the libuv pool (tokenize, a chat template, a state copy),
// registered with the env's JobTracker like a ThreadJob: env teardown and
// process exit wait for it, and one that has not started yet when they
// cancel does not run. The promise settles on the JS thread, never throwing
// into Node when the env is going away.
class PoolJob {
 public:
  virtual ~PoolJob() = default;
  // Queues job on the libuv pool; returns the promise it settles.
  static Napi::Promise Queue(Napi::Env env, std::unique_ptr<PoolJob> job);

 protected:
  // On a libuv pool thread: the work. Throws CodedError (rejects with its
  // code) or another exception (BACKEND_ERROR). Drops what the work holds
  // (contexts, models) before returning.
  virtual void Run() = 0;
  // On the JS thread after Run succeeded: the resolved value.
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  static void Execute(napi_env env, void* data);
  static void Complete(napi_env env, napi_status status, void* data);
  napi_async_work work_ = nullptr;
  napi_deferred deferred_ = nullptr;
  std::shared_ptr<JobTracker> tracker_;
  std::shared_ptr<CancelFlag> flag_ = std::make_shared<CancelFlag>();
  bool failed_ = false;
  std::string code_, message_;
};

template <typename R>
class PromiseWorker : public PoolJob {
 public:
  PromiseWorker(std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> toJs) : work_(std::move(work)), toJs_(std::move(toJs)) {}

 protected:
  void Run() override {
    std::function<R()> work = std::move(work_);  // its captures go with this frame, thrown or not
    work_ = nullptr;
    result_ = work();
  }
  Napi::Value Result(Napi::Env env) override { return toJs_(env, result_); }

 private:
  std::function<R()> work_;
  std::function<Napi::Value(Napi::Env, R&)> toJs_;
  R result_{};
};

template <typename R>
Napi::Promise RunAsync(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> toJs) {
  return PoolJob::Queue(env, std::make_unique<PromiseWorker<R>>(std::move(work), std::move(toJs)));
}

}  // namespace genai
