// Registers the bridge: the addon's entry point, and the per-environment state.
#include "bridge/bridge.h"

namespace et::bridge {
AddonData& data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
}  // namespace et::bridge

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new et::bridge::AddonData());
  et::bridge::init_errors(env, exports);
  et::bridge::init_runtime(env, exports);
  et::bridge::init_tensor(env, exports);
  et::bridge::init_ops(env, exports);
  et::bridge::init_module(env, exports);
  et::bridge::init_generation(env, exports);
  et::bridge::init_optimizer(env, exports);
  et::bridge::init_io(env, exports);
  et::bridge::init_audio(env, exports);
  et::bridge::init_distributed(env, exports);
  et::bridge::init_media(env, exports);
  et::bridge::init_quant(env, exports);
  et::bridge::init_profiler(env, exports);
  return exports;
}

NODE_API_MODULE(emotorch, Init)
