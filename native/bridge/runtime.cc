// Process-level state: versions and CUDA devices, seeds and random generator states, thread
// count, grad mode and autocast.
#include "bridge/bridge.h"
#include "kernels/conv.h"
#include "kernels/linear.h"
#include "memory/cpu_cache.h"
#include "runtime/cpu_share.h"

#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/GradMode.h>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <torch/version.h>

namespace et::bridge {

static Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("libtorch", Napi::String::New(env, TORCH_VERSION));
  o.Set("cpuCapability", Napi::String::New(env, at::get_cpu_capability()));
  bool cuda = torch::cuda::is_available();
  o.Set("cuda", Napi::Boolean::New(env, cuda));
  o.Set("cudaBuild", Napi::Boolean::New(env, at::detail::getCUDAHooks().hasCUDA() || cuda));
  if (cuda && at::detail::getCUDAHooks().hasCuDNN())
    o.Set("cudnn", Napi::String::New(env, std::to_string(at::detail::getCUDAHooks().versionCuDNN())));
  return o;
}

static Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
}

static Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (torch::cuda::device_count() > 0) torch::cuda::synchronize();
    return info.Env().Undefined();
  });
}

static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    torch::manual_seed(static_cast<uint64_t>(to_double(info[0], "seed")));
    return info.Env().Undefined();
  });
}

static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    double n = to_double(info[0], "threads");
    if (!(n >= 1 && n <= 1024)) throw CodedError("ERR_INVALID_ARG", "threads must be in [1, 1024]");
    set_compute_threads(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

// The state of a device's default random generator (CPU: the Mersenne Twister and normal cache;
// CUDA: seed and offset), as a uint8 tensor, and back.
static at::Generator default_generator(const Napi::Value& v) {
  at::Device d = to_device(v);
  return at::globalContext().defaultGenerator(d.is_cuda() && !d.has_index() ? at::Device(at::kCUDA, 0) : d);
}
static Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto gen = default_generator(info[0]);
    std::lock_guard<std::mutex> lock(gen.mutex());
    return TensorHandle::wrap(info.Env(), gen.get_state());
  });
}
static Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto gen = default_generator(info[0]);
    at::Tensor state = to_tensor(info[1], "state");
    if (state.scalar_type() != at::kByte || state.dim() != 1 || !state.device().is_cpu())
      throw CodedError("ERR_INVALID_ARG", "an RNG state is a 1-D uint8 CPU tensor (from getRngState)");
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state.contiguous());
    return info.Env().Undefined();
  });
}

static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), compute_threads()); }
static Napi::Value SetAdaptiveThreads(const Napi::CallbackInfo& info) {
  set_adaptive_threads(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}
static Napi::Value GetAdaptiveThreads(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), adaptive_threads()); }
static Napi::Value GetActiveThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), active_compute_threads()); }
// The adaptive-threads policy on given numbers (for tests): [threads, pending].
static Napi::Value ShareThreads(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    bool pending = info[4].ToBoolean().Value();
    int n = runtime::share_threads(static_cast<int>(to_double(info[0], "want")), static_cast<int>(to_double(info[1], "current")),
                                   static_cast<int>(to_double(info[2], "cpus")), to_double(info[3], "others"), pending);
    auto out = Napi::Array::New(info.Env(), 2);
    out.Set(0u, Napi::Number::New(info.Env(), n));
    out.Set(1u, Napi::Boolean::New(info.Env(), pending));
    return out;
  });
}

static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  c10::GradMode::set_enabled(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

// setAutocast('cpu' | 'cuda', enabled, dtype) on the JS thread; returns the previous [enabled, dtype].
static Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto dev = to_string(info[0], "autocast device");
    if (dev != "cpu" && dev != "cuda") throw CodedError("ERR_INVALID_ARG", "autocast device must be 'cpu' or 'cuda'");
    auto type = dev == "cpu" ? at::kCPU : at::kCUDA;
    auto prev = Napi::Array::New(info.Env(), 2);
    prev.Set(0u, Napi::Boolean::New(info.Env(), at::autocast::is_autocast_enabled(type)));
    prev.Set(1u, Napi::String::New(info.Env(), dtype_name(at::autocast::get_autocast_dtype(type))));
    at::autocast::set_autocast_enabled(type, info[1].ToBoolean().Value());
    at::autocast::set_autocast_dtype(type, to_dtype(info[2]));
    return prev;
  });
}

static Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled()); }

// cpuCache(enabled, limitBytes, hugePages) sets the CPU caching allocator (lib/runtime.ts
// validates); cpuCache() leaves it; both return its stats.
static Napi::Value CpuCache(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (info.Length() >= 3)
      memory::configure_cpu_cache(info[0].ToBoolean().Value(), static_cast<size_t>(to_double(info[1], "limitBytes")),
                                  info[2].ToBoolean().Value());
    auto s = memory::cpu_cache_stats();
    Napi::Env env = info.Env();
    auto o = Napi::Object::New(env);
    o.Set("enabled", Napi::Boolean::New(env, s.enabled));
    o.Set("hugePages", Napi::Boolean::New(env, s.huge_pages));
    o.Set("limitBytes", Napi::Number::New(env, static_cast<double>(s.limit_bytes)));
    o.Set("cachedBytes", Napi::Number::New(env, static_cast<double>(s.cached_bytes)));
    o.Set("cachedBlocks", Napi::Number::New(env, static_cast<double>(s.cached_blocks)));
    o.Set("hits", Napi::Number::New(env, static_cast<double>(s.hits)));
    o.Set("misses", Napi::Number::New(env, static_cast<double>(s.misses)));
    o.Set("released", Napi::Number::New(env, static_cast<double>(s.released)));
    o.Set("allocatedBytes", Napi::Number::New(env, static_cast<double>(s.allocated_bytes)));
    o.Set("peakAllocatedBytes", Napi::Number::New(env, static_cast<double>(s.peak_bytes)));
    return o;
  });
}

// The float32 CPU products timed on both backends so far, and the one each kept (kernels/linear.h).
static Napi::Value LinearBackends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto table = nn::linear_backend_table();
  auto out = Napi::Array::New(env, table.size());
  for (size_t i = 0; i < table.size(); i++) {
    const auto& r = table[i];
    auto o = Napi::Object::New(env);
    o.Set("rows", Napi::Number::New(env, static_cast<double>(r[0])));
    o.Set("inner", Napi::Number::New(env, static_cast<double>(r[1])));
    o.Set("outer", Napi::Number::New(env, static_cast<double>(r[2])));
    o.Set("threads", Napi::Number::New(env, static_cast<double>(r[3])));
    o.Set("aTransposed", Napi::Boolean::New(env, r[4] != 0));
    o.Set("weightTransposed", Napi::Boolean::New(env, r[5] != 0));
    o.Set("bias", Napi::Boolean::New(env, r[6] != 0));
    o.Set("backend", Napi::String::New(env, r[7] == 0 ? "onednn" : "blas"));
    out.Set(i, o);
  }
  return out;
}

// The float32 CPU convolutions over time-major rows timed so far, and the implementation each kept.
static Napi::Value ConvBackends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto table = nn::conv_backend_table();
  auto out = Napi::Array::New(env, table.size());
  static const char* names[] = {"onednn-rows", "channels-first", "blas"};
  static const char* fields[] = {"inChannels", "outChannels", "kernel", "stride", "padding", "groups", "rows", "threads"};
  for (size_t i = 0; i < table.size(); i++) {
    const auto& r = table[i];
    auto o = Napi::Object::New(env);
    for (size_t f = 0; f < 8; f++) o.Set(fields[f], Napi::Number::New(env, static_cast<double>(r[f])));
    o.Set("bias", Napi::Boolean::New(env, r[8] != 0));
    o.Set("backend", Napi::String::New(env, names[r[9]]));
    out.Set(i, o);
  }
  return out;
}

static Napi::Value EmptyCpuCache(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(memory::empty_cpu_cache()));
}

static Napi::Value ResetPeakCpuMemory(const Napi::CallbackInfo& info) {
  memory::reset_peak_cpu_memory();
  return info.Env().Undefined();
}

void init_runtime(Napi::Env env, Napi::Object exports) {
  init_compute_thread();
  // On from the start, with the default limit; lib/runtime.ts applies EMOTORCH_CPU_ALLOCATOR /
  // EMOTORCH_CPU_CACHE_MB when it loads.
  memory::install_cpu_cache();
  exports.Set("versions", Napi::Function::New(env, Versions));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount));
  exports.Set("cudaSynchronize", Napi::Function::New(env, CudaSynchronize));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads));
  exports.Set("setAdaptiveThreads", Napi::Function::New(env, SetAdaptiveThreads));
  exports.Set("getAdaptiveThreads", Napi::Function::New(env, GetAdaptiveThreads));
  exports.Set("getActiveThreads", Napi::Function::New(env, GetActiveThreads));
  exports.Set("shareThreads", Napi::Function::New(env, ShareThreads));
  exports.Set("getRngState", Napi::Function::New(env, GetRngState));
  exports.Set("setRngState", Napi::Function::New(env, SetRngState));
  exports.Set("setGradEnabled", Napi::Function::New(env, SetGradEnabled));
  exports.Set("isGradEnabled", Napi::Function::New(env, IsGradEnabled));
  exports.Set("setAutocast", Napi::Function::New(env, SetAutocast));
  exports.Set("cpuCache", Napi::Function::New(env, CpuCache));
  exports.Set("linearBackends", Napi::Function::New(env, LinearBackends));
  exports.Set("convBackends", Napi::Function::New(env, ConvBackends));
  exports.Set("emptyCpuCache", Napi::Function::New(env, EmptyCpuCache));
  exports.Set("resetPeakCpuMemory", Napi::Function::New(env, ResetPeakCpuMemory));
}

}  // namespace et::bridge
