#include "util/jobs.h"

#include <chrono>
#include <deque>
#include <thread>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace genai {

AddonData& Data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Function CancelToken::Init(Napi::Env env) {
  return DefineClass(env, "CancelToken", {InstanceMethod<&CancelToken::Cancel>("cancel"), InstanceAccessor<&CancelToken::Cancelled>("cancelled")});
}

CancelToken::CancelToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelToken>(info) {}

Napi::Value CancelToken::Cancel(const Napi::CallbackInfo& info) {
  flag->cancelled = true;
  return info.Env().Undefined();
}

Napi::Value CancelToken::Cancelled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag->IsCancelled()); }

std::shared_ptr<CancelFlag> CancelToken::From(Napi::Value v) {
  if (v.IsUndefined() || v.IsNull()) return std::make_shared<CancelFlag>();
  Napi::Env env = v.Env();
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Data(env).cancel_token_ctor.Value()))
    Throw(env, code::INVALID_ARGUMENT, "cancel must be a CancelToken");
  return CancelToken::Unwrap(v.As<Napi::Object>())->flag;
}

void JobTracker::Add(const std::shared_ptr<CancelFlag>& f) {
  std::lock_guard<std::mutex> lock(mu_);
  running_.insert(f);
}

void JobTracker::Remove(const std::shared_ptr<CancelFlag>& f) {
  std::lock_guard<std::mutex> lock(mu_);
  running_.erase(f);
  cv_.notify_all();
}

void JobTracker::CancelAllAndWait(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto& f : running_) f->cancelled = true;
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return running_.empty(); });
}

void ReleaseFreedMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void CallIntoJs(Napi::Env env, const std::function<void()>& fn) noexcept {
  try {
    Napi::HandleScope scope(env);
    try {
      fn();
    } catch (const Napi::Error& e) {
      // a callback threw: surface it as an uncaught exception instead of
      // unwinding through libuv (a no-op while the env is going away)
      napi_fatal_exception(env, e.Value());
    }
  } catch (...) {
    // the env is going away (no JS can run), or out of memory: nothing to tell
  }
}

void SettleDeferred(Napi::Env env, napi_deferred deferred, bool resolve, const std::function<Napi::Value()>& make) noexcept {
  try {
    Napi::HandleScope scope(env);
    napi_value v = nullptr;
    try {
      v = make();
    } catch (const Napi::Error& e) {
      resolve = false;
      v = e.Value();
    }
    // fails (napi_pending_exception / napi_cannot_run_js) while the env is going away: left pending
    if (v != nullptr) (resolve ? napi_resolve_deferred : napi_reject_deferred)(env, deferred, v);
  } catch (...) {
  }
}

namespace {

void CallThunk(Napi::Env env, Napi::Function cb, JsThunk* fn) {
  std::unique_ptr<JsThunk> owned(fn);
  if (env != nullptr) CallIntoJs(env, [&] { (*owned)(env, cb); });
}

// The native threads ThreadJobs run on. A job never waits for another: it
// takes an idle thread or a new one. Threads stay (up to kMaxIdle idle) for
// the next jobs: a new thread per operation made glibc hand each one a fresh
// malloc arena and OpenMP start a new team, and RSS crept up with every
// load/generation. Never destroyed: idle threads wait on it through exit().
class NativeThreads {
 public:
  static NativeThreads& Get() {
    static NativeThreads* pool = new NativeThreads();
    return *pool;
  }

  void Run(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
    if (idle_ > 0) {  // claim an idle thread
      idle_--;
      wakeups_++;
      cv_.notify_one();
    } else {
      std::thread([this] { Loop(); }).detach();
    }
  }

 private:
  static constexpr size_t kMaxIdle = 4;

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      while (!queue_.empty()) {
        std::function<void()> task = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        task();
        task = nullptr;
        lock.lock();
      }
      if (idle_ >= kMaxIdle) return;
      idle_++;
      cv_.wait(lock, [this] { return wakeups_ > 0; });
      wakeups_--;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t idle_ = 0;     // threads waiting and not yet claimed
  size_t wakeups_ = 0;  // claimed threads yet to wake
};

}  // namespace

void ThreadJob::Post(JsThunk fn) {
  auto* p = new JsThunk(std::move(fn));
  if (tsfn_.NonBlockingCall(p, CallThunk) != napi_ok) delete p;
}

Napi::Promise ThreadJob::Start(Napi::Env env, const char* name, std::shared_ptr<CancelFlag> cancel, Napi::Function callback, Work work) {
  napi_deferred deferred = nullptr;
  napi_value promise = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &deferred, &promise), Napi::Promise());
  std::shared_ptr<ThreadJob> job(new ThreadJob());
  job->cancel_ = std::move(cancel);
  job->tsfn_ = Napi::ThreadSafeFunction::New(env, callback.IsEmpty() ? Napi::Function::New(env, [](const Napi::CallbackInfo&) {}) : callback, name, 0, 1);
  std::shared_ptr<JobTracker> tracker = Data(env).jobs;
  tracker->Add(job->cancel_);
  NativeThreads::Get().Run([job, work = std::move(work), deferred, tracker]() mutable {
    std::shared_ptr<CancelFlag> flag = job->cancel_;
    JsThunk settle;
    try {
      ValueMaker make = work(*job);
      settle = [deferred, make](Napi::Env env, Napi::Function) { SettleDeferred(env, deferred, true, [&] { return make(env); }); };
    } catch (const CodedError& e) {
      std::string c = e.code, m = e.what();
      settle = [deferred, c, m](Napi::Env env, Napi::Function) { SettleDeferred(env, deferred, false, [&] { return MakeError(env, c, m).Value(); }); };
    } catch (const std::exception& e) {
      std::string m = e.what();
      settle = [deferred, m](Napi::Env env, Napi::Function) {
        SettleDeferred(env, deferred, false, [&] { return MakeError(env, code::BACKEND_ERROR, m).Value(); });
      };
    } catch (...) {
      settle = [deferred](Napi::Env env, Napi::Function) {
        SettleDeferred(env, deferred, false, [&] { return MakeError(env, code::BACKEND_ERROR, "unknown native exception").Value(); });
      };
    }
    job->Post(std::move(settle));
    job->tsfn_.Release();
    // Drop everything the work held (contexts, models) before saying we are
    // done, so process exit never races a free on this thread.
    settle = nullptr;
    work = nullptr;
    job.reset();
    tracker->Remove(flag);
  });
  return Napi::Promise(env, promise);
}

Napi::Promise PoolJob::Queue(Napi::Env env, std::unique_ptr<PoolJob> job) {
  napi_value promise = nullptr, name = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &job->deferred_, &promise), Napi::Promise());
  NAPI_THROW_IF_FAILED(env, napi_create_string_latin1(env, "genai.async", NAPI_AUTO_LENGTH, &name), Napi::Promise());
  NAPI_THROW_IF_FAILED(env, napi_create_async_work(env, nullptr, name, Execute, Complete, job.get(), &job->work_), Napi::Promise());
  job->tracker_ = Data(env).jobs;
  job->tracker_->Add(job->flag_);
  napi_status st = napi_queue_async_work(env, job->work_);
  if (st != napi_ok) {
    job->tracker_->Remove(job->flag_);
    napi_delete_async_work(env, job->work_);
    NAPI_THROW_IF_FAILED(env, st, Napi::Promise());
  }
  job.release();  // Complete deletes it
  return Napi::Promise(env, promise);
}

void PoolJob::Execute(napi_env, void* data) {
  auto* job = static_cast<PoolJob*>(data);
  if (job->flag_->IsCancelled()) {
    job->failed_ = true;  // env teardown or exit came first: the work does not start
    job->code_ = code::ABORTED;
    job->message_ = "the environment is shutting down";
  } else {
    try {
      job->Run();
    } catch (const CodedError& e) {
      job->failed_ = true;
      job->code_ = e.code;
      job->message_ = e.what();
    } catch (const std::exception& e) {
      job->failed_ = true;
      job->code_ = code::BACKEND_ERROR;
      job->message_ = e.what();
    } catch (...) {
      job->failed_ = true;
      job->code_ = code::BACKEND_ERROR;
      job->message_ = "unknown native exception";
    }
  }
  job->tracker_->Remove(job->flag_);
}

void PoolJob::Complete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<PoolJob> job(static_cast<PoolJob*>(data));
  job->tracker_->Remove(job->flag_);  // when it never ran (cancelled)
  if (status != napi_cancelled) {
    Napi::Env e(env);
    PoolJob* j = job.get();
    SettleDeferred(e, j->deferred_, !j->failed_, [&] { return j->failed_ ? MakeError(e, j->code_, j->message_).Value() : j->Result(e); });
  }
  napi_delete_async_work(env, job->work_);
}

}  // namespace genai
