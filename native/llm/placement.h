// Where a model's layers go: the load's device list (local devices from the
// `device` spec, RPC servers' devices before them) and the share of layers
// per device (`tensorSplit`). Read on the JS thread, resolved on the worker
// thread (connecting to RPC servers is network I/O). Shared by loads and the
// no-allocation memory estimate, so both place layers alike.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"
#include "system/rpc.h"

namespace genai {

struct Placement {
  std::vector<ggml_backend_dev_t> devices;  // local devices, nullptr-terminated (SelectDevices)
  std::vector<std::string> rpc_servers;
  RpcTimeouts rpc_timeouts;
  std::vector<float> split;         // as given (empty: llama.cpp's split by free memory)
  std::vector<float> tensor_split;  // llama_max_devices() entries, once resolved
  std::vector<RpcLink> links;       // once resolved

  // Reads o.device, o.rpcServers, o.rpcTimeouts, o.tensorSplit: INVALID_ARGUMENT on bad values.
  static Placement FromJs(Napi::Object o);
  // On the worker thread: connects to the RPC servers (their devices go first,
  // as llama.cpp orders them: the output layer stays local), checks the split
  // against the device count, and points params at devices and split. The
  // Placement must outlive the load. Throws CodedError INVALID_ARGUMENT,
  // BACKEND_ERROR (system/rpc.h).
  void Resolve(llama_model_params& params, bool connect_rpc);
};

}  // namespace genai
