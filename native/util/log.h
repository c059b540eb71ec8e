// The one log sink of the process. llama.cpp, ggml and stable-diffusion.cpp
// lines, from any thread, all come through LogLine(level, text, source):
//  1. the thread's LogCapture (if any) keeps error/warning lines for a failure's message;
//  2. lines of a cancelled operation marked quiet are dropped;
//  3. lines below the level (setLogLevel; default "error", or GENAI_NATIVE_LOG,
//     read once at the first init) are dropped;
//  4. the rest go to the JS logger (setLogger) when one is set, else to stderr.
// The JS logger is reached through a ThreadSafeFunction: an engine thread only
// queues the line (never blocks, never calls into JS); past kMaxQueuedLines
// waiting lines are dropped and counted, and the logger is told how many.
//
// llama_log_set/ggml_log_set/sd_set_log_callback are process-wide, so the
// level and the logger are too: one env owns the JS logger, the one (main
// thread or a worker_thread) that last called setLogger(fn). Any env's
// setLogger(null) removes it. When the owning env exits or is torn down, lines
// go to stderr again. The ThreadSafeFunction is unref'd: a logger never keeps
// the event loop alive, and lines still queued when the loop ends are lost.
#pragma once
#include <napi.h>

#include <string>

namespace genai {

enum class LogSource { Llama, Ggml, Sd };

// ggml's numbering (GGML_LOG_LEVEL_DEBUG … GGML_LOG_LEVEL_ERROR).
enum LogLevel : int { kLogDebug = 1, kLogInfo = 2, kLogWarn = 3, kLogError = 4 };

// Routes llama.cpp's and ggml's logs to the sink and reads GENAI_NATIVE_LOG.
// Once per process (the first init).
void InstallLogger();
// ggml's callback again: stable-diffusion.cpp's new_sd_ctx() resets ggml's
// logger to ggml's own (stderr, unfiltered) while it loads.
void ReinstallGgmlLogger();

// One piece of an engine's output (usually a line ending in '\n'; pieces
// without one are joined with the next piece of that thread for the JS logger).
void LogLine(LogLevel level, const char* text, LogSource source);

// setLogLevel('debug'|'info'|'warn'|'error'|'none'): the lowest level that is
// delivered, for every engine.
Napi::Value SetLogLevel(const Napi::CallbackInfo& info);
// setLogger(fn | null): fn(level, message, source) on this env's JS thread for
// every delivered line (message without its trailing newline; level 'debug' |
// 'info' | 'warn' | 'error'; source 'llama' | 'ggml' | 'sd'); null: stderr.
Napi::Value SetLogger(const Napi::CallbackInfo& info);
// This env is exiting or being torn down: if it owns the JS logger, lines go
// to stderr from now on.
void DetachLogger(Napi::Env env);

// While set and cancelled, this thread's log lines are dropped: an aborted
// decode logs its (expected) failure at error level.
struct CancelFlag;
extern thread_local const CancelFlag* t_quiet_when_cancelled;

// Sets t_quiet_when_cancelled for its lifetime (a diffusion generation or
// upscale: the graph a cancel stops logs its failure at error level).
class QuietWhenCancelled {
 public:
  explicit QuietWhenCancelled(const CancelFlag* flag) : prev_(t_quiet_when_cancelled) { t_quiet_when_cancelled = flag; }
  ~QuietWhenCancelled() { t_quiet_when_cancelled = prev_; }
  QuietWhenCancelled(const QuietWhenCancelled&) = delete;
  QuietWhenCancelled& operator=(const QuietWhenCancelled&) = delete;

 private:
  const CancelFlag* prev_;
};

// Collects the error and warning lines the engines log on this thread while
// alive (whatever the log level), so a failure's message can carry them.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  // The captured error lines (warnings when there are none), joined by "; ".
  std::string Errors() const;

 private:
  friend void CaptureLine(int level, const char* text);
  std::string errors_, warnings_;
  LogCapture* prev_;
};

}  // namespace genai
