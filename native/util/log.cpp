#include "util/log.h"

#include "mtmd-helper.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "ggml.h"
#include "llama.h"
#include "util/errors.h"
#include "util/jobs.h"

namespace genai {

thread_local const CancelFlag* t_quiet_when_cancelled = nullptr;

// ---- LogCapture ----

namespace {
thread_local LogCapture* t_capture = nullptr;
}  // namespace

LogCapture::LogCapture() : prev_(t_capture) { t_capture = this; }
LogCapture::~LogCapture() { t_capture = prev_; }

std::string LogCapture::Errors() const {
  std::string s = errors_.empty() ? warnings_ : errors_;
  while (!s.empty() && (s.back() == ' ' || s.back() == ';')) s.pop_back();
  return s;
}

void CaptureLine(int level, const char* text) {
  LogCapture* c = t_capture;
  if (!c || (level != kLogError && level != kLogWarn)) return;
  std::string line(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.empty()) return;
  std::string& dst = level == kLogError ? c->errors_ : c->warnings_;
  if (dst.size() < 2000) dst += line + "; ";
}

namespace {

constexpr int kLogNone = 100;
// Lines waiting for the JS thread; past this, lines are dropped and counted.
constexpr size_t kMaxQueuedLines = 10000;
// A piece without a newline is held (per thread) until its line is complete, up to this.
constexpr size_t kMaxPendingBytes = 16384;

std::atomic<int> g_min_level{kLogError};

// The JS logger. Guarded by g_sink_mu, which is held across NonBlockingCall so
// the ThreadSafeFunction cannot be finalized (and freed) in between. Never
// destroyed: engine threads may log while the process exits.
struct JsSink {
  Napi::ThreadSafeFunction tsfn;
  napi_env env = nullptr;
  uint64_t id = 0;  // 0: none (stderr)
};
std::mutex& g_sink_mu = *new std::mutex();
JsSink& g_sink = *new JsSink();
uint64_t g_next_id = 0;              // guarded by g_sink_mu
std::atomic<bool> g_has_js{false};   // g_sink.id != 0, read without the lock
std::atomic<uint64_t> g_dropped{0};  // lines dropped since the logger was last told

int ParseLevel(const std::string& s) {
  if (s == "debug") return kLogDebug;
  if (s == "info") return kLogInfo;
  if (s == "warn") return kLogWarn;
  if (s == "error") return kLogError;
  if (s == "none") return kLogNone;
  return -1;
}

const char* LevelName(LogLevel l) {
  switch (l) {
    case kLogDebug: return "debug";
    case kLogInfo: return "info";
    case kLogWarn: return "warn";
    default: return "error";
  }
}

const char* SourceName(LogSource s) {
  switch (s) {
    case LogSource::Llama: return "llama";
    case LogSource::Ggml: return "ggml";
    default: return "sd";
  }
}

// Clears the sink; the caller holds g_sink_mu.
void ClearSinkLocked() {
  g_sink.tsfn = Napi::ThreadSafeFunction();
  g_sink.env = nullptr;
  g_sink.id = 0;
  g_has_js = false;
}

// Releases the current logger's ThreadSafeFunction (lines already queued are
// still delivered to it) and clears the sink; the caller holds g_sink_mu.
void ReleaseSinkLocked() {
  if (g_sink.id) g_sink.tsfn.Release();
  ClearSinkLocked();
}

// One complete line to the JS logger (stderr when it is gone meanwhile).
void Emit(LogLevel level, std::string msg, LogSource source) {
  while (!msg.empty() && msg.back() == '\r') msg.pop_back();
  if (msg.empty()) return;
  std::lock_guard<std::mutex> lock(g_sink_mu);
  napi_status st = napi_closing;
  if (g_sink.id) {
    st = g_sink.tsfn.NonBlockingCall([level, msg, source](Napi::Env env, Napi::Function fn) {
      if (fn.IsEmpty()) return;
      CallIntoJs(env, [&] {  // nothing may throw into Node, also while the env is going away
        const char* src = SourceName(source);
        if (uint64_t dropped = g_dropped.exchange(0)) {
          fn.Call({Napi::String::New(env, "warn"), Napi::String::New(env, std::to_string(dropped) + " log lines were dropped: the logger fell behind"),
                   Napi::String::New(env, src)});
        }
        fn.Call({Napi::String::New(env, LevelName(level)), Napi::String::New(env, msg), Napi::String::New(env, src)});
      });
    });
  }
  if (st == napi_ok) return;
  if (st == napi_queue_full) {
    g_dropped++;
    return;
  }
  msg += '\n';
  std::fputs(msg.c_str(), stderr);
}

// Pieces of a line from this thread, until its newline.
struct Pending {
  std::string text;
  LogLevel level = kLogInfo;
  LogSource source = LogSource::Llama;
};
thread_local Pending t_pending;

void FlushPending(Pending& p) {
  if (p.text.empty()) return;
  std::string text;
  text.swap(p.text);
  Emit(p.level, std::move(text), p.source);
}

void ToJs(LogLevel level, const char* text, LogSource source) {
  Pending& p = t_pending;
  if (!p.text.empty() && p.source != source) FlushPending(p);
  if (p.text.empty()) {
    p.level = level;
    p.source = source;
  }
  p.text += text;
  size_t start = 0, nl;
  while ((nl = p.text.find('\n', start)) != std::string::npos) {
    Emit(p.level, p.text.substr(start, nl - start), p.source);
    start = nl + 1;
  }
  p.text.erase(0, start);
  if (p.text.size() > kMaxPendingBytes) FlushPending(p);
}

// ggml's levels to the sink's: CONT continues this thread's previous line, NONE is info.
thread_local LogLevel t_last_level = kLogInfo;

LogLevel FromGgml(ggml_log_level level) {
  switch (level) {
    case GGML_LOG_LEVEL_CONT: return t_last_level;
    case GGML_LOG_LEVEL_DEBUG: return t_last_level = kLogDebug;
    case GGML_LOG_LEVEL_WARN: return t_last_level = kLogWarn;
    case GGML_LOG_LEVEL_ERROR: return t_last_level = kLogError;
    default: return t_last_level = kLogInfo;  // INFO, NONE
  }
}

void LlamaCallback(ggml_log_level level, const char* text, void*) { LogLine(FromGgml(level), text, LogSource::Llama); }
void GgmlCallback(ggml_log_level level, const char* text, void*) { LogLine(FromGgml(level), text, LogSource::Ggml); }

}  // namespace

void LogLine(LogLevel level, const char* text, LogSource source) {
  if (!text || !*text) return;
  CaptureLine(level, text);
  if (t_quiet_when_cancelled && t_quiet_when_cancelled->IsCancelled()) return;
  if (level < g_min_level.load(std::memory_order_relaxed)) return;
  if (g_has_js.load(std::memory_order_acquire))
    ToJs(level, text, source);
  else
    std::fputs(text, stderr);
}

void InstallLogger() {
  if (const char* env = std::getenv("GENAI_NATIVE_LOG")) {
    int l = ParseLevel(env);
    if (l >= 0) g_min_level = l;
  }
  llama_log_set(LlamaCallback, nullptr);        // llama.cpp's and ggml's
  ggml_log_set(GgmlCallback, nullptr);          // then ggml's own, to tell them apart
  mtmd_helper_log_set(LlamaCallback, nullptr);  // libmtmd's (llama.cpp's multimodal library) and its helpers'
}

void ReinstallGgmlLogger() { ggml_log_set(GgmlCallback, nullptr); }

Napi::Value SetLogLevel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) Throw(env, code::INVALID_ARGUMENT, "level must be a string");
  int l = ParseLevel(info[0].As<Napi::String>().Utf8Value());
  if (l < 0) Throw(env, code::INVALID_ARGUMENT, "level must be one of debug, info, warn, error, none");
  g_min_level = l;
  return env.Undefined();
}

Napi::Value SetLogger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !(info[0].IsFunction() || info[0].IsNull())) Throw(env, code::INVALID_ARGUMENT, "logger must be a function or null");
  if (info[0].IsNull()) {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    ReleaseSinkLocked();
    return env.Undefined();
  }
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(g_sink_mu);
    id = ++g_next_id;
  }
  // Finalized on this env's JS thread when released, or when the env goes
  // away first (node's own cleanup): forget it then, under the lock.
  auto forget = [](Napi::Env, uint64_t* fin_id, void*) {
    {
      std::lock_guard<std::mutex> lock(g_sink_mu);
      if (g_sink.id == *fin_id) ClearSinkLocked();
    }
    delete fin_id;
  };
  Napi::ThreadSafeFunction tsfn =
      Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "genai.log", kMaxQueuedLines, 1, static_cast<void*>(nullptr), forget, new uint64_t(id));
  tsfn.Unref(env);  // a logger never keeps the process alive
  std::lock_guard<std::mutex> lock(g_sink_mu);
  ReleaseSinkLocked();  // the previous logger, whichever env set it
  g_sink.tsfn = tsfn;
  g_sink.env = env;
  g_sink.id = id;
  g_dropped = 0;
  g_has_js = true;
  return env.Undefined();
}

void DetachLogger(Napi::Env env) {
  std::lock_guard<std::mutex> lock(g_sink_mu);
  if (g_sink.id && g_sink.env == static_cast<napi_env>(env)) ReleaseSinkLocked();
}

}  // namespace genai
