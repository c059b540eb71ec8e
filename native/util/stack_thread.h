// A job on its own native thread with a stack of a chosen size, for work
// whose recursion depth is bounded by a stack-size check rather than by its
// code (chat templates: llama.cpp's Jinja interpreter recurses per AST node
// and per macro call). The stack is a reservation: pages are committed only
// as they are touched. The job registers its CancelFlag with the env's
// JobTracker (env teardown cancels it and waits), and settles a promise on
// the JS thread through a ThreadSafeFunction; it is separate from ThreadJob
// (util/jobs.h), which runs on shared threads of the default stack size.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "util/jobs.h"

namespace genai {

// Where the running stack thread's stack ends: the lowest address work may
// use (0 when the calling thread is not a stack thread).
uintptr_t StackThreadFloor();

// Runs `work` on a new thread with `stack_bytes` of stack. `work` returns a
// maker of the resolved value (run on the JS thread); a CodedError it throws
// rejects with its code, any other exception with BACKEND_ERROR. `work` and
// what it captured are destroyed on the thread, before the job leaves the
// tracker. Throws (JS) BACKEND_ERROR when the thread cannot be created.
using StackWork = std::function<std::function<Napi::Value(Napi::Env)>()>;
Napi::Promise RunOnStackThread(Napi::Env env, const char* name, size_t stack_bytes, std::shared_ptr<CancelFlag> cancel, StackWork work);

}  // namespace genai
