#include "llm/placement.h"

#include <algorithm>
#include <cmath>

#include "system/backends.h"
#include "util/errors.h"

namespace genai {

namespace {

// tensorSplit: the share of layers per device, in the load's device order (at most llama_max_devices()).
std::vector<float> TensorSplitField(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  std::vector<float> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be an array of numbers");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() == 0 || a.Length() > llama_max_devices())
    Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must have 1 to " + std::to_string(llama_max_devices()) + " entries");
  double sum = 0;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!std::isfinite(d) || d < 0 || d > 1e6) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " entries must be finite numbers in [0, 1e6]");
    sum += d;
    out.push_back(static_cast<float>(d));
  }
  if (sum <= 0) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must not be all zero");
  return out;
}

}  // namespace

Placement Placement::FromJs(Napi::Object o) {
  Placement p;
  p.devices = DevicesProp(o);
  p.rpc_servers = RpcServersField(o, "rpcServers");
  p.rpc_timeouts = RpcTimeoutsField(o, "rpcTimeouts");
  p.split = TensorSplitField(o, "tensorSplit");
  return p;
}

void Placement::Resolve(llama_model_params& params, bool connect_rpc) {
  if (connect_rpc && !rpc_servers.empty()) {
    std::vector<ggml_backend_dev_t> all;
    links = ConnectRpcServers(rpc_servers, rpc_timeouts, &all);
    all.insert(all.end(), devices.begin(), devices.end());
    devices = std::move(all);
  }
  params.devices = devices.data();
  if (split.empty()) return;
  size_t n_devices = devices.size() - 1;  // less the terminating nullptr
  if (split.size() > n_devices)
    throw CodedError(code::INVALID_ARGUMENT, "tensorSplit has " + std::to_string(split.size()) + " entries for " + std::to_string(n_devices) +
                                                 " devices (the RPC servers' devices first, then the local GPUs)");
  tensor_split.assign(llama_max_devices(), 0.0f);
  std::copy(split.begin(), split.end(), tensor_split.begin());
  params.tensor_split = tensor_split.data();
}

}  // namespace genai
