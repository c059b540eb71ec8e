// A relay between ggml's RPC client and one rpc-server, so that a server that
// goes away ends in a typed error instead of the host process's end.
//
// ggml-rpc (deps/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp) treats every
// failed or malformed exchange as fatal: RPC_STATUS_ASSERT → GGML_ABORT, on
// its dispatcher thread, where nothing can catch it; a connect that fails is a
// GGML_ABORT too, and a server that stops answering leaves the caller waiting
// forever. So the addon never points ggml at a remote server: it points it at
// a Relay on 127.0.0.1 (an ephemeral port) that forwards each command to the
// real server. While the server answers, bytes pass through unchanged. When
// it does not (connect refused or timed out, connection reset or closed, no
// answer within the call timeout, an answer of the wrong size), the relay
// marks itself failed, closes the server's socket, and from then on answers
// ggml itself with well-formed replies (no buffer, zero tensors, 0 devices),
// so the decode in flight returns; the model then reports BACKEND_ERROR
// (CheckRpcLinks in system/rpc.h) and is unusable until reloaded.
//
// The wire format is ggml-rpc's, protocol 7.0 (ggml-rpc.h): a request is
// | cmd u8 | size u64 | payload |, an answer | size u64 | payload |, and which
// commands have answers, of what size, is fixed per command (the table in
// rpc_relay.cpp, checked against RPC_PROTO_MAJOR_VERSION at compile time).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace genai {

struct RpcEndpoint {
  std::string host;
  int port = 0;
  std::string text;  // "host:port" as the user wrote it
};

// "host:port" (an IPv4 address or a host name; port 1-65535). Throws
// CodedError INVALID_ARGUMENT naming the endpoint.
RpcEndpoint ParseRpcEndpoint(const std::string& text);

struct RpcTimeouts {
  int connect_ms = 5000;  // TCP connect
  int call_ms = 60000;    // longest wait for one answer (a graph compute included)
};

// Connects, says HELLO and asks for the device count, on the calling thread,
// each step bounded by `t`. Returns the count; throws CodedError
// BACKEND_ERROR naming the address and what failed.
uint32_t ProbeRpcServer(const RpcEndpoint& ep, const RpcTimeouts& t);

class RpcRelay {
 public:
  // A new relay listening on 127.0.0.1 (ephemeral port). Throws CodedError
  // BACKEND_ERROR when it cannot listen. Relays live as long as the process.
  static RpcRelay* Start(const RpcEndpoint& upstream, const RpcTimeouts& t);

  const RpcEndpoint& upstream() const { return upstream_; }
  // What ggml connects to: "127.0.0.1:<port>".
  const std::string& local() const { return local_; }
  // How many times the link to the server failed (0 while healthy), and the last reason.
  uint64_t failures() const { return failures_.load(); }
  std::string last_error() const;
  void set_timeouts(const RpcTimeouts& t);

 private:
  RpcRelay(RpcEndpoint upstream, RpcTimeouts t) : upstream_(std::move(upstream)), timeouts_(t) {}
  void AcceptLoop(intptr_t listener);
  void Serve(intptr_t client);
  void Fail(const std::string& why);
  RpcTimeouts timeouts() const;

  RpcEndpoint upstream_;
  std::string local_;
  mutable std::mutex mu_;
  RpcTimeouts timeouts_;
  std::string last_error_;
  std::atomic<uint64_t> failures_{0};
};

}  // namespace genai
