// Base of every emotorch model: a torch::nn::Module with one positional forward over tensors.
// Undefined tensors stand for "not given" (optional inputs and outputs).
#pragma once
#include <torch/nn.h>

#include "nn/config.h"

#include <vector>

namespace et::nn {

using Tensors = std::vector<at::Tensor>;

struct Model : torch::nn::Module {
  virtual Tensors forward(const Tensors& inputs) = 0;
};

// Copies each source into its destination (dtype and device converted) without recording autograd.
void copy_state(const Tensors& dst, const Tensors& src);

}  // namespace et::nn
