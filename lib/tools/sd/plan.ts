/**
 * The tensor plan of a Stable Diffusion 1.x checkpoint (UNet + VAE + CLIP
 * ViT-L/14 text encoder in one GGUF file).
 *
 * Tensor names are the original LDM checkpoint names (as in
 * v1-5-pruned-emaonly.safetensors), which sd.cpp uses internally, so its name
 * conversion leaves them unchanged (deps/stable-diffusion.cpp:
 * src/name_conversion.cpp). Shapes follow the block definitions:
 * src/model/diffusion/unet.hpp (UnetModelBlock), src/model/common/block.hpp
 * (ResBlock, SpatialTransformer, BasicTransformerBlock), src/model/vae/
 * auto_encoder_kl.hpp (Encoder, Decoder, ResnetBlock, AttnBlock) and
 * src/model/te/clip.hpp (CLIPTextModel, OPENAI_CLIP_VIT_L_14).
 *
 * sd.cpp detects the version from tensor names (src/model_loader.cpp
 * `get_sd_version`: a 768-wide CLIP token embedding plus `middle_block.1` and
 * `output_blocks.7.1` → VERSION_SD1) and reads these sizes from the weights:
 * the UNet's model channels / time-embedding width (`input_blocks.0.0.weight`,
 * `time_embed.0.weight`) and the VAE decoder's base channels
 * (`decoder.conv_in.weight`). Everything else is fixed by the SD1 code: CLIP
 * ViT-L/14 (12 layers, 768 wide, 77 positions, vocab 49408), the UNet topology
 * (channel mult 1,2,4,4, 2 res blocks, attention at 1/1, 1/2, 1/4, 8 heads,
 * context 768) and the VAE encoder (128 base channels). Hence two presets:
 *  - "sd15": the real SD1.5 shapes (UNet 320/640/1280, VAE 128/256/512),
 *    ~1.07 G parameters;
 *  - "tiny" (default): the same SD1 architecture with 32 UNet model channels
 *    (32/64/128/128) and 32 VAE decoder base channels; CLIP and the VAE
 *    encoder keep their fixed sizes (~162 M parameters, ~150 MB as q8_0).
 *
 * Types: norm weights are 1.0 and biases 0.0 (f32), the CLIP position
 * embedding is f32 (sd.cpp keeps it f32); convolution kernels are f16 (f32
 * for type "f32": sd.cpp always holds conv kernels as f16 and converts on
 * load; q8_0 cannot hold 3×3 kernels, whose rows are 3 wide); linear weights
 * and the token embedding have `type` (f16 where q8_0's 32-wide rows do not fit).
 */
import { GgmlType } from "../gguf/writer";
import { LINEAR_TYPE, SD1_FIXED, validateSdShape, type Sd1Shape, type SdInit, type SdTensorSpec, type SdWeightType } from "./shape";

/**
 * The tensors of an SD1 checkpoint, in file order, with LDM names and ggml
 * shapes (ne[0] first: linear [in, out], conv [kw, kh, in, out]).
 */
export function sd1TensorPlan(shape: Sd1Shape, type: SdWeightType = "q8_0"): SdTensorSpec[] {
  validateSdShape(shape, type);
  const F = SD1_FIXED;
  const out: SdTensorSpec[] = [];
  const lin = LINEAR_TYPE[type];
  const convType = type === "f32" ? GgmlType.F32 : GgmlType.F16;
  const names = new Set<string>();
  const add = (name: string, shp: number[], t: GgmlType, init: SdInit): void => {
    if (names.has(name)) throw new Error(`internal: duplicate tensor ${name}`);
    names.add(name);
    out.push({ name, shape: shp, type: t, init });
  };
  // q8_0 needs rows that are a multiple of 32 wide; fall back to f16 otherwise
  const linType = (inFeatures: number): GgmlType => (lin === GgmlType.Q8_0 && inFeatures % 32 !== 0 ? GgmlType.F16 : lin);
  const linear = (p: string, inF: number, outF: number, bias = true): void => {
    add(`${p}.weight`, [inF, outF], linType(inF), "weight");
    if (bias) add(`${p}.bias`, [outF], GgmlType.F32, "zero");
  };
  const conv = (p: string, inC: number, outC: number, k: number, biasInit: SdInit = "zero"): void => {
    add(`${p}.weight`, [k, k, inC, outC], convType, "weight");
    add(`${p}.bias`, [outC], GgmlType.F32, biasInit);
  };
  const norm = (p: string, c: number): void => {
    add(`${p}.weight`, [c], GgmlType.F32, "one");
    add(`${p}.bias`, [c], GgmlType.F32, "zero");
  };

  // --- UNet (model.diffusion_model.*), src/model/diffusion/unet.hpp
  const u = "model.diffusion_model";
  const mc = shape.unetChannels;
  const ted = mc * 4;
  const resBlock = (p: string, c: number, o: number): void => {
    norm(`${p}.in_layers.0`, c);
    conv(`${p}.in_layers.2`, c, o, 3);
    linear(`${p}.emb_layers.1`, ted, o);
    norm(`${p}.out_layers.0`, o);
    conv(`${p}.out_layers.3`, o, o, 3);
    if (c !== o) conv(`${p}.skip_connection`, c, o, 1);
  };
  const spatialTransformer = (p: string, c: number): void => {
    norm(`${p}.norm`, c);
    conv(`${p}.proj_in`, c, c, 1);
    const b = `${p}.transformer_blocks.0`;
    linear(`${b}.attn1.to_q`, c, c, false);
    linear(`${b}.attn1.to_k`, c, c, false);
    linear(`${b}.attn1.to_v`, c, c, false);
    linear(`${b}.attn1.to_out.0`, c, c);
    linear(`${b}.ff.net.0.proj`, c, c * 4 * 2); // GEGLU
    linear(`${b}.ff.net.2`, c * 4, c);
    linear(`${b}.attn2.to_q`, c, c, false);
    linear(`${b}.attn2.to_k`, F.contextDim, c, false);
    linear(`${b}.attn2.to_v`, F.contextDim, c, false);
    linear(`${b}.attn2.to_out.0`, c, c);
    norm(`${b}.norm1`, c);
    norm(`${b}.norm2`, c);
    norm(`${b}.norm3`, c);
    conv(`${p}.proj_out`, c, c, 1);
  };
  linear(`${u}.time_embed.0`, mc, ted);
  linear(`${u}.time_embed.2`, ted, ted);
  conv(`${u}.input_blocks.0.0`, F.latentChannels, mc, 3);
  const skipChans: number[] = [mc];
  let ch = mc;
  let idx = 0;
  const levels = F.unetChannelMult.length;
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < F.unetResBlocks; j++) {
      idx++;
      const o = F.unetChannelMult[i] * mc;
      resBlock(`${u}.input_blocks.${idx}.0`, ch, o);
      ch = o;
      if ((F.unetAttentionLevels as readonly number[]).includes(i)) spatialTransformer(`${u}.input_blocks.${idx}.1`, ch);
      skipChans.push(ch);
    }
    if (i !== levels - 1) {
      idx++;
      conv(`${u}.input_blocks.${idx}.0.op`, ch, ch, 3);
      skipChans.push(ch);
    }
  }
  resBlock(`${u}.middle_block.0`, ch, ch);
  spatialTransformer(`${u}.middle_block.1`, ch);
  resBlock(`${u}.middle_block.2`, ch, ch);
  let oidx = 0;
  for (let i = levels - 1; i >= 0; i--) {
    for (let j = 0; j < F.unetResBlocks + 1; j++) {
      const ich = skipChans.pop();
      if (ich === undefined) throw new Error("internal: skip channel stack underflow");
      const o = F.unetChannelMult[i] * mc;
      resBlock(`${u}.output_blocks.${oidx}.0`, ch + ich, o);
      ch = o;
      let sub = 1;
      if ((F.unetAttentionLevels as readonly number[]).includes(i)) {
        spatialTransformer(`${u}.output_blocks.${oidx}.1`, ch);
        sub++;
      }
      if (i > 0 && j === F.unetResBlocks) conv(`${u}.output_blocks.${oidx}.${sub}.conv`, ch, ch, 3);
      oidx++;
    }
  }
  norm(`${u}.out.0`, ch);
  conv(`${u}.out.2`, mc, F.latentChannels, 3);

  // --- VAE (first_stage_model.*), src/model/vae/auto_encoder_kl.hpp
  const v = "first_stage_model";
  const resnet = (p: string, c: number, o: number): void => {
    norm(`${p}.norm1`, c);
    conv(`${p}.conv1`, c, o, 3);
    norm(`${p}.norm2`, o);
    conv(`${p}.conv2`, o, o, 3);
    if (c !== o) conv(`${p}.nin_shortcut`, c, o, 1);
  };
  const attnBlock = (p: string, c: number): void => {
    norm(`${p}.norm`, c);
    for (const n of ["q", "k", "v", "proj_out"]) conv(`${p}.${n}`, c, c, 1);
  };
  const vm = F.vaeChannelMult;
  const ec = F.vaeEncoderChannels;
  conv(`${v}.encoder.conv_in`, 3, ec, 3);
  let bin: number = ec;
  for (let i = 0; i < vm.length; i++) {
    const bout = ec * vm[i];
    for (let j = 0; j < F.vaeResBlocks; j++) {
      resnet(`${v}.encoder.down.${i}.block.${j}`, bin, bout);
      bin = bout;
    }
    if (i !== vm.length - 1) conv(`${v}.encoder.down.${i}.downsample.conv`, bin, bin, 3);
  }
  resnet(`${v}.encoder.mid.block_1`, bin, bin);
  attnBlock(`${v}.encoder.mid.attn_1`, bin);
  resnet(`${v}.encoder.mid.block_2`, bin, bin);
  norm(`${v}.encoder.norm_out`, bin);
  conv(`${v}.encoder.conv_out`, bin, 2 * F.latentChannels, 3);
  conv(`${v}.quant_conv`, 2 * F.latentChannels, 2 * F.latentChannels, 1, "logvar");
  conv(`${v}.post_quant_conv`, F.latentChannels, F.latentChannels, 1);
  const dc = shape.vaeDecoderChannels;
  bin = dc * vm[vm.length - 1];
  conv(`${v}.decoder.conv_in`, F.latentChannels, bin, 3);
  resnet(`${v}.decoder.mid.block_1`, bin, bin);
  attnBlock(`${v}.decoder.mid.attn_1`, bin);
  resnet(`${v}.decoder.mid.block_2`, bin, bin);
  for (let i = vm.length - 1; i >= 0; i--) {
    const bout = dc * vm[i];
    for (let j = 0; j < F.vaeResBlocks + 1; j++) {
      resnet(`${v}.decoder.up.${i}.block.${j}`, bin, bout);
      bin = bout;
    }
    if (i !== 0) conv(`${v}.decoder.up.${i}.upsample.conv`, bin, bin, 3);
  }
  norm(`${v}.decoder.norm_out`, bin);
  conv(`${v}.decoder.conv_out`, bin, 3, 3);

  // --- CLIP ViT-L/14 text encoder (cond_stage_model.transformer.text_model.*), src/model/te/clip.hpp
  const t = "cond_stage_model.transformer.text_model";
  const hd = F.clipHidden;
  add(`${t}.embeddings.token_embedding.weight`, [hd, F.clipVocab], linType(hd), "weight");
  add(`${t}.embeddings.position_embedding.weight`, [hd, F.clipPositions], GgmlType.F32, "weight");
  for (let l = 0; l < F.clipLayers; l++) {
    const p = `${t}.encoder.layers.${l}`;
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) linear(`${p}.self_attn.${n}`, hd, hd);
    norm(`${p}.layer_norm1`, hd);
    linear(`${p}.mlp.fc1`, hd, F.clipIntermediate);
    linear(`${p}.mlp.fc2`, F.clipIntermediate, hd);
    norm(`${p}.layer_norm2`, hd);
  }
  norm(`${t}.final_layer_norm`, hd);
  return out;
}

/** Number of parameters (tensor elements) of a plan. */
export function sdParameterCount(plan: readonly SdTensorSpec[]): number {
  return plan.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
}
