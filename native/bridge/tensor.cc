// TensorHandle: a JS handle owning a reference to one at::Tensor, and tensors made from JS data.
#include "bridge/bridge.h"

#include <cstring>

namespace et::bridge {

// ---- TensorHandle ----
void TensorHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor =
      DefineClass(env, "TensorHandle",
                  {InstanceMethod("shape", &TensorHandle::Shape), InstanceMethod("dtype", &TensorHandle::Dtype),
                   InstanceMethod("device", &TensorHandle::Device), InstanceMethod("numel", &TensorHandle::Numel),
                   InstanceMethod("requiresGrad", &TensorHandle::RequiresGrad),
                   InstanceMethod("setRequiresGrad", &TensorHandle::SetRequiresGrad), InstanceMethod("grad", &TensorHandle::Grad),
                   InstanceMethod("setGrad", &TensorHandle::SetGrad), InstanceMethod("isLeaf", &TensorHandle::IsLeaf),
                   InstanceMethod("dispose", &TensorHandle::Dispose), InstanceMethod("disposed", &TensorHandle::Disposed),
                   InstanceMethod("dataSync", &TensorHandle::DataSync), InstanceMethod("data", &TensorHandle::Data),
                   InstanceMethod("item", &TensorHandle::Item), InstanceMethod("backward", &TensorHandle::Backward),
                   InstanceMethod("sameStorage", &TensorHandle::SameStorage), InstanceMethod("key", &TensorHandle::Key)});
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
      throw CodedError("ERR_INVALID_ARG",
                       "grad has dtype " + dtype_name(g.scalar_type()) + " but the tensor has dtype " + dtype_name(t.scalar_type()));
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
  return guard(info.Env(), [&]() -> Napi::Value {
    check_readable(tensor(), "dataSync()");
    return to_array_buffer(info.Env(), host_copy(tensor()));
  });
}
Napi::Value TensorHandle::Data(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = tensor();
    auto out = std::make_shared<at::Tensor>();
    return run_async(info.Env(), "emotorch.data", nullptr, [t, out] {
      check_readable(t, "data()");
      *out = host_copy(t);
    }, [out](Napi::Env env) { return to_array_buffer(env, *out); });
  });
}
Napi::Value TensorHandle::Item(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const at::Tensor& t = tensor();
    check_readable(t, "item()");
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
    if (!t.requires_grad()) throw CodedError("ERR_INVALID_ARG", "backward(): this tensor does not require grad and has no grad_fn");
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
                                              c10::str(at::IntArrayRef(shape)) + " of " + dtype_name(src) + " needs " +
                                              std::to_string(need));
    auto* ptr = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(src));
    if (need) std::memcpy(t.data_ptr(), ptr, need);
    t = t.to(dev, dst);
    if (info[5].ToBoolean().Value()) t.set_requires_grad(true);
    return TensorHandle::wrap(info.Env(), t);
  });
}

void init_tensor(Napi::Env env, Napi::Object exports) {
  TensorHandle::Init(env, exports);
  exports.Set("fromData", Napi::Function::New(env, FromData));
}

}  // namespace et::bridge
