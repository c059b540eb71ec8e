#include "diffusion/part_check.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "ggml.h"
#include "gguf.h"
#include "util/errors.h"

namespace genai {

namespace {

// One file's tensors: name and shape in ggml order (ne[0] first; a
// safetensors shape is row-major, so reversed).
using Tensors = std::vector<std::pair<std::string, std::vector<int64_t>>>;

Tensors ReadGguf(const std::string& path) {
  ggml_context* meta = nullptr;
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/&meta};
  gguf_context* g = gguf_init_from_file(path.c_str(), params);
  Tensors out;
  if (!g) return out;
  for (ggml_tensor* t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t))
    out.emplace_back(ggml_get_name(t), std::vector<int64_t>(t->ne, t->ne + ggml_n_dims(t)));
  gguf_free(g);
  ggml_free(meta);
  return out;
}

Tensors ReadSafetensors(const std::string& path) {
  Tensors out;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return out;
  uint64_t len = 0;
  std::string header;
  if (std::fread(&len, 1, 8, f) == 8 && len <= 100u * 1024 * 1024) {  // CheckModelFileExtent's bound
    header.resize(len);
    if (std::fread(header.data(), 1, len, f) != len) header.clear();
  }
  std::fclose(f);
  nlohmann::json j = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  for (auto& [name, v] : j.items()) {
    if (!v.is_object() || !v.contains("shape") || !v["shape"].is_array()) continue;
    std::vector<int64_t> ne;
    for (auto it = v["shape"].rbegin(); it != v["shape"].rend(); ++it)
      if (it->is_number_integer()) ne.push_back(it->get<int64_t>());
    out.emplace_back(name, std::move(ne));
  }
  return out;
}

Tensors Read(const std::string& path) {
  if (path.empty()) return {};
  char magic[4] = {0};
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {};
  bool gguf = std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  std::fclose(f);
  return gguf ? ReadGguf(path) : ReadSafetensors(path);
}

bool EndsWith(std::string_view s, std::string_view suffix) { return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix; }

// ne[dim] of the first tensor whose name ends with `suffix`, in any of `files`.
std::optional<int64_t> Dim(const std::vector<const Tensors*>& files, std::string_view suffix, size_t dim) {
  for (const Tensors* t : files)
    for (const auto& [name, ne] : *t)
      if (EndsWith(name, suffix) && ne.size() > dim) return ne[dim];
  return std::nullopt;
}

}  // namespace

void CheckZImageParts(const std::string& model, const std::string& diffusion_model, const std::string& vae, const std::string& llm) {
  const Tensors m = Read(model), d = Read(diffusion_model), v = Read(vae), l = Read(llm);
  const std::vector<const Tensors*> dit{&d, &m}, encoder{&l, &m}, autoencoder{&v, &m};
  if (!Dim(dit, "cap_embedder.0.weight", 0)) return;  // not Z-Image
  auto fail = [](const std::string& why) { throw CodedError(code::INVALID_MODEL, "these Z-Image parts do not fit together: " + why); };
  constexpr int64_t kQwenVocab = 151674, kHeadDim = 128, kMinHidden = 256, kPatchArea = 4;
  // the text encoder: llama.cpp GGUF names (token_embd) or Hugging Face's (embed_tokens)
  std::optional<int64_t> te_hidden = Dim(encoder, "token_embd.weight", 0), te_vocab = Dim(encoder, "token_embd.weight", 1);
  if (!te_hidden) {
    te_hidden = Dim(encoder, "embed_tokens.weight", 0);
    te_vocab = Dim(encoder, "embed_tokens.weight", 1);
  }
  if (std::optional<int64_t> cap = Dim(dit, "cap_embedder.1.weight", 0); cap && te_hidden && *cap != *te_hidden)
    fail("the text encoder (llm) has hidden size " + std::to_string(*te_hidden) + ", the diffusion model's caption embedder takes " + std::to_string(*cap) +
         " (use the text encoder of the same release)");
  if (te_vocab && *te_vocab < kQwenVocab)
    fail("the text encoder's vocabulary has " + std::to_string(*te_vocab) + " tokens; the Qwen tokenizer's ids go up to " + std::to_string(kQwenVocab - 1));
  std::optional<int64_t> x_in = Dim(dit, "x_embedder.weight", 0), hidden = Dim(dit, "x_embedder.weight", 1);
  // ggml conv weights are [kw, kh, in, out]: the decoder's input channels are the latent channels
  if (std::optional<int64_t> latent = Dim(autoencoder, "decoder.conv_in.weight", 2); latent && x_in && *x_in != kPatchArea * *latent)
    fail("the VAE has " + std::to_string(*latent) + " latent channels, the diffusion model takes " + std::to_string(*x_in / kPatchArea));
  if (hidden && *hidden < kMinHidden) fail("the diffusion model's hidden size " + std::to_string(*hidden) + " is under " + std::to_string(kMinHidden));
  if (std::optional<int64_t> head = Dim(dit, "attention.q_norm.weight", 0); head && *head != kHeadDim)
    fail("the diffusion model's attention heads are " + std::to_string(*head) + " wide, not " + std::to_string(kHeadDim));
}

}  // namespace genai
