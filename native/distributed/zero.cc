// Sharded data parallel over the c10d group. See zero.h.
#include "distributed/zero.h"

#include "memory/cpu_cache.h"

#include <c10/core/CPUAllocator.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <atomic>
#include <cmath>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace et::distributed {

namespace {
// A parameter's storage emptied (stage 3 between uses) and given back.
void free_storage(const at::Tensor& p) {
  auto* impl = p.storage().unsafeGetStorageImpl();
  if (impl->nbytes() == 0) return;
  impl->set_data_ptr_noswap(at::DataPtr(nullptr, p.device()));
  impl->set_nbytes(0);
}
void alloc_storage(const at::Tensor& p) {
  auto* impl = p.storage().unsafeGetStorageImpl();
  size_t n = static_cast<size_t>(p.numel()) * p.element_size();
  if (impl->nbytes() >= n) return;
  c10::Allocator* a = impl->allocator() ? impl->allocator() : c10::GetAllocator(p.device().type());
  impl->set_data_ptr_noswap(a->allocate(n));
  impl->set_nbytes(n);
}
int64_t rows_of(const at::Tensor& p) { return p.dim() == 0 ? 1 : p.size(0); }
}  // namespace

struct Sharded::State : std::enable_shared_from_this<Sharded::State> {
  std::shared_ptr<Group> group;
  ZeroOptions opts;
  int world = 1, rank = 0;
  std::vector<at::Tensor> params, shards;
  std::vector<std::string> names;
  std::vector<std::shared_ptr<nn::Model>> models;
  struct Piece {
    int64_t rows = 1, R = 1, row_numel = 1;  // the parameter's rows, rows per rank, elements per row
    std::vector<int64_t> shard_shape;
    int64_t shard_numel() const { return R * row_numel; }
  };
  std::vector<Piece> pieces;
  struct Unit {
    std::string name;
    std::vector<size_t> members;
    std::vector<int64_t> offsets;  // each member's piece in the unit's per-rank buffer
    int64_t numel = 0;             // the per-rank buffer's size
    bool whole = true;             // the whole parameters are allocated and current
    int64_t version = -1;          // the shards' versions summed at the last gather
    bool persistent = false;       // outside every model's hooks: kept whole at stage 3
    // per backward pass
    size_t pending = 0;
    bool reduced = false;
    Group::Pending work;
    at::Tensor send, recv;
  };
  std::vector<Unit> units;
  std::vector<size_t> unit_of;
  std::unordered_map<const nn::Model*, std::vector<size_t>> forward_units;     // gathered around a model's forward
  std::unordered_map<const torch::nn::Module*, std::vector<size_t>> layer_unit;           // a layer of a layer loop → its unit
  std::vector<decltype(torch::autograd::impl::grad_accumulator(std::declval<const at::Tensor&>()))> accumulators;
  std::shared_ptr<nn::ShardHooks> hooks;
  bool started = false, detached = false;
  // per backward pass
  bool in_backward = false;
  std::vector<bool> ready;
  // Units whose reduction is in flight, oldest first: at most kInflight, so that the float32
  // buffers of a whole model's gradients are never all alive at once.
  std::deque<size_t> inflight;
  static constexpr size_t kInflight = 2;
  std::recursive_mutex m;

  bool sharded_params() const { return opts.stage == 3; }
  int64_t shard_version(const Unit& u) const {
    int64_t v = 0;
    for (size_t k : u.members) v += shards[k]._version();
    return v;
  }
  // Every ZeRO collective is checked across ranks (when the group checks collectives): ranks that
  // ran different numbers of forwards would otherwise pair buffers of different sizes.
  static constexpr bool kCheck = true;

  void gather(size_t ui);
  void mark_stale() {
    for (auto& u : units) u.version = -1;
  }
  // Set (from any thread) when an optimizer stepped the shards: its fused kernels do not advance
  // their versions. The next gather marks every unit stale.
  std::atomic<bool> stepped{false};
  void free_unit(size_t ui);
  void reset_pass();
  void begin_backward();
  void on_ready(size_t i);
  void reduce(size_t ui);
  void complete(size_t ui);
  void finalize();
  nn::Outputs around_forward(nn::Model& model, const std::function<nn::Outputs()>& run);
  at::Tensor around_layer(const torch::nn::Module& layer, const at::Tensor& x, const nn::LayerRun& run);
  std::vector<at::Tensor> regather_in_backward(std::vector<at::Tensor> outs, std::vector<size_t> us);
};

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct UnitsRef : torch::CustomClassHolder {
  std::weak_ptr<Sharded::State> s;
  std::vector<size_t> units;
};

// Identity on a forward's outputs whose backward runs before the backward of what made them:
// there it starts the pass (the end-of-backward callback goes on the outermost graph task) and,
// at stage 3, gathers the units' parameters again.
struct RegatherInBackward : torch::autograd::Function<RegatherInBackward> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const c10::intrusive_ptr<UnitsRef>& ref) {
    ctx->saved_data["ref"] = c10::IValue::make_capsule(ref);
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto ref = c10::static_intrusive_pointer_cast<UnitsRef>(ctx->saved_data["ref"].toCapsule());
    if (auto s = ref->s.lock()) {
      std::lock_guard<std::recursive_mutex> lk(s->m);
      s->begin_backward();
      if (s->sharded_params())
        for (size_t u : ref->units) s->gather(u);
    }
    return {grads[0], at::Tensor()};
  }
};

struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(std::weak_ptr<Sharded::State> s, size_t i) : s_(std::move(s)), i_(i) {}
  variable_list operator()(const variable_list& outputs, const variable_list& /*inputs*/) override {
    if (auto s = s_.lock()) s->on_ready(i_);
    return outputs;
  }
  std::weak_ptr<Sharded::State> s_;
  size_t i_;
};

// Held by the models (strongly: a model whose parameters are released must keep gathering them,
// even after the wrapper is dropped without detach(); detach() takes the hooks off).
struct Hooks : nn::ShardHooks {
  explicit Hooks(std::shared_ptr<Sharded::State> s) : s_(std::move(s)) {}
  nn::Outputs forward(nn::Model& m, const std::function<nn::Outputs()>& run) override { return s_->around_forward(m, run); }
  at::Tensor layer(nn::Model& /*m*/, const torch::nn::Module& layer, const at::Tensor& x, const nn::LayerRun& run) override {
    return s_->around_layer(layer, x, run);
  }
  bool releases_parameters() const override { return s_->sharded_params() && !s_->detached; }
  std::shared_ptr<Sharded::State> s_;
};
}  // namespace

Sharded::Sharded(std::shared_ptr<Group> group, std::vector<at::Tensor> params, std::vector<std::string> names,
                 std::vector<std::shared_ptr<nn::Model>> models, ZeroOptions o)
    : s_(std::make_shared<State>()) {
  auto& s = *s_;
  if (o.stage < 1 || o.stage > 3) throw Error("ERR_INVALID_ARG", "ZeRO stage must be 1, 2 or 3, not " + std::to_string(o.stage));
  s.group = std::move(group);
  s.opts = o;
  s.world = s.group->world();
  s.rank = s.group->rank();
  s.params = std::move(params);
  s.names = std::move(names);
  s.models = std::move(models);
  const size_t n = s.params.size();
  std::unordered_map<const c10::TensorImpl*, size_t> index;
  for (size_t i = 0; i < n; ++i) {
    const auto& p = s.params[i];
    if (!p.is_floating_point()) throw Error("ERR_INVALID_ARG", "ZeRO: parameter '" + s.names[i] + "' is not floating-point");
    index[p.unsafeGetTensorImpl()] = i;
    State::Piece pc;
    pc.rows = rows_of(p);
    pc.R = (pc.rows + s.world - 1) / s.world;
    pc.row_numel = pc.rows ? p.numel() / pc.rows : 0;
    pc.shard_shape = p.dim() == 0 ? std::vector<int64_t>{1} : p.sizes().vec();
    pc.shard_shape[0] = pc.R;
    s.pieces.push_back(pc);
    auto dev = o.offload ? at::Device(at::kCPU) : p.device();
    s.shards.push_back(at::zeros(pc.shard_shape, at::TensorOptions().dtype(at::kFloat).device(dev)).requires_grad_(true));
  }
  // Units: each layer of a model's layer loop, then the rest of each model, then whatever no
  // model holds (kept whole).
  s.unit_of.assign(n, SIZE_MAX);
  // A unit's parameters share a dtype and a device (one buffer each way): mixed ones make a unit each.
  auto add_units = [&](const std::vector<at::Tensor>& ps, bool persistent) -> std::vector<size_t> {
    std::vector<size_t> made;
    std::vector<std::pair<std::pair<at::ScalarType, at::Device>, size_t>> open;  // (dtype, device) → unit
    for (const auto& p : ps) {
      auto it = index.find(p.unsafeGetTensorImpl());
      if (it == index.end() || s.unit_of[it->second] != SIZE_MAX) continue;
      size_t k = it->second;
      auto key = std::make_pair(p.scalar_type(), p.device());
      size_t ui = SIZE_MAX;
      for (auto& [kk, u] : open)
        if (kk == key) ui = u;
      if (ui == SIZE_MAX) {
        ui = s.units.size();
        s.units.emplace_back();
        s.units.back().persistent = persistent;
        open.emplace_back(key, ui);
        made.push_back(ui);
      }
      auto& u = s.units[ui];
      s.unit_of[k] = ui;
      u.offsets.push_back(u.numel);
      u.numel += s.pieces[k].shard_numel();
      u.members.push_back(k);
    }
    return made;
  };
  std::vector<std::vector<size_t>> layer_units(s.models.size());
  for (size_t mi = 0; mi < s.models.size(); ++mi) {
    auto& m = *s.models[mi];
    if (!m.shards_layers()) continue;
    for (const auto& item : m.named_modules("", false)) {
      const std::string& key = item.key();
      if (key != "layers" && !(key.size() > 7 && key.compare(key.size() - 7, 7, ".layers") == 0)) continue;
      for (const auto& child : item.value()->named_children()) {
        auto us = add_units(child.value()->parameters(), false);
        if (us.empty()) continue;
        s.layer_unit[child.value().get()] = us;
        layer_units[mi].insert(layer_units[mi].end(), us.begin(), us.end());
      }
    }
  }
  // The rest of a model with a layer loop: a unit per module beside the loop (the embedding, the
  // final norm, the LM head), so that each is reduced as soon as its own gradients are ready (an
  // LM head's first in backward, the embedding's last) rather than all at the end together.
  std::function<void(const torch::nn::Module&)> beside_layers = [&](const torch::nn::Module& m) {
    for (const auto& child : m.named_children()) {
      bool loop = false, rest = false;
      for (const auto& p : child.value()->parameters()) {
        auto it = index.find(p.unsafeGetTensorImpl());
        if (it == index.end()) continue;
        (s.unit_of[it->second] == SIZE_MAX ? rest : loop) = true;
      }
      if (loop && rest) beside_layers(*child.value());
      else if (rest) add_units(child.value()->parameters(), false);
    }
    add_units(m.parameters(/*recurse=*/false), false);
  };
  for (size_t mi = 0; mi < s.models.size(); ++mi)
    if (!layer_units[mi].empty()) beside_layers(*s.models[mi]);
  for (size_t mi = 0; mi < s.models.size(); ++mi) add_units(s.models[mi]->parameters(), false);
  add_units(s.params, true);  // what no model holds: kept whole at stage 3
  // A unit's name: its parameters' common dotted prefix (a lone parameter's own name).
  for (auto& u : s.units) {
    std::string name = s.names[u.members[0]];
    if (u.members.size() > 1) {
      for (size_t k : u.members) {
        const std::string& n = s.names[k];
        size_t i = 0;
        while (i < name.size() && i < n.size() && name[i] == n[i]) ++i;
        name.resize(i);
      }
      auto dot = name.rfind('.');
      name = dot == std::string::npos ? std::string() : name.substr(0, dot);
    }
    u.name = u.persistent ? "parameters outside native models" : name.empty() ? "(top level)" : name;
  }
  for (size_t mi = 0; mi < s.models.size(); ++mi) {
    std::unordered_set<size_t> mine;
    for (const auto& p : s.models[mi]->parameters()) {
      auto it = index.find(p.unsafeGetTensorImpl());
      if (it != index.end()) mine.insert(s.unit_of[it->second]);
    }
    std::vector<size_t> list;
    for (size_t u = 0; u < s.units.size(); ++u)
      if (mine.count(u) && std::find(layer_units[mi].begin(), layer_units[mi].end(), u) == layer_units[mi].end()) list.push_back(u);
    s.forward_units[s.models[mi].get()] = list;
  }
  s.ready.assign(n, false);
}

Sharded::~Sharded() = default;

std::vector<at::Tensor> Sharded::shards() const { return s_->shards; }

void Sharded::start() {
  auto& s = *s_;
  std::lock_guard<std::recursive_mutex> lk(s.m);
  if (s.started) return;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < s.params.size(); ++i) {
    const auto& pc = s.pieces[i];
    auto flat = s.params[i].detach().reshape({pc.rows, pc.row_numel});
    int64_t lo = std::min<int64_t>(s.rank * pc.R, pc.rows), hi = std::min<int64_t>((s.rank + 1) * pc.R, pc.rows);
    auto dst = s.shards[i].detach().view({pc.R, pc.row_numel});
    if (hi > lo) dst.narrow(0, 0, hi - lo).copy_(flat.narrow(0, lo, hi - lo));
    // Stage 3 frees and re-allocates each parameter's storage: give each one of its own (a
    // parameter may share a memory-mapped checkpoint's storage or another parameter's).
    if (s.sharded_params()) {
      const auto& p = s.params[i];
      bool own = p.storage().use_count() == 1 && p.storage_offset() == 0 && p.is_contiguous() &&
                 p.storage().nbytes() == static_cast<size_t>(p.numel()) * p.element_size();
      if (!own) p.set_data(p.detach().clone(at::MemoryFormat::Contiguous));
    }
  }
  for (auto& u : s.units) u.version = s.shard_version(u);
  std::weak_ptr<State> weak = s_;
  for (size_t k = 0; k < s.params.size(); ++k) {
    auto acc = torch::autograd::impl::grad_accumulator(s.params[k]);
    TORCH_CHECK(acc, "ZeRO: parameter '", s.names[k], "' has no gradient accumulator (is it a leaf that requires grad?)");
    acc->add_post_hook(std::make_unique<ReadyHook>(weak, k));
    s.accumulators.push_back(std::move(acc));
  }
  s.hooks = std::make_shared<Hooks>(s_);
  for (auto& m : s.models) m->shard_hooks = s.hooks;
  if (s.sharded_params()) {
    for (size_t u = 0; u < s.units.size(); ++u) s.free_unit(u);
    // The whole parameters' memory goes back to the system (emotorch's CPU cache would keep the
    // freed blocks for reuse, up to the high-water mark the whole model set).
    memory::empty_cpu_cache();
  }
  s.started = true;
}

void Sharded::State::gather(size_t ui) {
  if (stepped.exchange(false)) mark_stale();
  auto& u = units[ui];
  int64_t v = shard_version(u);
  if (u.whole && v == u.version) return;
  at::NoGradGuard no_grad;
  const auto& p0 = params[u.members[0]];
  auto send = at::empty({u.numel}, p0.options().requires_grad(false));
  for (size_t j = 0; j < u.members.size(); ++j) {
    size_t k = u.members[j];
    send.narrow(0, u.offsets[j], pieces[k].shard_numel()).copy_(shards[k].detach().reshape({-1}));
  }
  auto recv = at::empty({int64_t(world) * u.numel}, send.options());
  auto work = group->all_gather_flat(send, recv, "ZeRO parameters of '" + u.name + "'", int64_t(ui), kCheck);
  group->finish(work);
  auto all = recv.view({world, u.numel});
  for (size_t j = 0; j < u.members.size(); ++j) {
    size_t k = u.members[j];
    const auto& pc = pieces[k];
    alloc_storage(params[k]);
    // Written through a tensor of its own version counter: autograd's saved parameter (this
    // storage) is refilled, not modified.
    auto dst = params[k].variable_data().view({pc.rows, pc.row_numel});
    auto src = all.narrow(1, u.offsets[j], pc.shard_numel()).reshape({int64_t(world) * pc.R, pc.row_numel}).narrow(0, 0, pc.rows);
    dst.copy_(src);
  }
  u.whole = true;
  u.version = v;
}

void Sharded::State::free_unit(size_t ui) {
  auto& u = units[ui];
  if (!sharded_params() || u.persistent || !u.whole) return;
  for (size_t k : u.members) free_storage(params[k]);
  u.whole = false;
}

void Sharded::State::reset_pass() {
  ready.assign(params.size(), false);
  inflight.clear();
  for (auto& u : units) {
    u.pending = u.members.size();
    u.reduced = false;
    if (u.work.work) u.work = Group::Pending();  // a failed pass's collective: its buffers are dropped
    u.send = at::Tensor();
    u.recv = at::Tensor();
  }
  in_backward = false;
}

void Sharded::mark_stepped() { s_->stepped.store(true); }

void Sharded::prepare() {
  auto& s = *s_;
  std::lock_guard<std::recursive_mutex> lk(s.m);
  s.reset_pass();
  at::NoGradGuard no_grad;
  if (s.opts.stage == 1)  // the last pass's averaged gradients: the next backward starts from none
    for (auto& p : s.params) p.mutable_grad() = at::Tensor();
  for (size_t u = 0; u < s.units.size(); ++u)
    if (!s.sharded_params() || s.units[u].persistent) s.gather(u);
}

void Sharded::State::begin_backward() {
  if (in_backward) return;
  in_backward = true;
  std::weak_ptr<State> weak = weak_from_this();
  torch::autograd::Engine::get_default_engine().queue_callback([weak] {
    if (auto s = weak.lock()) s->finalize();
  });
}

void Sharded::State::on_ready(size_t i) {
  std::lock_guard<std::recursive_mutex> lk(m);
  if (detached) return;
  begin_backward();
  if (ready[i]) return;
  ready[i] = true;
  auto& u = units[unit_of[i]];
  if (--u.pending == 0) reduce(unit_of[i]);
}

// Divides the unit's gradients by world into one buffer (rank r's rows at row r), launches its
// reduction, frees the whole gradients (stages 2 and 3) and, at stage 3, the parameters.
void Sharded::State::reduce(size_t ui) {
  auto& u = units[ui];
  if (u.reduced) return;
  at::NoGradGuard no_grad;
  const auto& p0 = params[u.members[0]];
  u.send = at::empty({int64_t(world), u.numel}, p0.options().dtype(at::kFloat).requires_grad(false));
  for (size_t j = 0; j < u.members.size(); ++j) {
    size_t k = u.members[j];
    const auto& pc = pieces[k];
    const at::Tensor& g = params[k].grad();
    at::Tensor rows = g.defined() ? g.reshape({pc.rows, pc.row_numel}) : at::Tensor();
    for (int r = 0; r < world; ++r) {  // rank r's rows, padded with zeros
      auto dst = u.send.select(0, r).narrow(0, u.offsets[j], pc.shard_numel()).view({pc.R, pc.row_numel});
      int64_t lo = std::min<int64_t>(r * pc.R, pc.rows), hi = std::min<int64_t>((r + 1) * pc.R, pc.rows);
      if (hi > lo && rows.defined()) dst.narrow(0, 0, hi - lo).copy_(rows.narrow(0, lo, hi - lo));
      else if (hi > lo) dst.narrow(0, 0, hi - lo).zero_();
      if (pc.R > hi - lo) dst.narrow(0, hi - lo, pc.R - (hi - lo)).zero_();
    }
    if (opts.stage >= 2) params[k].mutable_grad() = at::Tensor();
  }
  u.send.div_(world);  // averaged as DDP does: divide, then sum
  std::string what = "ZeRO gradients of '" + u.name + "'";
  if (opts.stage == 1 || group->backend_name() != "nccl") {
    // Gloo's reduce-scatter is an all-reduce of a clone of its input (ProcessGroupGloo::
    // reduce_scatter_tensor_coalesced): the same all-reduce in place saves the clone, a float32
    // copy of the unit's whole gradients. NCCL reduce-scatters natively.
    u.work = group->all_reduce_flat(u.send, what, int64_t(ui), kCheck);
  } else {
    u.recv = at::empty({u.numel}, u.send.options());
    u.work = group->reduce_scatter_flat(u.send.view({-1}), u.recv, what, int64_t(ui), kCheck);
  }
  u.reduced = true;
  free_unit(ui);
  inflight.push_back(ui);
  // Oldest first: those beyond kInflight (waited for), and those already done (their buffers go now).
  while (!inflight.empty() && (inflight.size() > kInflight || units[inflight.front()].work.work->isCompleted())) {
    size_t oldest = inflight.front();
    inflight.pop_front();
    complete(oldest);
  }
}

// Waits for unit ui's reduction and adds this rank's part to its shards' gradients (stage 1: the
// averaged whole gradients go to .grad, as DDP leaves them); its buffers go.
void Sharded::State::complete(size_t ui) {
  auto& u = units[ui];
  group->finish(u.work);
  u.work = Group::Pending();
  at::NoGradGuard no_grad;
  if (opts.stage >= 2 && !u.recv.defined()) {  // all-reduced in place: this rank's part, alone
    u.recv = u.send.select(0, rank).clone();
    u.send = at::Tensor();
  }
  at::Tensor mine = opts.stage == 1 ? u.send.select(0, rank) : u.recv;
  for (size_t j = 0; j < u.members.size(); ++j) {
    size_t k = u.members[j];
    const auto& pc = pieces[k];
    auto part = mine.narrow(0, u.offsets[j], pc.shard_numel()).view(pc.shard_shape);
    at::Tensor& g = shards[k].mutable_grad();
    if (g.defined()) g.add_(part.to(g.device()));
    else if (opts.stage >= 2 && part.device() == shards[k].device())
      g = part;  // a view: the received buffer is exactly the shards' gradients
    else g = part.to(shards[k].device(), /*non_blocking=*/false, /*copy=*/true);
    if (opts.stage == 1) {
      auto whole = u.send.narrow(1, u.offsets[j], pc.shard_numel()).reshape({int64_t(world) * pc.R, pc.row_numel}).narrow(0, 0, pc.rows);
      params[k].mutable_grad() = whole.view(params[k].sizes()).to(params[k].scalar_type(), /*non_blocking=*/false, /*copy=*/true);
    }
  }
  u.send = at::Tensor();
  u.recv = at::Tensor();
}

void Sharded::State::finalize() {
  std::lock_guard<std::recursive_mutex> lk(m);
  if (!in_backward) return;
  in_backward = false;
  // Parameters that got no gradient take part with zeros (every rank reduces every unit).
  for (size_t ui = 0; ui < units.size(); ++ui)
    if (!units[ui].reduced) reduce(ui);
  while (!inflight.empty()) {
    size_t ui = inflight.front();
    inflight.pop_front();
    complete(ui);
  }
  for (size_t ui = 0; ui < units.size(); ++ui) free_unit(ui);
}

nn::Outputs Sharded::State::around_forward(nn::Model& model, const std::function<nn::Outputs()>& run) {
  std::vector<size_t> us;
  {
    std::lock_guard<std::recursive_mutex> lk(m);
    auto it = forward_units.find(&model);
    if (it != forward_units.end()) us = it->second;
    for (size_t u : us) gather(u);
  }
  nn::Outputs out;
  try {
    out = run();
  } catch (...) {
    std::lock_guard<std::recursive_mutex> lk(m);
    for (size_t u : us) free_unit(u);
    throw;
  }
  std::vector<std::string> keys;
  std::vector<at::Tensor> ts;
  for (auto& [k, t] : out)
    if (t.defined() && t.requires_grad()) keys.push_back(k), ts.push_back(t);
  if (!ts.empty() && at::GradMode::is_enabled()) {
    ts = regather_in_backward(ts, us);
    for (size_t i = 0; i < keys.size(); ++i) out[keys[i]] = ts[i];
  }
  std::lock_guard<std::recursive_mutex> lk(m);
  for (size_t u : us) free_unit(u);
  return out;
}

at::Tensor Sharded::State::around_layer(const torch::nn::Module& layer, const at::Tensor& x, const nn::LayerRun& run) {
  auto it = layer_unit.find(&layer);
  if (it == layer_unit.end()) return run(x);
  const std::vector<size_t>& us = it->second;
  auto release = [&] {
    std::lock_guard<std::recursive_mutex> lk(m);
    for (size_t u : us) free_unit(u);
  };
  {
    std::lock_guard<std::recursive_mutex> lk(m);
    for (size_t u : us) gather(u);
  }
  at::Tensor y;
  try {
    y = run(x);
  } catch (...) {
    release();
    throw;
  }
  if (sharded_params() && y.requires_grad() && at::GradMode::is_enabled()) y = regather_in_backward({y}, us)[0];
  release();
  return y;
}

std::vector<at::Tensor> Sharded::State::regather_in_backward(std::vector<at::Tensor> outs, std::vector<size_t> us) {
  auto ref = c10::make_intrusive<UnitsRef>();
  ref->s = weak_from_this();
  ref->units = std::move(us);
  for (auto& t : outs) t = RegatherInBackward::apply(t, ref);  // each output's backward gathers (once)
  return outs;
}

double Sharded::clip_grad_norm(const std::vector<size_t>& which, double max_norm, double norm_type) {
  auto& s = *s_;
  at::NoGradGuard no_grad;
  bool inf = std::isinf(norm_type);
  double local = 0;
  std::vector<at::Tensor> grads;
  for (size_t i : which) {
    if (i >= s.shards.size()) throw Error("ERR_INVALID_ARG", "ZeRO: no shard " + std::to_string(i));
    const at::Tensor& g = s.shards[i].grad();
    if (!g.defined()) continue;
    grads.push_back(g);
    double n = g.norm(inf ? INFINITY : norm_type).item<double>();
    local = inf ? std::max(local, n) : local + std::pow(n, norm_type);
  }
  auto t = at::full({1}, local, at::TensorOptions().dtype(at::kDouble));
  auto w = s.group->all_reduce(t, inf ? Op::Max : Op::Sum);
  s.group->finish(w);
  double total = inf ? t.item<double>() : std::pow(t.item<double>(), 1.0 / norm_type);
  double coef = max_norm / (total + 1e-6);
  if (coef < 1)
    for (auto& g : grads) g.mul_(coef);
  return total;
}

std::vector<at::Tensor> Sharded::gather_state(bool rank0_only) {
  auto& s = *s_;
  std::lock_guard<std::recursive_mutex> lk(s.m);
  std::vector<at::Tensor> out(s.params.size());
  at::NoGradGuard no_grad;
  for (size_t ui = 0; ui < s.units.size(); ++ui) {
    bool was = s.units[ui].whole;
    s.gather(ui);
    if (!rank0_only || s.rank == 0)
      for (size_t k : s.units[ui].members) out[k] = s.params[k].detach().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
    if (!was) s.free_unit(ui);
  }
  return out;
}

void Sharded::set_shards(const std::vector<size_t>& which, const std::vector<at::Tensor>& values) {
  auto& s = *s_;
  std::lock_guard<std::recursive_mutex> lk(s.m);
  if (which.size() != values.size()) throw Error("ERR_INVALID_ARG", "ZeRO: set_shards needs one tensor per index");
  for (size_t j = 0; j < which.size(); ++j) {
    if (which[j] >= s.shards.size()) throw Error("ERR_INVALID_ARG", "ZeRO: no shard " + std::to_string(which[j]));
    if (values[j].sizes() != s.shards[which[j]].sizes())
      throw Error("ERR_INVALID_ARG", "ZeRO: the shard of '" + s.names[which[j]] + "' has shape " + c10::str(s.shards[which[j]].sizes()) +
                                         ", not " + c10::str(values[j].sizes()));
  }
  at::NoGradGuard no_grad;
  for (size_t j = 0; j < which.size(); ++j) s.shards[which[j]].copy_(values[j]);  // a new version: gathered again before use
}

std::vector<std::pair<std::string, std::vector<size_t>>> Sharded::units() const {
  std::vector<std::pair<std::string, std::vector<size_t>>> out;
  for (const auto& u : s_->units) out.emplace_back(u.name, u.members);
  return out;
}

std::pair<int64_t, int64_t> Sharded::memory() const {
  auto& s = *s_;
  std::lock_guard<std::recursive_mutex> lk(s.m);
  std::unordered_set<const void*> seen;
  auto bytes = [&](const at::Tensor& t) -> int64_t {
    if (!t.defined() || !t.has_storage()) return 0;
    const void* key = t.storage().unsafeGetStorageImpl();
    if (!seen.insert(key).second) return 0;
    return static_cast<int64_t>(t.storage().nbytes());
  };
  int64_t params = 0, grads = 0;
  for (size_t i = 0; i < s.params.size(); ++i) params += bytes(s.params[i]) + bytes(s.shards[i]);
  for (size_t i = 0; i < s.params.size(); ++i) grads += bytes(s.params[i].grad()) + bytes(s.shards[i].grad());
  return {params, grads};
}

void Sharded::detach() {
  auto& s = *s_;
  std::lock_guard<std::recursive_mutex> lk(s.m);
  if (s.detached) return;
  if (s.started) {
    for (size_t u = 0; u < s.units.size(); ++u) {
      s.units[u].persistent = true;
      s.gather(u);
    }
    for (auto& m : s.models)
      if (m->shard_hooks == s.hooks) m->shard_hooks.reset();
    s.hooks.reset();
  }
  s.detached = true;
}

}  // namespace et::distributed
