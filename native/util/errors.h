// Typed errors for JS: every error the addon throws or rejects with is an
// instance of lib/errors.ts GenaiError, constructed here with a stable `code`.
// lib/binding/load.ts hands the class and the list of codes to init().
#pragma once
#include <napi.h>
#include <stdexcept>
#include <string>

namespace genai {

// The codes C++ uses: names from lib/errors.ts ERROR_CODES (the one list);
// SetErrorClass() checks that each is in it.
namespace code {
constexpr const char* MODEL_NOT_FOUND = "MODEL_NOT_FOUND";
constexpr const char* INVALID_MODEL = "INVALID_MODEL";
constexpr const char* INVALID_ARGUMENT = "INVALID_ARGUMENT";
constexpr const char* OUT_OF_MEMORY = "OUT_OF_MEMORY";
constexpr const char* ABORTED = "ABORTED";
constexpr const char* DISPOSED = "DISPOSED";
constexpr const char* BUSY = "BUSY";
constexpr const char* ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE";
constexpr const char* BACKEND_ERROR = "BACKEND_ERROR";
}  // namespace code

// An error raised on a worker thread; turned into a GenaiError on the JS thread.
struct CodedError : std::runtime_error {
  std::string code;
  CodedError(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

// init(GenaiError, codes): stores the class for this env. Throws a JS Error
// when a code C++ uses is missing from `codes`.
Napi::Value InitErrors(const Napi::CallbackInfo& info);

// A GenaiError(code, message) (before init(), or when the env is going away,
// a plain Error with `code` set).
Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message);
[[noreturn]] void Throw(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace genai
