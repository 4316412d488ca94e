// Data-parallel gradient averaging (DDP): gradients of the parameters that require grad are
// copied into flat buckets as autograd accumulates them, each bucket's all-reduce starts as soon as
// it is full (in bucket order, the same on every rank), overlapping the rest of the backward pass;
// at the end of backward the results are waited for and written back as the averaged gradients.
// Plain C++ on libtorch; the bridge marshals.
#pragma once
#include <ATen/ATen.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "distributed/group.h"

namespace et::distributed {

struct DdpOptions {
  int64_t bucket_cap_bytes = 25 * 1024 * 1024;
  int64_t first_bucket_cap_bytes = 1024 * 1024;  // a small first bucket starts communication early
  bool find_unused = false;
};

class GradReducer {
 public:
  // `params`: the parameters to average (those requiring grad), in the module's order, with names.
  GradReducer(std::shared_ptr<Group> group, std::vector<at::Tensor> params, std::vector<std::string> names, DdpOptions o);
  ~GradReducer();
  // Called by DDP's forward (as torch's prepare_for_backward): starts a fresh pass state (so that a
  // backward that failed half-way cannot leave the next one stuck) and sets whether the backward
  // of this forward averages gradients (false for a forward inside noSync: they only accumulate).
  void prepare(bool sync);
  // The buckets as lists of parameter indices, in launch order (for tests and logs).
  std::vector<std::vector<size_t>> buckets() const;
  // Turns the autograd hooks into no-ops (the reducer then does nothing).
  void detach();

  struct State;  // shared with the hooks (weakly)

 private:
  std::shared_ptr<State> s_;
};

}  // namespace et::distributed
