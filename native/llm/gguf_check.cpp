// What llama.cpp asserts instead of reporting, checked on the file first.
// Each check cites the assertion it keeps the file away from (llama.cpp at
// the commit in llama-source.json). gguf's own reader (gguf.cpp) reports
// malformed headers — bad counts, lengths, types, non-power-of-two alignment,
// tensor offsets and sizes — by returning NULL; those reach the caller as
// INVALID_MODEL with gguf's message.
#include "llm/gguf_check.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "ggml.h"
#include "gguf.h"
#include "util/errors.h"
#include "util/log.h"

namespace genai {
namespace {

constexpr uint32_t kMaxLayers = 512;     // LLAMA_MAX_LAYERS (src/llama-hparams.h)
constexpr uint32_t kMaxExperts = 1024;   // LLAMA_MAX_EXPERTS (src/llama-hparams.h)
constexpr size_t kTensorAlignment = 32;  // TENSOR_ALIGNMENT (ggml/src/ggml-impl.h)

struct GgufFree {
  void operator()(gguf_context* c) const { gguf_free(c); }
};

class Kv {
 public:
  explicit Kv(const gguf_context* ctx) : ctx_(ctx) {}

  int64_t Find(const std::string& key) const { return gguf_find_key(ctx_, key.c_str()); }

  // A scalar of any numeric type, as a double (llama.cpp's get_key throws on
  // a type other than the one it expects: that is reported, not asserted).
  std::optional<double> Number(const std::string& key) const {
    int64_t i = Find(key);
    if (i < 0) return std::nullopt;
    return ScalarAt(i);
  }

  // The largest element of a scalar-or-array numeric key (get_key_or_arr), or nullopt.
  std::optional<double> MaxOf(const std::string& key) const {
    int64_t i = Find(key);
    if (i < 0) return std::nullopt;
    if (gguf_get_kv_type(ctx_, i) != GGUF_TYPE_ARRAY) return ScalarAt(i);
    gguf_type t = gguf_get_arr_type(ctx_, i);
    size_t n = gguf_get_arr_n(ctx_, i);
    if (n == 0 || t == GGUF_TYPE_STRING || t == GGUF_TYPE_ARRAY) return std::nullopt;
    const void* data = gguf_get_arr_data(ctx_, i);
    double m = -INFINITY;
    for (size_t k = 0; k < n; k++) m = std::max(m, Element(t, data, k));
    return m;
  }

  // A scalar, or the first element of an array (llama.cpp's per-layer keys: layer 0).
  std::optional<double> First(const std::string& key) const {
    int64_t i = Find(key);
    if (i < 0) return std::nullopt;
    if (gguf_get_kv_type(ctx_, i) != GGUF_TYPE_ARRAY) return ScalarAt(i);
    gguf_type t = gguf_get_arr_type(ctx_, i);
    if (gguf_get_arr_n(ctx_, i) == 0 || t == GGUF_TYPE_STRING || t == GGUF_TYPE_ARRAY) return std::nullopt;
    return Element(t, gguf_get_arr_data(ctx_, i), 0);
  }

  std::optional<std::string> String(const std::string& key) const {
    int64_t i = Find(key);
    if (i < 0 || gguf_get_kv_type(ctx_, i) != GGUF_TYPE_STRING) return std::nullopt;
    return std::string(gguf_get_val_str(ctx_, i));
  }

  const gguf_context* ctx() const { return ctx_; }

 private:
  std::optional<double> ScalarAt(int64_t i) const {
    switch (gguf_get_kv_type(ctx_, i)) {
      case GGUF_TYPE_UINT8: return gguf_get_val_u8(ctx_, i);
      case GGUF_TYPE_INT8: return gguf_get_val_i8(ctx_, i);
      case GGUF_TYPE_UINT16: return gguf_get_val_u16(ctx_, i);
      case GGUF_TYPE_INT16: return gguf_get_val_i16(ctx_, i);
      case GGUF_TYPE_UINT32: return gguf_get_val_u32(ctx_, i);
      case GGUF_TYPE_INT32: return gguf_get_val_i32(ctx_, i);
      case GGUF_TYPE_UINT64: return static_cast<double>(gguf_get_val_u64(ctx_, i));
      case GGUF_TYPE_INT64: return static_cast<double>(gguf_get_val_i64(ctx_, i));
      case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(ctx_, i);
      case GGUF_TYPE_FLOAT64: return gguf_get_val_f64(ctx_, i);
      case GGUF_TYPE_BOOL: return gguf_get_val_bool(ctx_, i) ? 1.0 : 0.0;
      default: return std::nullopt;
    }
  }
  static double Element(gguf_type t, const void* data, size_t k) {
    switch (t) {
      case GGUF_TYPE_UINT8: return static_cast<const uint8_t*>(data)[k];
      case GGUF_TYPE_INT8: return static_cast<const int8_t*>(data)[k];
      case GGUF_TYPE_UINT16: return static_cast<const uint16_t*>(data)[k];
      case GGUF_TYPE_INT16: return static_cast<const int16_t*>(data)[k];
      case GGUF_TYPE_UINT32: return static_cast<const uint32_t*>(data)[k];
      case GGUF_TYPE_INT32: return static_cast<const int32_t*>(data)[k];
      case GGUF_TYPE_UINT64: return static_cast<double>(static_cast<const uint64_t*>(data)[k]);
      case GGUF_TYPE_INT64: return static_cast<double>(static_cast<const int64_t*>(data)[k]);
      case GGUF_TYPE_FLOAT32: return static_cast<const float*>(data)[k];
      case GGUF_TYPE_FLOAT64: return static_cast<const double*>(data)[k];
      case GGUF_TYPE_BOOL: return static_cast<const int8_t*>(data)[k] ? 1.0 : 0.0;
      default: return 0;
    }
  }
  const gguf_context* ctx_;
};

[[noreturn]] void Bad(const std::string& path, const std::string& what) { throw CodedError(code::INVALID_MODEL, "invalid model (" + what + "): " + path); }

std::string Num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// The vocabulary (read by vocabulary-only loads too).
void CheckVocab(const std::string& path, const Kv& kv) {
  std::optional<std::string> model = kv.String("tokenizer.ggml.model");
  if (!model || *model == "no_vocab" || *model == "none") return;
  int64_t ti = kv.Find("tokenizer.ggml.tokens");
  if (ti < 0 || gguf_get_kv_type(kv.ctx(), ti) != GGUF_TYPE_ARRAY || gguf_get_arr_type(kv.ctx(), ti) != GGUF_TYPE_STRING) return;  // llama.cpp reports these
  size_t n = gguf_get_arr_n(kv.ctx(), ti);
  // llama-vocab.cpp impl::token_to_byte: GGML_ABORT for a byte token (token type 6) of a
  // WordPiece ("bert") vocabulary, reached while the load caches every token's text.
  int64_t tt = kv.Find("tokenizer.ggml.token_type");
  if (*model == "bert" && tt >= 0 && gguf_get_kv_type(kv.ctx(), tt) == GGUF_TYPE_ARRAY && gguf_get_arr_type(kv.ctx(), tt) == GGUF_TYPE_INT32) {
    const int32_t* types = static_cast<const int32_t*>(gguf_get_arr_data(kv.ctx(), tt));
    for (size_t i = 0; i < std::min(n, gguf_get_arr_n(kv.ctx(), tt)); i++)
      if (types[i] == 6) Bad(path, "token " + std::to_string(i) + " is a byte token (type 6), which a WordPiece (bert) vocabulary cannot have");
  }
  // llama-vocab.cpp llama_vocab::impl::load: GGML_ASSERT(id_to_token.size() == token_to_id.size())
  // — every token text (an empty one read as "[EMPTY_<i>]") must be distinct.
  std::unordered_set<std::string> seen;
  seen.reserve(n * 2);
  for (size_t i = 0; i < n; i++) {
    std::string word = gguf_get_arr_str(kv.ctx(), ti, i);
    if (word.empty()) word = "[EMPTY_" + std::to_string(i) + "]";
    if (!seen.insert(word).second) {
      std::string shown = word.size() > 40 ? word.substr(0, 40) + "…" : word;
      Bad(path, "the vocabulary has token text \"" + shown + "\" twice (token " + std::to_string(i) + "); llama.cpp needs every token distinct");
    }
  }
}

// Hyperparameters llama-model.cpp llama_model_base::load_hparams asserts on,
// and the ones that reach a kernel's assertion at the first decode.
void CheckHparams(const std::string& path, const Kv& kv, const std::string& arch) {
  const std::string p = arch + ".";
  // GGML_ASSERT(hparams.n_layer_all > 0 && hparams.n_layer_all <= LLAMA_MAX_LAYERS)
  std::optional<double> n_layer = kv.Number(p + "block_count");
  if (n_layer && !(*n_layer >= 1 && *n_layer <= kMaxLayers))
    Bad(path, p + "block_count is " + Num(*n_layer) + ", llama.cpp supports 1.." + std::to_string(kMaxLayers) + " layers");
  // GGML_ASSERT(hparams.n_layer_nextn <= hparams.n_layer_all)
  std::optional<double> nextn = kv.Number(p + "nextn_predict_layers");
  if (nextn && n_layer && *nextn > *n_layer) Bad(path, p + "nextn_predict_layers (" + Num(*nextn) + ") exceeds " + p + "block_count (" + Num(*n_layer) + ")");

  // Experts: GGML_ASSERT(n_expert <= LLAMA_MAX_EXPERTS), (n_expert_used_max <= n_expert),
  // with experts (n_expert_used_max > 0), (n_expert_groups < n_expert), groups dividing them,
  // (0 < n_group_used < n_expert_groups); without: no used experts and no groups.
  double n_expert = kv.Number(p + "expert_count").value_or(0);
  double used_max = kv.MaxOf(p + "expert_used_count").value_or(0);
  double groups = kv.Number(p + "expert_group_count").value_or(0);
  double group_used = kv.Number(p + "expert_group_used_count").value_or(0);
  if (!(n_expert >= 0 && n_expert <= kMaxExperts)) Bad(path, p + "expert_count is " + Num(n_expert) + ", llama.cpp supports 0.." + std::to_string(kMaxExperts));
  if (!(used_max >= 0 && used_max <= n_expert))
    Bad(path, p + "expert_used_count (" + Num(used_max) + ") exceeds " + p + "expert_count (" + Num(n_expert) + ")");
  if (n_expert > 0) {
    if (used_max <= 0) Bad(path, p + "expert_count is " + Num(n_expert) + " but " + p + "expert_used_count is missing or 0");
    if (!(groups >= 0 && groups < n_expert))
      Bad(path, p + "expert_group_count (" + Num(groups) + ") must be below " + p + "expert_count (" + Num(n_expert) + ")");
    if (groups > 1) {
      if (std::fmod(n_expert, groups) != 0)
        Bad(path, p + "expert_group_count (" + Num(groups) + ") does not divide " + p + "expert_count (" + Num(n_expert) + ")");
      if (!(group_used > 0 && group_used < groups)) Bad(path, p + "expert_group_used_count (" + Num(group_used) + ") must be in 1.." + Num(groups - 1));
    }
  } else if (groups != 0) {
    Bad(path, p + "expert_group_count is " + Num(groups) + " without experts");
  }

  // GGML_ASSERT(hparams.rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED):
  // llama_rope_scaling_type_from_string knows none, linear, yarn, longrope.
  if (kv.Find(p + "rope.scaling.type") >= 0) {
    std::optional<std::string> s = kv.String(p + "rope.scaling.type");
    if (s && *s != "none" && *s != "linear" && *s != "yarn" && *s != "longrope")
      Bad(path, p + "rope.scaling.type \"" + *s + "\" is not none, linear, yarn or longrope");
  }

  // RoPE: the CPU kernel asserts (ggml-cpu/ops.cpp rope: GGML_ASSERT(n_dims % 2 == 0),
  // GGML_ASSERT(n_dims <= ne0)) at the first decode. n_rot is rope.dimension_count, by
  // default the head size: key_length, by default embedding_length / head_count (layer 0).
  std::optional<double> n_head = kv.First(p + "attention.head_count");
  std::optional<double> n_embd = kv.Number(p + "embedding_length");
  if (n_head && *n_head > 0) {
    std::optional<double> key_length = kv.Number(p + "attention.key_length");
    double head_k = key_length ? *key_length : (n_embd ? std::floor(*n_embd / *n_head) : 0);
    std::optional<double> rot = kv.Number(p + "rope.dimension_count");
    // architectures whose graphs apply no RoPE (absolute positions, ALiBi, relative bias) ignore a derived n_rot
    static const char* const kNoRope[] = {"bert", "jina-bert-v2", "mpt", "bloom", "gpt2", "starcoder", "t5", "t5encoder", "refact"};
    bool ropeless = std::any_of(std::begin(kNoRope), std::end(kNoRope), [&](const char* a) { return arch == a; });
    if (rot || !ropeless) {
      double n_rot = rot ? *rot : head_k;
      if (std::fmod(n_rot, 2) != 0)
        Bad(path, "RoPE dimension count " + Num(n_rot) + (rot ? " (" + p + "rope.dimension_count)" : " (the head size)") +
                      " is odd; ggml's RoPE needs an even count");
      if (rot && head_k > 0 && *rot > head_k) Bad(path, p + "rope.dimension_count (" + Num(*rot) + ") exceeds the head size (" + Num(head_k) + ")");
    }
    std::optional<double> rot_swa = kv.Number(p + "rope.dimension_count_swa");
    if (rot_swa && std::fmod(*rot_swa, 2) != 0) Bad(path, p + "rope.dimension_count_swa (" + Num(*rot_swa) + ") is odd; ggml's RoPE needs an even count");
  }

  // Normalization epsilons reach ggml_rms_norm/ggml_norm/ggml_group_norm, whose CPU
  // kernels assert (ggml-cpu/ops.cpp: GGML_ASSERT(eps >= 0.0f)) at the first decode;
  // NaN fails it too. Every "<arch>.…epsilon" key: finite and >= 0.
  for (int64_t i = 0; i < gguf_get_n_kv(kv.ctx()); i++) {
    std::string key = gguf_get_key(kv.ctx(), i);
    if (key.compare(0, p.size(), p) != 0 || key.size() < 7 || key.compare(key.size() - 7, 7, "epsilon") != 0) continue;
    std::optional<double> eps = kv.MaxOf(key);
    if (gguf_get_kv_type(kv.ctx(), i) == GGUF_TYPE_ARRAY) {
      // per-layer epsilons: every element
      gguf_type t = gguf_get_arr_type(kv.ctx(), i);
      if (t == GGUF_TYPE_FLOAT32) {
        const float* f = static_cast<const float*>(gguf_get_arr_data(kv.ctx(), i));
        for (size_t k = 0; k < gguf_get_arr_n(kv.ctx(), i); k++)
          if (!(std::isfinite(f[k]) && f[k] >= 0)) Bad(path, key + "[" + std::to_string(k) + "] is " + Num(f[k]) + "; an epsilon must be finite and >= 0");
      }
      continue;
    }
    if (eps && !(std::isfinite(*eps) && *eps >= 0)) Bad(path, key + " is " + Num(*eps) + "; an epsilon must be finite and >= 0");
  }
}

// Tensor infos: types the CPU kernels cannot take where the graph puts them.
void CheckTensors(const std::string& path, const gguf_context* ctx) {
  for (int64_t i = 0; i < gguf_get_n_tensors(ctx); i++) {
    const int64_t* ne = gguf_get_tensor_ne(ctx, i);
    ggml_type type = gguf_get_tensor_type(ctx, i);
    // Vectors (norm weights, biases, scales) are the second operand of ggml_mul/ggml_add,
    // whose CPU kernels take F32 only there and abort otherwise (ggml-cpu/binary-ops.cpp
    // binary_op: "unsupported types"); llama.cpp's converters and quantizer always write them F32.
    if (ne[1] == 1 && ne[2] == 1 && ne[3] == 1 && type != GGML_TYPE_F32)
      Bad(path,
          std::string("tensor ") + gguf_get_tensor_name(ctx, i) + " is a vector of type " + ggml_type_name(type) + "; llama.cpp needs 1-D tensors in f32");
  }
}

std::shared_ptr<const GgufHeader> ReadHeader(const gguf_context* ctx) {
  auto h = std::make_shared<GgufHeader>();
  using Kind = GgufHeader::Entry::Kind;
  const int64_t n_kv = gguf_get_n_kv(ctx);
  h->entries.reserve(static_cast<size_t>(n_kv) + 3);
  // the file's own counts first, as @huggingface/gguf reports them
  h->entries.push_back({Kind::kNumber, "version", static_cast<double>(gguf_get_version(ctx))});
  h->entries.push_back({Kind::kUint64, "tensor_count", 0, static_cast<uint64_t>(gguf_get_n_tensors(ctx))});
  h->entries.push_back({Kind::kUint64, "kv_count", 0, static_cast<uint64_t>(n_kv)});
  for (int64_t i = 0; i < n_kv; i++) {
    GgufHeader::Entry e{Kind::kNumber, gguf_get_key(ctx, i)};
    switch (gguf_get_kv_type(ctx, i)) {
      case GGUF_TYPE_UINT8: e.number = gguf_get_val_u8(ctx, i); break;
      case GGUF_TYPE_INT8: e.number = gguf_get_val_i8(ctx, i); break;
      case GGUF_TYPE_UINT16: e.number = gguf_get_val_u16(ctx, i); break;
      case GGUF_TYPE_INT16: e.number = gguf_get_val_i16(ctx, i); break;
      case GGUF_TYPE_UINT32: e.number = gguf_get_val_u32(ctx, i); break;
      case GGUF_TYPE_INT32: e.number = gguf_get_val_i32(ctx, i); break;
      case GGUF_TYPE_FLOAT32: e.number = gguf_get_val_f32(ctx, i); break;
      case GGUF_TYPE_FLOAT64: e.number = gguf_get_val_f64(ctx, i); break;
      case GGUF_TYPE_UINT64:
        e.kind = Kind::kUint64;
        e.u64 = gguf_get_val_u64(ctx, i);
        break;
      case GGUF_TYPE_INT64:
        e.kind = Kind::kInt64;
        e.i64 = gguf_get_val_i64(ctx, i);
        break;
      case GGUF_TYPE_BOOL:
        e.kind = Kind::kBool;
        e.boolean = gguf_get_val_bool(ctx, i);
        break;
      case GGUF_TYPE_STRING:
        e.kind = Kind::kString;
        e.str = gguf_get_val_str(ctx, i);
        break;
      case GGUF_TYPE_ARRAY:
        e.kind = Kind::kArray;
        e.array_length = gguf_get_arr_n(ctx, i);
        break;
      default: continue;  // gguf's reader refuses other types
    }
    h->entries.push_back(std::move(e));
  }
  h->tensor_count = gguf_get_n_tensors(ctx);
  for (int64_t i = 0; i < h->tensor_count; i++) {
    const int64_t* ne = gguf_get_tensor_ne(ctx, i);
    h->parameter_count += static_cast<double>(ne[0]) * static_cast<double>(ne[1]) * static_cast<double>(ne[2]) * static_cast<double>(ne[3]);
  }
  h->data_offset = gguf_get_data_offset(ctx);
  return h;
}

}  // namespace

namespace {

// GENAI_NATIVE_GGUF_CHECK=0: skip (to exercise the second line, util/abort_guard.h, in tests)
bool CheckEnabled() {
  static const bool enabled = [] {
    const char* e = std::getenv("GENAI_NATIVE_GGUF_CHECK");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return enabled;
}

std::unique_ptr<gguf_context, GgufFree> OpenHeader(const std::string& path, const char* what) {
  LogCapture capture;
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  std::unique_ptr<gguf_context, GgufFree> ctx(gguf_init_from_file(path.c_str(), params));
  if (!ctx) {
    std::string why = capture.Errors();
    throw CodedError(code::INVALID_MODEL,
                     std::string("invalid ") + what + " (unreadable GGUF header" + (why.empty() ? std::string() : ": " + why) + "): " + path);
  }
  return ctx;
}

}  // namespace

void CheckGgufAdapter(const std::string& path) { CheckGgufTensors(path, "LoRA adapter"); }

void CheckGgufTensors(const std::string& path, const char* what) {
  if (!CheckEnabled()) return;
  auto ctx = OpenHeader(path, what);
  CheckTensors(path, ctx.get());
}

void CheckGgufProjector(const std::string& path) {
  if (!CheckEnabled()) return;
  auto ctx = OpenHeader(path, "projector");
  Kv kv(ctx.get());
  for (const char* part : {"clip.vision.", "clip.audio."}) {
    const std::string p = part;
    // ggml-cpu ops.cpp norm: GGML_ASSERT(eps >= 0.0f), on the compute threads (an abort no guard can turn into an error)
    std::optional<double> eps = kv.Number(p + "attention.layer_norm_epsilon");
    if (eps && !(std::isfinite(*eps) && *eps >= 0)) Bad(path, p + "attention.layer_norm_epsilon is " + Num(*eps) + ": it must be a finite number ≥ 0");
    // clip.cpp: attention heads split the embedding (a reshape), patches divide the image
    std::optional<double> embd = kv.Number(p + "embedding_length");
    std::optional<double> heads = kv.Number(p + "attention.head_count");
    if (embd && !(*embd >= 1 && *embd <= (1 << 20))) Bad(path, p + "embedding_length is " + Num(*embd));
    if (heads && !(*heads >= 1 && *heads <= 4096)) Bad(path, p + "attention.head_count is " + Num(*heads));
    if (embd && heads && std::fmod(*embd, *heads) != 0)
      Bad(path, p + "embedding_length (" + Num(*embd) + ") is not a multiple of " + p + "attention.head_count (" + Num(*heads) + ")");
    std::optional<double> patch = kv.Number(p + "patch_size");
    std::optional<double> image = kv.Number(p + "image_size");
    if (patch && !(*patch >= 1 && *patch <= 4096)) Bad(path, p + "patch_size is " + Num(*patch));
    if (image && !(*image >= 1 && *image <= 16384)) Bad(path, p + "image_size is " + Num(*image));
  }
  CheckTensors(path, ctx.get());
}

GgufCheck CheckGgufFile(const std::string& path, bool vocab_only) {
  GgufCheck result;
  if (!CheckEnabled()) return result;
  std::unique_ptr<gguf_context, GgufFree> ctx = OpenHeader(path, "model");
  Kv kv(ctx.get());
  CheckVocab(path, kv);
  result.header = ReadHeader(ctx.get());
  if (vocab_only) return result;
  std::optional<std::string> arch = kv.String("general.architecture");
  if (arch) CheckHparams(path, kv, *arch);
  CheckTensors(path, ctx.get());
  size_t data = gguf_get_data_offset(ctx.get());
  for (int64_t i = 0; i < gguf_get_n_tensors(ctx.get()); i++)
    if ((data + gguf_get_tensor_offset(ctx.get(), i)) % kTensorAlignment != 0) result.mmap_misaligned = true;
  return result;
}

}  // namespace genai
