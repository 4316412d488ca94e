#include "train/optim.h"

#include <ATen/MemoryOverlap.h>

#include <torch/version.h>
#include <map>

namespace et::nn {

Optimizer::Optimizer(std::string k, std::vector<ParamGroup> gs) : groups(std::move(gs)), kind(std::move(k)) {
  TORCH_CHECK(kind == "adamw" || kind == "adamw_hf" || kind == "fused_adam" || kind == "sgd", "unknown optimizer '", kind, "'");
  state_.resize(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) state_[g].resize(groups[g].params.size());
}

ParamGroup ParamGroup::from(const ConfigReader& c, const std::string& kind, std::vector<at::Tensor> params) {
  ParamGroup g;
  g.params = std::move(params);
  g.lr = c.f64("lr");
  g.weight_decay = c.f64("weightDecay");
  if (kind == "adamw" || kind == "adamw_hf" || kind == "fused_adam") {
    g.beta1 = c.f64("beta1");
    g.beta2 = c.f64("beta2");
    g.eps = c.f64("eps");
    if (kind != "adamw") g.bias_correction = c.flag("biasCorrection");
    if (kind == "fused_adam") g.adam_w_mode = c.flag("adamWMode");
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
  TORCH_CHECK(grad.sizes() == p.sizes() && grad.scalar_type() == p.scalar_type() && grad.device() == p.device(), "parameter ", i,
              " of group ", g, ": its grad (", grad.scalar_type(), " ", grad.sizes(), " on ", grad.device(), ") does not match it (",
              p.scalar_type(), " ", p.sizes(), " on ", p.device(), ")");
}

void Optimizer::step() {
  at::NoGradGuard no_grad;
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i = 0; i < groups[g].params.size(); ++i) check_param(groups[g].params[i], g, i);
  for (size_t g = 0; g < groups.size(); ++g) {
    if (kind == "adamw") adamw(g);
    else if (kind == "adamw_hf") adamw_hf(g);
    else if (kind == "fused_adam") fused_adam(g);
    else sgd(g);
  }
}

Optimizer::State& Optimizer::moments(size_t g, size_t i, at::ScalarType dtype) {
  auto& s = state_[g][i];
  if (!s.exp_avg.defined()) {
    const auto& p = groups[g].params[i];
    s.exp_avg = at::zeros_like(p, p.options().dtype(dtype), at::MemoryFormat::Preserve);
    s.exp_avg_sq = at::zeros_like(p, p.options().dtype(dtype), at::MemoryFormat::Preserve);
    s.step = at::zeros({}, p.options().dtype(at::kFloat));
  }
  return s;
}

// transformers 4.x's AdamW (optimization.py, `AdamW.step`), op for op in the parameter's dtype:
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  denom = √v + ε   (ε before the bias correction)
//   p −= lr·√(1−β2^t)/(1−β1^t) · m/denom   (lr alone without correct_bias)
//   p −= lr·wd·p   (after the update, on the updated p; only when wd > 0)
void Optimizer::adamw_hf(size_t g) {
  auto& grp = groups[g];
  for (size_t i = 0; i < grp.params.size(); ++i) {
    auto& p = grp.params[i];
    const auto& grad = p.grad();
    if (!grad.defined()) continue;
    TORCH_CHECK(!grad.is_sparse(), "AdamW (adamw_hf) does not support sparse gradients");
    auto& s = moments(g, i, p.scalar_type());
    s.step.add_(1);
    double step = s.step.item<double>();
    s.exp_avg.mul_(grp.beta1).add_(grad, 1.0 - grp.beta1);
    s.exp_avg_sq.mul_(grp.beta2).addcmul_(grad, grad, 1.0 - grp.beta2);
    auto denom = s.exp_avg_sq.sqrt().add_(grp.eps);
    double step_size = grp.lr;
    if (grp.bias_correction) step_size *= std::sqrt(1.0 - std::pow(grp.beta2, step)) / (1.0 - std::pow(grp.beta1, step));
    p.addcdiv_(s.exp_avg, denom, -step_size);
    if (grp.weight_decay > 0) p.add_(p, -grp.lr * grp.weight_decay);
  }
}

// apex's FusedAdam (apex/optimizers/fused_adam.py, csrc/multi_tensor_adam.cu `AdamFunctor`): the
// moments in float32, the math in float32 (p, g read as float), the result cast back to p's dtype:
//   L2 mode: g += wd·p first.  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   denom = √(v/bc2) + ε;  update = (m/bc1)/denom (+ wd·p in AdamW mode, the p before the step)
//   p −= lr·update;  bc1 = 1−β1^t, bc2 = 1−β2^t with bias_correction, else 1.
// apex counts t per group (every step() call); here per parameter (the same unless a parameter
// goes without a gradient for a step, and only with bias correction).
void Optimizer::fused_adam(size_t g) {
  auto& grp = groups[g];
  for (size_t i = 0; i < grp.params.size(); ++i) {
    auto& p = grp.params[i];
    const auto& grad = p.grad();
    if (!grad.defined()) continue;
    TORCH_CHECK(!grad.is_sparse(), "FusedAdam does not support sparse gradients");
    bool wide = p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble;
    auto& s = moments(g, i, wide ? p.scalar_type() : at::kFloat);
    s.step.add_(1);
    double step = s.step.item<double>();
    at::Tensor pf = wide ? p : p.to(at::kFloat);
    at::Tensor gf = wide ? grad : grad.to(at::kFloat);
    if (!grp.adam_w_mode && grp.weight_decay != 0) gf = gf.add(pf, grp.weight_decay);
    s.exp_avg.mul_(grp.beta1).add_(gf, 1.0 - grp.beta1);
    s.exp_avg_sq.mul_(grp.beta2).addcmul_(gf, gf, 1.0 - grp.beta2);
    double bc1 = 1.0, bc2 = 1.0;
    if (grp.bias_correction) bc1 = 1.0 - std::pow(grp.beta1, step), bc2 = 1.0 - std::pow(grp.beta2, step);
    auto denom = (grp.bias_correction ? s.exp_avg_sq.div(bc2).sqrt_() : s.exp_avg_sq.sqrt()).add_(grp.eps);
    auto update = (grp.bias_correction ? s.exp_avg.div(bc1) : s.exp_avg).div(denom);
    if (grp.adam_w_mode && grp.weight_decay != 0) update.add_(pf, grp.weight_decay);
    if (wide) p.add_(update, -grp.lr);
    else p.copy_(pf.add_(update, -grp.lr));
  }
}

void Optimizer::adamw(size_t g) {
  auto& grp = groups[g];
  // Bucket by (device, dtype): the fused kernel wants homogeneous lists.
  struct Bucket {
    std::vector<at::Tensor> p, grad, m, v, steps;
  };
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
  struct Item {
    size_t g, i;
    std::string field;
    at::Tensor t;
  };
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
      // FusedAdam keeps the moments of half-precision parameters in float32, as apex
      bool wide = p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble;
      auto dtype = kind == "fused_adam" && it.field != "momentum_buffer" && !wide ? at::kFloat : p.scalar_type();
      auto v = it.t.to(p.device(), dtype).clone();
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
    TORCH_CHECK(g.sizes() == params[i].sizes(), "clipGradNorm: parameter ", i, " has shape ", params[i].sizes(), " but its grad has shape ",
                g.sizes());
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
