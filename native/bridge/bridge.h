// The N-API side of emotorch: the only code that includes napi.h. It marshals values between JS
// and C++, maps every C++ failure to an EmotorchError, and runs heavy calls on the libuv pool
// through one helper (Task / run_async) on one compute thread. No math lives here.
// One concern per file: errors.cc, async.cc (the compute thread), convert.cc, tensor.cc,
// runtime.cc (seed, threads, autocast), module.cc, generation.cc, optimizer.cc, io.cc, ops.cc, audio.cc,
// distributed.cc, media.cc (the in-process video reader); addon.cc registers them.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "error.h"

namespace et::nn {
struct Model;
}

namespace et::bridge {

// Per-environment state: the JS constructors the bridge creates objects with.
struct AddonData {
  Napi::FunctionReference error_ctor;   // EmotorchError from lib/errors.ts (set at load)
  Napi::FunctionReference tensor_ctor;  // TensorHandle
  Napi::FunctionReference module_ctor;  // ModuleHandle
  Napi::FunctionReference zero_ctor;    // ZeroHandle
  Napi::FunctionReference optim_ctor;   // OptimizerHandle
  Napi::FunctionReference ddp_ctor;     // DdpHandle
};
AddonData& data(Napi::Env env);

// An error with a stable code, thrown from bridge code for bad arguments (and from native code
// outside the bridge, which throws the same type through native/error.h).
using CodedError = et::CodedError;

// Builds an EmotorchError(message, code) (a plain Error before lib/ registered the class).
Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message);

// The code and message (no C++ backtrace) of the exception in flight; call inside a catch.
std::pair<std::string, std::string> describe_current_exception(const std::string& default_code);

// Runs `f` and turns any C++ exception into a thrown JS EmotorchError.
template <class F>
auto guard(Napi::Env env, F&& f, const std::string& default_code = "ERR_TORCH") -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    auto [code, msg] = describe_current_exception(default_code);
    throw make_error(env, code, msg);
  }
}

// The one async helper: `work` runs on the one compute thread (reached through the libuv pool,
// whose thread waits for it) with the caller's grad mode and autocast state (thread-local, so
// captured here on the JS thread) and, if given, `lock` held; `done` runs back on the JS thread
// and gives the Promise's value. Failures reject with an EmotorchError.
Napi::Promise run_async(Napi::Env env, const char* name, std::shared_ptr<std::mutex> lock, std::function<void()> work,
                        std::function<Napi::Value(Napi::Env)> done, std::string default_code = "ERR_TORCH");

// The same for communication with other processes: `issue` runs on the compute thread (so
// collectives start in the order the JS code called them, after the heavy calls before them),
// `wait` on the libuv thread that carries the task (it blocks on other processes: never on the
// compute thread, which stays free for other work meanwhile), then `after` on the compute thread.
Napi::Promise run_async_comm(Napi::Env env, const char* name, std::function<void()> issue, std::function<void()> wait,
                             std::function<void()> after, std::function<Napi::Value(Napi::Env)> done,
                             std::string default_code = "ERR_DIST");

// The compute thread's intra-op thread count (set by setNumThreads; libtorch's default at load).
int compute_threads();
void set_compute_threads(int n);
void set_adaptive_threads(bool on);
bool adaptive_threads();
int active_compute_threads();
// At load: the compute thread takes libtorch's default thread count; the JS thread runs its own
// synchronous ops single-threaded.
void init_compute_thread();

// ---- tensors ----
class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;
  // A new JS handle owning a reference to `t`. `report`: count its bytes towards V8's external
  // memory (true for fresh results; false for views of memory a module owns, such as parameters).
  static Napi::Object wrap(Napi::Env env, at::Tensor t, bool report = true);
  const at::Tensor& tensor() const;  // throws ERR_DISPOSED after dispose()

 private:
  at::Tensor t_;
  int64_t reported_ = 0;
  bool disposed_ = false;
  void release(Napi::Env env);
  Napi::Value Shape(const Napi::CallbackInfo&);
  Napi::Value Dtype(const Napi::CallbackInfo&);
  Napi::Value Device(const Napi::CallbackInfo&);
  Napi::Value Numel(const Napi::CallbackInfo&);
  Napi::Value RequiresGrad(const Napi::CallbackInfo&);
  Napi::Value SetRequiresGrad(const Napi::CallbackInfo&);
  Napi::Value Grad(const Napi::CallbackInfo&);
  Napi::Value SetGrad(const Napi::CallbackInfo&);
  Napi::Value IsLeaf(const Napi::CallbackInfo&);
  Napi::Value Dispose(const Napi::CallbackInfo&);
  Napi::Value Disposed(const Napi::CallbackInfo&);
  Napi::Value DataSync(const Napi::CallbackInfo&);
  Napi::Value Data(const Napi::CallbackInfo&);
  Napi::Value Item(const Napi::CallbackInfo&);
  Napi::Value Backward(const Napi::CallbackInfo&);
  Napi::Value SameStorage(const Napi::CallbackInfo&);
  Napi::Value Key(const Napi::CallbackInfo&);
};

// ---- conversions ----
at::Tensor to_tensor(const Napi::Value& v, const char* what);
std::vector<at::Tensor> to_tensors(const Napi::Value& v, const char* what);
// Throws ERR_DIST_STATE when t's storage was released (a parameter sharded at ZeRO stage 3 between uses).
void check_readable(const at::Tensor& t, const char* what);
Napi::Array from_tensors(Napi::Env env, const std::vector<at::Tensor>& ts, bool report = true);
at::ScalarType to_dtype(const Napi::Value& v);
std::string dtype_name(at::ScalarType t);
at::Device to_device(const Napi::Value& v);
std::vector<int64_t> to_ints(const Napi::Value& v, const char* what);
std::string to_string(const Napi::Value& v, const char* what);
double to_double(const Napi::Value& v, const char* what);
// A model's (or optimizer group's) config object, read field by field by its native declaration.
std::unique_ptr<nn::ConfigReader> config_reader(const Napi::Value& v, const std::string& kind);

// The model behind a ModuleHandle and the mutex its calls take (ERR_DISPOSED after dispose()).
std::pair<std::shared_ptr<nn::Model>, std::shared_ptr<std::mutex>> module_of(const Napi::Value& handle);

// ---- registration (each .cc of the bridge adds its functions to exports) ----
void init_errors(Napi::Env env, Napi::Object exports);
void init_runtime(Napi::Env env, Napi::Object exports);
void init_tensor(Napi::Env env, Napi::Object exports);
void init_ops(Napi::Env env, Napi::Object exports);
void init_module(Napi::Env env, Napi::Object exports);
void init_generation(Napi::Env env, Napi::Object exports);  // after init_module: adds ModuleHandle's decoding methods
void init_optimizer(Napi::Env env, Napi::Object exports);
void init_io(Napi::Env env, Napi::Object exports);
void init_profiler(Napi::Env env, Napi::Object exports);
void init_audio(Napi::Env env, Napi::Object exports);
void init_distributed(Napi::Env env, Napi::Object exports);
void init_media(Napi::Env env, Napi::Object exports);
void init_quant(Napi::Env env, Napi::Object exports);

}  // namespace et::bridge
