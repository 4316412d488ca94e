// Optimizers with parameter groups: AdamW (torch.optim.AdamW's; fused kernel where libtorch has
// one), transformers 4.x's AdamW ("adamw_hf": eps added to sqrt(v) before the bias correction,
// weight decay after the update), apex's FusedAdam ("fused_adam": optional bias correction, AdamW
// or L2 mode) and SGD (momentum, dampening, nesterov, L2 weight decay), plus gradient-norm clipping.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "config.h"

#include <mutex>
#include <string>
#include <vector>

namespace et::nn {

// One parameter group; lib/train/optim.ts holds each optimizer's one defaults table and sends
// every field its kind uses (`from` reads them, requiring each).
struct ParamGroup {
  std::vector<at::Tensor> params;
  double lr = 0, weight_decay = 0;
  double beta1 = 0, beta2 = 0, eps = 0;  // AdamW, adamw_hf, fused_adam
  bool bias_correction = true;           // adamw_hf (correct_bias), fused_adam (bias_correction)
  bool adam_w_mode = true;               // fused_adam: decoupled decay (true) or L2 added to the gradient
  double momentum = 0, dampening = 0;    // SGD
  bool nesterov = false;
  static ParamGroup from(const ConfigReader& c, const std::string& kind, std::vector<at::Tensor> params);
};

class Optimizer {
 public:
  Optimizer(std::string kind, std::vector<ParamGroup> groups);
  void step();
  void zero_grad();
  // Per-parameter state as named tensors ("g.i.exp_avg", "g.i.exp_avg_sq", "g.i.step",
  // "g.i.momentum_buffer"); set_state checks names and shapes before changing anything.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void set_state(const std::vector<std::pair<std::string, at::Tensor>>& entries);
  // clip_grad_norm over every parameter of every group.
  double clip_grad_norm(double max_norm, double norm_type);
  std::vector<ParamGroup> groups;
  const std::string kind;
  std::mutex mutex;

 private:
  struct State {
    at::Tensor exp_avg, exp_avg_sq, step, momentum_buffer;
  };
  std::vector<std::vector<State>> state_;
  void adamw(size_t g);
  void adamw_hf(size_t g);
  void fused_adam(size_t g);
  // The moments of parameter i of group g, created (zeros, step 0) on first use; `dtype` is theirs.
  State& moments(size_t g, size_t i, at::ScalarType dtype);
  void sgd(size_t g);
};

// Scales grads in place so that their global norm is at most max_norm; returns the norm before.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm, double norm_type);

}  // namespace et::nn
