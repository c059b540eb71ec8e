#include "util/stack_thread.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <pthread.h>
#endif

#include <string>
#include <utility>

#include "util/errors.h"

namespace genai {

namespace {

thread_local uintptr_t t_stack_floor = 0;

// Settles the promise on the JS thread (a no-op when the env is going away).
using Settle = std::function<void(Napi::Env)>;

struct StackJob {
  Napi::ThreadSafeFunction tsfn;
  napi_deferred deferred = nullptr;
  std::shared_ptr<CancelFlag> cancel;
  std::shared_ptr<JobTracker> tracker;
  StackWork work;
  size_t stack_bytes = 0;
};

void CallSettle(Napi::Env env, Napi::Function, Settle* settle) {
  std::unique_ptr<Settle> owned(settle);
  if (env == nullptr) return;
  try {
    Napi::HandleScope scope(env);
    (*owned)(env);
  } catch (...) {
    // the env is going away: the promise stays pending, nothing can observe it
  }
}

void Finish(napi_deferred deferred, bool resolve, std::function<Napi::Value(Napi::Env)> make, Napi::Env env) {
  napi_value v = nullptr;
  try {
    v = make(env);
  } catch (const Napi::Error& e) {
    resolve = false;
    v = e.Value();
  }
  if (v != nullptr) (resolve ? napi_resolve_deferred : napi_reject_deferred)(env, deferred, v);
}

void RunJob(StackJob* raw) {
  std::unique_ptr<StackJob> job(raw);
  char top = 0;
  // 64 KiB below the reservation's end is left to what runs after the last check (libc, unwinding)
  t_stack_floor = reinterpret_cast<uintptr_t>(&top) - job->stack_bytes + (64u << 10);
  napi_deferred deferred = job->deferred;
  Settle settle;
  try {
    std::function<Napi::Value(Napi::Env)> make = job->work();
    settle = [deferred, make](Napi::Env env) { Finish(deferred, true, make, env); };
  } catch (const CodedError& e) {
    std::string c = e.code, m = e.what();
    settle = [deferred, c, m](Napi::Env env) {
      Finish(
          deferred, false, [&](Napi::Env e2) { return MakeError(e2, c, m).Value(); }, env);
    };
  } catch (const std::exception& e) {
    std::string m = e.what();
    settle = [deferred, m](Napi::Env env) {
      Finish(
          deferred, false, [&](Napi::Env e2) { return MakeError(e2, code::BACKEND_ERROR, m).Value(); }, env);
    };
  }
  auto* p = new Settle(std::move(settle));
  if (job->tsfn.NonBlockingCall(p, CallSettle) != napi_ok) delete p;
  job->tsfn.Release();
  // drop what the work held (a model) before leaving the tracker: process exit waits for the tracker only
  job->work = nullptr;
  std::shared_ptr<CancelFlag> flag = std::move(job->cancel);
  std::shared_ptr<JobTracker> tracker = std::move(job->tracker);
  job.reset();
  t_stack_floor = 0;
  tracker->Remove(flag);
}

#ifdef _WIN32
DWORD WINAPI ThreadMain(LPVOID arg) {
  RunJob(static_cast<StackJob*>(arg));
  return 0;
}
#else
void* ThreadMain(void* arg) {
  RunJob(static_cast<StackJob*>(arg));
  return nullptr;
}
#endif

// Starts the thread; false when it could not be created.
bool StartThread(StackJob* job, size_t stack_bytes) {
#ifdef _WIN32
  HANDLE h = CreateThread(nullptr, stack_bytes, ThreadMain, job, STACK_SIZE_PARAM_IS_A_RESERVATION, nullptr);
  if (h == nullptr) return false;
  CloseHandle(h);
  return true;
#else
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  pthread_t tid;
  bool ok = pthread_attr_setstacksize(&attr, stack_bytes) == 0 && pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
            pthread_create(&tid, &attr, ThreadMain, job) == 0;
  pthread_attr_destroy(&attr);
  return ok;
#endif
}

}  // namespace

uintptr_t StackThreadFloor() { return t_stack_floor; }

Napi::Promise RunOnStackThread(Napi::Env env, const char* name, size_t stack_bytes, std::shared_ptr<CancelFlag> cancel, StackWork work) {
  auto job = std::make_unique<StackJob>();
  napi_value promise = nullptr;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &job->deferred, &promise), Napi::Promise());
  job->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), name, 0, 1);
  job->cancel = std::move(cancel);
  job->tracker = Data(env).jobs;
  job->work = std::move(work);
  job->stack_bytes = stack_bytes;
  job->tracker->Add(job->cancel);
  StackJob* raw = job.release();
  if (!StartThread(raw, stack_bytes)) {
    std::unique_ptr<StackJob> back(raw);
    back->tracker->Remove(back->cancel);
    back->tsfn.Release();
    napi_reject_deferred(env, back->deferred,
                         MakeError(env, code::BACKEND_ERROR, "cannot start a native thread of " + std::to_string(stack_bytes >> 20) + " MiB of stack").Value());
  }
  return Napi::Promise(env, promise);
}

}  // namespace genai
