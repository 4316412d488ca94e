// Optimizers with parameter groups: AdamW (decoupled weight decay, fused kernel where libtorch has
// one) and SGD (momentum, dampening, nesterov, L2 weight decay), plus gradient-norm clipping.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "nn/config.h"

#include <mutex>
#include <string>
#include <vector>

namespace et::nn {

// One parameter group; lib/train/optim.ts holds each optimizer's one defaults table and sends
// every field its kind uses (`from` reads them, requiring each).
struct ParamGroup {
  std::vector<at::Tensor> params;
  double lr = 0, weight_decay = 0;
  double beta1 = 0, beta2 = 0, eps = 0;  // AdamW
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
  struct State { at::Tensor exp_avg, exp_avg_sq, step, momentum_buffer; };
  std::vector<std::vector<State>> state_;
  void adamw(size_t g);
  void sgd(size_t g);
};

// Scales grads in place so that their global norm is at most max_norm; returns the norm before.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm, double norm_type);

}  // namespace et::nn
