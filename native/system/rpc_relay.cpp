#include "system/rpc_relay.h"

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#pragma comment(lib, "ws2_32.lib")
using SockLen = int;
#define GENAI_POLL WSAPoll
#define GENAI_CLOSE closesocket
#define GENAI_BAD_SOCKET(s) ((s) == static_cast<intptr_t>(INVALID_SOCKET))
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
using SockLen = socklen_t;
#define GENAI_POLL poll
#define GENAI_CLOSE close
#define GENAI_BAD_SOCKET(s) ((s) < 0)
#endif

#include "ggml-rpc.h"
#include "ggml.h"
#include "util/errors.h"

namespace genai {

// The command table below is ggml-rpc's protocol 7.0 (ggml-rpc.cpp enum rpc_cmd and its client's send() calls).
static_assert(RPC_PROTO_MAJOR_VERSION == 7 && RPC_PROTO_MINOR_VERSION == 0, "ggml-rpc's protocol changed: update the relay's command table");

namespace {

enum Cmd : uint8_t {
  kAllocBuffer = 0,
  kGetAlignment,
  kGetMaxSize,
  kBufferGetBase,
  kFreeBuffer,
  kBufferClear,
  kSetTensor,
  kSetTensorHash,
  kGetTensor,
  kCopyTensor,
  kGraphCompute,
  kGetDeviceMemory,
  kInitTensor,
  kGetAllocSize,
  kHello,
  kDeviceCount,
  kGraphRecompute,
  kMemsetTensor,
};
constexpr size_t kCapsSize = 24;    // transport.h RPC_CONN_CAPS_SIZE: the HELLO request's payload
constexpr size_t kWhole = 1 << 20;  // payloads up to this are read whole; larger ones (tensor data) streamed
constexpr uint64_t kNoAnswer = UINT64_MAX;

// The size of the server's answer to `cmd`, kNoAnswer for commands without one.
uint64_t AnswerSize(uint8_t cmd, const std::vector<uint8_t>& payload, uint64_t payload_size) {
  switch (cmd) {
    case kAllocBuffer: return 16;
    case kGetAlignment:
    case kGetMaxSize:
    case kBufferGetBase:
    case kGetAllocSize: return 8;
    case kSetTensorHash:
    case kCopyTensor: return 1;
    case kGetDeviceMemory: return 16;
    case kDeviceCount: return 4;
    case kHello: return 4 + payload_size;
    case kGetTensor: {  // rpc_msg_get_tensor_req { rpc_tensor; u64 offset; u64 size }: the size is its last field
      uint64_t n = 0;
      if (payload.size() >= 8) std::memcpy(&n, payload.data() + payload.size() - 8, 8);
      return n;
    }
    default: return kNoAnswer;
  }
}

// What the relay answers in the server's place once the link is gone: well-formed and inert.
std::vector<uint8_t> StandIn(uint8_t cmd, const std::vector<uint8_t>& payload, uint64_t size) {
  std::vector<uint8_t> out(static_cast<size_t>(size), 0);
  auto put64 = [&out](uint64_t v) { std::memcpy(out.data(), &v, 8); };
  switch (cmd) {
    case kGetAlignment: put64(32); break;
    case kGetMaxSize: put64(uint64_t{1} << 40); break;
    case kBufferGetBase: put64(4096); break;  // never dereferenced here: an RPC buffer's addresses are the server's
    case kHello: out[0] = RPC_PROTO_MAJOR_VERSION; break;
    case kGetAllocSize: {
      // rpc_msg_get_alloc_size_req { u32 device; rpc_tensor { u64 id; u32 type; u64 buffer; u32 ne[4]; ... } }
      uint64_t bytes = uint64_t{1} << 20;
      uint32_t type = 0, ne[4] = {0, 0, 0, 0};
      if (payload.size() >= 4 + 36) {
        std::memcpy(&type, payload.data() + 4 + 8, 4);
        std::memcpy(ne, payload.data() + 4 + 20, 16);
        if (type < GGML_TYPE_COUNT && ggml_blck_size(static_cast<ggml_type>(type)) > 0) {
          int64_t blck = ggml_blck_size(static_cast<ggml_type>(type));
          bytes = ggml_type_size(static_cast<ggml_type>(type)) * ((ne[0] + blck - 1) / blck) * uint64_t{ne[1]} * ne[2] * ne[3];
        }
      }
      put64(bytes);
      break;
    }
    default: break;  // no buffer (alloc 0), 0 devices, zero tensors, no memory, "not cached"/"not copied"
  }
  return out;
}

// Sockets must not leak into child processes: a child (spawned by the app,
// by a test, by the backend probe) that inherits a connection keeps it open
// after this process closes it, and an rpc-server, which serves one client
// at a time, then never serves the next one.
void NoInherit(intptr_t s) {
#ifndef _WIN32
  fcntl(static_cast<int>(s), F_SETFD, fcntl(static_cast<int>(s), F_GETFD) | FD_CLOEXEC);
#else
  SetHandleInformation(reinterpret_cast<HANDLE>(s), HANDLE_FLAG_INHERIT, 0);
#endif
}

// ggml's own end of a connection to the relay (ggml-rpc opens it without
// close-on-exec): found by its address among this process's descriptors.
void NoInheritPeer(intptr_t accepted) {
#ifndef _WIN32
  sockaddr_in relay{}, ggml{};
  socklen_t len = sizeof(relay);
  if (getsockname(static_cast<int>(accepted), reinterpret_cast<sockaddr*>(&relay), &len) != 0) return;
  len = sizeof(ggml);
  if (getpeername(static_cast<int>(accepted), reinterpret_cast<sockaddr*>(&ggml), &len) != 0) return;
  const int max_fd = static_cast<int>(sysconf(_SC_OPEN_MAX) > 65536 ? 65536 : sysconf(_SC_OPEN_MAX));
  for (int fd = 0; fd < max_fd; fd++) {
    sockaddr_in a{}, b{};
    socklen_t la = sizeof(a), lb = sizeof(b);
    if (fd == static_cast<int>(accepted) || getsockname(fd, reinterpret_cast<sockaddr*>(&a), &la) != 0 || a.sin_family != AF_INET) continue;
    if (a.sin_port != ggml.sin_port || a.sin_addr.s_addr != ggml.sin_addr.s_addr) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&b), &lb) != 0 || b.sin_port != relay.sin_port) continue;
    NoInherit(fd);
    return;
  }
#else
  (void)accepted;  // Windows: a socket is inherited only by processes created with inheritable handles
#endif
}

void CloseSocket(intptr_t s) {
  if (!GENAI_BAD_SOCKET(s)) GENAI_CLOSE(static_cast<decltype(socket(0, 0, 0))>(s));
}

void SetNoDelay(intptr_t s) {
  int one = 1;
  setsockopt(static_cast<decltype(socket(0, 0, 0))>(s), IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&one), sizeof(one));
#ifdef SO_NOSIGPIPE  // macOS: no MSG_NOSIGNAL; a write to a closed peer is an error, not SIGPIPE
  setsockopt(static_cast<int>(s), SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
}

// Waits until `s` is readable (or writable); timeout_ms < 0: no limit. False on timeout or error.
bool WaitFor(intptr_t s, bool write, int timeout_ms) {
  if (timeout_ms < 0) return true;
  pollfd p{};
  p.fd = static_cast<decltype(p.fd)>(s);
  p.events = write ? POLLOUT : POLLIN;
  for (;;) {
    int r = GENAI_POLL(&p, 1, timeout_ms);
    if (r > 0) return true;
    if (r == 0) return false;
#ifndef _WIN32
    if (errno == EINTR) continue;
#endif
    return false;
  }
}

bool RecvAll(intptr_t s, void* buf, size_t n, int timeout_ms) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    long long got = 0;
#ifndef _WIN32
    // what has arrived, without a poll() first: one system call per read on a busy link
    if (timeout_ms >= 0) got = recv(static_cast<int>(s), p, n < kWhole ? n : kWhole, MSG_DONTWAIT);
    if (got > 0) {
      p += got;
      n -= static_cast<size_t>(got);
      continue;
    }
    if (got == 0 && timeout_ms >= 0) return false;  // closed
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
#endif
    if (!WaitFor(s, false, timeout_ms)) return false;
    got = recv(static_cast<decltype(socket(0, 0, 0))>(s), p, static_cast<int>(n < kWhole ? n : kWhole), 0);
    if (got <= 0) {
#ifndef _WIN32
      if (got < 0 && errno == EINTR) continue;
#endif
      return false;
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool SendAll(intptr_t s, const void* buf, size_t n, int timeout_ms) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    if (!WaitFor(s, true, timeout_ms)) return false;
#ifdef MSG_NOSIGNAL
    auto sent = send(static_cast<decltype(socket(0, 0, 0))>(s), p, n, MSG_NOSIGNAL);
#else
    auto sent = send(static_cast<decltype(socket(0, 0, 0))>(s), p, static_cast<int>(n), 0);
#endif
    if (sent <= 0) {
#ifndef _WIN32
      if (sent < 0 && errno == EINTR) continue;
#endif
      return false;
    }
    p += sent;
    n -= static_cast<size_t>(sent);
  }
  return true;
}

bool InitSockets() {
#ifdef _WIN32
  static bool ok = [] {
    WSADATA d;
    return WSAStartup(MAKEWORD(2, 2), &d) == 0;
  }();
  return ok;
#else
  return true;
#endif
}

// A connected TCP socket to ep (IPv4, as ggml-rpc), or -1 with *why set.
intptr_t Connect(const RpcEndpoint& ep, int timeout_ms, std::string* why) {
  if (!InitSockets()) return *why = "socket library failed to start", -1;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(ep.host.c_str(), std::to_string(ep.port).c_str(), &hints, &res) != 0 || !res) return *why = "cannot resolve host '" + ep.host + "'", -1;
  auto s = socket(AF_INET, SOCK_STREAM, 0);
  if (GENAI_BAD_SOCKET(s)) {
    freeaddrinfo(res);
    return *why = "cannot create a socket", -1;
  }
  NoInherit(static_cast<intptr_t>(s));
#ifdef _WIN32
  u_long nb = 1;
  ioctlsocket(s, FIONBIO, &nb);
#else
  int flags = fcntl(s, F_GETFL, 0);
  fcntl(s, F_SETFL, flags | O_NONBLOCK);
#endif
  int r = connect(s, res->ai_addr, static_cast<SockLen>(res->ai_addrlen));
  freeaddrinfo(res);
  bool ok = r == 0;
  if (!ok) {
    pollfd p{};
    p.fd = s;
    p.events = POLLOUT;
    if (GENAI_POLL(&p, 1, timeout_ms) == 1) {
      int err = 0;
      SockLen len = sizeof(err);
      getsockopt(s, SOL_SOCKET, SO_ERROR, reinterpret_cast<char*>(&err), &len);
      ok = err == 0;
      if (!ok) *why = std::string("connection failed: ") + std::strerror(err);
    } else {
      *why = "no connection within " + std::to_string(timeout_ms) + " ms";
    }
  }
  if (!ok) {
    CloseSocket(s);
    return -1;
  }
#ifdef _WIN32
  nb = 0;
  ioctlsocket(s, FIONBIO, &nb);
#else
  fcntl(s, F_SETFL, flags);
#endif
  SetNoDelay(s);
  return static_cast<intptr_t>(s);
}

// One command and its answer on a raw connection (the probe's).
bool Exchange(intptr_t s, uint8_t cmd, const std::vector<uint8_t>& payload, std::vector<uint8_t>* answer, int timeout_ms) {
  uint8_t hdr[9];
  hdr[0] = cmd;
  uint64_t n = payload.size();
  std::memcpy(hdr + 1, &n, 8);
  if (!SendAll(s, hdr, 9, timeout_ms) || (!payload.empty() && !SendAll(s, payload.data(), payload.size(), timeout_ms))) return false;
  uint64_t size = 0;
  if (!RecvAll(s, &size, 8, timeout_ms) || size != answer->size()) return false;
  return RecvAll(s, answer->data(), answer->size(), timeout_ms);
}

}  // namespace

RpcEndpoint ParseRpcEndpoint(const std::string& text) {
  size_t colon = text.rfind(':');
  auto bad = [&text](const char* why) { return CodedError(code::INVALID_ARGUMENT, "RPC server \"" + text + "\": " + why + " (expected host:port)"); };
  if (colon == std::string::npos || colon == 0) throw bad("no host");
  RpcEndpoint ep;
  ep.host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) throw bad("the port is not a number");
  ep.port = std::stoi(port);
  if (ep.port < 1 || ep.port > 65535) throw bad("the port is not in 1-65535");
  if (ep.host.find_first_of(" /:@") != std::string::npos) throw bad("the host is not a name or an IPv4 address");
  ep.text = text;
  return ep;
}

uint32_t ProbeRpcServer(const RpcEndpoint& ep, const RpcTimeouts& t) {
  std::string why;
  intptr_t s = Connect(ep, t.connect_ms, &why);
  if (GENAI_BAD_SOCKET(s)) throw CodedError(code::BACKEND_ERROR, "RPC server " + ep.text + ": " + why);
  std::vector<uint8_t> hello(4 + kCapsSize), count(4);
  bool ok = Exchange(s, kHello, std::vector<uint8_t>(kCapsSize, 0), &hello, t.connect_ms);
  if (ok && hello[0] != RPC_PROTO_MAJOR_VERSION) {
    CloseSocket(s);
    throw CodedError(code::BACKEND_ERROR, "RPC server " + ep.text + " speaks protocol " + std::to_string(hello[0]) + "." + std::to_string(hello[1]) +
                                              ", this build " + std::to_string(RPC_PROTO_MAJOR_VERSION) + "." + std::to_string(RPC_PROTO_MINOR_VERSION) +
                                              ": run an rpc-server from the same llama.cpp version");
  }
  ok = ok && Exchange(s, kDeviceCount, {}, &count, t.call_ms);
  CloseSocket(s);
  if (!ok)
    throw CodedError(code::BACKEND_ERROR, "RPC server " + ep.text + " did not answer its handshake within " + std::to_string(t.connect_ms) +
                                              " ms (not an rpc-server, or one serving another client: it serves one at a time)");
  uint32_t n;
  std::memcpy(&n, count.data(), 4);
  if (n == 0) throw CodedError(code::BACKEND_ERROR, "RPC server " + ep.text + " has no devices");
  return n;
}

RpcRelay* RpcRelay::Start(const RpcEndpoint& upstream, const RpcTimeouts& t) {
  if (!InitSockets()) throw CodedError(code::BACKEND_ERROR, "the socket library failed to start");
  auto l = socket(AF_INET, SOCK_STREAM, 0);
  if (!GENAI_BAD_SOCKET(l)) NoInherit(static_cast<intptr_t>(l));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  SockLen len = sizeof(addr);
  if (GENAI_BAD_SOCKET(l) || bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(l, 8) != 0 ||
      getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    CloseSocket(l);
    throw CodedError(code::BACKEND_ERROR, "cannot listen on 127.0.0.1 for the RPC relay to " + upstream.text);
  }
  auto* relay = new RpcRelay(upstream, t);  // never freed: ggml's RPC devices keep its address for the process's life
  relay->local_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  intptr_t listener = static_cast<intptr_t>(l);
  std::thread([relay, listener] { relay->AcceptLoop(listener); }).detach();
  return relay;
}

std::string RpcRelay::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void RpcRelay::set_timeouts(const RpcTimeouts& t) {
  std::lock_guard<std::mutex> lock(mu_);
  timeouts_ = t;
}

RpcTimeouts RpcRelay::timeouts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return timeouts_;
}

void RpcRelay::Fail(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = why;
  }
  failures_.fetch_add(1);
}

void RpcRelay::AcceptLoop(intptr_t listener) {
  for (;;) {
    auto c = accept(static_cast<decltype(socket(0, 0, 0))>(listener), nullptr, nullptr);
    if (GENAI_BAD_SOCKET(c)) {
#ifndef _WIN32
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
#endif
      return;
    }
    NoInherit(static_cast<intptr_t>(c));
    NoInheritPeer(static_cast<intptr_t>(c));
    SetNoDelay(c);
    intptr_t client = static_cast<intptr_t>(c);
    std::thread([this, client] { Serve(client); }).detach();
  }
}

// One ggml connection: forwards each command to the server and its answer back,
// or, once the server is gone, answers in its place (StandIn).
void RpcRelay::Serve(intptr_t client) {
  const RpcTimeouts t = timeouts();
  std::string why;
  intptr_t up = Connect(upstream_, t.connect_ms, &why);
  bool dead = GENAI_BAD_SOCKET(up);
  if (dead) Fail(why);
  auto lost = [&](const std::string& what) {
    if (dead) return;
    dead = true;
    CloseSocket(up);
    up = -1;
    Fail(what);
  };
  std::vector<uint8_t> payload, out, chunk(kWhole);
  for (;;) {
    uint8_t hdr[9];
    if (!RecvAll(client, hdr, 9, -1)) break;  // ggml closed its connection
    const uint8_t cmd = hdr[0];
    uint64_t size;
    std::memcpy(&size, hdr + 1, 8);
    const bool whole = size <= kWhole;
    payload.clear();
    if (whole) {
      // the header and the payload in one buffer, sent with one call (ggml sends them in three)
      out.resize(9 + static_cast<size_t>(size));
      std::memcpy(out.data(), hdr, 9);
      if (!RecvAll(client, out.data() + 9, static_cast<size_t>(size), -1)) break;
      if (cmd == kHello) std::fill(out.begin() + 9, out.end(), 0);  // no transport upgrade (RDMA) past the relay
      payload.assign(out.begin() + 9, out.end());
    }
    if (!dead && !(whole ? SendAll(up, out.data(), out.size(), t.call_ms) : SendAll(up, hdr, 9, t.call_ms)))
      lost("the connection was lost while sending to it");
    if (!whole) {  // tensor data: streamed through (or dropped)
      bool client_ok = true;
      for (uint64_t left = size; left > 0;) {
        size_t n = static_cast<size_t>(left < kWhole ? left : kWhole);
        if (!RecvAll(client, chunk.data(), n, -1)) {
          client_ok = false;
          break;
        }
        if (!dead && !SendAll(up, chunk.data(), n, t.call_ms)) lost("the connection was lost while sending tensor data to it");
        left -= n;
      }
      if (!client_ok) break;
    }
    const uint64_t want = AnswerSize(cmd, payload, size);
    if (want == kNoAnswer) continue;
    uint64_t sent = 0;  // answer bytes already passed to ggml
    if (!dead) {
      uint64_t n = 0;
      if (!RecvAll(up, &n, 8, t.call_ms)) {
        lost("no answer within " + std::to_string(t.call_ms) + " ms, or the connection was closed");
      } else if (n != want) {
        lost("it answered a command with " + std::to_string(n) + " bytes where " + std::to_string(want) + " were due");
      } else if (n <= kWhole) {  // the size and the answer in one call
        out.resize(8 + static_cast<size_t>(n));
        std::memcpy(out.data(), &n, 8);
        if (!RecvAll(up, out.data() + 8, static_cast<size_t>(n), t.call_ms)) {
          lost("the connection was lost while receiving an answer");
        } else {
          if (!SendAll(client, out.data(), out.size(), -1)) break;
          continue;
        }
      } else if (!SendAll(client, &n, 8, -1)) {
        break;
      } else {
        bool client_ok = true;
        while (sent < n) {
          size_t k = static_cast<size_t>(n - sent < kWhole ? n - sent : kWhole);
          if (!RecvAll(up, chunk.data(), k, t.call_ms)) {
            lost("the connection was lost while receiving tensor data");
            break;
          }
          if (!SendAll(client, chunk.data(), k, -1)) {
            client_ok = false;
            break;
          }
          sent += k;
        }
        if (!client_ok) break;
        if (!dead) continue;
        // lost mid-answer: the rest is zeros, so ggml's framing holds
        std::fill(chunk.begin(), chunk.end(), 0);
        bool ok = true;
        while (ok && sent < n) {
          size_t k = static_cast<size_t>(n - sent < kWhole ? n - sent : kWhole);
          ok = SendAll(client, chunk.data(), k, -1);
          sent += k;
        }
        if (!ok) break;
        continue;
      }
    }
    // the server is gone: answer in its place
    if (want > (uint64_t{1} << 32)) break;  // no stand-in that large; closing makes ggml abort, as it would without the relay
    std::vector<uint8_t> answer = StandIn(cmd, payload, want);
    if (!SendAll(client, &want, 8, -1) || !SendAll(client, answer.data(), answer.size(), -1)) break;
  }
  CloseSocket(up);
  CloseSocket(client);
}

}  // namespace genai
