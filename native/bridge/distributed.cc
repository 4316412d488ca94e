// et.distributed's native surface: the process group (one per process, like torch's default
// group), collectives, and DDP's gradient reducer (DdpHandle). Marshalling only: the work is in native/distributed.
// lib/distributed validates every argument before it gets here.
#include <atomic>

#include "bridge/bridge.h"
#include "distributed/ddp.h"
#include "distributed/group.h"
#include "distributed/zero.h"

namespace et::bridge {

namespace {
std::mutex group_mutex;
std::shared_ptr<distributed::Group> the_group;  // set by init, dropped by destroy

std::shared_ptr<distributed::Group> group() {
  std::lock_guard<std::mutex> lk(group_mutex);
  if (!the_group) throw CodedError("ERR_DIST_STATE", "the process group is not initialized: call et.distributed.init() first");
  return the_group;
}

distributed::Op to_op(const Napi::Value& v) {
  auto s = to_string(v, "op");
  if (s == "sum") return distributed::Op::Sum;
  if (s == "avg") return distributed::Op::Avg;
  if (s == "max") return distributed::Op::Max;
  if (s == "min") return distributed::Op::Min;
  if (s == "product") return distributed::Op::Product;
  throw CodedError("ERR_INVALID_ARG", "unknown reduce op '" + s + "'");
}

// A collective as a task: issue on the compute thread, wait on the libuv thread, then `after`.
Napi::Promise collective(Napi::Env env, const char* name, std::function<distributed::Group::Pending(distributed::Group&)> start,
                         std::function<Napi::Value(Napi::Env)> done = nullptr) {
  auto g = group();
  auto p = std::make_shared<distributed::Group::Pending>();
  return run_async_comm(env, name, [g, p, start] { *p = start(*g); }, [g, p] { g->wait(*p); }, [p] { distributed::Group::complete(*p); },
                        std::move(done));
}

int64_t get_int(const Napi::Object& o, const char* k) { return static_cast<int64_t>(to_double(o.Get(k), k)); }
}  // namespace

// init({ backend, rank, world, masterAddr, masterPort, timeoutMs, deviceIndex, agentStore, jobId }): rendezvous on the
// libuv thread (it waits for the other ranks).
static Napi::Value Init(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto o = info[0].As<Napi::Object>();
    distributed::GroupOptions go;
    go.backend = to_string(o.Get("backend"), "backend");
    go.rank = static_cast<int>(get_int(o, "rank"));
    go.world = static_cast<int>(get_int(o, "world"));
    go.master_addr = to_string(o.Get("masterAddr"), "masterAddr");
    go.master_port = static_cast<int>(get_int(o, "masterPort"));
    go.timeout = std::chrono::milliseconds(get_int(o, "timeoutMs"));
    go.device_index = static_cast<int>(get_int(o, "deviceIndex"));
    go.agent_store = o.Get("agentStore").ToBoolean().Value();
    go.job_id = to_string(o.Get("jobId"), "jobId");
    go.check_collectives = o.Get("checkCollectives").ToBoolean().Value();
    {
      std::lock_guard<std::mutex> lk(group_mutex);
      if (the_group) throw CodedError("ERR_DIST_STATE", "the process group is already initialized (destroy() it first)");
    }
    auto made = std::make_shared<std::shared_ptr<distributed::Group>>();
    return run_async_comm(info.Env(), "emotorch.distributed.init", [] {}, [go, made] { *made = distributed::Group::create(go); }, nullptr,
                          [made](Napi::Env env) -> Napi::Value {
      std::lock_guard<std::mutex> lk(group_mutex);
      if (the_group) throw CodedError("ERR_DIST_STATE", "the process group is already initialized (destroy() it first)");
      the_group = *made;
      return env.Undefined();
    }, "ERR_DIST_INIT");
  });
}

// destroy(): drops the group; the shutdown (joins Gloo's threads) runs off the JS thread.
static Napi::Value Destroy(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    std::shared_ptr<distributed::Group> g;
    {
      std::lock_guard<std::mutex> lk(group_mutex);
      g = std::move(the_group);
      the_group.reset();
    }
    auto held = std::make_shared<std::shared_ptr<distributed::Group>>(std::move(g));
    return run_async_comm(info.Env(), "emotorch.distributed.destroy", [] {}, [held] {
      if (*held) (*held)->shutdown();
      held->reset();
    }, nullptr, nullptr);
  });
}

static Napi::Value IsInitialized(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lk(group_mutex);
  return Napi::Boolean::New(info.Env(), static_cast<bool>(the_group));
}

static Napi::Value NcclBuilt(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), distributed::nccl_built()); }

static Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = to_tensor(info[0], "tensor");
    auto op = to_op(info[1]);
    return collective(info.Env(), "emotorch.distributed.allReduce", [t, op](distributed::Group& g) { return g.all_reduce(t, op); });
  });
}

static Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto ts = to_tensors(info[0], "tensors");
    int src = static_cast<int>(to_double(info[1], "src"));
    return collective(info.Env(), "emotorch.distributed.broadcast", [ts, src](distributed::Group& g) { return g.broadcast(ts, src); });
  });
}

static Napi::Value AllGather(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = to_tensor(info[0], "tensor");
    auto out = std::make_shared<std::vector<at::Tensor>>();
    return collective(info.Env(), "emotorch.distributed.allGather", [t, out](distributed::Group& g) { return g.all_gather(t, out); },
                      [out](Napi::Env env) -> Napi::Value { return from_tensors(env, *out); });
  });
}

static Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor t = to_tensor(info[0], "tensor");
    auto op = to_op(info[1]);
    auto out = std::make_shared<at::Tensor>();
    return collective(info.Env(), "emotorch.distributed.reduceScatter", [t, op, out](distributed::Group& g) {
      return g.reduce_scatter(t, op, out);
    }, [out](Napi::Env env) -> Napi::Value { return TensorHandle::wrap(env, *out); });
  });
}

static Napi::Value Barrier(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    return collective(info.Env(), "emotorch.distributed.barrier", [](distributed::Group& g) { return g.barrier(); });
  });
}

// broadcastCoalesced(tensors, src): DDP's wrap-time synchronisation (one collective per dtype).
static Napi::Value BroadcastCoalesced(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto ts = to_tensors(info[0], "tensors");
    int src = static_cast<int>(to_double(info[1], "src"));
    auto g = group();
    // One task: the broadcasts (one per dtype/device, at most kCap bytes each) are issued on the
    // compute thread and waited for on the libuv thread, so the compute thread never blocks.
    auto pending = std::make_shared<std::vector<distributed::Group::Pending>>();
    return run_async_comm(info.Env(), "emotorch.distributed.broadcastCoalesced", [g, ts, src, pending] {
      constexpr int64_t kCap = 256ll * 1024 * 1024;
      std::vector<at::Tensor> chunk;
      int64_t bytes = 0;
      auto flush = [&] {
        if (!chunk.empty()) pending->push_back(g->broadcast(chunk, src));
        chunk.clear();
        bytes = 0;
      };
      for (const auto& t : ts) {
        if (!chunk.empty() &&
            (t.scalar_type() != chunk[0].scalar_type() || t.device() != chunk[0].device() || bytes + int64_t(t.nbytes()) > kCap))
          flush();
        chunk.push_back(t.detach());
        bytes += t.nbytes();
      }
      flush();
    }, [g, pending] {
      for (auto& p : *pending) g->wait(p);
    }, [pending] {
      for (auto& p : *pending) distributed::Group::complete(p);
    }, nullptr);
  });
}

// ---- DDP ----
// DdpHandle: DDP's gradient reducer for one wrapped module (prepare, buckets, detach).
class DdpHandle : public Napi::ObjectWrap<DdpHandle> {
 public:
  static void Init(Napi::Env env) {
    data(env).ddp_ctor =
        Napi::Persistent(DefineClass(env, "DdpHandle",
                                     {InstanceMethod("prepare", &DdpHandle::Prepare), InstanceMethod("buckets", &DdpHandle::Buckets),
                                      InstanceMethod("detach", &DdpHandle::Detach)}));
  }
  explicit DdpHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DdpHandle>(info) {}
  // Shared: a queued prepare keeps it alive past the handle's finalizer.
  std::shared_ptr<distributed::GradReducer> reducer;

 private:
  // prepare(sync) -> Promise: DDP.forward's fresh pass state, on the compute thread (after the
  // backward passes queued before it).
  Napi::Value Prepare(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto r = reducer;
      bool sync = info[0].ToBoolean().Value();
      return run_async(info.Env(), "emotorch.distributed.ddpPrepare", nullptr, [r, sync] { r->prepare(sync); }, nullptr);
    });
  }
  // buckets() -> the parameter indices of each gradient bucket.
  Napi::Value Buckets(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto b = reducer->buckets();
      auto out = Napi::Array::New(info.Env(), b.size());
      for (size_t i = 0; i < b.size(); ++i) {
        auto a = Napi::Array::New(info.Env(), b[i].size());
        for (size_t j = 0; j < b[i].size(); ++j) a.Set(j, Napi::Number::New(info.Env(), static_cast<double>(b[i][j])));
        out.Set(i, a);
      }
      return out;
    });
  }
  Napi::Value Detach(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      reducer->detach();
      return info.Env().Undefined();
    });
  }
};

// ddpCreate(params, names, { bucketCapBytes, firstBucketCapBytes, findUnused }) -> DdpHandle
static Napi::Value DdpCreate(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto params = to_tensors(info[0], "params");
    auto names_arr = info[1].As<Napi::Array>();
    std::vector<std::string> names;
    for (uint32_t i = 0; i < names_arr.Length(); ++i) names.push_back(to_string(names_arr.Get(i), "name"));
    auto o = info[2].As<Napi::Object>();
    distributed::DdpOptions d;
    d.bucket_cap_bytes = get_int(o, "bucketCapBytes");
    d.first_bucket_cap_bytes = get_int(o, "firstBucketCapBytes");
    d.find_unused = o.Get("findUnused").ToBoolean().Value();
    auto r = std::make_shared<distributed::GradReducer>(group(), std::move(params), std::move(names), d);
    Napi::Object obj = data(info.Env()).ddp_ctor.New({});
    DdpHandle::Unwrap(obj)->reducer = std::move(r);
    return obj;
  });
}

// ---- sharded data parallel ----
// ZeroHandle: one sharded module's engine (native/distributed/zero.h).
class ZeroHandle : public Napi::ObjectWrap<ZeroHandle> {
 public:
  static void Init(Napi::Env env) {
    data(env).zero_ctor = Napi::Persistent(
        DefineClass(env, "ZeroHandle",
                    {InstanceMethod("shards", &ZeroHandle::Shards), InstanceMethod("start", &ZeroHandle::Start),
                     InstanceMethod("prepare", &ZeroHandle::Prepare), InstanceMethod("clipGradNorm", &ZeroHandle::ClipGradNorm),
                     InstanceMethod("gatherState", &ZeroHandle::GatherState), InstanceMethod("setShards", &ZeroHandle::SetShards),
                     InstanceMethod("units", &ZeroHandle::Units), InstanceMethod("memory", &ZeroHandle::Memory),
                     InstanceMethod("detach", &ZeroHandle::Detach), InstanceMethod("markStepped", &ZeroHandle::MarkStepped)}));
  }
  explicit ZeroHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ZeroHandle>(info) {}
  std::shared_ptr<distributed::Sharded> engine;

 private:
  Napi::Value Shards(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return from_tensors(info.Env(), engine->shards(), false); });
  }
  Napi::Value task(const Napi::CallbackInfo& info, const char* name, std::function<void(distributed::Sharded&)> f) {
    auto e = engine;
    return run_async(info.Env(), name, nullptr, [e, f] { f(*e); }, nullptr, "ERR_DIST");
  }
  Napi::Value Start(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return task(info, "emotorch.distributed.zeroStart", [](auto& e) { e.start(); }); });
  }
  Napi::Value Prepare(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return task(info, "emotorch.distributed.zeroPrepare", [](auto& e) { e.prepare(); }); });
  }
  Napi::Value Detach(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return task(info, "emotorch.distributed.zeroDetach", [](auto& e) { e.detach(); }); });
  }
  // markStepped(): an optimizer stepped the shards (sync, any time)
  Napi::Value MarkStepped(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      engine->mark_stepped();
      return info.Env().Undefined();
    });
  }
  // clipGradNorm(indices, maxNorm, normType) -> Promise<number>
  Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto idx = to_ints(info[0], "indices");
      std::vector<size_t> which(idx.begin(), idx.end());
      double max_norm = to_double(info[1], "maxNorm"), type = to_double(info[2], "normType");
      auto e = engine;
      auto out = std::make_shared<double>(0);
      return run_async(info.Env(), "emotorch.distributed.zeroClip", nullptr, [e, which, max_norm, type, out] {
        *out = e->clip_grad_norm(which, max_norm, type);
      }, [out](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *out); }, "ERR_DIST");
    });
  }
  // gatherState(rank0Only) -> Promise<Tensor[] (null where not gathered)>
  Napi::Value GatherState(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      bool rank0 = info[0].ToBoolean().Value();
      auto e = engine;
      auto out = std::make_shared<std::vector<at::Tensor>>();
      return run_async(info.Env(), "emotorch.distributed.zeroGather", nullptr, [e, rank0, out] { *out = e->gather_state(rank0); },
                       [out](Napi::Env env) -> Napi::Value {
        auto a = Napi::Array::New(env, out->size());
        for (size_t i = 0; i < out->size(); ++i) a.Set(i, (*out)[i].defined() ? TensorHandle::wrap(env, (*out)[i]) : env.Null());
        return a;
      }, "ERR_DIST");
    });
  }
  // setShards(indices, tensors) -> Promise
  Napi::Value SetShards(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto idx = to_ints(info[0], "indices");
      std::vector<size_t> which(idx.begin(), idx.end());
      auto ts = to_tensors(info[1], "tensors");
      return task(info, "emotorch.distributed.zeroSetShards", [which, ts](auto& e) { e.set_shards(which, ts); });
    });
  }
  // units() -> [[name, [indices]], ...]
  Napi::Value Units(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto us = engine->units();
      auto out = Napi::Array::New(info.Env(), us.size());
      for (size_t i = 0; i < us.size(); ++i) {
        auto pair = Napi::Array::New(info.Env(), 2);
        pair.Set(0u, Napi::String::New(info.Env(), us[i].first));
        auto a = Napi::Array::New(info.Env(), us[i].second.size());
        for (size_t j = 0; j < us[i].second.size(); ++j) a.Set(j, Napi::Number::New(info.Env(), static_cast<double>(us[i].second[j])));
        pair.Set(1u, a);
        out.Set(i, pair);
      }
      return out;
    });
  }
  // memory() -> Promise<[parameter bytes, gradient bytes]> (on the compute thread, after the work queued before it)
  Napi::Value Memory(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto e = engine;
      auto out = std::make_shared<std::pair<int64_t, int64_t>>();
      return run_async(info.Env(), "emotorch.distributed.zeroMemory", nullptr, [e, out] { *out = e->memory(); },
                       [out](Napi::Env env) -> Napi::Value {
        auto a = Napi::Array::New(env, 2);
        a.Set(0u, Napi::Number::New(env, static_cast<double>(out->first)));
        a.Set(1u, Napi::Number::New(env, static_cast<double>(out->second)));
        return a;
      });
    });
  }
};

// zeroCreate(params, names, modules, { stage, offload }) -> ZeroHandle
static Napi::Value ZeroCreate(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto params = to_tensors(info[0], "params");
    auto names_arr = info[1].As<Napi::Array>();
    std::vector<std::string> names;
    for (uint32_t i = 0; i < names_arr.Length(); ++i) names.push_back(to_string(names_arr.Get(i), "name"));
    auto mods = info[2].As<Napi::Array>();
    std::vector<std::shared_ptr<nn::Model>> models;
    for (uint32_t i = 0; i < mods.Length(); ++i) models.push_back(module_of(mods.Get(i)).first);
    auto o = info[3].As<Napi::Object>();
    distributed::ZeroOptions z;
    z.stage = static_cast<int>(get_int(o, "stage"));
    z.offload = o.Get("offload").ToBoolean().Value();
    auto e = std::make_shared<distributed::Sharded>(group(), std::move(params), std::move(names), std::move(models), z);
    Napi::Object obj = data(info.Env()).zero_ctor.New({});
    ZeroHandle::Unwrap(obj)->engine = std::move(e);
    return obj;
  });
}

static Napi::Value GlooLayout(const Napi::CallbackInfo& info) {
  auto rows = distributed::gloo_layout_report();
  auto out = Napi::Array::New(info.Env(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    auto o = Napi::Object::New(info.Env());
    o.Set("name", rows[i].name);
    o.Set("ok", rows[i].ok);
    o.Set("detail", rows[i].detail);
    out.Set(i, o);
  }
  return out;
}

void init_distributed(Napi::Env env, Napi::Object exports) {
  DdpHandle::Init(env);
  ZeroHandle::Init(env);
  auto d = Napi::Object::New(env);
  d.Set("init", Napi::Function::New(env, Init));
  d.Set("destroy", Napi::Function::New(env, Destroy));
  d.Set("isInitialized", Napi::Function::New(env, IsInitialized));
  d.Set("ncclBuilt", Napi::Function::New(env, NcclBuilt));
  d.Set("allReduce", Napi::Function::New(env, AllReduce));
  d.Set("broadcast", Napi::Function::New(env, Broadcast));
  d.Set("allGather", Napi::Function::New(env, AllGather));
  d.Set("reduceScatter", Napi::Function::New(env, ReduceScatter));
  d.Set("barrier", Napi::Function::New(env, Barrier));
  d.Set("broadcastCoalesced", Napi::Function::New(env, BroadcastCoalesced));
  d.Set("ddpCreate", Napi::Function::New(env, DdpCreate));
  d.Set("zeroCreate", Napi::Function::New(env, ZeroCreate));
  d.Set("glooLayout", Napi::Function::New(env, GlooLayout));
  exports.Set("distributed", d);
}

}  // namespace et::bridge
