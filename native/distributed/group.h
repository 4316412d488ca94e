// A c10d process group for emotorch: rendezvous through a TCPStore, a Gloo (CPU) or NCCL (CUDA)
// backend, collectives that report which rank is missing when one fails, and a heartbeat that
// tells a dead rank from a slow one. Plain C++ on libtorch; no N-API here (native/bridge/dist.cc
// marshals). Collectives are issued in call order on the caller's thread and waited for apart
// from issuing, so the compute thread never blocks on another process except inside DDP's
// backward (as in PyTorch).
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "error.h"

namespace et::distributed {

// A failure with a stable code (ERR_DIST_TIMEOUT, ERR_DIST_PEER, ERR_DIST_INIT, ERR_DIST...).
using Error = et::CodedError;

struct GroupOptions {
  std::string backend = "gloo";  // "gloo" | "nccl"
  int rank = 0, world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::chrono::milliseconds timeout{1800000};
  int device_index = -1;  // NCCL: this rank's CUDA device
  // Rank 0 hosts the store, unless a launcher's agent does (torchrun: TORCHELASTIC_USE_AGENT_STORE=True).
  bool agent_store = false;
  // Every store key of the group is under this (TORCHELASTIC_RUN_ID): ranks of another job that
  // reach the same store (the same MASTER_PORT) neither see nor overwrite this job's keys.
  std::string job_id = "none";
  // Before each collective the ranks exchange a fingerprint of it (op, dtype, shape, root, number)
  // and all fail with ERR_DIST_MISMATCH when they differ, instead of Gloo aborting the process on
  // buffers of different sizes (what PyTorch's ProcessGroupWrapper does under
  // TORCH_DISTRIBUTED_DEBUG=DETAIL). One small all-gather per collective.
  bool check_collectives = true;
};

// What a collective reduces with (Gloo has no AVG: it is SUM then a division).
enum class Op { Sum, Avg, Max, Min, Product };

// What one rank is about to call, as the other ranks must call it too.
struct Fingerprint {
  std::string op;      // "allReduce", "broadcast", "DDP gradient bucket", ...
  int64_t detail = 0;  // the reduce op, the broadcast's source rank, the DDP bucket's number
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> sizes;  // one tensor's shape; several tensors: their element count
  int64_t tensors = 1;
  static Fingerprint of(std::string op, const at::Tensor& t, int64_t detail = 0) {
    return {std::move(op), detail, t.scalar_type(), t.sizes().vec(), 1};
  }
};

class Group {
 public:
  // Connects to the store at master_addr:master_port (rank 0 hosts it), then builds the backend.
  // Throws Error(ERR_DIST_INIT) naming the ranks that never joined.
  static std::shared_ptr<Group> create(const GroupOptions& o);
  ~Group();

  int rank() const { return o_.rank; }
  int world() const { return o_.world; }
  const std::string& backend_name() const { return o_.backend; }
  std::chrono::milliseconds timeout() const { return o_.timeout; }

  // One issued collective: its Work, its number in this rank's sequence and what it was.
  struct Pending {
    c10::intrusive_ptr<c10d::Work> work;
    uint64_t seq = 0;
    std::string what;
    std::function<void()> after;  // runs once the work completed (copies back, divisions)
  };

  // Each issues one collective (never blocks on other ranks) and returns it; finish() waits.
  // Tensors are worked on in place (non-contiguous ones through a contiguous copy).
  Pending all_reduce(at::Tensor t, Op op);
  Pending broadcast(std::vector<at::Tensor> ts, int src);  // one collective for several tensors
  Pending all_gather(at::Tensor t, std::shared_ptr<std::vector<at::Tensor>> out);
  Pending reduce_scatter(at::Tensor input, Op op, std::shared_ptr<at::Tensor> out);
  Pending barrier();
  // Contiguous, SUM, for DDP: `what` is "DDP gradient bucket" (`number` the bucket's) or "DDP
  // used-parameter map". `check`: false skips the check across ranks (DDP checks the first bucket
  // of each backward pass; the others follow from the model, verified identical when wrapped).
  // `count` goes into the check's fingerprint (DDP: the number of buckets).
  Pending all_reduce_flat(at::Tensor flat, const std::string& what, int64_t number = 0, bool check = true, int64_t count = 1);
  // Contiguous flat buffers, for sharded data parallel (`what` names the unit, `number` its index):
  // `out` (world × n) receives every rank's `in` (n) in rank order; `in` (world × n) is summed
  // over the ranks and this rank's n-element part lands in `out`.
  Pending all_gather_flat(at::Tensor in, at::Tensor out, const std::string& what, int64_t number = 0, bool check = true);
  Pending reduce_scatter_flat(at::Tensor in, at::Tensor out, const std::string& what, int64_t number = 0, bool check = true);

  // Waits for `p` (at most the group's timeout plus a grace period). On a failure or a timeout
  // throws Error naming the rank(s) that did not take part, and why.
  void wait(Pending& p);
  // Runs `p`'s `after` (copies back, divisions): on the compute thread, after wait().
  static void complete(Pending& p);
  void finish(Pending& p) {
    wait(p);
    complete(p);
  }

  // Marks the group unusable (the ranks may be out of step): later collectives throw
  // ERR_DIST_BROKEN with `why`. The first reason is kept.
  void mark_broken(const std::string& why);

  // Stops the heartbeat, drops the backend and the store. Idempotent.
  void shutdown();
  bool alive() const { return !shut_.load(); }

 private:
  explicit Group(const GroupOptions& o) : o_(o) {}
  Pending issue(const Fingerprint& fp, const std::function<c10::intrusive_ptr<c10d::Work>()>& f, bool check = true);
  // Exchanges `fp` (for collective number `seq`) with every rank; throws ERR_DIST_MISMATCH on all
  // of them, naming what each called, when they differ.
  void check_same(const Fingerprint& fp, const std::string& what, uint64_t seq);
  [[noreturn]] void fail(const Pending& p, const std::string& cause, bool timed_out);
  std::string diagnose(uint64_t seq);
  void heartbeat_loop();

  GroupOptions o_;
  c10::intrusive_ptr<c10d::Store> store_, hb_store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  std::mutex order_mutex_;  // held across a collective's check and its issuing (keeps the order)
  std::mutex issue_mutex_;
  std::atomic<uint64_t> seq_{0};      // collectives issued
  std::atomic<uint64_t> reached_{0};  // the number of the collective this rank reached (checked or issued)
  std::atomic<bool> shut_{false};
  std::string broken_;  // set by the first failure (under issue_mutex_)
  // backend_, store_ and hb_store_ are reset by shutdown() under issue_mutex_: readers off the
  // issuing path (diagnose) copy them under it.
  std::thread hb_thread_;
  std::mutex hb_m_;
  std::condition_variable hb_cv_;
  uint64_t hb_count_ = 0;
};

// The backends (native/distributed/gloo.cc, native/distributed/nccl.cc): each the only file that includes its
// ProcessGroup header.
c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                            std::chrono::milliseconds timeout, const std::string& master_addr);
c10::intrusive_ptr<c10d::Backend> make_nccl(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                            std::chrono::milliseconds timeout, int device_index);
bool nccl_built();

// The layout checks gloo.cc runs when it builds a group, as (name, ok, detail) rows (for tests).
struct LayoutCheck {
  std::string name;
  bool ok;
  std::string detail;
};
std::vector<LayoutCheck> gloo_layout_report();

}  // namespace et::distributed
