// OptimizerHandle: a JS handle on one native optimizer (step, zeroGrad, learning rates, state,
// gradient clipping over its parameters), createOptimizer, and clipGradNorm over given tensors.
#include "bridge/bridge.h"
#include "train/optim.h"

namespace et::bridge {
namespace {

// ---- optimizers ----
class OptimizerHandle : public Napi::ObjectWrap<OptimizerHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor =
        DefineClass(env, "OptimizerHandle",
                    {InstanceMethod("step", &OptimizerHandle::Step), InstanceMethod("zeroGrad", &OptimizerHandle::ZeroGrad),
                     InstanceMethod("setLr", &OptimizerHandle::SetLr), InstanceMethod("lr", &OptimizerHandle::Lr),
                     InstanceMethod("state", &OptimizerHandle::State), InstanceMethod("setState", &OptimizerHandle::SetState),
                     InstanceMethod("clipGradNorm", &OptimizerHandle::ClipGradNorm)});
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
  // clipGradNorm(maxNorm, normType) → Promise<number>: over the optimizer's own parameters (one
  // crossing, no parameter list sent), after the calls queued before it.
  Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      double max_norm = to_double(info[0], "maxNorm"), norm_type = to_double(info[1], "normType");
      auto o = opt;
      auto out = std::make_shared<double>(0);
      return run_async(info.Env(), "emotorch.clipGradNorm", mutex, [o, max_norm, norm_type, out] {
        *out = o->clip_grad_norm(max_norm, norm_type);
      }, [out](Napi::Env env) { return Napi::Number::New(env, *out); });
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

// createOptimizer(kind, groups: [{params, lr, weightDecay, beta1, beta2, eps} (adamw; adamw_hf adds biasCorrection,
// fused_adam biasCorrection and adamWMode) | {params, lr, weightDecay, momentum, dampening, nesterov} (sgd)]):
// every field given (lib/train/optim.ts holds the defaults).
Napi::Value CreateOptimizer(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto kind = to_string(info[0], "optimizer kind");
    auto arr = info[1].As<Napi::Array>();
    std::vector<nn::ParamGroup> groups;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto o = arr.Get(i);
      if (!o.IsObject()) throw CodedError("ERR_INVALID_ARG", "expected an object for parameter group " + std::to_string(i));
      auto g = nn::ParamGroup::from(*config_reader(o, kind + " parameter group"), kind,
                                    to_tensors(o.As<Napi::Object>().Get("params"), "params"));
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
    return run_async(info.Env(), "emotorch.clipGradNorm", nullptr, [params, max_norm, norm_type, out] {
      *out = nn::clip_grad_norm(params, max_norm, norm_type);
    }, [out](Napi::Env env) { return Napi::Number::New(env, *out); });
  });
}

}  // namespace

void init_optimizer(Napi::Env env, Napi::Object exports) {
  OptimizerHandle::Init(env, exports);
  exports.Set("createOptimizer", Napi::Function::New(env, CreateOptimizer));
  exports.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm));
}

}  // namespace et::bridge
