// ModuleHandle: a JS handle on one native model (forward, parameters, training mode, moves,
// generation, LoRA), and createModule, which builds a model by the kind its file registered
// (native/config.h): this file knows no model.
#include "bridge/bridge.h"
#include "models/llama.h"
#include "blocks/lora.h"

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
}

using RowRef = std::shared_ptr<nn::DecodeRow>;
const napi_type_tag kRowTag = {0x656d6f746f726368ULL, 0x6465636f6465726fULL};  // "emotorch" "decodero"

class ModuleHandle : public Napi::ObjectWrap<ModuleHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "ModuleHandle",
                                      {InstanceMethod("forward", &ModuleHandle::Forward),
                                       InstanceMethod("namedParameters", &ModuleHandle::NamedParameters),
                                       InstanceMethod("namedBuffers", &ModuleHandle::NamedBuffers),
                                       InstanceMethod("setTraining", &ModuleHandle::SetTraining),
                                       InstanceMethod("training", &ModuleHandle::Training),
                                       InstanceMethod("to", &ModuleHandle::To),
                                       InstanceMethod("generate", &ModuleHandle::Generate),
                                       InstanceMethod("startDecode", &ModuleHandle::StartDecode),
                                       InstanceMethod("decodeStep", &ModuleHandle::DecodeStep),
                                       InstanceMethod("endDecode", &ModuleHandle::EndDecode),
                                       InstanceMethod("applyLora", &ModuleHandle::ApplyLora),
                                       InstanceMethod("mergeLora", &ModuleHandle::MergeLora),
                                       InstanceMethod("setGradientCheckpointing", &ModuleHandle::SetGradientCheckpointing),
                                       InstanceMethod("dispose", &ModuleHandle::Dispose)});
    data(env).module_ctor = Napi::Persistent(ctor);
    exports.Set("ModuleHandle", ctor);
  }
  explicit ModuleHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModuleHandle>(info) {}
  std::shared_ptr<nn::Model> model;
  std::shared_ptr<std::mutex> mutex = std::make_shared<std::mutex>();

 private:
  // The module, or ERR_DISPOSED after dispose() (a call in flight holds its own reference).
  std::shared_ptr<nn::Model> live() const {
    if (!model) throw CodedError("ERR_DISPOSED", "this module was disposed");
    return model;
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model.reset();
    return info.Env().Undefined();
  }
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto inputs = to_tensors(info[0], "forward inputs");
      auto m = live();
      auto out = std::make_shared<nn::Tensors>();
      return run_async(info.Env(), "emotorch.forward", mutex, [m, inputs, out] { *out = m->forward(inputs); },
                       [out](Napi::Env env) { return from_tensors(env, *out); });
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
    return guard(info.Env(), [&]() -> Napi::Value { return named(info.Env(), live()->named_buffers()); });
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
  // generate(inputIds|null, inputsEmbeds|null, attentionMask|null, config, onTokens|null)
  //   → { result: Promise<Tensor (B, new)>, cancel(): void }
  // onTokens(ids: number[]) gets each greedy / sampling step's tokens on the JS thread (a
  // thread-safe function: calls may still arrive after `result` settles, so lib/ counts them in:
  // one per step, the result's width); cancel() makes the loop
  // stop before its next step (or skip the prompt pass when it has not started).
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      auto llm = std::dynamic_pointer_cast<nn::LlamaForCausalLM>(live());
      if (!llm) throw CodedError("ERR_INVALID_ARG", "generate() needs a causal language model");
      auto opt = [&](size_t i, const char* what) { return info[i].IsNull() || info[i].IsUndefined() ? at::Tensor() : to_tensor(info[i], what); };
      at::Tensor ids = opt(0, "inputIds"), embeds = opt(1, "inputsEmbeds"), mask = opt(2, "attentionMask");
      auto g = nn::GenerationConfig::from(*config_reader(info[3], "generation"));
      auto stop = std::make_shared<std::atomic<bool>>(false);
      g.stop = [stop] { return stop->load(); };
      std::shared_ptr<Napi::ThreadSafeFunction> tsfn;
      if (info.Length() > 4 && info[4].IsFunction()) {
        tsfn = std::shared_ptr<Napi::ThreadSafeFunction>(
            new Napi::ThreadSafeFunction(Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "emotorch.generate.tokens", 0, 1)),
            [](Napi::ThreadSafeFunction* f) { f->Release(); delete f; });
        g.on_tokens = [tsfn](const std::vector<int64_t>& t) {
          auto* data = new std::vector<int64_t>(t);
          auto call = [](Napi::Env e, Napi::Function fn, std::vector<int64_t>* d) {
            std::unique_ptr<std::vector<int64_t>> own(d);
            if (!e || !fn) return;
            auto arr = Napi::Array::New(e, d->size());
            for (uint32_t i = 0; i < d->size(); ++i) arr.Set(i, Napi::Number::New(e, static_cast<double>((*d)[i])));
            try {
              fn.Call({arr});
            } catch (const Napi::Error&) {  // a throwing listener must not stop generation
            }
          };
          if (tsfn->NonBlockingCall(data, call) != napi_ok) delete data;
        };
      }
      auto out = std::make_shared<at::Tensor>();
      auto result = run_async(env, "emotorch.generate", mutex, [llm, ids, embeds, mask, g, out]() mutable {
        at::NoGradGuard ng;
        *out = llm->generate(ids, embeds, mask, g);
        g.on_tokens = nullptr;  // releases the thread-safe function here, after the last call
      }, [out](Napi::Env env) { return TensorHandle::wrap(env, *out); });
      auto handle = Napi::Object::New(env);
      handle.Set("result", result);
      handle.Set("cancel", Napi::Function::New(env, [stop](const Napi::CallbackInfo& ci) {
        stop->store(true);
        return ci.Env().Undefined();
      }, "cancel"));
      return handle;
    });
  }
  std::shared_ptr<nn::LlamaForCausalLM> llm() const {
    auto m = std::dynamic_pointer_cast<nn::LlamaForCausalLM>(live());
    if (!m) throw CodedError("ERR_INVALID_ARG", "decoding needs a causal language model");
    return m;
  }
  // The decoding row an External from startDecode holds (type-tagged: nothing else is taken for one).
  static std::shared_ptr<nn::DecodeRow> row_of(const Napi::Value& v) {
    if (!v.IsExternal() || !v.As<Napi::External<RowRef>>().CheckTypeTag(&kRowTag)) throw CodedError("ERR_INVALID_ARG", "expected a decoding row from startDecode");
    return *v.As<Napi::External<RowRef>>().Data();
  }
  // startDecode(inputIds|null, inputsEmbeds|null, attentionMask|null, config, seed|null) → Promise<row>
  // (an External): the prompt run, nothing chosen yet (nn::LlamaForCausalLM::start_row).
  Napi::Value StartDecode(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = llm();
      auto opt = [&](size_t i, const char* what) { return info[i].IsNull() || info[i].IsUndefined() ? at::Tensor() : to_tensor(info[i], what); };
      at::Tensor ids = opt(0, "inputIds"), embeds = opt(1, "inputsEmbeds"), mask = opt(2, "attentionMask");
      auto g = nn::GenerationConfig::from(*config_reader(info[3], "generation"));
      std::optional<uint64_t> seed;
      if (info.Length() > 4 && info[4].IsNumber()) seed = static_cast<uint64_t>(info[4].As<Napi::Number>().Int64Value());
      auto out = std::make_shared<RowRef>();
      return run_async(info.Env(), "emotorch.startDecode", mutex, [m, ids, embeds, mask, g, seed, out] {
        at::NoGradGuard ng;
        *out = m->start_row(ids, embeds, mask, g, seed);
      }, [out](Napi::Env env) -> Napi::Value {
        auto ext = Napi::External<RowRef>::New(env, new RowRef(*out), [](Napi::Env, RowRef* r) { delete r; });
        ext.TypeTag(&kRowTag);
        return ext;
      });
    });
  }
  // decodeStep(rows) → Promise<number[]>: each row's next token, −1 for a row done before
  // (nn::LlamaForCausalLM::decode_rows).
  Napi::Value DecodeStep(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = llm();
      if (!info[0].IsArray()) throw CodedError("ERR_INVALID_ARG", "decodeStep takes an array of decoding rows");
      auto arr = info[0].As<Napi::Array>();
      std::vector<std::shared_ptr<nn::DecodeRow>> rows;
      for (uint32_t i = 0; i < arr.Length(); ++i) rows.push_back(row_of(arr.Get(i)));
      auto out = std::make_shared<std::vector<int64_t>>();
      return run_async(info.Env(), "emotorch.decodeStep", mutex, [m, rows, out] {
        at::NoGradGuard ng;
        std::vector<nn::DecodeRow*> raw;
        for (auto& r : rows) raw.push_back(r.get());
        *out = m->decode_rows(raw);
      }, [out](Napi::Env env) -> Napi::Value {
        auto a = Napi::Array::New(env, out->size());
        for (uint32_t i = 0; i < out->size(); ++i) a.Set(i, Napi::Number::New(env, static_cast<double>((*out)[i])));
        return a;
      });
    });
  }
  // endDecode(row) → Promise<void>: the row done, its cache freed (a request that left the batch).
  Napi::Value EndDecode(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto row = row_of(info[0]);
      return run_async(info.Env(), "emotorch.endDecode", mutex, [row] {
        row->done = true;
        row->cache = nn::KVCache();
        row->last = at::Tensor();
      }, nullptr);
    });
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
    auto cfg = config_reader(info[1], kind);
    std::optional<at::Device> dev;
    std::optional<at::ScalarType> dt;
    if (!info[2].IsNull() && !info[2].IsUndefined()) dev = to_device(info[2]);
    if (!info[3].IsNull() && !info[3].IsUndefined()) dt = to_dtype(info[3]);
    std::shared_ptr<nn::Model> model;
    if (info.Length() > 4 && info[4].ToBoolean()) {
      nn::SkipInitGuard skip;
      model = it->second(*cfg);
    } else {
      model = it->second(*cfg);
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

}  // namespace

void init_module(Napi::Env env, Napi::Object exports) {
  ModuleHandle::Init(env, exports);
  exports.Set("createModule", Napi::Function::New(env, CreateModule));
  exports.Set("copyState", Napi::Function::New(env, CopyState));
  exports.Set("assignState", Napi::Function::New(env, AssignState));
}

}  // namespace et::bridge
