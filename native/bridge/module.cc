// Module and optimizer handles, safetensors I/O and state copying: marshalling around
// native/nn and native/io.
#include "audio/units.h"
#include "bridge/bridge.h"
#include "io/safetensors.h"
#include "nn/builtin.h"
#include "nn/optim.h"
#include "nn/beats.h"
#include "nn/llama.h"
#include "nn/lora.h"
#include "nn/qformer.h"
#include "nn/roberta.h"
#include "nn/spectra.h"
#include "nn/wav2vec2.h"
#include "nn/wavlm.h"
#include "nn/whisper.h"

#include <functional>
#include <map>

namespace et::bridge {
namespace {

// ---- config access for module factories ----
struct Config {
  Napi::Object o;
  std::string kind;
  Napi::Value get(const char* k) const {
    Napi::Value v = o.Get(k);
    if (v.IsUndefined() || v.IsNull()) throw CodedError("ERR_INVALID_ARG", kind + " config is missing '" + k + "'");
    return v;
  }
  bool has(const char* k) const { return o.Has(k) && !o.Get(k).IsUndefined() && !o.Get(k).IsNull(); }
  int64_t i64(const char* k) const { return static_cast<int64_t>(to_double(get(k), k)); }
  int64_t i64(const char* k, int64_t dflt) const { return has(k) ? i64(k) : dflt; }
  double d(const char* k, double dflt) const { return has(k) ? to_double(get(k), k) : dflt; }
  bool b(const char* k, bool dflt) const { return has(k) ? get(k).ToBoolean().Value() : dflt; }
  std::string s(const char* k, const std::string& dflt) const { return has(k) ? to_string(get(k), k) : dflt; }
  std::vector<int64_t> ints(const char* k) const { return to_ints(get(k), k); }
};

using Factory = std::function<std::shared_ptr<nn::Model>(const Config&)>;

nn::RobertaConfig roberta_config(const Config& c) {
  nn::RobertaConfig r;
  r.vocab_size = c.i64("vocab_size", r.vocab_size);
  r.hidden_size = c.i64("hidden_size", r.hidden_size);
  r.num_hidden_layers = c.i64("num_hidden_layers", r.num_hidden_layers);
  r.num_attention_heads = c.i64("num_attention_heads", r.num_attention_heads);
  r.intermediate_size = c.i64("intermediate_size", r.intermediate_size);
  r.max_position_embeddings = c.i64("max_position_embeddings", r.max_position_embeddings);
  r.type_vocab_size = c.i64("type_vocab_size", r.type_vocab_size);
  r.pad_token_id = c.i64("pad_token_id", r.pad_token_id);
  r.layer_norm_eps = c.d("layer_norm_eps", r.layer_norm_eps);
  r.hidden_dropout_prob = c.d("hidden_dropout_prob", r.hidden_dropout_prob);
  r.attention_probs_dropout_prob = c.d("attention_probs_dropout_prob", r.attention_probs_dropout_prob);
  r.initializer_range = c.d("initializer_range", r.initializer_range);
  r.hidden_act = c.s("hidden_act", r.hidden_act);
  r.add_pooling_layer = c.b("add_pooling_layer", r.add_pooling_layer);
  return r;
}

// The fields WavLM and Wav2Vec2 share (HF names), onto `w`'s defaults.
void speech_encoder_config(const Config& c, nn::SpeechEncoderConfig& w) {
  if (c.has("conv_dim")) w.conv_dim = c.ints("conv_dim");
  if (c.has("conv_kernel")) w.conv_kernel = c.ints("conv_kernel");
  if (c.has("conv_stride")) w.conv_stride = c.ints("conv_stride");
  w.conv_bias = c.b("conv_bias", w.conv_bias);
  w.do_stable_layer_norm = c.b("do_stable_layer_norm", w.do_stable_layer_norm);
  w.masked_spec_embed = c.b("masked_spec_embed", w.masked_spec_embed);
  w.feat_extract_norm = c.s("feat_extract_norm", w.feat_extract_norm);
  w.feat_extract_activation = c.s("feat_extract_activation", w.feat_extract_activation);
  w.hidden_act = c.s("hidden_act", w.hidden_act);
  w.hidden_size = c.i64("hidden_size", w.hidden_size);
  w.num_hidden_layers = c.i64("num_hidden_layers", w.num_hidden_layers);
  w.num_attention_heads = c.i64("num_attention_heads", w.num_attention_heads);
  w.intermediate_size = c.i64("intermediate_size", w.intermediate_size);
  w.num_conv_pos_embeddings = c.i64("num_conv_pos_embeddings", w.num_conv_pos_embeddings);
  w.num_conv_pos_embedding_groups = c.i64("num_conv_pos_embedding_groups", w.num_conv_pos_embedding_groups);
  w.layer_norm_eps = c.d("layer_norm_eps", w.layer_norm_eps);
  w.hidden_dropout = c.d("hidden_dropout", w.hidden_dropout);
  w.attention_dropout = c.d("attention_dropout", w.attention_dropout);
  w.activation_dropout = c.d("activation_dropout", w.activation_dropout);
  w.feat_proj_dropout = c.d("feat_proj_dropout", w.feat_proj_dropout);
}

nn::WavLMConfig wavlm_config(const Config& c) {
  nn::WavLMConfig w;
  speech_encoder_config(c, w);
  w.num_buckets = c.i64("num_buckets", w.num_buckets);
  w.max_bucket_distance = c.i64("max_bucket_distance", w.max_bucket_distance);
  return w;
}

nn::Wav2Vec2Config wav2vec2_config(const Config& c) {
  nn::Wav2Vec2Config w;
  speech_encoder_config(c, w);
  w.layerdrop = c.d("layerdrop", w.layerdrop);
  return w;
}

const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> f = {
      {"linear", [](const Config& c) { return std::make_shared<nn::LinearModel>(c.i64("in_features"), c.i64("out_features"), c.b("bias", true)); }},
      {"mlp", [](const Config& c) {
         return std::make_shared<nn::MlpModel>(c.ints("sizes"), c.s("activation", "relu"), c.d("dropout", 0), c.b("bias", true));
       }},
      {"layer_norm", [](const Config& c) {
         return std::make_shared<nn::LayerNormModel>(c.i64("normalized_shape"), c.d("eps", 1e-5), c.b("elementwise_affine", true));
       }},
      {"embedding", [](const Config& c) {
         return std::make_shared<nn::EmbeddingModel>(c.i64("num_embeddings"), c.i64("embedding_dim"), c.i64("padding_idx", -1));
       }},
      {"roberta", [](const Config& c) { return std::make_shared<nn::RobertaModel>(roberta_config(c)); }},
      {"roberta_layers", [](const Config& c) { return std::make_shared<nn::RobertaLayers>(roberta_config(c), c.i64("num_layers")); }},
      {"whisper_encoder", [](const Config& c) {
         nn::WhisperConfig w;
         w.num_mel_bins = c.i64("num_mel_bins", w.num_mel_bins);
         w.d_model = c.i64("d_model", w.d_model);
         w.encoder_layers = c.i64("encoder_layers", w.encoder_layers);
         w.encoder_attention_heads = c.i64("encoder_attention_heads", w.encoder_attention_heads);
         w.encoder_ffn_dim = c.i64("encoder_ffn_dim", w.encoder_ffn_dim);
         w.max_source_positions = c.i64("max_source_positions", w.max_source_positions);
         w.dropout = c.d("dropout", w.dropout);
         w.attention_dropout = c.d("attention_dropout", w.attention_dropout);
         w.activation_dropout = c.d("activation_dropout", w.activation_dropout);
         w.init_std = c.d("init_std", w.init_std);
         w.activation_function = c.s("activation_function", w.activation_function);
         return std::make_shared<nn::WhisperEncoder>(w);
       }},
      {"beats", [](const Config& c) {
         nn::BeatsConfig b;
         b.input_patch_size = c.i64("input_patch_size", b.input_patch_size);
         b.embed_dim = c.i64("embed_dim", b.embed_dim);
         b.encoder_layers = c.i64("encoder_layers", b.encoder_layers);
         b.encoder_embed_dim = c.i64("encoder_embed_dim", b.encoder_embed_dim);
         b.encoder_ffn_embed_dim = c.i64("encoder_ffn_embed_dim", b.encoder_ffn_embed_dim);
         b.encoder_attention_heads = c.i64("encoder_attention_heads", b.encoder_attention_heads);
         b.conv_pos = c.i64("conv_pos", b.conv_pos);
         b.conv_pos_groups = c.i64("conv_pos_groups", b.conv_pos_groups);
         b.num_buckets = c.i64("num_buckets", b.num_buckets);
         b.max_distance = c.i64("max_distance", b.max_distance);
         b.conv_bias = c.b("conv_bias", b.conv_bias);
         b.layer_norm_first = c.b("layer_norm_first", b.layer_norm_first);
         b.deep_norm = c.b("deep_norm", b.deep_norm);
         b.relative_position_embedding = c.b("relative_position_embedding", b.relative_position_embedding);
         b.gru_rel_pos = c.b("gru_rel_pos", b.gru_rel_pos);
         b.dropout = c.d("dropout", b.dropout);
         b.attention_dropout = c.d("attention_dropout", b.attention_dropout);
         b.activation_dropout = c.d("activation_dropout", b.activation_dropout);
         b.dropout_input = c.d("dropout_input", b.dropout_input);
         b.activation_fn = c.s("activation_fn", b.activation_fn);
         return std::make_shared<nn::BeatsEncoder>(b);
       }},
      {"qformer", [](const Config& c) {
         nn::QFormerConfig q;
         q.hidden_size = c.i64("hidden_size", q.hidden_size);
         q.num_hidden_layers = c.i64("num_hidden_layers", q.num_hidden_layers);
         q.num_attention_heads = c.i64("num_attention_heads", q.num_attention_heads);
         q.intermediate_size = c.i64("intermediate_size", q.intermediate_size);
         q.encoder_hidden_size = c.i64("encoder_hidden_size", q.encoder_hidden_size);
         q.cross_attention_frequency = c.i64("cross_attention_frequency", q.cross_attention_frequency);
         q.num_query_tokens = c.i64("num_query_tokens", q.num_query_tokens);
         q.layer_norm_eps = c.d("layer_norm_eps", q.layer_norm_eps);
         q.hidden_dropout_prob = c.d("hidden_dropout_prob", q.hidden_dropout_prob);
         q.attention_probs_dropout_prob = c.d("attention_probs_dropout_prob", q.attention_probs_dropout_prob);
         q.initializer_range = c.d("initializer_range", q.initializer_range);
         q.hidden_act = c.s("hidden_act", q.hidden_act);
         return std::make_shared<nn::QFormer>(q);
       }},
      {"llama", [](const Config& c) {
         nn::LlamaConfig l;
         l.vocab_size = c.i64("vocab_size", l.vocab_size);
         l.hidden_size = c.i64("hidden_size", l.hidden_size);
         l.intermediate_size = c.i64("intermediate_size", l.intermediate_size);
         l.num_hidden_layers = c.i64("num_hidden_layers", l.num_hidden_layers);
         l.num_attention_heads = c.i64("num_attention_heads", l.num_attention_heads);
         l.num_key_value_heads = c.i64("num_key_value_heads", l.num_key_value_heads);
         l.head_dim = c.i64("head_dim", l.head_dim);
         l.max_position_embeddings = c.i64("max_position_embeddings", l.max_position_embeddings);
         l.rms_norm_eps = c.d("rms_norm_eps", l.rms_norm_eps);
         l.rope_theta = c.d("rope_theta", l.rope_theta);
         l.initializer_range = c.d("initializer_range", l.initializer_range);
         l.attention_dropout = c.d("attention_dropout", l.attention_dropout);
         l.rope_type = c.s("rope_type", l.rope_type);
         l.rope_factor = c.d("rope_factor", l.rope_factor);
         l.low_freq_factor = c.d("low_freq_factor", l.low_freq_factor);
         l.high_freq_factor = c.d("high_freq_factor", l.high_freq_factor);
         l.original_max_position_embeddings = c.i64("original_max_position_embeddings", l.original_max_position_embeddings);
         l.tie_word_embeddings = c.b("tie_word_embeddings", l.tie_word_embeddings);
         l.attention_bias = c.b("attention_bias", l.attention_bias);
         l.mlp_bias = c.b("mlp_bias", l.mlp_bias);
         l.hidden_act = c.s("hidden_act", l.hidden_act);
         l.sliding_window = c.i64("sliding_window", l.sliding_window);
         return std::make_shared<nn::LlamaForCausalLM>(l);
       }},
      {"wavlm", [](const Config& c) { return std::make_shared<nn::WavLMModel>(wavlm_config(c)); }},
      {"wav2vec2", [](const Config& c) { return std::make_shared<nn::Wav2Vec2Model>(wav2vec2_config(c)); }},
      {"kmeans_units", [](const Config& c) { return std::make_shared<audio::KMeansUnits>(c.i64("num_units"), c.i64("dim")); }},
      {"spectra_audio", [](const Config& c) {
         nn::SpectraAudioConfig s;
         s.wavlm = wavlm_config(c);
         s.has_audio_cls = c.b("has_audio_cls", s.has_audio_cls);
         s.mask_audio_cls = c.b("mask_audio_cls", s.mask_audio_cls);
         s.extra_frame = c.b("extra_frame", s.extra_frame);
         return std::make_shared<nn::SpectraAudioEncoder>(s);
       }},
  };
  return f;
}

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
                                       InstanceMethod("applyLora", &ModuleHandle::ApplyLora),
                                       InstanceMethod("mergeLora", &ModuleHandle::MergeLora),
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
  // generate(inputIds|null, inputsEmbeds|null, attentionMask|null, config) → Promise<Tensor (B, new)>
  Napi::Value Generate(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto llm = std::dynamic_pointer_cast<nn::LlamaForCausalLM>(live());
      if (!llm) throw CodedError("ERR_INVALID_ARG", "generate() needs a causal language model");
      auto opt = [&](size_t i, const char* what) { return info[i].IsNull() || info[i].IsUndefined() ? at::Tensor() : to_tensor(info[i], what); };
      at::Tensor ids = opt(0, "inputIds"), embeds = opt(1, "inputsEmbeds"), mask = opt(2, "attentionMask");
      Config c{info[3].As<Napi::Object>(), "generation"};
      nn::GenerationConfig g;
      g.max_new_tokens = c.i64("max_new_tokens", g.max_new_tokens);
      g.min_new_tokens = c.i64("min_new_tokens", g.min_new_tokens);
      g.num_beams = c.i64("num_beams", g.num_beams);
      g.top_k = c.i64("top_k", g.top_k);
      g.temperature = c.d("temperature", g.temperature);
      g.top_p = c.d("top_p", g.top_p);
      g.repetition_penalty = c.d("repetition_penalty", g.repetition_penalty);
      g.length_penalty = c.d("length_penalty", g.length_penalty);
      g.do_sample = c.b("do_sample", g.do_sample);
      g.early_stopping = c.s("early_stopping", g.early_stopping);
      g.pad_token_id = c.i64("pad_token_id", g.pad_token_id);
      if (c.has("eos_token_id")) g.eos_token_ids = to_ints(c.get("eos_token_id"), "eos_token_id");
      if (c.has("banned_token_ranges")) g.banned_token_ranges = c.ints("banned_token_ranges");
      if (c.has("allowed_token_ranges")) g.allowed_token_ranges = c.ints("allowed_token_ranges");
      auto out = std::make_shared<at::Tensor>();
      return run_async(info.Env(), "emotorch.generate", mutex, [llm, ids, embeds, mask, g, out] {
        at::NoGradGuard ng;
        *out = llm->generate(ids, embeds, mask, g);
      }, [out](Napi::Env env) { return TensorHandle::wrap(env, *out); });
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

// createModule(kind, config, device|null, dtype|null) → ModuleHandle (parameters created on CPU in
// float32, then moved).
Napi::Value CreateModule(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    Config cfg{info[1].As<Napi::Object>(), to_string(info[0], "module kind")};
    auto it = factories().find(cfg.kind);
    if (it == factories().end()) throw CodedError("ERR_INVALID_ARG", "unknown module kind '" + cfg.kind + "'");
    std::optional<at::Device> dev;
    std::optional<at::ScalarType> dt;
    if (!info[2].IsNull() && !info[2].IsUndefined()) dev = to_device(info[2]);
    if (!info[3].IsNull() && !info[3].IsUndefined()) dt = to_dtype(info[3]);
    auto model = it->second(cfg);
    if (dev || dt) move_module(*model, dev, dt);
    Napi::Object obj = data(info.Env()).module_ctor.New({});
    ModuleHandle::Unwrap(obj)->model = model;
    return obj;
  });
}

// ---- optimizers ----
class OptimizerHandle : public Napi::ObjectWrap<OptimizerHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "OptimizerHandle",
                                      {InstanceMethod("step", &OptimizerHandle::Step),
                                       InstanceMethod("zeroGrad", &OptimizerHandle::ZeroGrad),
                                       InstanceMethod("setLr", &OptimizerHandle::SetLr),
                                       InstanceMethod("lr", &OptimizerHandle::Lr),
                                       InstanceMethod("state", &OptimizerHandle::State),
                                       InstanceMethod("setState", &OptimizerHandle::SetState)});
    data(env).optim_ctor = Napi::Persistent(ctor);
    exports.Set("OptimizerHandle", ctor);
  }
  explicit OptimizerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OptimizerHandle>(info) {}
  std::shared_ptr<nn::Optimizer> opt;
  std::shared_ptr<std::mutex> mutex = std::make_shared<std::mutex>();

 private:
  Napi::Value Step(const Napi::CallbackInfo& info) {
    auto o = opt;
    return run_async(info.Env(), "emotorch.step", mutex, [o] { o->step(); }, nullptr);
  }
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> l(*mutex);
    opt->zero_grad();
    return info.Env().Undefined();
  }
  Napi::Value SetLr(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::lock_guard<std::mutex> l(*mutex);
      auto g = static_cast<size_t>(to_double(info[0], "group"));
      if (g >= opt->groups.size()) throw CodedError("ERR_INVALID_ARG", "no parameter group " + std::to_string(g));
      opt->groups[g].lr = to_double(info[1], "lr");
      return info.Env().Undefined();
    });
  }
  Napi::Value Lr(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto g = static_cast<size_t>(to_double(info[0], "group"));
      if (g >= opt->groups.size()) throw CodedError("ERR_INVALID_ARG", "no parameter group " + std::to_string(g));
      return Napi::Number::New(info.Env(), opt->groups[g].lr);
    });
  }
  Napi::Value State(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::lock_guard<std::mutex> l(*mutex);
      auto st = opt->state();
      auto names = Napi::Array::New(info.Env(), st.size());
      std::vector<at::Tensor> ts;
      for (size_t i = 0; i < st.size(); ++i) {
        names.Set(i, Napi::String::New(info.Env(), st[i].first));
        ts.push_back(st[i].second);
      }
      auto out = Napi::Array::New(info.Env(), 2);
      out.Set(0u, names);
      out.Set(1u, from_tensors(info.Env(), ts, false));
      return out;
    });
  }
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto names = info[0].As<Napi::Array>();
      auto ts = to_tensors(info[1], "optimizer state");
      std::vector<std::pair<std::string, at::Tensor>> entries;
      for (uint32_t i = 0; i < names.Length(); ++i) entries.emplace_back(to_string(names.Get(i), "state key"), ts.at(i));
      auto o = opt;
      return run_async(info.Env(), "emotorch.setState", mutex, [o, entries] { o->set_state(entries); }, nullptr);
    });
  }
};

// createOptimizer(kind, groups: [{params, lr, weightDecay, beta1, beta2, eps, momentum, dampening, nesterov}])
Napi::Value CreateOptimizer(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto kind = to_string(info[0], "optimizer kind");
    auto arr = info[1].As<Napi::Array>();
    std::vector<nn::ParamGroup> groups;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Config c{arr.Get(i).As<Napi::Object>(), kind};
      nn::ParamGroup g;
      g.params = to_tensors(c.get("params"), "params");
      g.lr = c.d("lr", g.lr);
      g.weight_decay = c.d("weightDecay", g.weight_decay);
      g.beta1 = c.d("beta1", g.beta1);
      g.beta2 = c.d("beta2", g.beta2);
      g.eps = c.d("eps", g.eps);
      g.momentum = c.d("momentum", g.momentum);
      g.dampening = c.d("dampening", g.dampening);
      g.nesterov = c.b("nesterov", g.nesterov);
      groups.push_back(std::move(g));
    }
    Napi::Object obj = data(info.Env()).optim_ctor.New({});
    OptimizerHandle::Unwrap(obj)->opt = std::make_shared<nn::Optimizer>(kind, std::move(groups));
    return obj;
  });
}

Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto params = to_tensors(info[0], "params");
    double max_norm = to_double(info[1], "maxNorm"), norm_type = to_double(info[2], "normType");
    auto out = std::make_shared<double>(0);
    return run_async(info.Env(), "emotorch.clipGradNorm", nullptr,
                     [params, max_norm, norm_type, out] { *out = nn::clip_grad_norm(params, max_norm, norm_type); },
                     [out](Napi::Env env) { return Napi::Number::New(env, *out); });
  });
}

Napi::Value CopyState(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto dst = to_tensors(info[0], "destination tensors"), src = to_tensors(info[1], "source tensors");
    return run_async(info.Env(), "emotorch.copyState", nullptr, [dst, src] { nn::copy_state(dst, src); }, nullptr);
  });
}

// ---- safetensors ----
// readSafetensors(path, dataStart, [[name, dtype, shape, begin, end], ...]) → Promise<Tensor[]>
Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto path = to_string(info[0], "path");
    auto start = static_cast<uint64_t>(to_double(info[1], "dataStart"));
    auto arr = info[2].As<Napi::Array>();
    std::vector<io::TensorEntry> entries;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto e = arr.Get(i).As<Napi::Array>();
      entries.push_back({to_string(e.Get(0u), "name"), to_dtype(e.Get(1u)), to_ints(e.Get(2u), "shape"),
                         static_cast<uint64_t>(to_double(e.Get(3u), "begin")), static_cast<uint64_t>(to_double(e.Get(4u), "end"))});
    }
    auto out = std::make_shared<std::vector<at::Tensor>>();
    return run_async(
        info.Env(), "emotorch.readSafetensors", nullptr, [path, start, entries, out] { *out = io::read_safetensors(path, start, entries); },
        [out](Napi::Env env) { return from_tensors(env, *out); }, "ERR_IO");
  });
}

// writeSafetensors(path, headerJson, tensors) → Promise<void>
Napi::Value WriteSafetensors(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto path = to_string(info[0], "path");
    auto header = to_string(info[1], "header");
    auto ts = to_tensors(info[2], "tensors");
    return run_async(info.Env(), "emotorch.writeSafetensors", nullptr, [path, header, ts] { io::write_safetensors(path, header, ts); },
                     nullptr, "ERR_IO");
  });
}

}  // namespace

void init_module(Napi::Env env, Napi::Object exports) {
  ModuleHandle::Init(env, exports);
  OptimizerHandle::Init(env, exports);
  exports.Set("createModule", Napi::Function::New(env, CreateModule));
  exports.Set("createOptimizer", Napi::Function::New(env, CreateOptimizer));
  exports.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm));
  exports.Set("copyState", Napi::Function::New(env, CopyState));
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensors));
  exports.Set("writeSafetensors", Napi::Function::New(env, WriteSafetensors));
}

}  // namespace et::bridge
