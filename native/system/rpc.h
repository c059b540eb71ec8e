// RPC devices: layers of a model on other machines' devices, through ggml's
// RPC backend (the ggml-rpc module beside the addon) and a genai-native or
// llama.cpp rpc-server there. ggml RPC has no authentication or encryption:
// a trusted network only (README "RPC").
//
// Every server is reached through an RpcRelay (system/rpc_relay.h), so that a
// server that is down, stops answering or goes away mid-generation is a
// BACKEND_ERROR naming its address, never an abort or a hang.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "system/rpc_relay.h"

namespace genai {

// A model's hold on one server: the relay, and its failure count when the model was loaded.
struct RpcLink {
  RpcRelay* relay = nullptr;
  uint64_t failures = 0;
};

// Connects to each endpoint (a new server: probed first, then its relay
// started and ggml's RPC devices added for it; a known healthy one: reused),
// on the calling worker thread. Appends the servers' devices to *devices, in
// order, and returns the links. Throws CodedError INVALID_ARGUMENT (a bad
// endpoint) or BACKEND_ERROR (no RPC module, a server down, not answering,
// another protocol version, no devices).
std::vector<RpcLink> ConnectRpcServers(const std::vector<std::string>& endpoints, const RpcTimeouts& t, std::vector<ggml_backend_dev_t>* devices);

// Throws CodedError BACKEND_ERROR naming the server when any link has failed
// since it was made (the model's layers there are gone). Any thread.
void CheckRpcLinks(const std::vector<RpcLink>& links);

// Whether `dev` is an RPC device (its layers on another machine).
bool IsRpcDevice(ggml_backend_dev_t dev);

// The endpoints list of a JS options object field ("rpcServers": string[]),
// and the timeouts ("rpcTimeouts": { connectMs, callMs }), on the JS thread:
// INVALID_ARGUMENT on bad values.
std::vector<std::string> RpcServersField(Napi::Object o, const char* key);
RpcTimeouts RpcTimeoutsField(Napi::Object o, const char* key);

// JS: connectRpcServers(endpoints, timeouts) -> Promise<void>: connects ahead
// of a load (for systemInfo, the orchestrator's budgets).
Napi::Value ConnectRpcServersJs(const Napi::CallbackInfo& info);
// JS: rpcDevices() -> [{ name, description, endpoint, freeBytes, totalBytes, failed, error }]:
// the devices of every server connected so far, memory as of the last refresh.
Napi::Value RpcDevicesJs(const Napi::CallbackInfo& info);
// JS: refreshRpcDevices() -> Promise<void>: asks each healthy server for its free/total memory.
Napi::Value RefreshRpcDevicesJs(const Napi::CallbackInfo& info);
// JS: startRpcServer(host, port, { device, threads, cache }) -> Promise<void>,
// settled when the server stops (rejected: it could not start). For a
// process of its own (`genai-native rpc-server`): ggml's server asserts on
// what a misbehaving client sends.
Napi::Value StartRpcServerJs(const Napi::CallbackInfo& info);

}  // namespace genai
