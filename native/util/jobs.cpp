#include "util/jobs.h"

#include <chrono>
#include <thread>

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

namespace {
void CallThunk(Napi::Env env, Napi::Function cb, JsThunk* fn) {
  if (env != nullptr) {
    try {
      (*fn)(env, cb);
    } catch (const Napi::Error& e) {
      // A JS callback threw: surface it as an uncaught exception, as Node does
      // for throwing event listeners, instead of unwinding through libuv.
      napi_fatal_exception(env, e.Value());
    }
  }
  delete fn;
}
}  // namespace

void ThreadJob::Post(JsThunk fn) {
  auto* p = new JsThunk(std::move(fn));
  if (tsfn_.NonBlockingCall(p, CallThunk) != napi_ok) delete p;
}

Napi::Promise ThreadJob::Start(Napi::Env env, const char* name, std::shared_ptr<CancelFlag> cancel, Napi::Function callback, Work work) {
  auto deferred = Napi::Promise::Deferred::New(env);
  std::shared_ptr<ThreadJob> job(new ThreadJob());
  job->cancel_ = std::move(cancel);
  job->tsfn_ = Napi::ThreadSafeFunction::New(env, callback.IsEmpty() ? Napi::Function::New(env, [](const Napi::CallbackInfo&) {}) : callback, name, 0, 1);
  std::shared_ptr<JobTracker> tracker = Data(env).jobs;
  tracker->Add(job->cancel_);
  std::thread([job, work = std::move(work), deferred, tracker]() mutable {
    std::shared_ptr<CancelFlag> flag = job->cancel_;
    JsThunk settle;
    try {
      ValueMaker make = work(*job);
      settle = [deferred, make](Napi::Env env, Napi::Function) {
        try {
          deferred.Resolve(make(env));
        } catch (const Napi::Error& e) {
          deferred.Reject(e.Value());
        }
      };
    } catch (const CodedError& e) {
      std::string c = e.code, m = e.what();
      settle = [deferred, c, m](Napi::Env env, Napi::Function) { deferred.Reject(MakeError(env, c, m).Value()); };
    } catch (const std::exception& e) {
      std::string m = e.what();
      settle = [deferred, m](Napi::Env env, Napi::Function) { deferred.Reject(MakeError(env, code::BACKEND_ERROR, m).Value()); };
    }
    job->Post(std::move(settle));
    job->tsfn_.Release();
    // Drop everything the work held (contexts, models) before saying we are
    // done, so process exit never races a free on this thread.
    settle = nullptr;
    work = nullptr;
    job.reset();
    tracker->Remove(flag);
  }).detach();
  return deferred.Promise();
}

}  // namespace genai
