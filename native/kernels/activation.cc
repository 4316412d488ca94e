#include "kernels/activation.h"

#include <ATen/core/grad_mode.h>

namespace et::nn {

at::Tensor activate(const at::Tensor& x, const std::string& name) {
  if (name == "relu") return at::relu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_tanh") return at::gelu(x, "tanh");
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (name == "tanh") return at::tanh(x);
  if (name == "silu") return at::silu(x);
  if (name == "sigmoid") return at::sigmoid(x);
  if (name == "identity") return x;
  TORCH_CHECK(false, "unknown activation '", name, "'");
}

at::Tensor activate_temp(at::Tensor x, const std::string& name) {
  if (at::GradMode::is_enabled() && x.requires_grad()) return activate(x, name);
  if (name == "gelu") return at::gelu_(x);
  if (name == "gelu_tanh") return at::gelu_(x, "tanh");
  if (name == "relu") return at::relu_(x);
  if (name == "silu") return at::silu_(x);
  if (name == "tanh") return at::tanh_(x);
  if (name == "sigmoid") return at::sigmoid_(x);
  return activate(x, name);
}

}  // namespace et::nn
