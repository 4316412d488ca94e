// Base of every emotorch model: a torch::nn::Module with one positional forward over tensors.
// Undefined tensors stand for "not given" (optional inputs and outputs).
#pragma once
#include <torch/nn.h>

#include "config.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <optional>
#include <vector>

namespace et::nn {

using Tensors = std::vector<at::Tensor>;

struct Model : torch::nn::Module {
  virtual Tensors forward(const Tensors& inputs) = 0;
  // HF's gradient_checkpointing: while training with autograd on, a model that supports it runs
  // its layers through nn::checkpoint (native/blocks/checkpoint.h), recomputing them in backward.
  bool gradient_checkpointing = false;
  virtual bool supports_gradient_checkpointing() const { return false; }
  // Whether layers fed x should be checkpointed now: on, training, autograd on, and a gradient to
  // compute (x or a parameter needs one; a frozen tower on constant input is run plainly).
  bool recompute_layers(const at::Tensor& x) const {
    if (!gradient_checkpointing || !is_training() || !at::GradMode::is_enabled()) return false;
    if (x.requires_grad()) return true;
    for (const auto& p : parameters()) if (p.requires_grad()) return true;
    return false;
  }
};

// Copies each source into its destination (dtype and device converted) without recording autograd.
void copy_state(const Tensors& dst, const Tensors& src);

// Makes each source the data of its destination (as PyTorch's load_state_dict(assign=True)): a
// floating source converted to `dtype` (or the destination's own dtype when none is given) and
// to the destination's device, else used as it is, storage shared. The destination's old storage
// is released. No autograd is recorded; requires_grad stays the destination's.
void assign_state(const Tensors& dst, const Tensors& src, std::optional<at::ScalarType> dtype);

// While one lives, this thread builds models for a checkpoint: the random initializers (uniform_,
// normal_, bernoulli_, …) leave their tensors untouched, so a parameter the checkpoint will replace
// is never written (its pages are never faulted in) and the RNG is not consumed. Deterministic
// fills (LayerNorm's ones) still run. The mechanism is libtorch's DeferredInit dispatch key,
// included in the thread-local key set, with a fallthrough for every other op.
struct SkipInitGuard {
  c10::impl::IncludeDispatchKeyGuard include{c10::DispatchKey::DeferredInit};
};

}  // namespace et::nn
