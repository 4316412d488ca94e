#include "nn/optim.h"

#include <ATen/MemoryOverlap.h>

#include <map>
#include <torch/version.h>

namespace et::nn {

Optimizer::Optimizer(std::string k, std::vector<ParamGroup> gs) : groups(std::move(gs)), kind(std::move(k)) {
  TORCH_CHECK(kind == "adamw" || kind == "sgd", "unknown optimizer '", kind, "'");
  state_.resize(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) state_[g].resize(groups[g].params.size());
}

ParamGroup ParamGroup::from(const ConfigReader& c, const std::string& kind, std::vector<at::Tensor> params) {
  ParamGroup g;
  g.params = std::move(params);
  g.lr = c.f64("lr");
  g.weight_decay = c.f64("weightDecay");
  if (kind == "adamw") {
    g.beta1 = c.f64("beta1");
    g.beta2 = c.f64("beta2");
    g.eps = c.f64("eps");
  } else {
    g.momentum = c.f64("momentum");
    g.dampening = c.f64("dampening");
    g.nesterov = c.flag("nesterov");
  }
  return g;
}

double Optimizer::clip_grad_norm(double max_norm, double norm_type) {
  std::vector<at::Tensor> all;
  for (const auto& g : groups) all.insert(all.end(), g.params.begin(), g.params.end());
  return nn::clip_grad_norm(all, max_norm, norm_type);
}

void Optimizer::zero_grad() {
  for (auto& grp : groups)
    for (auto& p : grp.params) p.mutable_grad() = at::Tensor();
}

// Every parameter is updated in place: it must be a tensor that owns its elements once
// (not an expanded view), and its gradient must match it.
static void check_param(const at::Tensor& p, size_t g, size_t i) {
  TORCH_CHECK(p.layout() == at::kStrided && at::has_internal_overlap(p) != at::MemOverlap::Yes, "parameter ", i, " of group ", g,
              " is a view whose elements overlap in memory (shape ", p.sizes(), ", strides ", p.strides(),
              "): optimize a contiguous copy (t.contiguous() or t.clone())");
  const auto& grad = p.grad();
  if (!grad.defined()) return;
  TORCH_CHECK(grad.sizes() == p.sizes() && grad.scalar_type() == p.scalar_type() && grad.device() == p.device(),
              "parameter ", i, " of group ", g, ": its grad (", grad.scalar_type(), " ", grad.sizes(), " on ", grad.device(),
              ") does not match it (", p.scalar_type(), " ", p.sizes(), " on ", p.device(), ")");
}

void Optimizer::step() {
  at::NoGradGuard no_grad;
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i = 0; i < groups[g].params.size(); ++i) check_param(groups[g].params[i], g, i);
  for (size_t g = 0; g < groups.size(); ++g) kind == "adamw" ? adamw(g) : sgd(g);
}

void Optimizer::adamw(size_t g) {
  auto& grp = groups[g];
  // Bucket by (device, dtype): the fused kernel wants homogeneous lists.
  struct Bucket { std::vector<at::Tensor> p, grad, m, v, steps; };
  std::map<std::pair<std::string, int>, Bucket> buckets;
  for (size_t i = 0; i < grp.params.size(); ++i) {
    auto& p = grp.params[i];
    const auto& grad = p.grad();
    if (!grad.defined()) continue;
    TORCH_CHECK(!grad.is_sparse(), "AdamW does not support sparse gradients");
    auto& s = state_[g][i];
    if (!s.exp_avg.defined()) {
      s.exp_avg = at::zeros_like(p, at::MemoryFormat::Preserve);
      s.exp_avg_sq = at::zeros_like(p, at::MemoryFormat::Preserve);
      s.step = at::zeros({}, p.options().dtype(at::kFloat));
    }
    // The fused kernel walks p, grad and the moments as flat arrays: only contiguous parameters
    // go there (with a contiguous grad); any other dense layout takes the per-tensor path.
    bool flat = p.is_contiguous();
    auto& b = buckets[{p.device().str() + (flat ? "" : "/strided"), static_cast<int>(p.scalar_type())}];
    b.p.push_back(p);
    b.grad.push_back(flat ? grad.contiguous() : grad);
    b.m.push_back(s.exp_avg);
    b.v.push_back(s.exp_avg_sq);
    b.steps.push_back(s.step);
  }
  for (auto& [key, b] : buckets) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    if (at::isFloatingType(b.p[0].scalar_type()) && b.p[0].is_contiguous()) {
      at::_foreach_add_(b.steps, 1);  // the fused kernel reads the step count, it does not advance it
      at::_fused_adamw_(b.p, b.grad, b.m, b.v, {}, b.steps, grp.lr, grp.beta1, grp.beta2, grp.weight_decay, grp.eps,
                        /*amsgrad=*/false, /*maximize=*/false, std::nullopt, std::nullopt);
      continue;
    }
#endif
    for (size_t i = 0; i < b.p.size(); ++i) {
      b.steps[i].add_(1);
      double step = b.steps[i].item<double>();
      b.p[i].mul_(1 - grp.lr * grp.weight_decay);
      b.m[i].lerp_(b.grad[i], 1 - grp.beta1);
      b.v[i].mul_(grp.beta2).addcmul_(b.grad[i], b.grad[i], 1 - grp.beta2);
      double bc1 = 1 - std::pow(grp.beta1, step), bc2 = 1 - std::pow(grp.beta2, step);
      auto denom = (b.v[i].sqrt() / std::sqrt(bc2)).add_(grp.eps);
      b.p[i].addcdiv_(b.m[i], denom, -grp.lr / bc1);
    }
  }
}

void Optimizer::sgd(size_t g) {
  auto& grp = groups[g];
  for (size_t i = 0; i < grp.params.size(); ++i) {
    auto& p = grp.params[i];
    if (!p.grad().defined()) continue;
    at::Tensor d = p.grad();
    if (grp.weight_decay != 0) d = d.add(p, grp.weight_decay);
    if (grp.momentum != 0) {
      auto& buf = state_[g][i].momentum_buffer;
      if (!buf.defined()) buf = d.clone();
      else buf.mul_(grp.momentum).add_(d, 1 - grp.dampening);
      d = grp.nesterov ? d.add(buf, grp.momentum) : buf;
    }
    p.add_(d, -grp.lr);
  }
}

std::vector<std::pair<std::string, at::Tensor>> Optimizer::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t g = 0; g < state_.size(); ++g)
    for (size_t i = 0; i < state_[g].size(); ++i) {
      const auto& s = state_[g][i];
      auto prefix = std::to_string(g) + "." + std::to_string(i) + ".";
      if (s.exp_avg.defined()) {
        out.emplace_back(prefix + "exp_avg", s.exp_avg);
        out.emplace_back(prefix + "exp_avg_sq", s.exp_avg_sq);
        out.emplace_back(prefix + "step", s.step);
      }
      if (s.momentum_buffer.defined()) out.emplace_back(prefix + "momentum_buffer", s.momentum_buffer);
    }
  return out;
}

void Optimizer::set_state(const std::vector<std::pair<std::string, at::Tensor>>& entries) {
  // Validate everything first so that a bad file changes nothing.
  struct Item { size_t g, i; std::string field; at::Tensor t; };
  std::vector<Item> items;
  for (const auto& [name, t] : entries) {
    size_t g, i;
    char field[32];
    TORCH_CHECK(std::sscanf(name.c_str(), "%zu.%zu.%31s", &g, &i, field) == 3, "optimizer state: bad key '", name, "'");
    TORCH_CHECK(g < groups.size() && i < groups[g].params.size(), "optimizer state: key '", name,
                "' names a parameter this optimizer does not have");
    std::string f(field);
    const auto& p = groups[g].params[i];
    if (f == "step") {
      TORCH_CHECK(t.numel() == 1, "optimizer state: '", name, "' must be a scalar");
    } else if (f == "exp_avg" || f == "exp_avg_sq" || f == "momentum_buffer") {
      TORCH_CHECK(t.sizes() == p.sizes(), "optimizer state: '", name, "' has shape ", t.sizes(), " but the parameter has ", p.sizes());
    } else {
      TORCH_CHECK(false, "optimizer state: unknown field in key '", name, "'");
    }
    items.push_back({g, i, f, t});
  }
  at::NoGradGuard no_grad;
  for (auto& it : items) {
    const auto& p = groups[it.g].params[it.i];
    auto& s = state_[it.g][it.i];
    if (it.field == "step") s.step = it.t.to(p.device(), at::kFloat).reshape({}).clone();
    else {
      auto v = it.t.to(p.device(), p.scalar_type()).clone();
      if (it.field == "exp_avg") s.exp_avg = v;
      else if (it.field == "exp_avg_sq") s.exp_avg_sq = v;
      else s.momentum_buffer = v;
    }
  }
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm, double norm_type) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& g = params[i].grad();
    if (!g.defined()) continue;
    TORCH_CHECK(g.sizes() == params[i].sizes(), "clipGradNorm: parameter ", i, " has shape ", params[i].sizes(),
                " but its grad has shape ", g.sizes());
    grads.push_back(g);
  }
  if (grads.empty()) return 0.0;
  at::Tensor total;
  if (std::isinf(norm_type)) {
    std::vector<at::Tensor> maxes;
    for (auto& g : grads) maxes.push_back(g.abs().max().to(at::kFloat).to(grads[0].device()));
    total = at::stack(maxes).max();
  } else {
    auto norms = at::_foreach_norm(grads, norm_type);
    std::vector<at::Tensor> same;
    for (auto& n : norms) same.push_back(n.to(at::kFloat).to(grads[0].device()));
    total = at::stack(same).norm(norm_type);
  }
  auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) g.mul_(coef.to(g.device(), g.scalar_type()));
  return total.item<double>();
}

}  // namespace et::nn
