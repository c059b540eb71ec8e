// Model parts that stable-diffusion.cpp loads together but never checks
// against each other. sd.cpp (487de75c) loads them without complaint and then
// fails a GGML_ASSERT — a process abort — at the first generation; here the
// load fails INVALID_MODEL naming the parts.
#pragma once
#include <string>

namespace genai {

// The load's files by DiffusionLoadOptions key ("model", "diffusionModel",
// "vae", "llm", …; empty: not given), already extent-checked; the family is
// told from the DiT's tensors as src/model_loader.cpp get_sd_version does.
// Z-Image (a DiT with `cap_embedder`, sd.cpp's VERSION_Z_IMAGE):
//  - the text encoder's hidden size = the DiT's cap_embedder.1 input
//    (z_image.hpp; e.g. an 8B Qwen3 paired with a 4B-conditioned DiT);
//  - the DiT's x_embedder input = patch² (4) × the VAE's latent channels;
//  - the text encoder's vocabulary covers the Qwen2 tokenizer's ids (151674);
//  - attention heads 128 wide (RoPE axes 32 + 48 + 48) and hidden ≥ 256
//    (the adaLN input is min(hidden, 256)).
// Flux 2 [klein] (`double_stream_modulation_img`, no `single_blocks.47`):
//  - the DiT's txt_in input = the Qwen3 hidden size × the number of its
//    layers in {9, 18, 27} (at least 1): the hidden states klein reads;
//  - the vocabulary covers the Qwen2 tokenizer's ids.
// Qwen-Image (`transformer_blocks.0.img_mod.1`, img_in not 128 wide):
//  - the Qwen2.5-VL hidden size = the DiT's txt_norm width (3584);
//  - its vision tower (llmVision, Qwen-Image-Edit), if any: 16 heads of an
//    even width (sd.cpp asserts it at load), a merger taking 2 × 2 patches
//    and giving the text encoder's hidden size;
//  - the vocabulary covers the Qwen2 tokenizer's ids.
// A ControlNet (any family): its model channels = the UNet's (sd.cpp adds its
// outputs to the UNet's blocks; a 320-channel one on a narrower UNet aborts
// in ggml_add at the first step).
// PhotoMaker (any family): its fused embedding width (fuse_module, 2048) = the
// UNet's cross-attention context (SDXL's; on SD1's 768 sd.cpp aborts in the
// ID encoder at the first generation with an identity).
// An IP-Adapter: its image projection's input = the CLIP vision encoder's
// output (visual_projection; the "plus" variant: its hidden states).
// Flux 1 (`double_blocks.` otherwise: sd.cpp's FluxCLIPEmbedder for VERSION_FLUX
// and its Fill / Controls / Flex 2 variants; not Chroma, Ovis-Image, LongCat):
//  - a text encoder at all (clipL, t5xxl, or one in a single-file checkpoint):
//    without any, sd.cpp crashes (a segmentation fault) at the first generation;
//  - T5's width = the DiT's txt_in input; without a T5, sd.cpp feeds 4096-wide
//    zeros (T5-XXL's width), so txt_in must take 4096 (else ggml_mul_mat aborts).
// SD3 / SD3.5 (`joint_blocks.`, sd.cpp's SD3CLIPEmbedder): a text encoder at all
// (else a segmentation fault); T5 4096 wide (CLIP's token states are padded to
// 4096 and joined with T5's: another width aborts); the MMDiT's
// context_embedder taking 4096 and its y_embedder 2048 (CLIP-L + bigG pooled).
// A check whose tensors are not found is skipped. Throws CodedError INVALID_MODEL.
struct DiffusionPartFiles {
  std::string model, diffusion_model, vae, clip_l, clip_g, t5xxl, llm, llm_vision, control_net, photo_maker, ip_adapter, clip_vision;
};

// The generation inputs the denoiser reads, told from its tensors as sd.cpp
// (487de75c) uses them; each of these inputs left unread gives the same pixels
// (tried with sd-cli on SD1, SD3 and Flux 1 [schnell]). All true when the
// denoiser's tensors cannot be read (nothing is refused then).
//  - guidance: a distilled-guidance embedder (`guidance_in.`, diffusers'
//    `guidance_embedder.`; Flux 1 [dev], Kontext, Flux 2 [dev]): flux.hpp
//    feeds sd_guidance_params_t.distilled_guidance only to that; Chroma zeroes it.
//  - flow_shift: not a UNet. sd.cpp samples the UNet families (SD1, SD2,
//    SDXL) as eps/v-prediction (no `prediction` option is passed), and
//    set_flow_shift changes a flow denoiser's shift only.
//  - ref_images: not a plain UNet nor SD3's MMDiT (joint_blocks). The DiTs
//    with ref_latents (Flux, Flux 2, Qwen-Image, Z-Image, …) and the
//    instruct-pix2pix UNets (8 input channels) read them; the others
//    VAE-encode them and then leave them unused.
struct DenoiserInputs {
  bool guidance = true, flow_shift = true, ref_images = true;
};
DenoiserInputs CheckDiffusionParts(const DiffusionPartFiles& files);

}  // namespace genai
