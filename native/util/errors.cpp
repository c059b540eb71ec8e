#include "util/errors.h"

#include <set>

#include "util/jobs.h"

namespace genai {

namespace {
const char* const kCodes[] = {code::MODEL_NOT_FOUND, code::INVALID_MODEL, code::INVALID_ARGUMENT,   code::OUT_OF_MEMORY, code::ABORTED,
                              code::DISPOSED,        code::BUSY,          code::ENGINE_UNAVAILABLE, code::BACKEND_ERROR};
}  // namespace

Napi::Value InitErrors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsArray())
    throw Napi::Error::New(env, "init(errorClass, codes) takes a class and an array of codes");
  std::set<std::string> known;
  auto codes = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < codes.Length(); i++) {
    Napi::Value v = codes.Get(i);
    if (v.IsString()) known.insert(v.As<Napi::String>().Utf8Value());
  }
  for (const char* c : kCodes)
    if (!known.count(c)) throw Napi::Error::New(env, std::string("the addon uses error code ") + c + ", which lib/errors.ts ERROR_CODES does not list");
  Data(env).error_ctor = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message) {
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data && !data->error_ctor.IsEmpty()) {
    try {
      Napi::Object e = data->error_ctor.New({Napi::String::New(env, code), Napi::String::New(env, message)});
      return Napi::Error(env, e);
    } catch (const Napi::Error&) {
      // the env is shutting down: fall through to a plain Error
    }
  }
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

void Throw(Napi::Env env, const std::string& code, const std::string& message) { throw MakeError(env, code, message); }

}  // namespace genai
