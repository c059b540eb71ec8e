#include "system/rpc.h"

#include <cstring>
#include <mutex>
#include <thread>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "system/backends.h"
#include "util/abort_guard.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"

namespace genai {

namespace {

using AddServerFn = ggml_backend_reg_t (*)(const char* endpoint);
using StartServerFn = void (*)(const char* endpoint, const char* cache_dir, size_t n_threads, size_t n_devices, ggml_backend_dev_t* devices);

struct Server {
  RpcRelay* relay = nullptr;
  std::vector<ggml_backend_dev_t> devices;
  std::vector<std::pair<size_t, size_t>> memory;  // free, total bytes per device, as of the last refresh
};

std::mutex g_mu;                                        // guards g_servers
std::vector<std::pair<std::string, Server>> g_servers;  // by endpoint as written, in the order first connected

Server* Find(const std::string& endpoint) {
  for (auto& [e, s] : g_servers)
    if (e == endpoint) return &s;
  return nullptr;
}
std::mutex g_connect;  // one connect (probe, relay, ggml's add_server) at a time

// A proc address of the RPC module (loaded on first use).
void* RpcProc(const char* name) {
  std::string why;
  ggml_backend_reg_t reg = LoadModule("rpc", &why);
  if (!reg) throw CodedError(code::BACKEND_ERROR, "this build has no usable RPC backend module (ggml-rpc) beside the addon: " + why);
  void* fn = ggml_backend_reg_get_proc_address(reg, name);
  if (!fn) throw CodedError(code::BACKEND_ERROR, std::string("the RPC backend module has no ") + name);
  return fn;
}

std::vector<std::pair<size_t, size_t>> QueryMemory(const std::vector<ggml_backend_dev_t>& devices) {
  std::vector<std::pair<size_t, size_t>> out;
  for (ggml_backend_dev_t d : devices) {
    size_t free = 0, total = 0;
    ggml_backend_dev_memory(d, &free, &total);
    out.emplace_back(free, total);
  }
  return out;
}

}  // namespace

std::vector<RpcLink> ConnectRpcServers(const std::vector<std::string>& endpoints, const RpcTimeouts& t, std::vector<ggml_backend_dev_t>* devices) {
  std::lock_guard<std::mutex> connecting(g_connect);
  std::vector<RpcLink> links;
  for (const std::string& text : endpoints) {
    RpcEndpoint ep = ParseRpcEndpoint(text);
    {
      std::lock_guard<std::mutex> lock(g_mu);
      Server* known = Find(text);
      if (known && known->relay->failures() == 0) {
        known->relay->set_timeouts(t);
        devices->insert(devices->end(), known->devices.begin(), known->devices.end());
        links.push_back({known->relay, 0});
        continue;
      }
    }
    // a new server, or one whose link failed (a fresh relay: ggml caches answers per endpoint)
    ProbeRpcServer(ep, t);
    auto add = reinterpret_cast<AddServerFn>(RpcProc("ggml_backend_rpc_add_server"));
    RpcRelay* relay = RpcRelay::Start(ep, t);
    ggml_backend_reg_t reg;
    {
      AbortToException guard(code::BACKEND_ERROR, "ggml's RPC client failed to connect");
      reg = add(relay->local().c_str());
    }
    if (!reg || ggml_backend_reg_dev_count(reg) == 0 || relay->failures() != 0)
      throw CodedError(code::BACKEND_ERROR, "RPC server " + text + ": " + (relay->failures() ? relay->last_error() : "no devices"));
    Server s;
    s.relay = relay;
    for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); i++) s.devices.push_back(ggml_backend_reg_dev_get(reg, i));
    s.memory = QueryMemory(s.devices);
    devices->insert(devices->end(), s.devices.begin(), s.devices.end());
    links.push_back({relay, 0});
    std::lock_guard<std::mutex> lock(g_mu);
    if (Server* old = Find(text))
      *old = std::move(s);  // a server whose link had failed, connected again: its new devices in its old place
    else
      g_servers.emplace_back(text, std::move(s));
  }
  CheckRpcLinks(links);
  return links;
}

void CheckRpcLinks(const std::vector<RpcLink>& links) {
  for (const RpcLink& l : links)
    if (l.relay->failures() != l.failures)
      throw CodedError(code::BACKEND_ERROR, "RPC server " + l.relay->upstream().text + " went away (" + l.relay->last_error() +
                                                "): the model's layers there are lost; dispose the model and load it again");
}

bool IsRpcDevice(ggml_backend_dev_t dev) {
  if (!dev) return false;
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  return reg && std::strcmp(ggml_backend_reg_name(reg), "RPC") == 0;
}

std::vector<std::string> RpcServersField(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  std::vector<std::string> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be an array of \"host:port\" strings");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > 16) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " has more than 16 servers (GGML_RPC_MAX_SERVERS)");
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be an array of \"host:port\" strings");
    std::string s = e.As<Napi::String>().Utf8Value();
    try {
      ParseRpcEndpoint(s);
    } catch (const CodedError& err) {
      Throw(o.Env(), err.code, err.what());
    }
    for (const std::string& seen : out)
      if (seen == s) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " names " + s + " twice");
    out.push_back(s);
  }
  return out;
}

RpcTimeouts RpcTimeoutsField(Napi::Object o, const char* key) {
  RpcTimeouts t;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return t;
  if (!v.IsObject()) Throw(o.Env(), code::INVALID_ARGUMENT, std::string(key) + " must be an object");
  Napi::Object to = v.As<Napi::Object>();
  CheckKeys(to, {"connectMs", "callMs"}, key);
  t.connect_ms = static_cast<int>(OptIntField(to, "connectMs", 1, 3600000).value_or(t.connect_ms));
  t.call_ms = static_cast<int>(OptIntField(to, "callMs", 1, 86400000).value_or(t.call_ms));
  return t;
}

Napi::Value ConnectRpcServersJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ObjectArg(info, 0, "options");
  CheckKeys(o, {"rpcServers", "rpcTimeouts"}, "connectRpcServers");
  std::vector<std::string> endpoints = RpcServersField(o, "rpcServers");
  RpcTimeouts t = RpcTimeoutsField(o, "rpcTimeouts");
  return RunAsync<bool>(
      env,
      [endpoints, t]() {
        std::vector<ggml_backend_dev_t> devices;
        ConnectRpcServers(endpoints, t, &devices);
        return true;
      },
      [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); });
}

Napi::Value RpcDevicesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  std::lock_guard<std::mutex> lock(g_mu);
  uint32_t n = 0;
  for (const auto& [endpoint, s] : g_servers) {
    for (size_t i = 0; i < s.devices.size(); i++) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", ggml_backend_dev_name(s.devices[i]));
      d.Set("description", "RPC device " + std::to_string(i) + " of " + endpoint);
      d.Set("endpoint", endpoint);
      d.Set("freeBytes", Napi::Number::New(env, static_cast<double>(s.memory[i].first)));
      d.Set("totalBytes", Napi::Number::New(env, static_cast<double>(s.memory[i].second)));
      d.Set("failed", s.relay->failures() != 0);
      if (s.relay->failures() != 0) d.Set("error", s.relay->last_error());
      out.Set(n++, d);
    }
  }
  return out;
}

Napi::Value RefreshRpcDevicesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return RunAsync<bool>(
      env,
      []() {
        std::vector<std::pair<std::string, std::vector<ggml_backend_dev_t>>> healthy;
        {
          std::lock_guard<std::mutex> lock(g_mu);
          for (const auto& [endpoint, s] : g_servers)
            if (s.relay->failures() == 0) healthy.emplace_back(endpoint, s.devices);
        }
        for (const auto& [endpoint, devs] : healthy) {
          auto mem = QueryMemory(devs);
          std::lock_guard<std::mutex> lock(g_mu);
          Server* s = Find(endpoint);
          if (s && s->devices == devs) s->memory = mem;
        }
        return true;
      },
      [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); });
}

Napi::Value StartRpcServerJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = StringArg(info, 0, "host");
  Napi::Object port_holder = Napi::Object::New(env);
  port_holder.Set("port", info.Length() > 1 ? info[1] : env.Undefined());
  int port = static_cast<int>(IntField(port_holder, "port", 1, 65535));
  Napi::Object o = ObjectArg(info, 2, "options");
  CheckKeys(o, {"device", "threads", "cache"}, "rpc server");
  std::string spec = StringField(o, "device");
  size_t threads = static_cast<size_t>(IntField(o, "threads", 1, 1024));
  std::optional<std::string> cache = OptStringField(o, "cache");
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1) Throw(env, code::INVALID_ARGUMENT, "host must be an IPv4 address (ggml's rpc-server binds IPv4): " + host);
  StartServerFn start;
  std::vector<ggml_backend_dev_t> devices;
  try {
    start = reinterpret_cast<StartServerFn>(RpcProc("ggml_backend_rpc_start_server"));
    if (spec == "cpu") {
      auto reading = RegistryReadLock();
      devices.push_back(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU));
    } else {
      devices = SelectDevices(spec);
      devices.pop_back();  // the list's terminating nullptr
      if (devices.empty()) {
        auto reading = RegistryReadLock();
        devices.push_back(ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU));
      }
    }
  } catch (const CodedError& e) {
    Throw(env, e.code, e.what());
  }
  // ggml's server prints and returns when it cannot listen: check first, for a typed error
  auto probe = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const char*>(&one), sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr = a;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool can_bind = bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
#ifdef _WIN32
  closesocket(probe);
#else
  close(probe);
#endif
  if (!can_bind) Throw(env, code::BACKEND_ERROR, "cannot listen on " + host + ":" + std::to_string(port) + " (in use, or not an address of this machine)");

  auto deferred = std::make_shared<Napi::Promise::Deferred>(Napi::Promise::Deferred::New(env));
  Napi::Promise promise = deferred->Promise();
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "genai.rpcServer", 0, 1);
  std::string endpoint = host + ":" + std::to_string(port);
  std::thread([tsfn, deferred, start, devices, endpoint, threads, cache]() mutable {
    std::vector<ggml_backend_dev_t> devs = devices;
    start(endpoint.c_str(), cache ? cache->c_str() : nullptr, threads, devs.size(), devs.data());
    tsfn.BlockingCall([deferred, endpoint](Napi::Env e, Napi::Function) {
      CallIntoJs(e, [&] { deferred->Reject(MakeError(e, code::BACKEND_ERROR, "the RPC server on " + endpoint + " stopped (see its output)").Value()); });
    });
    tsfn.Release();
  }).detach();
  return promise;
}

}  // namespace genai
