// Typed errors for JS: every error thrown or rejected by the addon carries a
// stable `code` (see lib/errors.ts, which wraps them into GenaiError).
#pragma once
#include <napi.h>
#include <stdexcept>
#include <string>

namespace genai {

// Codes shared with lib/errors.ts (GenaiErrorCode).
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

// An error raised on a worker thread; turned into a JS Error with `code` on
// the JS thread.
struct CodedError : std::runtime_error {
  std::string code;
  CodedError(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message);
[[noreturn]] void Throw(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace genai
