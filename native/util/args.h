// Argument checks for values coming from JS. The TypeScript layer validates
// first and fills every default (lib/*/defaults.ts); C++ reads each field and
// checks it again (never trust the TS layer). A field is either required
// (missing → INVALID_ARGUMENT) or optional, where absent means the engine's
// own default (llama.cpp's / sd.cpp's *_default_params()).
#pragma once
#include <napi.h>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>

#include "util/errors.h"

namespace genai {

inline Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsObject()) Throw(info.Env(), code::INVALID_ARGUMENT, std::string(name) + " must be an object");
  return info[i].As<Napi::Object>();
}

inline std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) Throw(info.Env(), code::INVALID_ARGUMENT, std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

inline Napi::Function FunctionArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsFunction()) Throw(info.Env(), code::INVALID_ARGUMENT, std::string(name) + " must be a function");
  return info[i].As<Napi::Function>();
}

// A finite number in [lo, hi]; nullopt when the property is absent/undefined/null.
inline std::optional<double> OptNumberField(Napi::Object o, const char* key, double lo, double hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsNumber()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < lo || d > hi)
    Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a finite number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return d;
}

inline std::optional<int64_t> OptIntField(Napi::Object o, const char* key, int64_t lo, int64_t hi) {
  std::optional<double> d = OptNumberField(o, key, static_cast<double>(lo), static_cast<double>(hi));
  if (!d) return std::nullopt;
  if (std::floor(*d) != *d) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be an integer");
  return static_cast<int64_t>(*d);
}

inline std::optional<bool> OptBoolField(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsBoolean()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline std::optional<std::string> OptStringField(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsString()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

template <typename T>
T Required(Napi::Object o, const char* key, std::optional<T> v) {
  if (!v) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " is required");
  return *v;
}

// Throws INVALID_ARGUMENT naming the first property of `o` that is not in
// `keys`: an option C++ does not read must not be silently ignored.
template <typename Keys>  // any range of const char*
void CheckKeysIn(Napi::Object o, const Keys& keys, const char* what) {
  Napi::Array names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string k = names.Get(i).ToString().Utf8Value();
    bool known = false;
    for (const char* key : keys) known = known || k == key;
    if (!known) Throw(o.Env(), code::INVALID_ARGUMENT, std::string("unknown ") + what + " field " + k);
  }
}
inline void CheckKeys(Napi::Object o, std::initializer_list<const char*> keys, const char* what) { CheckKeysIn(o, keys, what); }

inline double NumberField(Napi::Object o, const char* key, double lo, double hi) { return Required(o, key, OptNumberField(o, key, lo, hi)); }
inline int64_t IntField(Napi::Object o, const char* key, int64_t lo, int64_t hi) { return Required(o, key, OptIntField(o, key, lo, hi)); }
inline bool BoolField(Napi::Object o, const char* key) { return Required(o, key, OptBoolField(o, key)); }
inline std::string StringField(Napi::Object o, const char* key) { return Required(o, key, OptStringField(o, key)); }

}  // namespace genai
