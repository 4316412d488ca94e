// The op profiler: libtorch's Kineto profiler (CPU activity, as torch.profiler's
// ProfilerActivity.CPU), started and stopped on the compute thread, where every heavy call runs
// (its callbacks are thread-local; the autograd engine carries them into backward). Stopping hands
// back one record per op call (name, thread, start and duration in ns, input shapes when asked)
// and can write the chrome trace torch.profiler's export_chrome_trace writes. lib/profiler.ts
// validates and aggregates (self time, calls, the table).
#include "bridge/bridge.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <sstream>

namespace et::bridge {

namespace {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

struct Event {
  std::string name, shapes;
  double start, duration, thread;
};

std::string shapes_of(const prof::KinetoEvent& e) {
  if (!e.hasShapes()) return "";
  std::ostringstream s;
  s << "[";
  bool first = true;
  for (const auto& shape : e.shapes()) {
    s << (first ? "" : ", ") << "[";
    for (size_t i = 0; i < shape.size(); i++) s << (i ? ", " : "") << shape[i];
    s << "]";
    first = false;
  }
  s << "]";
  return s.str();
}

}  // namespace

// profilerStart(recordShapes: boolean) -> Promise<void>
static Napi::Value ProfilerStart(const Napi::CallbackInfo& info) {
  bool shapes = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  return run_async(info.Env(), "profilerStart", nullptr, [shapes] {
    if (torch::profiler::impl::profilerEnabled())
      throw CodedError("ERR_PROFILER_STATE", "the profiler is already running: stop it (et.profiler.stop()) before starting it again");
    ProfilerConfig cfg(ProfilerState::KINETO, shapes);
    std::set<ActivityType> activities{ActivityType::CPU};
    prof::prepareProfiler(cfg, activities);
    prof::enableProfiler(cfg, activities);
  }, [](Napi::Env env) -> Napi::Value { return env.Undefined(); });
}

// profilerStop(tracePath: string | '') -> Promise<{ names, shapes: string[], start, duration, thread: Float64Array }>
static Napi::Value ProfilerStop(const Napi::CallbackInfo& info) {
  std::string trace = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  auto events = std::make_shared<std::vector<Event>>();
  return run_async(info.Env(), "profilerStop", nullptr, [trace, events] {
    if (!torch::profiler::impl::profilerEnabled())
      throw CodedError("ERR_PROFILER_STATE", "the profiler is not running: start it with et.profiler.start() first");
    auto result = prof::disableProfiler();
    for (const auto& e : result->events()) {
      if (e.isHiddenEvent() || e.deviceType() != c10::DeviceType::CPU) continue;
      events->push_back({e.name(), shapes_of(e), static_cast<double>(e.startNs()), static_cast<double>(e.durationNs()),
                         static_cast<double>(e.startThreadId())});
    }
    if (!trace.empty()) result->save(trace);
  }, [events](Napi::Env env) -> Napi::Value {
    size_t n = events->size();
    auto names = Napi::Array::New(env, n), shapes = Napi::Array::New(env, n);
    auto start = Napi::Float64Array::New(env, n), duration = Napi::Float64Array::New(env, n), thread = Napi::Float64Array::New(env, n);
    for (size_t i = 0; i < n; i++) {
      const Event& e = (*events)[i];
      names.Set(i, Napi::String::New(env, e.name));
      shapes.Set(i, Napi::String::New(env, e.shapes));
      start[i] = e.start;
      duration[i] = e.duration;
      thread[i] = e.thread;
    }
    auto o = Napi::Object::New(env);
    o.Set("names", names);
    o.Set("shapes", shapes);
    o.Set("start", start);
    o.Set("duration", duration);
    o.Set("thread", thread);
    return o;
  });
}

void init_profiler(Napi::Env env, Napi::Object exports) {
  exports.Set("profilerStart", Napi::Function::New(env, ProfilerStart));
  exports.Set("profilerStop", Napi::Function::New(env, ProfilerStop));
}

}  // namespace et::bridge
