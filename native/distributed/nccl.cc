// The NCCL backend, for CUDA tensors: the only file that includes ProcessGroupNCCL.hpp. Built when
// the libtorch is a CUDA build and nccl.h is found (CMakeLists.txt / scripts/build-cuda.sh define
// ET_WITH_NCCL); otherwise `init({ backend: 'nccl' })` says this build has no NCCL.
#include "distributed/group.h"

#ifdef ET_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace et::distributed {

bool nccl_built() {
#ifdef ET_WITH_NCCL
  return true;
#else
  return false;
#endif
}

c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                            std::chrono::milliseconds timeout, int device_index) {
#ifdef ET_WITH_NCCL
  if (device_index >= 0) c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_index));
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
#else
  throw Error("ERR_DIST_BACKEND",
              "this emotorch build has no NCCL (it was built against a CPU libtorch); use backend 'gloo', or "
              "build against a CUDA libtorch with NCCL (scripts/build-cuda.sh)");
#endif
}

}  // namespace et::distributed
