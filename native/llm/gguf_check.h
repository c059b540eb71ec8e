// A GGUF file checked before llama.cpp loads it, for what llama.cpp asserts
// (GGML_ASSERT / GGML_ABORT: the process exits) instead of reporting. Runs on
// the load's native thread; reads only the header and tensor infos (ggml's
// gguf reader, no tensor data). Each check names the llama.cpp line it keeps
// the file away from (see gguf_check.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace genai {

// The header as lib/models/metadata.ts summarizes it (the shape of
// gguf-worker.ts's ParsedHeader): scalar values, arrays as their length,
// tensor count, parameter count (the sum of the tensors' element counts, as
// @huggingface/gguf counts them) and where tensor data starts.
struct GgufHeader {
  struct Entry {
    enum class Kind { kNumber, kUint64, kInt64, kBool, kString, kArray } kind;
    std::string key;
    double number = 0;  // u8 … i32, f32, f64
    uint64_t u64 = 0;
    int64_t i64 = 0;
    bool boolean = false;
    std::string str;
    uint64_t array_length = 0;
  };
  std::vector<Entry> entries;
  int64_t tensor_count = 0;
  double parameter_count = 0;
  uint64_t data_offset = 0;
};

struct GgufCheck {
  // Some tensor's data does not start at a multiple of ggml's 32-byte tensor
  // alignment in the file (general.alignment below 32 is valid GGUF): a memory
  // map of it would trip ggml-backend.cpp ggml_backend_cpu_buffer_from_ptr's
  // "buffer pointer must be aligned"; load it with reads instead.
  bool mmap_misaligned = false;
  // The header that was checked (null when GENAI_NATIVE_GGUF_CHECK=0 skipped the check).
  std::shared_ptr<const GgufHeader> header;
};

// Throws CodedError(INVALID_MODEL, "<path>: <what is wrong>") for a file
// llama.cpp would abort on. `vocab_only`: only what a vocabulary-only load reads.
GgufCheck CheckGgufFile(const std::string& path, bool vocab_only);

// A LoRA adapter's GGUF: a header ggml's reader takes and tensor infos the
// CPU kernels can use. Throws CodedError(INVALID_MODEL).
void CheckGgufAdapter(const std::string& path);
// Any other GGUF ggml's reader loads (a multimodal projector): the header and
// tensor infos as above; `what` names the file in the message.
void CheckGgufTensors(const std::string& path, const char* what);
// A multimodal projector (clip.cpp's GGUF): the above, and the hyperparameters
// clip.cpp's graph would assert on while the image is encoded (norm epsilons
// on the compute threads; heads not dividing the width; patch and image sizes).
void CheckGgufProjector(const std::string& path);

}  // namespace genai
