// JS <-> C++ conversions: dtypes, devices, numbers, strings, tensors, and model configs.
#include "bridge/bridge.h"

#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/cuda.h>

#include <unordered_map>

namespace et::bridge {

// ---- conversions ----
static const std::unordered_map<std::string, at::ScalarType>& dtype_table() {
  static const std::unordered_map<std::string, at::ScalarType> t = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16}, {"int64", at::kLong},
      {"int32", at::kInt},     {"int16", at::kShort},    {"int8", at::kChar},    {"uint8", at::kByte},        {"bool", at::kBool}};
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

void check_readable(const at::Tensor& t, const char* what) {
  if (!t.defined() || !t.has_storage() || t.numel() == 0) return;
  int64_t last = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  auto need = static_cast<size_t>((last + 1) * t.element_size());
  if (t.storage().nbytes() < need)
    throw CodedError("ERR_DIST_STATE", std::string(what) +
                                           ": this tensor's memory is released: it is a parameter that ShardedDataParallel shards "
                                           "(stage 3) and it is whole only while its layer runs; read the weights with await "
                                           "fullStateDict(), or detach() the wrapper");
}

at::Tensor to_tensor(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data(v.Env()).tensor_ctor.Value()))
    throw CodedError("ERR_INVALID_ARG", std::string("expected a Tensor for ") + what);
  const at::Tensor& t = TensorHandle::Unwrap(v.As<Napi::Object>())->tensor();
  check_readable(t, what);
  return t;
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

namespace {
// A model's config object as nn::ConfigReader: every field required (lib/nn sends them all).
struct JsConfig : nn::ConfigReader {
  JsConfig(Napi::Object o, std::string kind) : o(o), kind(std::move(kind)) {}
  Napi::Object o;
  std::string kind;
  Napi::Value get(const char* k) const {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined() || v.IsNull())
      throw CodedError("ERR_INVALID_ARG",
                       "the " + kind + " config lacks '" + k + "' (the TypeScript config declaration and the native model disagree)");
    return v;
  }
  std::string name(const char* k) const { return kind + " config." + k; }
  int64_t i64(const char* k) const override { return static_cast<int64_t>(to_double(get(k), name(k).c_str())); }
  double f64(const char* k) const override { return to_double(get(k), name(k).c_str()); }
  bool flag(const char* k) const override {
    auto v = get(k);
    if (!v.IsBoolean()) throw CodedError("ERR_INVALID_ARG", "expected a boolean for " + name(k));
    return v.As<Napi::Boolean>().Value();
  }
  std::string str(const char* k) const override { return to_string(get(k), name(k).c_str()); }
  std::vector<int64_t> ints(const char* k) const override { return to_ints(get(k), name(k).c_str()); }
  std::vector<double> nums(const char* k) const override {
    auto v = get(k);
    if (!v.IsArray()) throw CodedError("ERR_INVALID_ARG", "expected an array of numbers for " + name(k));
    auto a = v.As<Napi::Array>();
    std::vector<double> out(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) out[i] = to_double(a.Get(i), name(k).c_str());
    return out;
  }
  std::unique_ptr<nn::ConfigReader> sub(const char* k) const override {
    auto v = get(k);
    if (!v.IsObject() || v.IsArray()) throw CodedError("ERR_INVALID_ARG", "expected an object for " + name(k));
    return std::make_unique<JsConfig>(v.As<Napi::Object>(), kind + "." + k);
  }
};
}  // namespace

std::unique_ptr<nn::ConfigReader> config_reader(const Napi::Value& v, const std::string& kind) {
  if (!v.IsObject()) throw CodedError("ERR_INVALID_ARG", "expected a config object for " + kind);
  return std::make_unique<JsConfig>(v.As<Napi::Object>(), kind);
}

}  // namespace et::bridge
