// ModuleHandle: a JS handle on one native model (forward by named tensors, parameters, training
// mode, moves, LoRA), createModule, which builds a model by the kind its file registered
// (native/config.h), and modelKinds, each kind's declared config fields. This file knows no model;
// generation.cc adds the decoding methods for models that are causal LMs.
#include "blocks/lora.h"
#include "bridge/bridge.h"
#include "models/model.h"

#include <optional>

namespace et::bridge {
namespace {

// Moves parameters and buffers in place (handles stay valid); only floating tensors change dtype.
void move_module(nn::Model& m, std::optional<at::Device> dev, std::optional<at::ScalarType> dt) {
  at::NoGradGuard g;
  auto move = [&](at::Tensor& t) {
    auto d = dev.value_or(t.device());
    auto s = dt && at::isFloatingType(t.scalar_type()) ? *dt : t.scalar_type();
    if (d != t.device() || s != t.scalar_type()) t.set_data(t.to(d, s));
  };
  for (auto& p : m.parameters()) move(p);
  for (auto& b : m.buffers()) move(b);
  if (dev) nn::move_quantized(m, *dev);
}

class ModuleHandle : public Napi::ObjectWrap<ModuleHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor =
        DefineClass(env, "ModuleHandle",
                    {InstanceMethod("forward", &ModuleHandle::Forward), InstanceMethod("namedParameters", &ModuleHandle::NamedParameters),
                     InstanceMethod("namedBuffers", &ModuleHandle::NamedBuffers), InstanceMethod("setTraining", &ModuleHandle::SetTraining),
                     InstanceMethod("training", &ModuleHandle::Training), InstanceMethod("to", &ModuleHandle::To),
                     InstanceMethod("applyLora", &ModuleHandle::ApplyLora), InstanceMethod("mergeLora", &ModuleHandle::MergeLora),
                     InstanceMethod("setGradientCheckpointing", &ModuleHandle::SetGradientCheckpointing),
                     InstanceMethod("dispose", &ModuleHandle::Dispose)});
    data(env).module_ctor = Napi::Persistent(ctor);
    exports.Set("ModuleHandle", ctor);
  }
  explicit ModuleHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModuleHandle>(info) {}
  std::shared_ptr<nn::Model> model;
  std::shared_ptr<std::mutex> mutex = std::make_shared<std::mutex>();
  // The module, or ERR_DISPOSED after dispose() (a call in flight holds its own reference).
  std::shared_ptr<nn::Model> live() const {
    if (!model) throw CodedError("ERR_DISPOSED", "this module was disposed");
    return model;
  }

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model.reset();
    return info.Env().Undefined();
  }
  // forward({ name: Tensor | null, … }) → Promise<{ name: Tensor, … }>: the model reads its
  // inputs by name; a name it did not read is an error naming it (a misspelt input never goes
  // silently unused). Outputs the model did not compute are left out.
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsObject() || info[0].IsArray()) throw CodedError("ERR_INVALID_ARG", "forward takes an object of named tensors");
      auto obj = info[0].As<Napi::Object>();
      auto names = obj.GetPropertyNames();
      std::map<std::string, at::Tensor> given;
      for (uint32_t i = 0; i < names.Length(); ++i) {
        auto name = names.Get(i).As<Napi::String>().Utf8Value();
        Napi::Value v = obj.Get(name);
        given[name] = v.IsNull() || v.IsUndefined() ? at::Tensor() : to_tensor(v, name.c_str());
      }
      auto m = live();
      auto out = std::make_shared<nn::Outputs>();
      return run_async(info.Env(), "emotorch.forward", mutex, [m, given, out] {
        nn::Inputs in(given);
        *out = m->shard_hooks ? m->shard_hooks->forward(*m, [&] { return m->forward(in); }) : m->forward(in);
        auto unread = in.unread();
        if (!unread.empty()) throw CodedError("ERR_INVALID_ARG", "the model's forward takes no input '" + unread[0] + "'");
      }, [out](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        for (const auto& [k, t] : *out)
          if (t.defined()) o.Set(k, TensorHandle::wrap(env, t));
        return o;
      });
    });
  }
  static Napi::Value named(Napi::Env env, const torch::OrderedDict<std::string, at::Tensor>& d) {
    auto names = Napi::Array::New(env, d.size());
    std::vector<at::Tensor> ts;
    uint32_t i = 0;
    for (const auto& item : d) {
      names.Set(i++, Napi::String::New(env, item.key()));
      ts.push_back(item.value());
    }
    auto out = Napi::Array::New(env, 2);
    out.Set(0u, names);
    out.Set(1u, from_tensors(env, ts, false));
    return out;
  }
  Napi::Value NamedParameters(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return named(info.Env(), live()->named_parameters()); });
  }
  Napi::Value NamedBuffers(const Napi::CallbackInfo& info) {
    // with the quantized layers' tensors (blocks/lora.h's quantized_state: bitsandbytes' names); with
    // `fileLayout` (a state dict) a weight held in a kernel's layout is copied back to the file's
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = live();
      auto d = m->named_buffers();
      const bool file_layout = info.Length() > 0 && info[0].ToBoolean().Value();
      for (auto& [k, t] : nn::quantized_state(*m, file_layout)) d.insert(k, t);
      return named(info.Env(), d);
    });
  }
  Napi::Value SetTraining(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = live();
      std::lock_guard<std::mutex> l(*mutex);
      m->train(info[0].ToBoolean().Value());
      return info.Env().Undefined();
    });
  }
  Napi::Value Training(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), live()->is_training()); });
  }
  // applyLora(targets, r, alpha, dropout) → names of the wrapped layers
  Napi::Value ApplyLora(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::lock_guard<std::mutex> l(*mutex);
      auto ta = info[0].As<Napi::Array>();
      std::vector<std::string> targets;
      for (uint32_t i = 0; i < ta.Length(); ++i) targets.push_back(to_string(ta.Get(i), "target module"));
      auto names = nn::apply_lora(*live(), targets, static_cast<int64_t>(to_double(info[1], "r")), to_double(info[2], "alpha"),
                                  to_double(info[3], "dropout"));
      auto arr = Napi::Array::New(info.Env(), names.size());
      for (size_t i = 0; i < names.size(); ++i) arr.Set(i, Napi::String::New(info.Env(), names[i]));
      return arr;
    });
  }
  // setGradientCheckpointing(on) → whether the model supports it (then it is set)
  Napi::Value SetGradientCheckpointing(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::lock_guard<std::mutex> l(*mutex);
      auto m = live();
      bool ok = m->supports_gradient_checkpointing();
      if (ok) m->gradient_checkpointing = info[0].ToBoolean().Value();
      return Napi::Boolean::New(info.Env(), ok);
    });
  }
  Napi::Value MergeLora(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::lock_guard<std::mutex> l(*mutex);
      return Napi::Number::New(info.Env(), static_cast<double>(nn::merge_lora(*live(), info[0].ToBoolean().Value())));
    });
  }
  Napi::Value To(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::optional<at::Device> dev;
      std::optional<at::ScalarType> dt;
      if (!info[0].IsNull() && !info[0].IsUndefined()) dev = to_device(info[0]);
      if (!info[1].IsNull() && !info[1].IsUndefined()) dt = to_dtype(info[1]);
      auto m = live();
      return run_async(info.Env(), "emotorch.to", mutex, [m, dev, dt] { move_module(*m, dev, dt); }, nullptr);
    });
  }
};

// createModule(kind, config, device|null, dtype|null, skipInit) → ModuleHandle (parameters created
// on CPU in float32, then moved; with skipInit, for a checkpoint to fill: never initialized, see
// nn::SkipInitGuard).
Napi::Value CreateModule(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto kind = to_string(info[0], "module kind");
    auto it = nn::model_kinds().find(kind);
    if (it == nn::model_kinds().end()) throw CodedError("ERR_INVALID_ARG", "unknown module kind '" + kind + "'");
    const auto& make = it->second.make;
    auto cfg = config_reader(info[1], kind);
    std::optional<at::Device> dev;
    std::optional<at::ScalarType> dt;
    if (!info[2].IsNull() && !info[2].IsUndefined()) dev = to_device(info[2]);
    if (!info[3].IsNull() && !info[3].IsUndefined()) dt = to_dtype(info[3]);
    std::shared_ptr<nn::Model> model;
    if (info.Length() > 4 && info[4].ToBoolean()) {
      nn::SkipInitGuard skip;
      model = make(*cfg);
    } else {
      model = make(*cfg);
    }
    if (dev || dt) move_module(*model, dev, dt);
    Napi::Object obj = data(info.Env()).module_ctor.New({});
    ModuleHandle::Unwrap(obj)->model = model;
    return obj;
  });
}

Napi::Value CopyState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto dst = to_tensors(info[0], "destination tensors"), src = to_tensors(info[1], "source tensors");
    return run_async(info.Env(), "emotorch.copyState", nullptr, [dst, src] { nn::copy_state(dst, src); }, nullptr);
  });
}

// assignState(dst, src, dtype|null): nn::assign_state on the compute thread.
Napi::Value AssignState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto dst = to_tensors(info[0], "destination tensors"), src = to_tensors(info[1], "source tensors");
    std::optional<at::ScalarType> dt;
    if (!info[2].IsNull() && !info[2].IsUndefined()) dt = to_dtype(info[2]);
    return run_async(info.Env(), "emotorch.assignState", nullptr, [dst, src, dt] { nn::assign_state(dst, src, dt); }, nullptr);
  });
}

Napi::Array describe_fields(Napi::Env env, const std::vector<nn::FieldInfo>& fields) {
  auto a = Napi::Array::New(env, fields.size());
  for (uint32_t i = 0; i < fields.size(); ++i) {
    const auto& f = fields[i];
    auto o = Napi::Object::New(env);
    o.Set("name", f.name);
    o.Set("type", f.type);
    o.Set("default", f.default_json);
    if (f.type == "config") o.Set("fields", describe_fields(env, f.fields));
    a.Set(i, o);
  }
  return a;
}

// modelKinds() → { kind: [{ name, type, default (JSON text), fields? }] }: each registered kind's
// config as its C++ field list declares it (test/nn/config-agreement.test.ts compares it with the
// TypeScript declarations).
Napi::Value ModelKinds(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto o = Napi::Object::New(info.Env());
    for (const auto& [kind, e] : nn::model_kinds()) o.Set(kind, describe_fields(info.Env(), e.describe()));
    return o;
  });
}

}  // namespace

std::pair<std::shared_ptr<nn::Model>, std::shared_ptr<std::mutex>> module_of(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data(v.Env()).module_ctor.Value()))
    throw CodedError("ERR_INVALID_ARG", "expected a ModuleHandle");
  auto* h = ModuleHandle::Unwrap(v.As<Napi::Object>());
  return {h->live(), h->mutex};
}

void init_module(Napi::Env env, Napi::Object exports) {
  ModuleHandle::Init(env, exports);
  exports.Set("createModule", Napi::Function::New(env, CreateModule));
  exports.Set("copyState", Napi::Function::New(env, CopyState));
  exports.Set("assignState", Napi::Function::New(env, AssignState));
  exports.Set("modelKinds", Napi::Function::New(env, ModelKinds));
}

}  // namespace et::bridge
