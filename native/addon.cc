// Registers the bridge: the addon's entry point.
#include "bridge/bridge.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new et::bridge::AddonData());
  et::bridge::init_tensor(env, exports);
  et::bridge::init_ops(env, exports);
  et::bridge::init_module(env, exports);
  et::bridge::init_audio(env, exports);
  et::bridge::init_dist(env, exports);
  return exports;
}

NODE_API_MODULE(emotorch, Init)
