// Argument checks for values coming from JS. The TS layer validates first;
// these checks repeat the ones that protect memory safety (never trust TS).
#pragma once
#include <napi.h>
#include <cmath>
#include <limits>
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

// A finite number in [lo, hi], or `def` when the property is absent/undefined.
inline double NumberProp(Napi::Object o, const char* key, double def, double lo, double hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < lo || d > hi)
    Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a finite number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return d;
}

inline int64_t IntProp(Napi::Object o, const char* key, int64_t def, int64_t lo, int64_t hi) {
  double d = NumberProp(o, key, static_cast<double>(def), static_cast<double>(lo), static_cast<double>(hi));
  if (std::floor(d) != d) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be an integer");
  return static_cast<int64_t>(d);
}

inline bool BoolProp(Napi::Object o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsBoolean()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline std::string StringProp(Napi::Object o, const char* key, const std::string& def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsString()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace genai
