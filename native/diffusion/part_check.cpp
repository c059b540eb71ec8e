#include "diffusion/part_check.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <initializer_list>
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

// The same for the first of `suffixes` (one tensor's names in several formats) that is found.
std::optional<int64_t> DimAny(const std::vector<const Tensors*>& files, std::initializer_list<std::string_view> suffixes, size_t dim) {
  for (std::string_view s : suffixes)
    if (std::optional<int64_t> d = Dim(files, s, dim)) return d;
  return std::nullopt;
}

// The text encoder's hidden size and vocabulary: llama.cpp GGUF names (token_embd) or Hugging Face's (embed_tokens).
std::pair<std::optional<int64_t>, std::optional<int64_t>> TextEncoderEmbedding(const std::vector<const Tensors*>& encoder) {
  if (auto h = Dim(encoder, "token_embd.weight", 0)) return {h, Dim(encoder, "token_embd.weight", 1)};
  return {Dim(encoder, "embed_tokens.weight", 0), Dim(encoder, "embed_tokens.weight", 1)};
}

// Transformer layers of the text encoder: 1 + the largest N in "blk.N." (llama.cpp) or "layers.N." (Hugging Face),
// not counting a vision tower's or (in a single-file checkpoint) the DiT's.
int64_t TextEncoderLayers(const std::vector<const Tensors*>& encoder) {
  int64_t layers = 0;
  for (const Tensors* t : encoder)
    for (const auto& [name, ne] : *t)
      for (std::string_view key : {"blk.", "layers."}) {
        size_t at = name.find(key);
        if (at == std::string::npos || name.find("visual.") != std::string::npos || name.find("diffusion_model.") != std::string::npos) continue;
        layers = std::max<int64_t>(layers, std::strtoll(name.c_str() + at + key.size(), nullptr, 10) + 1);
      }
  return layers;
}

constexpr int64_t kQwenVocab = 151674;  // the Qwen2 tokenizer's ids reach 151673

[[noreturn]] void Fail(const char* family, const std::string& why) {
  throw CodedError(code::INVALID_MODEL, std::string("these ") + family + " parts do not fit together: " + why);
}

void CheckQwenVocab(const char* family, std::optional<int64_t> vocab) {
  if (vocab && *vocab < kQwenVocab)
    Fail(family,
         "the text encoder's vocabulary has " + std::to_string(*vocab) + " tokens; the Qwen tokenizer's ids go up to " + std::to_string(kQwenVocab - 1));
}

void CheckZImage(const std::vector<const Tensors*>& dit, const std::vector<const Tensors*>& encoder, const std::vector<const Tensors*>& autoencoder) {
  constexpr const char* kFamily = "Z-Image";
  constexpr int64_t kHeadDim = 128, kMinHidden = 256, kPatchArea = 4;
  auto [te_hidden, te_vocab] = TextEncoderEmbedding(encoder);
  if (std::optional<int64_t> cap = Dim(dit, "cap_embedder.1.weight", 0); cap && te_hidden && *cap != *te_hidden)
    Fail(kFamily, "the text encoder (llm) has hidden size " + std::to_string(*te_hidden) + ", the diffusion model's caption embedder takes " +
                      std::to_string(*cap) + " (use the text encoder of the same release)");
  CheckQwenVocab(kFamily, te_vocab);
  std::optional<int64_t> x_in = Dim(dit, "x_embedder.weight", 0), hidden = Dim(dit, "x_embedder.weight", 1);
  // ggml conv weights are [kw, kh, in, out]: the decoder's input channels are the latent channels
  if (std::optional<int64_t> latent = Dim(autoencoder, "decoder.conv_in.weight", 2); latent && x_in && *x_in != kPatchArea * *latent)
    Fail(kFamily, "the VAE has " + std::to_string(*latent) + " latent channels, the diffusion model takes " + std::to_string(*x_in / kPatchArea));
  if (hidden && *hidden < kMinHidden) Fail(kFamily, "the diffusion model's hidden size " + std::to_string(*hidden) + " is under " + std::to_string(kMinHidden));
  if (std::optional<int64_t> head = Dim(dit, "attention.q_norm.weight", 0); head && *head != kHeadDim)
    Fail(kFamily, "the diffusion model's attention heads are " + std::to_string(*head) + " wide, not " + std::to_string(kHeadDim));
}

// Flux 2 [klein] concatenates the Qwen3 hidden states after layers 9, 18 and 27 (conditioner.hpp); a text
// encoder with fewer layers gives fewer of them (with none, its final output): the DiT's txt_in takes that width.
void CheckFlux2Klein(const std::vector<const Tensors*>& dit, const std::vector<const Tensors*>& encoder) {
  constexpr const char* kFamily = "Flux 2 [klein]";
  auto [te_hidden, te_vocab] = TextEncoderEmbedding(encoder);
  int64_t layers = TextEncoderLayers(encoder);
  if (std::optional<int64_t> ctx = Dim(dit, "txt_in.weight", 0); ctx && te_hidden && layers > 0) {
    int64_t taken = std::max<int64_t>(1, (layers >= 9) + (layers >= 18) + (layers >= 27));
    if (*ctx != taken * *te_hidden)
      Fail(kFamily, "the text encoder (llm) gives " + std::to_string(taken) + " × " + std::to_string(*te_hidden) + " = " + std::to_string(taken * *te_hidden) +
                        " features per token (" + std::to_string(layers) + " layers), the diffusion model's txt_in takes " + std::to_string(*ctx) +
                        " (use the text encoder of the same release)");
  }
  CheckQwenVocab(kFamily, te_vocab);
}

// The Qwen2.5-VL vision tower (llmVision, or `visual.` tensors in the llm file), llama.cpp mmproj names or Hugging
// Face's: sd.cpp (src/model/te/llm.hpp) builds it with 16 heads (VisionAttention GGML_ASSERTs hidden = 16 × head width
// at load), rotates half of a head's width per image axis (an even head width), feeds 2 × 2 merged patches to the
// merger and puts its output in place of <|image_pad|> tokens in the text encoder's input (its hidden size).
void CheckQwenVision(const char* family, const std::vector<const Tensors*>& vision, std::optional<int64_t> te_hidden) {
  constexpr int64_t kHeads = 16, kMergeArea = 4;
  std::optional<int64_t> hidden = DimAny(vision, {"v.post_ln.weight", "merger.ln_q.weight"}, 0);
  std::optional<int64_t> merge_in = DimAny(vision, {"mm.0.weight", "merger.mlp.0.weight"}, 0);
  std::optional<int64_t> out = DimAny(vision, {"mm.2.weight", "merger.mlp.2.weight"}, 1);
  if (hidden && *hidden % (2 * kHeads) != 0)
    Fail(family, "the vision tower (llmVision) is " + std::to_string(*hidden) + " wide, not " + std::to_string(kHeads) +
                     " heads of an even width (a multiple of " + std::to_string(2 * kHeads) + ")");
  if (hidden && merge_in && *merge_in != kMergeArea * *hidden)
    Fail(family, "the vision tower's merger takes " + std::to_string(*merge_in) + " features, 2 × 2 patches of its width " + std::to_string(*hidden) + " are " +
                     std::to_string(kMergeArea * *hidden));
  if (out && te_hidden && *out != *te_hidden)
    Fail(family, "the vision tower (llmVision) gives " + std::to_string(*out) + "-wide image embeddings, the text encoder (llm) is " +
                     std::to_string(*te_hidden) + " wide (use the vision tower of the same Qwen2.5-VL)");
}

void CheckQwenImage(const std::vector<const Tensors*>& dit, const std::vector<const Tensors*>& encoder, const std::vector<const Tensors*>& vision) {
  constexpr const char* kFamily = "Qwen-Image";
  auto [te_hidden, te_vocab] = TextEncoderEmbedding(encoder);
  if (std::optional<int64_t> width = Dim(dit, "txt_norm.weight", 0); width && te_hidden && *width != *te_hidden)
    Fail(kFamily, "the text encoder (llm) has hidden size " + std::to_string(*te_hidden) + ", the diffusion model takes " + std::to_string(*width) +
                      " (Qwen-Image's is Qwen2.5-VL 7B)");
  CheckQwenVocab(kFamily, te_vocab);
  CheckQwenVision(kFamily, vision, te_hidden);
}

// A ControlNet adds its outputs to the UNet's blocks (unet.hpp): the two must be equally wide. sd.cpp builds every
// ControlNet with SD1's 320 model channels (control.hpp), whatever its file holds, and checks the file against that.
void CheckControlNet(const std::vector<const Tensors*>& dit, const Tensors& control) {
  std::optional<int64_t> unet = Dim(dit, "input_blocks.0.0.weight", 3), cn = Dim({&control}, "input_blocks.0.0.weight", 3);
  if (unet && cn && *unet != *cn)
    throw CodedError(code::INVALID_MODEL, "the ControlNet (controlNet) has " + std::to_string(*cn) + " model channels, the diffusion model's UNet " +
                                              std::to_string(*unet) + " (a ControlNet is made for one base model: use one for this model's family)");
}

// PhotoMaker fuses the ID embedding (its fuse_module's width: CLIP-L's 768 + bigG's 1280) into the prompt's class-token
// embeddings, the UNet's cross-attention context (attn2.to_k's input, SDXL's 2048). On an SD1 UNet (768) sd.cpp fails a
// GGML_ASSERT in PhotoMakerIDEncoderBlock at the first generation with the identity.
void CheckPhotoMaker(const std::vector<const Tensors*>& dit, const Tensors& photo_maker) {
  std::optional<int64_t> fused = Dim({&photo_maker}, "fuse_module.layer_norm.weight", 0), context = Dim(dit, "attn2.to_k.weight", 0);
  if (fused && context && *fused != *context)
    throw CodedError(code::INVALID_MODEL, "PhotoMaker (photoMaker) fuses " + std::to_string(*fused) +
                                              "-wide embeddings into the prompt, the diffusion model's UNet reads a " + std::to_string(*context) +
                                              "-wide context (PhotoMaker is made for SDXL)");
}

// An IP-Adapter projects the CLIP vision encoder's image embedding (visual_projection's output, 1024 for ViT-H/14;
// the "plus" variant: its hidden states) into image tokens; sd.cpp loads other widths and fails a GGML_ASSERT in
// the projection at the first generation with an image prompt.
void CheckIpAdapter(const Tensors& ip, const Tensors& vision) {
  std::optional<int64_t> takes = Dim({&ip}, "image_proj.proj.weight", 0), plus_takes = Dim({&ip}, "image_proj.proj_in.weight", 0);
  std::optional<int64_t> embeds = Dim({&vision}, "visual_projection.weight", 1), hidden = Dim({&vision}, "post_layernorm.weight", 0);
  auto fail = [](int64_t t, int64_t g, const char* what) {
    throw CodedError(code::INVALID_MODEL, "the IP-Adapter (ipAdapter) takes " + std::to_string(t) +
                                              "-wide image embeddings, the CLIP vision encoder (clipVision) gives " + std::to_string(g) + " (" + what + ")");
  };
  if (takes && embeds && *takes != *embeds) fail(*takes, *embeds, "its projection");
  if (plus_takes && hidden && *plus_takes != *hidden) fail(*plus_takes, *hidden, "its hidden states");
}

// Whether a tensor of `files` has `part` in its name.
bool Has(const std::vector<const Tensors*>& files, std::string_view part) {
  for (const Tensors* t : files)
    for (const auto& entry : *t)
      if (entry.first.find(part) != std::string::npos) return true;
  return false;
}

constexpr int64_t kT5XxlWidth = 4096;

// The T5 of a load: the t5xxl file's tensors, or a single-file checkpoint's under a "t5xxl" prefix (in_checkpoint), and
// its width (its embedding's, or the first attention's input) in Hugging Face names or llama.cpp's (sd.cpp's
// name_conversion.cpp t5_name_map).
struct T5Part {
  std::optional<int64_t> width;
  bool in_checkpoint = false;
};
T5Part T5Of(const Tensors& t5, const Tensors& model) {
  Tensors in_model;
  for (const auto& [name, ne] : model)
    if (name.find("t5xxl") != std::string::npos) in_model.emplace_back(name, ne);
  return {DimAny({&t5, &in_model}, {"shared.weight", "token_embd.weight", "SelfAttention.q.weight", "attn_q.weight"}, 0), !in_model.empty()};
}

// A text encoder's tensors inside a single-file checkpoint (any of the prefixes sd.cpp's loader knows).
bool EncoderInCheckpoint(const Tensors& model) {
  for (std::string_view key : {"t5xxl", "clip_l", "clip_g", "text_encoders.", "cond_stage_model.", "conditioner.", "text_model."})
    if (Has({&model}, key)) return true;
  return false;
}

// sd.cpp's FluxCLIPEmbedder (conditioner.hpp): T5's hidden states are the DiT's context, 4096-wide zeros without a
// T5; CLIP-L's pooled output its vector.
void CheckFlux1(const std::vector<const Tensors*>& dit, const Tensors& t5, const Tensors& model, const DiffusionPartFiles& f) {
  constexpr const char* kFamily = "Flux 1";
  const auto [width, t5_in_checkpoint] = T5Of(t5, model);
  if (f.clip_l.empty() && f.t5xxl.empty() && !EncoderInCheckpoint(model))
    Fail(kFamily, "no text encoder: Flux 1 takes t5xxl (T5-XXL, the prompt's features) and clipL (CLIP-L, its pooled vector)");
  std::optional<int64_t> ctx = DimAny(dit, {"txt_in.weight", "context_embedder.weight"}, 0);  // original or diffusers' names
  if (!ctx) return;
  if (width && *width != *ctx)
    Fail(kFamily, "the T5 text encoder (t5xxl) is " + std::to_string(*width) + " wide, the diffusion model's txt_in takes " + std::to_string(*ctx) +
                      " (Flux 1's is T5-XXL, 4096)");
  if (!width && f.t5xxl.empty() && !t5_in_checkpoint && *ctx != kT5XxlWidth)
    Fail(kFamily, "without t5xxl sd.cpp gives the diffusion model " + std::to_string(kT5XxlWidth) + "-wide zeros as the prompt, its txt_in takes " +
                      std::to_string(*ctx) + ": give the T5 it was trained with");
}

// sd.cpp's SD3CLIPEmbedder (SD3 / SD3.5): CLIP-L's and bigG's token states (768 + 1280) are zero-padded to 4096 and
// joined with T5's over the tokens (another T5 width aborts in the join), the MMDiT's context_embedder takes 4096; the
// pooled vector (y_embedder's input) is CLIP-L's + bigG's, 2048. Without any text encoder sd.cpp crashes.
void CheckSd3(const std::vector<const Tensors*>& dit, const Tensors& t5, const Tensors& model, const DiffusionPartFiles& f) {
  constexpr const char* kFamily = "SD3";
  constexpr int64_t kPooled = 2048;
  const std::optional<int64_t> width = T5Of(t5, model).width;
  if (f.clip_l.empty() && f.clip_g.empty() && f.t5xxl.empty() && !EncoderInCheckpoint(model))
    Fail(kFamily, "no text encoder: SD3 takes clipL (CLIP-L), clipG (OpenCLIP bigG) and t5xxl (T5-XXL)");
  if (width && *width != kT5XxlWidth)
    Fail(kFamily, "the T5 text encoder (t5xxl) is " + std::to_string(*width) + " wide; SD3 joins its token states with CLIP's padded to " +
                      std::to_string(kT5XxlWidth) + " (T5-XXL's width)");
  if (std::optional<int64_t> ctx = Dim(dit, "context_embedder.weight", 0); ctx && *ctx != kT5XxlWidth)
    Fail(kFamily,
         "the diffusion model's context_embedder takes " + std::to_string(*ctx) + " features, SD3's text encoders give " + std::to_string(kT5XxlWidth));
  if (std::optional<int64_t> pooled = Dim(dit, "y_embedder.mlp.0.weight", 0); pooled && *pooled != kPooled)
    Fail(kFamily, "the diffusion model's y_embedder takes " + std::to_string(*pooled) + " features, SD3's pooled vector (CLIP-L 768 + bigG 1280) is " +
                      std::to_string(kPooled));
}

// DenoiserInputs (part_check.h). A UNet's first convolution: sd.cpp's input_blocks.0.0 (ggml [kw, kh, in, out]) or
// diffusers' conv_in (in a diffusers checkpoint under "unet.").
DenoiserInputs InputsOf(const std::vector<const Tensors*>& dit, const Tensors& diffusion_model) {
  DenoiserInputs in;
  if (std::none_of(dit.begin(), dit.end(), [](const Tensors* t) { return !t->empty(); })) return in;
  in.guidance = Has(dit, "guidance_in.") || Has(dit, "guidance_embedder.");
  std::optional<int64_t> unet_in = DimAny(dit, {"input_blocks.0.0.weight", "unet.conv_in.weight"}, 2);
  if (!unet_in && Has(dit, "down_blocks."))
    for (const auto& [name, ne] : diffusion_model)
      if (name == "conv_in.weight" && ne.size() > 2) unet_in = ne[2];
  if (unet_in) {
    in.flow_shift = false;
    in.ref_images = *unet_in == 8;  // get_sd_version's is_ip2p
  }
  if (Has(dit, "joint_blocks.")) in.ref_images = false;
  return in;
}

// The family's checks, the families told apart as src/model_loader.cpp get_sd_version does.
void CheckFamily(const DiffusionPartFiles& f, const Tensors& m, const std::vector<const Tensors*>& dit, const std::vector<const Tensors*>& encoder,
                 const std::vector<const Tensors*>& autoencoder, const std::vector<const Tensors*>& vision) {
  if (Dim(dit, "cap_embedder.0.weight", 0)) return CheckZImage(dit, encoder, autoencoder);
  if (Dim(dit, "double_stream_modulation_img.lin.weight", 0)) {
    if (!Dim(dit, "single_blocks.47.linear1.weight", 0)) CheckFlux2Klein(dit, encoder);  // Flux 2 [dev] has 48 single blocks and a Mistral encoder
    return;
  }
  std::optional<int64_t> img_in = Dim(dit, "img_in.weight", 0);
  if (Dim(dit, "transformer_blocks.0.img_mod.1.weight", 0) && img_in && *img_in != 128 && !Dim(dit, "time_text_embed.addition_t_embedding.weight", 0))
    return CheckQwenImage(dit, encoder, vision);
  // Flux 1 as lib/diffusion/tensors.ts ditFamilyOf tells it (sd.cpp's is_flux: original names or diffusers'): not Chroma,
  // Ovis-Image (an LLM) or LongCat (a 3584-wide txt_in); then SD3 (VERSION_SD3)
  const bool double_blocks = Has(dit, "double_blocks.") || Has(dit, "single_transformer_blocks.");
  std::optional<int64_t> txt_in = DimAny(dit, {"txt_in.weight", "context_embedder.weight"}, 0);
  if (double_blocks && !Dim(dit, "distilled_guidance_layer.in_proj.weight", 0) && !Dim(dit, "double_blocks.0.img_mlp.gate_proj.weight", 0) &&
      txt_in.value_or(0) != 3584)
    return CheckFlux1(dit, Read(f.t5xxl), m, f);
  if (Has(dit, "joint_blocks.")) CheckSd3(dit, Read(f.t5xxl), m, f);
}

}  // namespace

DenoiserInputs CheckDiffusionParts(const DiffusionPartFiles& f) {
  const Tensors m = Read(f.model), d = Read(f.diffusion_model), v = Read(f.vae), l = Read(f.llm), lv = Read(f.llm_vision);
  const std::vector<const Tensors*> dit{&d, &m}, encoder{&l, &m}, autoencoder{&v, &m}, vision{&lv, &l, &m};
  if (!f.control_net.empty()) CheckControlNet(dit, Read(f.control_net));
  if (!f.photo_maker.empty()) CheckPhotoMaker(dit, Read(f.photo_maker));
  if (!f.ip_adapter.empty()) CheckIpAdapter(Read(f.ip_adapter), Read(f.clip_vision));
  CheckFamily(f, m, dit, encoder, autoencoder, vision);
  return InputsOf(dit, d);
}

}  // namespace genai
