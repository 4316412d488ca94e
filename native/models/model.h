// Base of every emotorch model: a torch::nn::Module with one forward from named tensors to named
// tensors (lib/nn sends its inputs by name, in HF's snake_case: `input_ids`, `attention_mask`, …).
#pragma once
#include <torch/nn.h>

#include "config.h"
#include "error.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace et::nn {

using Tensors = std::vector<at::Tensor>;

// A forward's inputs by name. A name sent as null or not sent is "not given". Every name sent
// must be read by the model (`at` or `opt`): the bridge checks after the forward, so a misspelt
// input is an error naming it, never an input silently left out.
class Inputs {
 public:
  explicit Inputs(std::map<std::string, at::Tensor> t = {}) : t_(std::move(t)) {}
  // The tensor given under name; absent or null is an error naming it.
  const at::Tensor& at(const std::string& name) const {
    read_.insert(name);
    auto it = t_.find(name);
    if (it == t_.end() || !it->second.defined()) throw CodedError("ERR_INVALID_ARG", "the forward needs input '" + name + "'");
    return it->second;
  }
  // The tensor given under name, or an undefined tensor when absent or null.
  at::Tensor opt(const std::string& name) const {
    read_.insert(name);
    auto it = t_.find(name);
    return it == t_.end() ? at::Tensor() : it->second;
  }
  // The names sent that the forward did not read (after it ran).
  std::vector<std::string> unread() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : t_)
      if (!read_.count(k)) out.push_back(k);
    return out;
  }

 private:
  std::map<std::string, at::Tensor> t_;
  mutable std::set<std::string> read_;
};

// A forward's outputs by name (an optional output not computed is left out).
using Outputs = std::map<std::string, at::Tensor>;

struct Model;
using LayerRun = std::function<at::Tensor(const at::Tensor&)>;

// Set on a model by sharded data parallel (native/distributed/zero.h) while it shards the model's
// parameters: the model's forward, and each layer of a model with a layer loop, run through it,
// which gathers their parameters just before and frees them after (ZeRO stage 3).
struct ShardHooks {
  virtual ~ShardHooks() = default;
  // The whole forward of `m` (the bridge calls it in place of m.forward).
  virtual Outputs forward(Model& m, const std::function<Outputs()>& run) = 0;
  // One layer of `m`'s layer loop (a model whose shards_layers() is true calls it for each layer).
  virtual at::Tensor layer(Model& m, const torch::nn::Module& layer, const at::Tensor& x, const LayerRun& run) = 0;
  // Whether the parameters are released between uses (stage 3): paths other than forward refuse.
  virtual bool releases_parameters() const = 0;
};

struct Model : torch::nn::Module {
  virtual Outputs forward(const Inputs& in) = 0;
  // Sharded data parallel's hooks while the model is sharded (null otherwise).
  std::shared_ptr<ShardHooks> shard_hooks;
  // Whether forward runs the children of its `layers` list through shard_hooks->layer, so that
  // ZeRO stage 3 can gather one layer's parameters at a time.
  virtual bool shards_layers() const { return false; }
  // HF's gradient_checkpointing: while training with autograd on, a model that supports it runs
  // its layers through nn::checkpoint (native/blocks/checkpoint.h), recomputing them in backward.
  bool gradient_checkpointing = false;
  virtual bool supports_gradient_checkpointing() const { return false; }
  // Whether layers fed x should be checkpointed now: on, training, autograd on, and a gradient to
  // compute (x or a parameter needs one; a frozen tower on constant input is run plainly).
  bool recompute_layers(const at::Tensor& x) const {
    if (!gradient_checkpointing || !is_training() || !at::GradMode::is_enabled()) return false;
    if (x.requires_grad()) return true;
    for (const auto& p : parameters())
      if (p.requires_grad()) return true;
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
