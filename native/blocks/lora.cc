#include "blocks/lora.h"

#include "error.h"
#include "kernels/linear.h"
#include "kernels/linear_rows.h"

#include <map>
#include <set>

#include <algorithm>
#include <cmath>

namespace et::nn {

void reset_linear(at::Tensor& weight, at::Tensor& bias) {
  at::NoGradGuard g;
  double bound = 1.0 / std::sqrt(static_cast<double>(weight.size(1)));
  weight.uniform_(-bound, bound);
  if (bias.defined()) bias.uniform_(-bound, bound);
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias) : in_features(in), out_features(out) {
  weight = register_parameter("weight", at::empty({out, in}));
  if (has_bias) bias = register_parameter("bias", at::empty({out}));
  reset_linear(weight, bias);
}

at::Tensor LinearImpl::forward(const at::Tensor& x) { return apply(x, nn::linear); }

at::Tensor LinearImpl::rows(const at::Tensor& x) { return apply(x, nn::linear_rows); }

at::Tensor LinearImpl::apply(const at::Tensor& x, at::Tensor (*product)(const at::Tensor&, const at::Tensor&, const at::Tensor&)) {
  auto y = quant ? quant_linear(x, *quant, bias, product == nn::linear_rows) : product(x, weight, bias);
  if (!lora_A.defined() || merged) return y;
  // adapters kept in float32 on a half-precision base (peft's autocast_adapter_dtype): the input
  // cast to theirs, the update cast back to the base's output dtype
  auto h = at::dropout(x.scalar_type() == lora_A.scalar_type() ? x : x.to(lora_A.scalar_type()), lora_dropout, is_training());
  auto delta = product(product(h, lora_A, {}), lora_B, {}) * scaling;
  return y + (delta.scalar_type() == y.scalar_type() ? delta : delta.to(y.scalar_type()));
}

void LinearImpl::add_lora(int64_t r, double alpha, double dropout) {
  TORCH_CHECK(!lora_A.defined(), "LoRA was already added to this layer");
  TORCH_CHECK(r > 0, "LoRA rank must be positive");
  // float32 adapters on a float16 / bfloat16 or quantized base, as peft makes them (autocast_adapter_dtype)
  auto opts = quant ? quant->weight.options().dtype(at::kFloat) : weight.options();
  if (opts.dtype() == at::kHalf || opts.dtype() == at::kBFloat16) opts = opts.dtype(at::kFloat);
  auto a_mod = register_module("lora_A", std::make_shared<torch::nn::Module>());
  auto b_mod = register_module("lora_B", std::make_shared<torch::nn::Module>());
  auto a_def = a_mod->register_module("default", std::make_shared<torch::nn::Module>());
  auto b_def = b_mod->register_module("default", std::make_shared<torch::nn::Module>());
  lora_A = a_def->register_parameter("weight", at::empty({r, in_features}, opts));
  lora_B = b_def->register_parameter("weight", at::zeros({out_features, r}, opts));
  at::NoGradGuard g;
  double bound = 1.0 / std::sqrt(static_cast<double>(in_features));  // kaiming_uniform(a=√5), as peft
  lora_A.uniform_(-bound, bound);
  scaling = alpha / static_cast<double>(r);
  lora_dropout = dropout;
}

void LinearImpl::merge() {
  if (!lora_A.defined() || merged) return;
  at::NoGradGuard g;
  if (quant) {
    // into a quantized base as peft merges into bitsandbytes layers: dequantized, updated, quantized again
    auto w = dequantize_weight(*quant, at::kFloat) + at::matmul(lora_B, lora_A).to(at::kFloat) * scaling;
    *quant = kernel_layout(quantize_weight(w, quant->format, "merged LoRA layer"));
    merged = true;
    return;
  }
  weight.add_((at::matmul(lora_B, lora_A) * scaling).to(weight.scalar_type()));
  merged = true;
}

void LinearImpl::unmerge() {
  if (!lora_A.defined() || !merged) return;
  if (quant)
    throw CodedError("ERR_INVALID_ARG", "LoRA merged into a quantized weight cannot be unmerged (the merge quantized the sum again)");
  at::NoGradGuard g;
  weight.sub_((at::matmul(lora_B, lora_A) * scaling).to(weight.scalar_type()));
  merged = false;
}

void LinearImpl::quantize(QuantFormat f, const std::string& name) {
  if (quant) throw CodedError("ERR_INVALID_ARG", "layer '" + name + "' is already quantized");
  if (lora_A.defined() && merged) throw CodedError("ERR_INVALID_ARG", "layer '" + name + "' has LoRA merged: quantize before merging");
  quant = std::make_shared<QuantWeight>(kernel_layout(quantize_weight(weight, f, name + ".weight")));
  release_weight();
}

void LinearImpl::release_weight() {
  // its storage freed even where other handles (a state dict taken before) share the tensor: they
  // see an empty tensor from now on
  if (weight.defined()) {
    at::NoGradGuard g;
    weight.set_data(at::empty({0}, weight.options()));
  }
  weight = at::Tensor();
  parameters_["weight"] = at::Tensor();  // undefined: no longer listed among the parameters
}

void LinearImpl::set_quantized(QuantWeight q, const std::string& name) {
  if (q.out != out_features || q.in != in_features)
    throw CodedError("ERR_STATE_DICT", "quantized weight '" + name + ".weight' is " + std::to_string(q.out) + " × " + std::to_string(q.in) +
                                           ", the layer " + std::to_string(out_features) + " × " + std::to_string(in_features));
  check_quant_weight(q, name + ".weight");
  quant = std::make_shared<QuantWeight>(kernel_layout(std::move(q)));
  release_weight();
}

std::vector<std::string> apply_lora(torch::nn::Module& root, const std::vector<std::string>& targets, int64_t r, double alpha,
                                    double dropout) {
  std::vector<std::string> done;
  for (auto& item : root.named_modules("", /*include_self=*/false)) {
    auto* lin = item.value()->as<LinearImpl>();
    if (!lin || lin->has_lora()) continue;
    const std::string& name = item.key();
    // The names are chosen in TypeScript (peft's matching on the full names); here they match exactly.
    if (std::find(targets.begin(), targets.end(), name) != targets.end()) {
      lin->add_lora(r, alpha, dropout);
      done.push_back(name);
    }
  }
  TORCH_CHECK(!done.empty(), "LoRA: no Linear layer matches the target modules");
  return done;
}

int64_t merge_lora(torch::nn::Module& root, bool merge) {
  int64_t n = 0;
  for (auto& m : root.modules(/*include_self=*/false)) {
    auto* lin = m->as<LinearImpl>();
    if (!lin || !lin->has_lora() || lin->merged == merge) continue;
    merge ? lin->merge() : lin->unmerge();
    ++n;
  }
  return n;
}

}  // namespace et::nn

namespace et::nn {

namespace {
template <typename F>
void each_linear(torch::nn::Module& root, F f) {
  for (auto& item : root.named_modules("", /*include_self=*/false))
    if (auto* lin = item.value()->as<LinearImpl>()) f(item.key(), *lin);
}
}  // namespace

void quantize_linears(torch::nn::Module& root, const std::vector<std::string>& names, QuantFormat f) {
  std::map<std::string, LinearImpl*> by_name;
  each_linear(root, [&](const std::string& n, LinearImpl& l) { by_name[n] = &l; });
  // every layer checked before any is quantized: a refusal leaves the model as it was
  std::set<std::string> seen;
  for (const auto& n : names) {
    if (!by_name.count(n)) throw CodedError("ERR_INVALID_ARG", "quantize: '" + n + "' is not a Linear layer of this model");
    if (!seen.insert(n).second) throw CodedError("ERR_INVALID_ARG", "quantize: layer '" + n + "' is named twice");
    const auto* l = by_name[n];
    if (l->quant) throw CodedError("ERR_INVALID_ARG", "layer '" + n + "' is already quantized");
    if (l->in_features % quant_block(f) != 0)
      throw CodedError("ERR_INVALID_ARG", std::string("quantize: ") + quant_format_name(f) + "'s block of " +
                                              std::to_string(quant_block(f)) + " does not divide the rows of weight '" + n + ".weight' (" +
                                              std::to_string(l->out_features) + " × " + std::to_string(l->in_features) + ")");
  }
  for (const auto& n : names) by_name[n]->quantize(f, n);
}

std::vector<std::pair<std::string, at::Tensor>> quantized_state(torch::nn::Module& root, bool file_layout) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  each_linear(root, [&](const std::string& n, LinearImpl& l) {
    if (!l.quant) return;
    for (const auto& [k, t] : l.quant->named(!file_layout))
      out.emplace_back(n + (k == "weight" || k == "SCB" ? "." + k : ".weight." + k), t);
  });
  return out;
}

void move_quantized(torch::nn::Module& root, const at::Device& device) {
  each_linear(root, [&](const std::string&, LinearImpl& l) {
    if (l.quant && l.quant->weight.device() != device) *l.quant = kernel_layout(l.quant->to(device));
  });
}

}  // namespace et::nn
