// A GGUF file checked before llama.cpp loads it, for what llama.cpp asserts
// (GGML_ASSERT / GGML_ABORT: the process exits) instead of reporting. Runs on
// the load's native thread; reads only the header and tensor infos (ggml's
// gguf reader, no tensor data). Each check names the llama.cpp line it keeps
// the file away from (see gguf_check.cpp).
#pragma once
#include <string>

namespace genai {

struct GgufCheck {
  // Some tensor's data does not start at a multiple of ggml's 32-byte tensor
  // alignment in the file (general.alignment below 32 is valid GGUF): a memory
  // map of it would trip ggml-backend.cpp ggml_backend_cpu_buffer_from_ptr's
  // "buffer pointer must be aligned"; load it with reads instead.
  bool mmap_misaligned = false;
};

// Throws CodedError(INVALID_MODEL, "<path>: <what is wrong>") for a file
// llama.cpp would abort on. `vocab_only`: only what a vocabulary-only load reads.
GgufCheck CheckGgufFile(const std::string& path, bool vocab_only);

}  // namespace genai
