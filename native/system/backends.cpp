#include "system/backends.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>

#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#endif

#include "util/args.h"
#include "util/errors.h"
#include "util/log.h"

namespace genai {

namespace fs = std::filesystem;

namespace {

std::shared_mutex g_registry;  // see RegistryReadLock; taken before g_mu
std::mutex g_mu;
std::map<std::string, ggml_backend_reg_t> g_loaded;  // module path -> its registration (guarded by g_mu)

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

#ifdef _WIN32
const char* kPrefix = "ggml-";
const char* kExt = ".dll";
#else
const char* kPrefix = "libggml-";
const char* kExt = ".so";  // ggml's module suffix on Linux and macOS alike (ggml-backend-reg.cpp)
#endif

// ggml_backend_score() of a CPU variant module, 0 when it does not load or
// does not run on this CPU (ggml-backend-reg.cpp does the same).
int ScoreModule(const fs::path& p) {
  using score_t = int (*)();
#ifdef _WIN32
  HMODULE h = LoadLibraryW(p.wstring().c_str());
  if (!h) return 0;
  auto fn = reinterpret_cast<score_t>(GetProcAddress(h, "ggml_backend_score"));
  int s = fn ? fn() : 0;
  FreeLibrary(h);
#else
  void* h = dlopen(p.string().c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) return 0;
  auto fn = reinterpret_cast<score_t>(dlsym(h, "ggml_backend_score"));
  int s = fn ? fn() : 0;
  dlclose(h);
#endif
  return s;
}

ggml_backend_reg_t LoadLocked(const std::string& path, std::string* why) {
  auto it = g_loaded.find(path);
  if (it != g_loaded.end()) return it->second;
  LogCapture capture;  // ggml logs the dlopen error
  ggml_backend_reg_t reg = ggml_backend_load(path.c_str());
  if (!reg) {
    if (why) *why = capture.Errors();
    return nullptr;
  }
  g_loaded[path] = reg;
  return reg;
}

// The CPU module's threadpool functions, resolved once when it is registered
// (ggml-cpu is a module under GGML_BACKEND_DL: no link-time symbols).
decltype(&ggml_threadpool_new) g_tp_new = nullptr;
decltype(&ggml_threadpool_pause) g_tp_pause = nullptr;
decltype(&ggml_threadpool_free) g_tp_free = nullptr;

void RememberCpuProcs(ggml_backend_reg_t reg) {
  g_tp_new = reinterpret_cast<decltype(g_tp_new)>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
  g_tp_pause = reinterpret_cast<decltype(g_tp_pause)>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_pause"));
  g_tp_free = reinterpret_cast<decltype(g_tp_free)>(ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
}

bool IsGpu(ggml_backend_dev_t d) {
  auto t = ggml_backend_dev_type(d);
  return t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU;
}

// Lower-case backend name as users write it ("metal" for ggml's "MTL").
std::string UserBackendName(ggml_backend_reg_t reg) {
  std::string n = Lower(ggml_backend_reg_name(reg));
  return n == "mtl" ? "metal" : n;
}

}  // namespace

std::shared_lock<std::shared_mutex> RegistryReadLock() { return std::shared_lock<std::shared_mutex>(g_registry); }

namespace {
std::mutex g_setup;
}
BackendSetupLock::BackendSetupLock() : registry(g_registry), setup(g_setup) {}

std::string AddonDir() {
#ifdef _WIN32
  HMODULE self = nullptr;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, reinterpret_cast<LPCWSTR>(&AddonDir), &self);
  wchar_t buf[32768];
  DWORD n = GetModuleFileNameW(self, buf, 32768);
  return fs::path(std::wstring(buf, n)).parent_path().u8string();
#else
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&AddonDir), &info) || !info.dli_fname) return ".";
  return fs::path(info.dli_fname).parent_path().string();
#endif
}

std::string LoadCpuBackend(const std::string& dir) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (const auto& [path, reg] : g_loaded)
      if (Lower(ggml_backend_reg_name(reg)) == "cpu") return path;
  }
  std::unique_lock<std::shared_mutex> registering(g_registry);
  std::lock_guard<std::mutex> lock(g_mu);
  for (const auto& [path, reg] : g_loaded)
    if (Lower(ggml_backend_reg_name(reg)) == "cpu") return path;
  std::error_code ec;
  fs::path best;
  int best_score = 0;
  const std::string variant_prefix = std::string(kPrefix) + "cpu-";
  for (fs::directory_iterator it(fs::path(dir), ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind(variant_prefix, 0) != 0 || it->path().extension() != kExt) continue;
    int s = ScoreModule(it->path());
    if (s > best_score) best_score = s, best = it->path();
  }
  if (best.empty()) best = fs::path(dir) / (std::string(kPrefix) + "cpu" + kExt);
  std::string why;
  ggml_backend_reg_t reg = LoadLocked(best.string(), &why);
  if (!reg) throw std::runtime_error("no ggml CPU backend module loads from " + dir + (why.empty() ? "" : ": " + why));
  RememberCpuProcs(reg);
  return best.string();
}

ggml_backend_reg_t LoadModule(const std::string& name, std::string* why) {
  std::string path = (fs::path(AddonDir()) / (std::string(kPrefix) + name + kExt)).string();
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_loaded.find(path);
    if (it != g_loaded.end()) return it->second;
  }
  std::unique_lock<std::shared_mutex> registering(g_registry);
  std::lock_guard<std::mutex> lock(g_mu);
  ggml_backend_reg_t reg = LoadLocked(path, why);
  if (!reg && why && why->empty()) *why = path + " did not load";
  return reg;
}

Napi::Value LoadBackend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  ggml_backend_reg_t reg = nullptr;
  std::string why;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_loaded.find(path);
    if (it != g_loaded.end()) reg = it->second;
  }
  if (!reg) {
    // waits for loads running in other threads (other worker_threads) to finish
    std::unique_lock<std::shared_mutex> registering(g_registry);
    std::lock_guard<std::mutex> lock(g_mu);
    reg = LoadLocked(path, &why);
  }
  if (!reg) Throw(env, code::BACKEND_ERROR, "the backend module " + path + " did not load" + (why.empty() ? "" : ": " + why));
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", ggml_backend_reg_name(reg));
  o.Set("path", path);
  Napi::Array devices = Napi::Array::New(env);
  for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); i++) devices.Set(static_cast<uint32_t>(i), ggml_backend_dev_name(ggml_backend_reg_dev_get(reg, i)));
  o.Set("devices", devices);
  return o;
}

Napi::Value BackendModules(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mu);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& [path, reg] : g_loaded) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", ggml_backend_reg_name(reg));
    o.Set("path", path);
    out.Set(i++, o);
  }
  return out;
}

std::vector<ggml_backend_dev_t> SelectDevices(const std::string& spec) {
  auto reading = RegistryReadLock();
  std::string want = Lower(spec.empty() ? "auto" : spec);
  std::vector<ggml_backend_dev_t> out;
  if (want == "cpu") {
    out.push_back(nullptr);
    return out;
  }
  // a backend: its GPU devices ("auto": the first backend in preference order that has one)
  std::vector<std::string> order = want == "auto" ? std::vector<std::string>{"cuda", "metal", "vulkan", ""} : std::vector<std::string>{want};
  for (const std::string& backend : order) {
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
      ggml_backend_dev_t d = ggml_backend_dev_get(i);
      if (!IsGpu(d)) continue;
      std::string b = UserBackendName(ggml_backend_dev_backend_reg(d));
      if (backend.empty() ? out.empty() || UserBackendName(ggml_backend_dev_backend_reg(out[0])) == b : b == backend) out.push_back(d);
    }
    if (!out.empty()) break;
  }
  // a device by name
  if (out.empty() && want != "auto") {
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
      ggml_backend_dev_t d = ggml_backend_dev_get(i);
      if (Lower(ggml_backend_dev_name(d)) == want && IsGpu(d)) out.push_back(d);
    }
    if (out.empty()) {
      std::string have;
      for (size_t i = 0; i < ggml_backend_dev_count(); i++) have += std::string(have.empty() ? "" : ", ") + ggml_backend_dev_name(ggml_backend_dev_get(i));
      throw CodedError(code::INVALID_ARGUMENT, "device \"" + spec + "\" is not available (registered devices: " + have +
                                                   "); see systemInfo().backendModules for why a backend is absent");
    }
  }
  out.push_back(nullptr);
  return out;
}

std::vector<ggml_backend_dev_t> DevicesProp(Napi::Object o) {
  std::string spec = StringField(o, "device");
  try {
    return SelectDevices(spec);
  } catch (const CodedError& e) {
    Throw(o.Env(), e.code, e.what());
  }
}

ggml_threadpool_t NewCpuThreadpool(int n_threads) {
  if (!g_tp_new) return nullptr;
  ggml_threadpool_params tpp = ggml_threadpool_params_default(n_threads);
  tpp.paused = true;
  return g_tp_new(&tpp);
}

void PauseCpuThreadpool(ggml_threadpool_t tp) {
  if (tp && g_tp_pause) g_tp_pause(tp);
}

void FreeCpuThreadpool(ggml_threadpool_t tp) {
  if (tp && g_tp_free) g_tp_free(tp);
}

namespace {
// The name of the first device SelectDevices(spec) gives ("CPU" for none).
std::string FirstDeviceName(Napi::Env env, const std::string& spec) {
  try {
    std::vector<ggml_backend_dev_t> devs = SelectDevices(spec);
    return devs[0] ? ggml_backend_dev_name(devs[0]) : "CPU";
  } catch (const CodedError& e) {
    Throw(env, e.code, e.what());
  }
}
}  // namespace

std::string DeviceNameProp(Napi::Object o) { return FirstDeviceName(o.Env(), StringField(o, "device")); }

Napi::Value DeviceName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), FirstDeviceName(info.Env(), StringArg(info, 0, "spec"))); }

}  // namespace genai
