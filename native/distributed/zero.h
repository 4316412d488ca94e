// Sharded data parallel (DeepSpeed's ZeRO stages 1–3, PyTorch's FSDP) on the c10d group. Each
// trainable parameter is split along its first dimension into world pieces of R = ⌈rows / world⌉
// rows (the last padded with zeros); rank r keeps piece r as a float32 master shard, the tensor
// its optimizer updates (so the optimizer state is sharded too: stage 1).
// - Gradients: when every parameter of a unit (a model's layer, a module beside its layer loop,
//   or the rest of a model) has its gradient during backward, the unit's gradients are divided by
//   world and reduced in one collective, overlapping the rest of backward: all-reduced at stage 1
//   (the averaged gradients stay in .grad until the next forward, as DDP's), reduce-scattered at
//   stages 2 and 3 (the full gradients are freed; on Gloo an all-reduce in place, see reduce()).
//   Once a reduction is done (at the latest at the end of backward) this rank's part is added to
//   each shard's .grad.
// - Parameters: at stages 1 and 2 the model keeps whole parameters, all-gathered from the shards
//   before a forward when an optimizer step changed a shard. At stage 3 they are freed (their
//   storage emptied) and all-gathered a unit at a time: a model's own parameters around its
//   forward, each layer's just before the layer runs (models with a layer loop) and again in
//   backward, freed again once the unit's gradients are reduced.
// - Offload: the master shards (hence the optimizer state) on the CPU while the model is on a GPU.
// Plain C++ on libtorch; the bridge marshals.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "distributed/group.h"
#include "models/model.h"

namespace et::distributed {

struct ZeroOptions {
  int stage = 3;
  bool offload = false;  // master shards and their gradients on the CPU
};

class Sharded {
 public:
  // `params`: the trainable parameters (each once, in the module's order) with their names;
  // `models`: the native models they live in (the hooks go on these). The shards are allocated
  // here (zeros) and filled by start().
  Sharded(std::shared_ptr<Group> group, std::vector<at::Tensor> params, std::vector<std::string> names,
          std::vector<std::shared_ptr<nn::Model>> models, ZeroOptions o);
  ~Sharded();
  // The master shards (float32 leaves requiring grad), one per parameter.
  std::vector<at::Tensor> shards() const;
  // After rank 0's parameters were broadcast: copies this rank's rows into the shards, puts the
  // hooks on the models, and at stage 3 frees the whole parameters.
  void start();
  // Before a forward of the wrapper: a fresh backward state; whole parameters refreshed where an
  // optimizer step changed their shards (stages 1 and 2, and parameters outside the models' hooks).
  void prepare();
  // An optimizer stepped the shards (any thread): the whole parameters are gathered again before
  // their next use (the fused update leaves the shards' versions alone).
  void mark_stepped();
  // The global norm of the shards' gradients (over `which`, indices into shards()); scales them
  // so that it is at most max_norm (torch.nn.utils.clip_grad_norm_ over the whole gradients).
  double clip_grad_norm(const std::vector<size_t>& which, double max_norm, double norm_type);
  // The whole parameters as copies (in the parameters' dtype, on the CPU), gathered a unit at a
  // time; with rank0_only, other ranks get undefined tensors.
  std::vector<at::Tensor> gather_state(bool rank0_only);
  // Copies shard-shaped values into shards `which` (loading a checkpoint); the whole parameters
  // are gathered from them before their next use.
  void set_shards(const std::vector<size_t>& which, const std::vector<at::Tensor>& values);
  // The units: a name and parameter indices each.
  std::vector<std::pair<std::string, std::vector<size_t>>> units() const;
  // Bytes held now: parameters (whole + shards) and gradients (whole + shards), each storage once.
  std::pair<int64_t, int64_t> memory() const;
  // Gathers every parameter back into the model and removes the hooks (the module is whole
  // and plain again). Idempotent.
  void detach();

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace et::distributed
