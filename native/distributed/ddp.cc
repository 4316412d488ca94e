// DDP gradient buckets over autograd hooks. See ddp.h.
#include "distributed/ddp.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <mutex>

namespace et::distributed {

struct GradReducer::State : std::enable_shared_from_this<GradReducer::State> {
  std::shared_ptr<Group> group;
  std::vector<at::Tensor> params;
  std::vector<std::string> names;
  DdpOptions opts;
  std::atomic<bool> sync{true};
  struct Bucket {
    std::vector<size_t> members;  // parameter indices
    std::vector<int64_t> offsets;
    at::Tensor flat;
    size_t pending = 0;
    bool launched = false;
    Group::Pending work;
  };
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of, slot_of;
  // Per backward pass:
  bool in_backward = false;
  std::vector<bool> ready;
  size_t next_launch = 0;
  // Autograd: each parameter's grad accumulator (kept alive) and our hook's key on it. The pointer
  // type is grad_accumulator's own: std::shared_ptr up to libtorch 2.12, c10::intrusive_ptr after.
  std::vector<decltype(torch::autograd::impl::grad_accumulator(std::declval<const at::Tensor&>()))> accumulators;
  std::mutex m;

  void reset_pass();
  void on_ready(size_t i);
  void fill(size_t i);
  void launch_ready();
  void launch(size_t b);
  void finalize();
};

namespace {
// Calls back into the reducer after autograd accumulated a parameter's gradient.
struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(std::weak_ptr<GradReducer::State> s, size_t i) : s_(std::move(s)), i_(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto s = s_.lock()) s->on_ready(i_);
    return outputs;
  }
  std::weak_ptr<GradReducer::State> s_;
  size_t i_;
};
}  // namespace

GradReducer::GradReducer(std::shared_ptr<Group> group, std::vector<at::Tensor> params, std::vector<std::string> names, DdpOptions o)
    : s_(std::make_shared<State>()) {
  auto& s = *s_;
  s.group = std::move(group);
  s.params = std::move(params);
  s.names = std::move(names);
  s.opts = o;
  const size_t n = s.params.size();
  s.bucket_of.assign(n, 0);
  s.slot_of.assign(n, 0);
  // Buckets over the parameters in reverse order (roughly the order backward produces their
  // gradients, as torch's DDP), closed at the size cap or when dtype/device change.
  State::Bucket cur;
  int64_t cur_bytes = 0, numel = 0;
  auto close = [&] {
    if (cur.members.empty()) return;
    const auto& p0 = s.params[cur.members[0]];
    cur.flat = at::zeros({numel}, p0.options().requires_grad(false));
    s.buckets.push_back(std::move(cur));
    cur = State::Bucket();
    cur_bytes = numel = 0;
  };
  for (size_t k = n; k-- > 0;) {
    const auto& p = s.params[k];
    if (!cur.members.empty()) {
      const auto& p0 = s.params[cur.members[0]];
      int64_t cap = s.buckets.empty() ? o.first_bucket_cap_bytes : o.bucket_cap_bytes;
      if (p.scalar_type() != p0.scalar_type() || p.device() != p0.device() || cur_bytes + int64_t(p.nbytes()) > cap) close();
    }
    s.bucket_of[k] = s.buckets.size();
    s.slot_of[k] = cur.members.size();
    cur.members.push_back(k);
    cur.offsets.push_back(numel);
    numel += p.numel();
    cur_bytes += p.nbytes();
  }
  close();
  // Hooks on the grad accumulators (autograd keeps them weakly: hold them).
  std::weak_ptr<State> weak = s_;
  for (size_t k = 0; k < n; ++k) {
    auto acc = torch::autograd::impl::grad_accumulator(s.params[k]);
    TORCH_CHECK(acc, "DistributedDataParallel: parameter '", s.names[k],
                "' has no gradient accumulator (is it a leaf that requires grad?)");
    acc->add_post_hook(std::make_unique<ReadyHook>(weak, k));
    s.accumulators.push_back(std::move(acc));
  }
}

GradReducer::~GradReducer() = default;

// The hooks hold the state weakly: without it they do nothing. (They are not removed from the
// accumulators here, which a backward pass on the compute thread may be running; an accumulator
// and its hooks go when autograd and this state both let go of it.)
void GradReducer::detach() { s_.reset(); }

void GradReducer::prepare(bool sync) {
  if (!s_) return;
  std::lock_guard<std::mutex> lk(s_->m);
  s_->sync.store(sync);
  s_->in_backward = false;
  s_->reset_pass();
}

// A fresh pass (under m). A bucket whose all-reduce a failed pass launched and never waited for
// gets a new buffer: that collective may still be writing into the old one.
void GradReducer::State::reset_pass() {
  ready.assign(params.size(), false);
  next_launch = 0;
  for (auto& b : buckets) {
    b.pending = b.members.size();
    if (b.work.work) {
      b.flat = at::zeros_like(b.flat);
      b.work = Group::Pending();
    }
    b.launched = false;
  }
}

std::vector<std::vector<size_t>> GradReducer::buckets() const {
  std::vector<std::vector<size_t>> out;
  if (!s_) return out;
  for (const auto& b : s_->buckets) out.push_back(b.members);
  return out;
}

void GradReducer::State::on_ready(size_t i) {
  if (!sync.load()) return;
  std::lock_guard<std::mutex> lk(m);
  if (!in_backward) {
    in_backward = true;
    // Usually already done by prepare() (DDP.forward); again here for a backward without a
    // forward of its own (a second backward through a retained graph).
    reset_pass();
    // Runs once this backward pass is over, on the thread that ran it.
    std::weak_ptr<State> weak = weak_from_this();
    torch::autograd::Engine::get_default_engine().queue_callback([weak] {
      if (auto s = weak.lock()) s->finalize();
    });
  }
  if (ready[i]) return;  // a parameter used twice in one graph is accumulated once by autograd
  fill(i);
  launch_ready();
}

// Copies parameter i's gradient (zeros where it has none) into its bucket.
void GradReducer::State::fill(size_t i) {
  ready[i] = true;
  auto& b = buckets[bucket_of[i]];
  const at::Tensor& g = params[i].grad();
  at::NoGradGuard no_grad;
  auto dst = b.flat.narrow(0, b.offsets[slot_of[i]], params[i].numel());
  if (g.defined()) dst.view(params[i].sizes()).copy_(g);
  else dst.zero_();
  --b.pending;
}

void GradReducer::State::launch_ready() {
  while (next_launch < buckets.size() && buckets[next_launch].pending == 0) launch(next_launch++);
}

void GradReducer::State::launch(size_t bi) {
  auto& b = buckets[bi];
  at::NoGradGuard no_grad;
  b.flat.div_(group->world());  // averaged as torch's DDP does: divide, then sum
  // Only the first bucket of a pass is checked across ranks (with the number of buckets): the
  // others follow from the model, which every rank wrapped identically (verified at wrap time).
  b.work = group->all_reduce_flat(b.flat, "DDP gradient bucket", static_cast<int64_t>(bi), bi == 0, static_cast<int64_t>(buckets.size()));
  b.launched = true;
}

void GradReducer::State::finalize() {
  std::unique_lock<std::mutex> lk(m);
  if (!in_backward) return;
  in_backward = false;
  std::vector<size_t> unused;
  for (size_t k = 0; k < params.size(); ++k)
    if (!ready[k]) unused.push_back(k);
  at::Tensor used_anywhere;
  if (!unused.empty()) {
    if (!opts.find_unused) {
      std::string list;
      for (size_t j = 0; j < unused.size() && j < 20; ++j) list += (j ? ", " : "") + names[unused[j]];
      if (unused.size() > 20) list += ", … (" + std::to_string(unused.size()) + " in all)";
      // Buckets already launched are waited for; the others were never issued here, while a rank
      // that used these parameters issues them: the group may be out of step, so it is marked
      // broken (later collectives fail at once, naming this, instead of pairing wrongly).
      for (auto& b : buckets)
        if (b.launched) group->finish(b.work);
      group->mark_broken("DDP backward on rank " + std::to_string(group->rank()) + " found parameters with no gradient (" + list + ")");
      throw Error("ERR_DIST_UNUSED", "DistributedDataParallel: these parameters received no gradient in this backward pass: " + list +
                                         ". Pass { findUnusedParameters: true } if some parameters are not used in every step, or freeze "
                                         "them (requiresGrad = false) before wrapping");
    }
    // Unused here: the bucket carries the gradient as it is (zeros where there is none), as
    // torch's DDP does.
    for (size_t k : unused) fill(k);
    launch_ready();
  }
  if (opts.find_unused) {
    // Which parameters were used on some rank: only those get the averaged gradient written back.
    used_anywhere = at::ones({int64_t(params.size())}, at::kInt);
    auto u = used_anywhere.accessor<int, 1>();
    for (size_t k : unused) u[k] = 0;
  }
  Group::Pending used_work;
  if (used_anywhere.defined()) used_work = group->all_reduce_flat(used_anywhere, "DDP used-parameter map");
  for (auto& b : buckets) group->finish(b.work);
  if (used_anywhere.defined()) group->finish(used_work);
  at::NoGradGuard no_grad;
  auto used = used_anywhere.defined() ? used_anywhere.accessor<int, 1>() : at::TensorAccessor<int, 1>(nullptr, nullptr, nullptr);
  for (auto& b : buckets) {
    for (size_t j = 0; j < b.members.size(); ++j) {
      size_t k = b.members[j];
      if (used_anywhere.defined() && used[k] == 0) continue;  // no rank used it: leave its grad alone
      auto src = b.flat.narrow(0, b.offsets[j], params[k].numel()).view(params[k].sizes());
      at::Tensor& g = params[k].mutable_grad();
      if (g.defined()) g.copy_(src);
      else g = src.clone();
    }
  }
}

}  // namespace et::distributed
