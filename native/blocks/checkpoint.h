// Activation (gradient) checkpointing: a layer's activations are not kept for backward; it runs
// again in backward, as torch.utils.checkpoint (reentrant) does for HF's gradient_checkpointing.
#pragma once
#include <ATen/ATen.h>

#include <functional>

namespace et::nn {

using LayerFn = std::function<at::Tensor(const at::Tensor&)>;

// fn(x) with only x kept: fn runs without autograd now and again with it in backward, the default
// generator of x's device restored to its state here so dropout draws the same masks. Gradients
// reach x and the parameters fn uses (as a plain call would); tensors fn captures get none, so it
// must capture only constants (masks, rotary tables). x that needs no gradient is treated as if
// it did (HF's enable_input_require_grads), so that the layer's own parameters still get theirs.
at::Tensor checkpoint(LayerFn fn, const at::Tensor& x);

}  // namespace et::nn
