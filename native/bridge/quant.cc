// Quantized weights across the bridge (kernels/quant.h, blocks/lora.h): quantizing a tensor or a
// model's Linear layers, a checkpoint's quantized weight into a layer, the quantized layers listed.
#include "kernels/quant.h"
#include "blocks/lora.h"
#include "bridge/bridge.h"
#include "models/model.h"

namespace et::bridge {
namespace {

// The named tensors of a QuantWeight as a JS object.
Napi::Object named_object(Napi::Env env, const nn::QuantWeight& q) {
  auto o = Napi::Object::New(env);
  auto named = q.named();
  std::vector<at::Tensor> ts;
  for (const auto& [k, t] : named) ts.push_back(t);
  auto arr = from_tensors(env, ts);
  for (uint32_t i = 0; i < named.size(); ++i) o.Set(named[i].first, arr.Get(i));
  return o;
}

// A QuantWeight from (format, out, in, { weight, SCB, absmax, … }); absent names stay undefined.
nn::QuantWeight quant_of(const Napi::CallbackInfo& info, size_t at) {
  nn::QuantWeight q;
  q.format = nn::quant_format(to_string(info[at], "format"));
  q.out = static_cast<int64_t>(to_double(info[at + 1], "out"));
  q.in = static_cast<int64_t>(to_double(info[at + 2], "in"));
  if (!info[at + 3].IsObject()) throw CodedError("ERR_INVALID_ARG", "expected an object of quantized tensors");
  auto o = info[at + 3].As<Napi::Object>();
  q.set_named([&](const char* k) { return o.Has(k) && !o.Get(k).IsUndefined() ? to_tensor(o.Get(k), k) : at::Tensor(); });
  return q;
}

// quantizeWeight(tensor, format, name) → Promise<{ weight, SCB | absmax, … }>
Napi::Value QuantizeWeight(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto w = to_tensor(info[0], "weight");
    auto f = nn::quant_format(to_string(info[1], "format"));
    auto name = to_string(info[2], "name");
    auto out = std::make_shared<nn::QuantWeight>();
    return run_async(info.Env(), "emotorch.quantizeWeight", nullptr, [w, f, name, out] { *out = nn::quantize_weight(w, f, name); },
                     [out](Napi::Env env) { return named_object(env, *out); });
  });
}

// dequantizeWeight(format, out, in, tensors, dtype, name) → Promise<Tensor>
Napi::Value DequantizeWeight(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto q = quant_of(info, 0);
    auto dt = to_dtype(info[4]);
    auto name = to_string(info[5], "name");
    auto out = std::make_shared<at::Tensor>();
    return run_async(info.Env(), "emotorch.dequantizeWeight", nullptr, [q, dt, name, out] {
      nn::check_quant_weight(q, name);
      *out = nn::dequantize_weight(q.contiguous(), dt);
    }, [out](Napi::Env env) { return from_tensors(env, {*out}).Get(0u); });
  });
}

// quantizeLinears(module, names, format) → Promise<void>
Napi::Value QuantizeLinears(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto [m, mutex] = module_of(info[0]);
    auto arr = info[1].As<Napi::Array>();
    std::vector<std::string> names;
    for (uint32_t i = 0; i < arr.Length(); ++i) names.push_back(to_string(arr.Get(i), "layer name"));
    auto f = nn::quant_format(to_string(info[2], "format"));
    return run_async(info.Env(), "emotorch.quantizeLinears", mutex, [m, names, f] { nn::quantize_linears(*m, names, f); }, nullptr);
  });
}

// The Linear layer of m named `layer` (ERR_STATE_DICT when there is none).
nn::LinearImpl& linear_named(torch::nn::Module& m, const std::string& layer) {
  std::shared_ptr<torch::nn::Module> sub;
  for (auto& item : m.named_modules("", false))
    if (item.key() == layer) sub = item.value();
  auto* lin = sub ? sub->as<nn::LinearImpl>() : nullptr;
  if (!lin) throw CodedError("ERR_STATE_DICT", "'" + layer + "' is not a Linear layer of this model");
  return *lin;
}

// setQuantized(module, layer, format, out, in, tensors) → Promise<void>: a checkpoint's quantized weight into the layer.
Napi::Value SetQuantized(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto [m, mutex] = module_of(info[0]);
    auto layer = to_string(info[1], "layer name");
    auto q = quant_of(info, 2);
    return run_async(info.Env(), "emotorch.setQuantized", mutex,
                     [m, layer, q] { linear_named(*m, layer).set_quantized(q.contiguous(), layer); }, nullptr, "ERR_STATE_DICT");
  });
}

// quantizeLayer(module, layer, weight, format, name) → Promise<void>: a float weight (a checkpoint's,
// read piece by piece) quantized straight into the layer, whose bytes nothing else then holds (so a
// layout for the kernels is made in place: kernel_layout).
Napi::Value QuantizeLayer(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto [m, mutex] = module_of(info[0]);
    auto layer = to_string(info[1], "layer name");
    auto w = to_tensor(info[2], "weight");
    auto f = nn::quant_format(to_string(info[3], "format"));
    auto name = to_string(info[4], "name");
    return run_async(info.Env(), "emotorch.quantizeLayer", mutex,
                     [m, layer, w, f, name] { linear_named(*m, layer).set_quantized(nn::quantize_weight(w, f, name), layer); }, nullptr);
  });
}

// linearLayers(module) → [[name, out, in, format | null], …]: every Linear layer and its quantization.
Napi::Value LinearLayers(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto m = module_of(info[0]).first;
    auto arr = Napi::Array::New(info.Env());
    Napi::Env env = info.Env();
    for (auto& item : m->named_modules("", false)) {
      auto* lin = item.value()->as<nn::LinearImpl>();
      if (!lin) continue;
      auto e = Napi::Array::New(env, 4);
      e.Set(0u, item.key());
      e.Set(1u, static_cast<double>(lin->out_features));
      e.Set(2u, static_cast<double>(lin->in_features));
      e.Set(3u, lin->quant ? Napi::Value(Napi::String::New(env, nn::quant_format_name(lin->quant->format))) : env.Null());
      arr.Set(arr.Length(), e);
    }
    return arr;
  });
}

}  // namespace

void init_quant(Napi::Env env, Napi::Object exports) {
  exports.Set("quantizeWeight", Napi::Function::New(env, QuantizeWeight));
  exports.Set("dequantizeWeight", Napi::Function::New(env, DequantizeWeight));
  exports.Set("quantizeLinears", Napi::Function::New(env, QuantizeLinears));
  exports.Set("setQuantized", Napi::Function::New(env, SetQuantized));
  exports.Set("quantizeLayer", Napi::Function::New(env, QuantizeLayer));
  exports.Set("linearLayers", Napi::Function::New(env, LinearLayers));
}

}  // namespace et::bridge
