// Activation functions by the names HF configs give them (hidden_act, activation_function …):
// relu, gelu, gelu_tanh, quick_gelu, tanh, silu, sigmoid, identity; and the same in place on a
// temporary where the activation has an in-place kernel.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace et::nn {

at::Tensor activate(const at::Tensor& x, const std::string& name);
// activate on a temporary of the caller's own (a layer's fresh output that nothing else holds):
// with no autograd graph to record, in place where the activation has an in-place kernel (no
// second tensor of the FFN's width written and read back).
at::Tensor activate_temp(at::Tensor x, const std::string& name);

}  // namespace et::nn
