// The native half of a JS handle (ModelHandle, ContextHandle, DiffusionHandle,
// UpscalerHandle): a shared_ptr to the engine state. The handle is made only
// by the addon (New(), from a load's promise) and constructed from the
// External it passes; dispose() drops the handle's reference (Reset()), and
// running jobs and dependent objects keep their own, so the last holder frees
// the state. Use as a member, constructed from the ObjectWrap constructor's info.
#pragma once
#include <napi.h>

#include <memory>
#include <utility>

#include "util/errors.h"

namespace genai {

template <typename T>
class SharedHandle {
 public:
  // `created_by` is the error when the constructor is called from JS
  // ("ModelHandle is created by loadModel()"), `disposed` the one State()
  // throws after Reset() ("the model has been disposed"). String literals.
  SharedHandle(const Napi::CallbackInfo& info, const char* created_by, const char* disposed) : disposed_(disposed) {
    if (info.Length() != 1 || !info[0].IsExternal()) Throw(info.Env(), code::INVALID_ARGUMENT, created_by);
    // taken, not copied: the External lives until a GC finalizes it, and a
    // copy there would keep the engine state (weights, KV cache) alive after
    // dispose() until then
    state_ = std::move(*info[0].As<Napi::External<std::shared_ptr<T>>>().Data());
  }
  SharedHandle(const SharedHandle&) = delete;
  SharedHandle& operator=(const SharedHandle&) = delete;

  // The state, or throws DISPOSED.
  std::shared_ptr<T> State(Napi::Env env) const {
    if (!state_) Throw(env, code::DISPOSED, disposed_);
    return state_;
  }
  // The state, null once disposed (never throws).
  const std::shared_ptr<T>& Peek() const { return state_; }
  // dispose(): drops this handle's reference.
  void Reset() { state_.reset(); }

  // A new JS handle (`ctor`, the class whose member this is) over `state`.
  static Napi::Value New(Napi::Env env, const Napi::FunctionReference& ctor, std::shared_ptr<T> state) {
    auto* held = new std::shared_ptr<T>(std::move(state));
    return ctor.New({Napi::External<std::shared_ptr<T>>::New(env, held, [](Napi::Env, std::shared_ptr<T>* p) { delete p; })});
  }

 private:
  std::shared_ptr<T> state_;
  const char* disposed_;
};

}  // namespace genai
