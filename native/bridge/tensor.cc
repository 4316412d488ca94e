// Tensor handles, errors, the async helper, conversions, and process-level functions.
#include "bridge/bridge.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/GradMode.h>
#include <torch/cuda.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <thread>
#include <unordered_map>

namespace et::bridge {

AddonData& data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  auto& d = data(env);
  if (!d.error_ctor.IsEmpty()) {
    Napi::Object e = d.error_ctor.New({Napi::String::New(env, message), Napi::String::New(env, code)});
    return Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

static std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::pair<std::string, std::string> describe_current_exception(const std::string& default_code) {
  try {
    throw;
  } catch (const CodedError& e) {
    return {e.code, e.what()};
  } catch (const c10::OutOfMemoryError& e) {
    return {"ERR_OUT_OF_MEMORY", trim(e.what_without_backtrace())};
  } catch (const c10::IndexError& e) {
    return {"ERR_INDEX", trim(e.what_without_backtrace())};
  } catch (const c10::TypeError& e) {
    return {"ERR_TYPE", trim(e.what_without_backtrace())};
  } catch (const c10::ValueError& e) {
    return {"ERR_VALUE", trim(e.what_without_backtrace())};
  } catch (const c10::NotImplementedError& e) {
    return {"ERR_NOT_IMPLEMENTED", trim(e.what_without_backtrace())};
  } catch (const c10::Error& e) {
    std::string msg = trim(e.what_without_backtrace());
    // The CPU allocator reports exhaustion as a plain c10::Error.
    if (msg.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos ||
        msg.find("DefaultCPUAllocator: not enough memory") != std::string::npos)
      return {"ERR_OUT_OF_MEMORY", msg};
    return {default_code, msg};
  } catch (const std::bad_alloc&) {
    return {"ERR_OUT_OF_MEMORY", "out of memory"};
  } catch (const std::exception& e) {
    return {"ERR_NATIVE", e.what()};
  } catch (...) {
    return {"ERR_NATIVE", "unknown native error"};
  }
}

// ---- the async helper ----
namespace {

// Autocast state is thread-local like grad mode: captured on the JS thread, applied in the worker.
struct AutocastState {
  bool cpu = false, cuda = false;
  at::ScalarType cpu_dtype = at::kBFloat16, cuda_dtype = at::kHalf;
  static AutocastState capture() {
    AutocastState s;
    s.cpu = at::autocast::is_autocast_enabled(at::kCPU);
    s.cuda = at::autocast::is_autocast_enabled(at::kCUDA);
    s.cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    s.cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
    return s;
  }
  void apply() const {
    at::autocast::set_autocast_enabled(at::kCPU, cpu);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
  }
  bool any() const { return cpu || cuda; }
};

// ATen sets a thread's OpenMP thread count from a process-wide value the first time the thread
// reaches a parallel loop (at::internal::lazy_init_num_threads, inline, so libtorch and this addon
// each have a per-thread flag of their own). Run both first, so that a later first parallel loop
// cannot overwrite the count this thread is given.
void settle_lazy_thread_init() {
  at::internal::lazy_init_num_threads();  // this addon's copy
  at::get_num_threads();                  // libtorch's
}

// The one compute thread. Every heavy call runs here, not on the libuv thread that picked it up:
// libgomp gives each thread that opens a parallel region a team of its own, and once a process
// has more OpenMP threads than cores, every team stops spinning between regions and pays a futex
// wake-up per region (the LLaMA step of `npm run bench -- trainer` ran 2.8x slower than PyTorch
// on 2 cores because of this). One thread, one team: the way PyTorch runs from Python. A call's
// job is queued on the JS thread when the call is made, so jobs run in call order (collectives
// must start in the same order on every rank); the libuv thread of its async work only waits for
// it, so Node's async-work lifecycle (cancellation, env teardown) is unchanged. The JS thread
// itself runs its synchronous ops single-threaded (init_threads).
class ComputeThread {
 public:
  struct Job {
    std::function<void()> f;  // must not throw
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  static ComputeThread& get() {
    static ComputeThread* t = new ComputeThread();  // never destroyed: the thread outlives statics
    return *t;
  }
  // Queues `f` behind every job queued before it.
  std::shared_ptr<Job> submit(std::function<void()> f) {
    auto job = std::make_shared<Job>();
    job->f = std::move(f);
    {
      std::lock_guard<std::mutex> lk(m_);
      queue_.push_back(job);
    }
    cv_.notify_one();
    return job;
  }
  static void wait(Job& job) {
    std::unique_lock<std::mutex> lk(job.m);
    job.cv.wait(lk, [&] { return job.done; });
  }
  void set_threads(int n) { threads_.store(n); }
  int threads() const { return threads_.load(); }

 private:
  ComputeThread() { std::thread([this] { loop(); }).detach(); }
  void loop() {
    int applied = -1;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return !queue_.empty(); });
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      int want = threads_.load();
      if (want != applied) {
        settle_lazy_thread_init();
        at::set_num_threads(want);
        applied = want;
      }
      job->f();
      job->f = nullptr;  // drop what it captured here
      {
        std::lock_guard<std::mutex> lk(job->m);
        job->done = true;
      }
      job->cv.notify_one();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::atomic<int> threads_{0};
};

// What a call's jobs share with its async work (owned by both, so a job queued for a task that
// Node drops still has what it runs on).
struct TaskState {
  std::shared_ptr<std::mutex> lock;
  std::function<void()> work, wait, after;
  std::string default_code, code, message;
  bool grad, failed = false;
  AutocastState autocast;

  void fail() {
    std::tie(code, message) = describe_current_exception(default_code);
    failed = true;
  }
  // Runs `work` with the caller's grad mode and autocast state (thread-local, so set here).
  void compute() {
    c10::AutoGradMode g(grad);
    std::unique_lock<std::mutex> held;
    if (lock) held = std::unique_lock<std::mutex>(*lock);
    AutocastState before = AutocastState::capture();
    autocast.apply();
    if (autocast.any()) at::autocast::increment_nesting();
    try {
      work();
    } catch (...) {
      fail();
    }
    if (autocast.any() && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    before.apply();
    work = nullptr;  // drop captured tensors on the compute thread
  }
};

class Task : public Napi::AsyncWorker {
 public:
  Task(Napi::Env env, const char* name, std::shared_ptr<std::mutex> lock, std::function<void()> work,
       std::function<Napi::Value(Napi::Env)> done, std::string default_code)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        s_(std::make_shared<TaskState>()),
        done_(std::move(done)) {
    s_->lock = std::move(lock);
    s_->work = std::move(work);
    s_->default_code = std::move(default_code);
    s_->grad = c10::GradMode::is_enabled();
    s_->autocast = AutocastState::capture();
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  // Communication tasks: a wait on the libuv thread, then more work on the compute thread.
  void set_comm(std::function<void()> wait, std::function<void()> after) {
    s_->wait = std::move(wait);
    s_->after = std::move(after);
  }
  // On the JS thread, at call time: the first job joins the compute queue, then the async work.
  void start() {
    first_ = ComputeThread::get().submit([s = s_] { s->compute(); });
    Queue();
  }

  void Execute() override {
    ComputeThread::wait(*first_);
    first_.reset();
    TaskState& s = *s_;
    if (!s.failed && s.wait) {
      try {
        s.wait();
      } catch (...) {
        s.fail();
      }
    }
    s.wait = nullptr;
    if (!s.failed && s.after) {
      s.work = std::move(s.after);
      ComputeThread::wait(*ComputeThread::get().submit([st = s_] { st->compute(); }));
    }
    s.after = nullptr;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (s_->failed) {
      deferred_.Reject(make_error(env, s_->code, s_->message).Value());
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      auto [code, msg] = describe_current_exception(s_->default_code);
      deferred_.Reject(make_error(env, code, msg).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  // Replaces node-addon-api's version, which lets a failing N-API call escape as a C++ exception
  // (std::terminate) when the environment is being torn down, e.g. a worker_threads Worker
  // terminated while this task ran: then nobody is left to receive the result, so drop it.
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status != napi_cancelled) {
      try {
        Napi::HandleScope scope(env);
        OnOK();
      } catch (...) {
      }
    }
    Destroy();
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<TaskState> s_;
  std::shared_ptr<ComputeThread::Job> first_;
  std::function<Napi::Value(Napi::Env)> done_;
};
}  // namespace

Napi::Promise run_async(Napi::Env env, const char* name, std::shared_ptr<std::mutex> lock, std::function<void()> work,
                        std::function<Napi::Value(Napi::Env)> done, std::string default_code) {
  auto* task = new Task(env, name, std::move(lock), std::move(work), std::move(done), std::move(default_code));
  auto p = task->promise();
  task->start();
  return p;
}

Napi::Promise run_async_comm(Napi::Env env, const char* name, std::function<void()> issue, std::function<void()> wait,
                             std::function<void()> after, std::function<Napi::Value(Napi::Env)> done, std::string default_code) {
  auto* task = new Task(env, name, nullptr, std::move(issue), std::move(done), std::move(default_code));
  task->set_comm(std::move(wait), std::move(after));
  auto p = task->promise();
  task->start();
  return p;
}

// ---- conversions ----
static const std::unordered_map<std::string, at::ScalarType>& dtype_table() {
  static const std::unordered_map<std::string, at::ScalarType> t = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"int64", at::kLong},    {"int32", at::kInt},      {"int16", at::kShort}, {"int8", at::kChar},
      {"uint8", at::kByte},    {"bool", at::kBool}};
  return t;
}

at::ScalarType to_dtype(const Napi::Value& v) {
  auto name = to_string(v, "dtype");
  auto it = dtype_table().find(name);
  if (it == dtype_table().end()) throw CodedError("ERR_INVALID_ARG", "unknown dtype '" + name + "'");
  return it->second;
}

std::string dtype_name(at::ScalarType t) {
  for (const auto& [k, v] : dtype_table())
    if (v == t) return k;
  return std::string(c10::toString(t));
}

at::Device to_device(const Napi::Value& v) {
  auto s = to_string(v, "device");
  try {
    at::Device d(s);
    if (d.is_cuda()) {
      if (!torch::cuda::is_available())
        throw CodedError("ERR_NO_CUDA", "device '" + s + "' was requested but CUDA is not available (" +
                                            (at::detail::getCUDAHooks().hasCUDA() ? "no device" : "this libtorch has no CUDA") + ")");
      int64_t n = static_cast<int64_t>(torch::cuda::device_count());
      if (d.has_index() && d.index() >= n)
        throw CodedError("ERR_NO_CUDA", "device '" + s + "' does not exist: " + std::to_string(n) + " CUDA device(s)");
    }
    return d;
  } catch (const c10::Error&) {
    throw CodedError("ERR_INVALID_ARG", "unknown device '" + s + "'");
  }
}

std::string to_string(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw CodedError("ERR_INVALID_ARG", std::string("expected a string for ") + what);
  return v.As<Napi::String>().Utf8Value();
}

double to_double(const Napi::Value& v, const char* what) {
  if (v.IsNumber()) return v.As<Napi::Number>().DoubleValue();
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  if (v.IsBigInt()) {
    bool lossless;
    return static_cast<double>(v.As<Napi::BigInt>().Int64Value(&lossless));
  }
  throw CodedError("ERR_INVALID_ARG", std::string("expected a number for ") + what);
}

std::vector<int64_t> to_ints(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw CodedError("ERR_INVALID_ARG", std::string("expected an array of integers for ") + what);
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) out[i] = static_cast<int64_t>(to_double(a.Get(i), what));
  return out;
}

at::Tensor to_tensor(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data(v.Env()).tensor_ctor.Value()))
    throw CodedError("ERR_INVALID_ARG", std::string("expected a Tensor for ") + what);
  return TensorHandle::Unwrap(v.As<Napi::Object>())->tensor();
}

std::vector<at::Tensor> to_tensors(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw CodedError("ERR_INVALID_ARG", std::string("expected an array of Tensors for ") + what);
  auto a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    out.push_back(e.IsNull() || e.IsUndefined() ? at::Tensor() : to_tensor(e, what));
  }
  return out;
}

Napi::Array from_tensors(Napi::Env env, const std::vector<at::Tensor>& ts, bool report) {
  auto a = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) a.Set(i, ts[i].defined() ? Napi::Value(TensorHandle::wrap(env, ts[i], report)) : env.Null());
  return a;
}

// ---- TensorHandle ----
void TensorHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "TensorHandle",
                                    {InstanceMethod("shape", &TensorHandle::Shape),
                                     InstanceMethod("dtype", &TensorHandle::Dtype),
                                     InstanceMethod("device", &TensorHandle::Device),
                                     InstanceMethod("numel", &TensorHandle::Numel),
                                     InstanceMethod("requiresGrad", &TensorHandle::RequiresGrad),
                                     InstanceMethod("setRequiresGrad", &TensorHandle::SetRequiresGrad),
                                     InstanceMethod("grad", &TensorHandle::Grad),
                                     InstanceMethod("setGrad", &TensorHandle::SetGrad),
                                     InstanceMethod("isLeaf", &TensorHandle::IsLeaf),
                                     InstanceMethod("dispose", &TensorHandle::Dispose),
                                     InstanceMethod("disposed", &TensorHandle::Disposed),
                                     InstanceMethod("dataSync", &TensorHandle::DataSync),
                                     InstanceMethod("data", &TensorHandle::Data),
                                     InstanceMethod("item", &TensorHandle::Item),
                                     InstanceMethod("backward", &TensorHandle::Backward),
                                     InstanceMethod("sameStorage", &TensorHandle::SameStorage),
                                     InstanceMethod("key", &TensorHandle::Key)});
  data(env).tensor_ctor = Napi::Persistent(ctor);
  exports.Set("TensorHandle", ctor);
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {}

TensorHandle::~TensorHandle() { release(Env()); }

void TensorHandle::release(Napi::Env env) {
  if (reported_) {
    try {
      Napi::MemoryManagement::AdjustExternalMemory(env, -reported_);
    } catch (...) {  // during environment teardown; runs inside a destructor, so never rethrow
    }
    reported_ = 0;
  }
  t_ = at::Tensor();
}

Napi::Object TensorHandle::wrap(Napi::Env env, at::Tensor t, bool report) {
  Napi::Object obj = data(env).tensor_ctor.New({});
  auto* h = Unwrap(obj);
  if (report && t.defined() && t.device().is_cpu()) {
    h->reported_ = static_cast<int64_t>(t.numel() * t.element_size());
    if (h->reported_) Napi::MemoryManagement::AdjustExternalMemory(env, h->reported_);
  }
  h->t_ = std::move(t);
  return obj;
}

const at::Tensor& TensorHandle::tensor() const {
  if (disposed_) throw CodedError("ERR_DISPOSED", "this Tensor was disposed");
  return t_;
}

Napi::Value TensorHandle::Shape(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto sizes = tensor().sizes();
    auto a = Napi::Array::New(info.Env(), sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) a.Set(i, Napi::Number::New(info.Env(), static_cast<double>(sizes[i])));
    return a;
  });
}
Napi::Value TensorHandle::Dtype(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return Napi::String::New(info.Env(), dtype_name(tensor().scalar_type())); });
}
Napi::Value TensorHandle::Device(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return Napi::String::New(info.Env(), tensor().device().str()); });
}
Napi::Value TensorHandle::Numel(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return Napi::Number::New(info.Env(), static_cast<double>(tensor().numel())); });
}
Napi::Value TensorHandle::RequiresGrad(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), tensor().requires_grad()); });
}
Napi::Value TensorHandle::SetRequiresGrad(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = tensor();
    t.set_requires_grad(info[0].ToBoolean().Value());
    return info.Env().Undefined();
  });
}
Napi::Value TensorHandle::Grad(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const auto& g = tensor().grad();
    return g.defined() ? Napi::Value(wrap(info.Env(), g, false)) : info.Env().Null();
  });
}
Napi::Value TensorHandle::SetGrad(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = tensor();
    if (info[0].IsNull() || info[0].IsUndefined()) {
      t.mutable_grad() = at::Tensor();
      return info.Env().Undefined();
    }
    at::Tensor g = to_tensor(info[0], "grad");
    // As PyTorch's setter: the gradient must match the tensor it belongs to.
    if (g.sizes() != t.sizes())
      throw CodedError("ERR_INVALID_ARG", "grad has shape " + c10::str(g.sizes()) + " but the tensor has shape " + c10::str(t.sizes()));
    if (g.scalar_type() != t.scalar_type())
      throw CodedError("ERR_INVALID_ARG", "grad has dtype " + dtype_name(g.scalar_type()) + " but the tensor has dtype " + dtype_name(t.scalar_type()));
    if (g.device() != t.device())
      throw CodedError("ERR_INVALID_ARG", "grad is on " + g.device().str() + " but the tensor is on " + t.device().str());
    if (g.layout() != at::kStrided) throw CodedError("ERR_INVALID_ARG", "grad must be a dense (strided) tensor");
    // Optimizers update gradients as flat memory: an expanded or strided view is stored as its own copy.
    if (!g.is_contiguous()) g = g.contiguous();
    t.mutable_grad() = g.detach();
    return info.Env().Undefined();
  });
}
Napi::Value TensorHandle::IsLeaf(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), tensor().is_leaf()); });
}
Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  if (disposed_) throw make_error(info.Env(), "ERR_DISPOSED", "this Tensor was already disposed");
  release(info.Env());
  disposed_ = true;
  return info.Env().Undefined();
}
Napi::Value TensorHandle::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

// CPU, contiguous, and in a dtype a TypedArray holds (float16/bfloat16 come back as float32).
static at::Tensor host_copy(const at::Tensor& t) {
  at::Tensor c = t.detach();
  if (c.scalar_type() == at::kHalf || c.scalar_type() == at::kBFloat16) c = c.to(at::kFloat);
  return c.to(at::kCPU).contiguous();
}

static Napi::Value to_array_buffer(Napi::Env env, const at::Tensor& c) {
  size_t n = c.numel() * c.element_size();
  auto buf = Napi::ArrayBuffer::New(env, n);
  if (n) std::memcpy(buf.Data(), c.data_ptr(), n);
  auto out = Napi::Array::New(env, 2);
  out.Set(0u, buf);
  out.Set(1u, Napi::String::New(env, dtype_name(c.scalar_type())));
  return out;
}

Napi::Value TensorHandle::DataSync(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return to_array_buffer(info.Env(), host_copy(tensor())); });
}
Napi::Value TensorHandle::Data(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = tensor();
    auto out = std::make_shared<at::Tensor>();
    return run_async(info.Env(), "emotorch.data", nullptr, [t, out] { *out = host_copy(t); },
                     [out](Napi::Env env) { return to_array_buffer(env, *out); });
  });
}
Napi::Value TensorHandle::Item(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const at::Tensor& t = tensor();
    if (t.numel() != 1)
      throw CodedError("ERR_INVALID_ARG", "item() needs a tensor with one element but this one has shape " + c10::str(t.sizes()));
    at::Scalar s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
    return Napi::Number::New(info.Env(), s.toDouble());
  });
}
Napi::Value TensorHandle::Backward(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = tensor();
    at::Tensor g = info.Length() > 0 && info[0].IsObject() ? to_tensor(info[0], "gradient") : at::Tensor();
    bool retain = info.Length() > 1 && info[1].ToBoolean().Value();
    if (!t.requires_grad())
      throw CodedError("ERR_INVALID_ARG", "backward(): this tensor does not require grad and has no grad_fn");
    if (!g.defined() && t.numel() != 1)
      throw CodedError("ERR_INVALID_ARG", "backward(): a gradient is needed for a non-scalar tensor of shape " + c10::str(t.sizes()));
    return run_async(info.Env(), "emotorch.backward", nullptr, [t, g, retain] { t.backward(g, retain); }, nullptr);
  });
}
Napi::Value TensorHandle::SameStorage(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto other = to_tensor(info[0], "other");
    return Napi::Boolean::New(info.Env(), tensor().is_same(other) || (tensor().has_storage() && other.has_storage() &&
                                                                     tensor().storage().is_alias_of(other.storage())));
  });
}

// Identity of the underlying tensor (shared by every handle to it), for de-duplication.
Napi::Value TensorHandle::Key(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), std::to_string(reinterpret_cast<uintptr_t>(tensor().unsafeGetTensorImpl())));
  });
}

// ---- process-level functions ----
static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  data(info.Env()).error_ctor = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("libtorch", Napi::String::New(env, TORCH_VERSION));
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
    ComputeThread::get().set_threads(static_cast<int>(n));
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

static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ComputeThread::get().threads()); }

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

static Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

// fromData(bytes: TypedArray, shape, sourceDtype, dtype, device, requiresGrad)
static Napi::Value FromData(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray()) throw CodedError("ERR_INVALID_ARG", "expected a TypedArray of data");
    auto arr = info[0].As<Napi::TypedArray>();
    auto shape = to_ints(info[1], "shape");
    auto src = to_dtype(info[2]);
    auto dst = to_dtype(info[3]);
    auto dev = to_device(info[4]);
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    size_t need = static_cast<size_t>(numel) * at::elementSize(src);
    if (need != arr.ByteLength())
      throw CodedError("ERR_INVALID_ARG", "data has " + std::to_string(arr.ByteLength()) + " bytes but shape " +
                                              c10::str(at::IntArrayRef(shape)) + " of " + dtype_name(src) + " needs " + std::to_string(need));
    auto* ptr = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(src));
    if (need) std::memcpy(t.data_ptr(), ptr, need);
    t = t.to(dev, dst);
    if (info[5].ToBoolean().Value()) t.set_requires_grad(true);
    return TensorHandle::wrap(info.Env(), t);
  });
}

static void init_threads() {
  static std::once_flag once;
  std::call_once(once, [] { ComputeThread::get().set_threads(at::get_num_threads()); });  // libtorch's default
  settle_lazy_thread_init();
  at::set_num_threads(1);
}

void init_tensor(Napi::Env env, Napi::Object exports) {
  init_threads();
  TensorHandle::Init(env, exports);
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("versions", Napi::Function::New(env, Versions));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads));
  exports.Set("getRngState", Napi::Function::New(env, GetRngState));
  exports.Set("setRngState", Napi::Function::New(env, SetRngState));
  exports.Set("setGradEnabled", Napi::Function::New(env, SetGradEnabled));
  exports.Set("isGradEnabled", Napi::Function::New(env, IsGradEnabled));
  exports.Set("setAutocast", Napi::Function::New(env, SetAutocast));
  exports.Set("fromData", Napi::Function::New(env, FromData));
}

}  // namespace et::bridge
