// Generation, a capability of the models that are causal LMs (nn::CausalLM,
// native/models/causal_lm.h): the decoding methods of ModuleHandle (generate, startDecode,
// decodeStep, endDecode), added to its prototype by init_generation. It knows no model: a model
// that is no causal LM is an ERR_INVALID_ARG naming the call.
#include "bridge/bridge.h"
#include "models/causal_lm.h"
#include "models/model.h"

#include <atomic>

namespace et::bridge {
namespace {

using RowRef = std::shared_ptr<nn::DecodeRow>;
const napi_type_tag kRowTag = {0x656d6f746f726368ULL, 0x6465636f6465726fULL};  // "emotorch" "decodero"

// The handle's model as a causal LM (sharing its ownership) and the handle's mutex.
std::pair<std::shared_ptr<nn::CausalLM>, std::shared_ptr<std::mutex>> causal_lm(const Napi::Value& handle, const char* what) {
  auto [model, mutex] = module_of(handle);
  auto lm = std::dynamic_pointer_cast<nn::CausalLM>(model);
  if (!lm) throw CodedError("ERR_INVALID_ARG", std::string(what) + " needs a causal language model");
  if (model->shard_hooks && model->shard_hooks->releases_parameters())
    throw CodedError("ERR_DIST_STATE",
                     std::string(what) +
                         ": the model's parameters are sharded by ShardedDataParallel at stage 3 (whole only inside its "
                         "forward); detach() the wrapper, or load its fullStateDict() into a model of its own, to decode");
  return {lm, mutex};
}

// What generate and startDecode take: the causal LM and its mutex, and the prompt
// (inputIds|null, inputsEmbeds|null, attentionMask|null, config).
struct PromptCall {
  std::shared_ptr<nn::CausalLM> lm;
  std::shared_ptr<std::mutex> mutex;
  at::Tensor ids, embeds, mask;
  nn::GenerationConfig g;
};
PromptCall prompt_call(const Napi::CallbackInfo& info, const char* what) {
  auto [lm, mutex] = causal_lm(info.This(), what);
  auto opt = [&](size_t i, const char* name) {
    return info[i].IsNull() || info[i].IsUndefined() ? at::Tensor() : to_tensor(info[i], name);
  };
  return {lm,
          mutex,
          opt(0, "inputIds"),
          opt(1, "inputsEmbeds"),
          opt(2, "attentionMask"),
          nn::GenerationConfig(nn::GenerationFields::from(*config_reader(info[3], "generation")))};
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
    auto call = prompt_call(info, "generate()");
    auto llm = call.lm;
    auto mutex = call.mutex;
    at::Tensor ids = call.ids, embeds = call.embeds, mask = call.mask;
    auto g = call.g;
    auto stop = std::make_shared<std::atomic<bool>>(false);
    g.stop = [stop] { return stop->load(); };
    std::shared_ptr<Napi::ThreadSafeFunction> tsfn;
    if (info.Length() > 4 && info[4].IsFunction()) {
      tsfn = std::shared_ptr<Napi::ThreadSafeFunction>(
          new Napi::ThreadSafeFunction(Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "emotorch.generate.tokens", 0, 1)),
          [](Napi::ThreadSafeFunction* f) {
        f->Release();
        delete f;
      });
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
// The decoding row an External from startDecode holds (type-tagged: nothing else is taken for one).
std::shared_ptr<nn::DecodeRow> row_of(const Napi::Value& v) {
  if (!v.IsExternal() || !v.As<Napi::External<RowRef>>().CheckTypeTag(&kRowTag))
    throw CodedError("ERR_INVALID_ARG", "expected a decoding row from startDecode");
  return *v.As<Napi::External<RowRef>>().Data();
}
// startDecode(inputIds|null, inputsEmbeds|null, attentionMask|null, config, seed|null) → Promise<row>
// (an External): the prompt run, nothing chosen yet (nn::CausalLM::start_row).
Napi::Value StartDecode(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto call = prompt_call(info, "decoding");
    auto m = call.lm;
    auto mutex = call.mutex;
    at::Tensor ids = call.ids, embeds = call.embeds, mask = call.mask;
    auto g = call.g;
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
// (nn::CausalLM::decode_rows).
Napi::Value DecodeStep(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto lm_ = causal_lm(info.This(), "decoding");
    auto m = lm_.first;
    auto mutex = lm_.second;
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
    auto mutex = module_of(info.This()).second;
    return run_async(info.Env(), "emotorch.endDecode", mutex, [row] {
      row->done = true;
      row->cache = nn::KVCache();
      row->last = at::Tensor();
    }, nullptr);
  });
}

// setPrefixCache(bytes) → Promise<void>: the prompt prefix cache's size (0: off, emptied), its
// counters reset (nn::CausalLM::set_prefix_cache), after the calls before it.
Napi::Value SetPrefixCache(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto lm = causal_lm(info.This(), "prefix caching");
    auto m = lm.first;
    if (!info[0].IsNumber()) throw CodedError("ERR_INVALID_ARG", "setPrefixCache takes a size in bytes");
    const double bytes = info[0].As<Napi::Number>().DoubleValue();
    if (!(bytes >= 0) || bytes > 9007199254740991.0 || bytes != static_cast<double>(static_cast<int64_t>(bytes)))
      throw CodedError("ERR_INVALID_ARG", "setPrefixCache: the size must be a whole number of bytes ≥ 0");
    const auto n = static_cast<int64_t>(bytes);
    return run_async(info.Env(), "emotorch.setPrefixCache", lm.second, [m, n] { m->set_prefix_cache(n); }, nullptr);
  });
}
// prefixCacheStats() → Promise<{ capacity, bytes, entries, lookups, hits, reused }>
Napi::Value GetPrefixCacheStats(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto lm = causal_lm(info.This(), "prefix caching");
    auto m = lm.first;
    auto out = std::make_shared<nn::PrefixCacheStats>();
    return run_async(info.Env(), "emotorch.prefixCacheStats", lm.second, [m, out] { *out = m->prefix_cache_stats(); },
                     [out](Napi::Env env) -> Napi::Value {
      auto o = Napi::Object::New(env);
      auto num = [&](const char* k, int64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
      num("capacity", out->capacity);
      num("bytes", out->bytes);
      num("entries", out->entries);
      num("lookups", out->lookups);
      num("hits", out->hits);
      num("reused", out->reused);
      return o;
    });
  });
}

}  // namespace

void init_generation(Napi::Env env, Napi::Object exports) {
  auto proto = data(env).module_ctor.Value().Get("prototype").As<Napi::Object>();
  proto.Set("generate", Napi::Function::New(env, Generate, "generate"));
  proto.Set("startDecode", Napi::Function::New(env, StartDecode, "startDecode"));
  proto.Set("decodeStep", Napi::Function::New(env, DecodeStep, "decodeStep"));
  proto.Set("endDecode", Napi::Function::New(env, EndDecode, "endDecode"));
  proto.Set("setPrefixCache", Napi::Function::New(env, SetPrefixCache, "setPrefixCache"));
  proto.Set("prefixCacheStats", Napi::Function::New(env, GetPrefixCacheStats, "prefixCacheStats"));
}

}  // namespace et::bridge
