#include "models/layers.h"

#include "kernels/linear.h"

#include <ATen/core/stack.h>
#include <torch/library.h>

#include <cmath>

namespace et::nn {

namespace {
// A random initializer under SkipInitGuard: its arguments dropped, its tensor (the first) returned.
void keep_self(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto n = op.schema().arguments().size();
  c10::IValue self = std::move((*stack)[stack->size() - n]);
  torch::jit::drop(*stack, n);
  stack->push_back(std::move(self));
}
}  // namespace

TORCH_LIBRARY_IMPL(_, DeferredInit, m) { m.fallback(torch::CppFunction::makeFallthrough()); }

TORCH_LIBRARY_IMPL(aten, DeferredInit, m) {
  for (const char* op : {"uniform_", "normal_", "random_", "random_.from", "random_.to", "bernoulli_.Tensor", "bernoulli_.float",
                         "exponential_", "cauchy_", "log_normal_", "geometric_"}) {
    m.impl(op, torch::CppFunction::makeFromBoxedFunction<&keep_self>());
  }
}

void assign_state(const Tensors& dst, const Tensors& src, std::optional<at::ScalarType> dtype) {
  TORCH_CHECK(dst.size() == src.size(), "assign_state: ", dst.size(), " destinations but ", src.size(), " sources");
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < dst.size(); ++i) {
    TORCH_CHECK(dst[i].sizes() == src[i].sizes(), "assign_state: shape ", dst[i].sizes(), " vs ", src[i].sizes());
    const bool floating = at::isFloatingType(src[i].scalar_type()) && at::isFloatingType(dst[i].scalar_type());
    const auto s = floating ? dtype.value_or(dst[i].scalar_type()) : dst[i].scalar_type();
    auto v = src[i].to(dst[i].device(), s);
    // a view of a larger storage (a shard read as one buffer) is copied, so the rest can be freed
    if (v.storage().nbytes() > static_cast<size_t>(v.numel()) * v.element_size() || !v.is_contiguous())
      v = v.clone(at::MemoryFormat::Contiguous);
    const_cast<at::Tensor&>(dst[i]).set_data(v);
  }
}

void copy_state(const Tensors& dst, const Tensors& src) {
  TORCH_CHECK(dst.size() == src.size(), "copy_state: ", dst.size(), " destinations but ", src.size(), " sources");
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < dst.size(); ++i) {
    TORCH_CHECK(dst[i].sizes() == src[i].sizes(), "copy_state: shape ", dst[i].sizes(), " vs ", src[i].sizes());
    dst[i].copy_(src[i]);
  }
}

LinearModel::LinearModel(int64_t in_features, int64_t out_features, bool has_bias) {
  weight = register_parameter("weight", at::empty({out_features, in_features}));
  if (has_bias) bias = register_parameter("bias", at::empty({out_features}));
  reset_linear(weight, bias);
}

Outputs LinearModel::forward(const Inputs& in) {
  const auto& x = in.at("input");
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "Linear: expected input (..., ", weight.size(1), ") but got ", x.sizes());
  return {{"output", nn::linear(x, weight, bias)}};
}

MlpModel::MlpModel(const std::vector<int64_t>& sizes, const std::string& act, double p, bool bias) : activation(act), dropout(p) {
  TORCH_CHECK(sizes.size() >= 2, "Mlp needs at least two sizes");
  layers = register_module("layers", torch::nn::ModuleList());
  for (size_t i = 0; i + 1 < sizes.size(); ++i) layers->push_back(Linear(sizes[i], sizes[i + 1], bias));
}

Outputs MlpModel::forward(const Inputs& in) {
  at::Tensor x = in.at("input");
  for (size_t i = 0; i < layers->size(); ++i) {
    x = layers[i]->as<LinearImpl>()->forward(x);
    if (i + 1 < layers->size()) {
      x = activate(x, activation);
      if (dropout > 0) x = at::dropout(x, dropout, is_training());
    }
  }
  return {{"output", x}};
}

LayerNormModel::LayerNormModel(int64_t d, double e, bool affine) : dim(d), eps(e) {
  if (affine) {
    weight = register_parameter("weight", at::ones({d}));
    bias = register_parameter("bias", at::zeros({d}));
  }
}

Outputs LayerNormModel::forward(const Inputs& in) { return {{"output", at::layer_norm(in.at("input"), {dim}, weight, bias, eps)}}; }

EmbeddingModel::EmbeddingModel(int64_t num, int64_t d, int64_t pad) : padding_idx(pad) {
  weight = register_parameter("weight", at::randn({num, d}));
  if (pad >= 0) {
    at::NoGradGuard g;
    weight[pad].zero_();
  }
}

Outputs EmbeddingModel::forward(const Inputs& in) {
  const auto& ids = in.at("input");
  TORCH_CHECK(!at::isFloatingType(ids.scalar_type()), "Embedding: expected integer ids but got ", ids.scalar_type());
  return {{"output", at::embedding(weight, ids, padding_idx)}};
}

static const ModelKind linear_kind = ModelKind::of<LinearModel, LinearConfig>("linear");
static const ModelKind mlp_kind = ModelKind::of<MlpModel, MlpConfig>("mlp");
static const ModelKind layer_norm_kind = ModelKind::of<LayerNormModel, LayerNormConfig>("layer_norm");
static const ModelKind embedding_kind = ModelKind::of<EmbeddingModel, EmbeddingConfig>("embedding");

}  // namespace et::nn
