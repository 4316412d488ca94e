// The process group: rendezvous, collectives, failure diagnosis. See group.h.
#include "distributed/group.h"

#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <sstream>

namespace et::distributed {

namespace {
constexpr auto kBeat = std::chrono::milliseconds(500);       // heartbeat period
constexpr auto kSilence = std::chrono::milliseconds(1500);   // no beat for this long: gone
constexpr auto kStoreProbe = std::chrono::milliseconds(3000);  // store ops of the heartbeat / diagnosis
constexpr auto kGrace = std::chrono::milliseconds(5000);     // past the backend's own timeout

std::string hb_key(int r) { return "et/hb/" + std::to_string(r); }
std::string join_key(int r) { return "et/join/" + std::to_string(r); }

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string text(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

// The message of the exception in flight, without a C++ backtrace.
std::string current_message() {
  try {
    throw;
  } catch (const c10::Error& e) {
    std::string m = e.what_without_backtrace();
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

std::string ms(std::chrono::milliseconds t) { return std::to_string(t.count()) + " ms"; }

c10d::ReduceOp reduce_op(Op op) {
  switch (op) {
    case Op::Sum:
    case Op::Avg: return c10d::ReduceOp::SUM;
    case Op::Max: return c10d::ReduceOp::MAX;
    case Op::Min: return c10d::ReduceOp::MIN;
    case Op::Product: return c10d::ReduceOp::PRODUCT;
  }
  return c10d::ReduceOp::SUM;
}

const char* op_name(int64_t op) {
  static const char* names[] = {"sum", "avg", "max", "min", "product"};
  return op >= 0 && op < 5 ? names[op] : "?";
}

// The dtype as emotorch names it.
std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

// A fingerprint as the int64 row the ranks exchange: [version, op, detail, dtype, tensors, seq,
// ndim, hash of all sizes, the first kDims sizes].
constexpr int kDims = 16, kSlots = 8 + kDims;
const char* kOps[] = {"allReduce", "broadcast", "allGather", "reduceScatter", "barrier", "DDP gradient bucket", "DDP used-parameter map"};
constexpr int kNumOps = sizeof(kOps) / sizeof(kOps[0]);

std::vector<int64_t> encode(const Fingerprint& fp, uint64_t seq) {
  std::vector<int64_t> row(kSlots, 0);
  int64_t op = -1;
  for (int i = 0; i < kNumOps; ++i)
    if (fp.op == kOps[i]) op = i;
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the sizes
  for (int64_t d : fp.sizes) h = (h ^ static_cast<uint64_t>(d)) * 1099511628211ull;
  row[0] = 0x45540001;
  row[1] = op;
  row[2] = fp.detail;
  row[3] = static_cast<int64_t>(fp.dtype);
  row[4] = fp.tensors;
  row[5] = static_cast<int64_t>(seq);
  row[6] = static_cast<int64_t>(fp.sizes.size());
  row[7] = static_cast<int64_t>(h >> 1);
  for (size_t i = 0; i < fp.sizes.size() && i < kDims; ++i) row[8 + i] = fp.sizes[i];
  return row;
}

// What a row says a rank called, e.g. "allReduce(sum) of a float32 [2, 3] tensor".
std::string describe(const int64_t* row) {
  int64_t op = row[1];
  std::string name = op >= 0 && op < kNumOps ? kOps[op] : "an unknown collective";
  std::ostringstream s;
  if (op == 4) return "barrier()";
  if (op == 0 || op == 3) s << name << "(" << op_name(row[2]) << ")";
  else if (op == 1) s << name << "(from rank " << row[2] << ")";
  else if (op == 5) s << name << " " << row[2] << " (of " << row[4] << ")";
  else s << name;
  auto dtype = dtype_name(static_cast<at::ScalarType>(row[3]));
  int64_t nd = row[6];
  if (op == 1 && row[4] != 1) {  // several tensors broadcast as one
    s << " of " << row[4] << " " << dtype << " tensors (" << (nd ? row[8] : 0) << " elements)";
    return s.str();
  }
  s << " of a " << dtype << " [";
  for (int64_t i = 0; i < nd && i < kDims; ++i) s << (i ? ", " : "") << row[8 + i];
  if (nd > kDims) s << ", … (" << nd << " dims)";
  s << "] tensor";
  return s.str();
}

// Division of an AVG done as SUM (Gloo has no AVG); integer tensors are rejected in lib/.
void finish_avg(at::Tensor& t, Op op, int world) {
  if (op == Op::Avg && t.numel()) t.div_(world);
}
}  // namespace

std::shared_ptr<Group> Group::create(const GroupOptions& o) {
  std::shared_ptr<Group> g(new Group(o));
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = o.rank == 0 && !o.agent_store;
    so.numWorkers = static_cast<size_t>(o.world);
    so.waitWorkers = false;  // joins are checked below, by rank, so that a missing one is named
    so.timeout = o.timeout;
    g->store_ = c10::make_intrusive<c10d::PrefixStore>("et/" + o.job_id, c10::make_intrusive<c10d::TCPStore>(o.master_addr, so));
  } catch (...) {
    std::string m = current_message();
    if (o.rank == 0 && !o.agent_store) throw Error("ERR_DIST_INIT", "rank 0 could not host the rendezvous store at " + where + ": " + m);
    throw Error("ERR_DIST_INIT", "rank " + std::to_string(o.rank) + " could not reach the rendezvous store " +
                                     (o.agent_store ? "that the launcher's agent hosts" : "that rank 0 hosts") + " at " + where +
                                     " within " + ms(o.timeout) + " (rank 0 not started, or MASTER_ADDR/MASTER_PORT wrong): " + m);
  }
  // Joining: every rank writes its key, then waits (in slices, to name who is missing) for all.
  try {
    // The join key says whether this rank checks collectives: a rank that checks and one that does
    // not would meet a check with a collective, so the ranks must agree.
    g->store_->set(join_key(o.rank), bytes(o.check_collectives ? "checks" : "no checks"));
    g->store_->set(hb_key(o.rank), bytes("0 0"));
    auto deadline = std::chrono::steady_clock::now() + o.timeout;
    for (;;) {
      std::vector<int> missing;
      for (int r = 0; r < o.world; ++r)
        if (!g->store_->check({join_key(r)})) missing.push_back(r);
      if (missing.empty()) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        std::ostringstream s;
        s << "rank" << (missing.size() > 1 ? "s " : " ");
        for (size_t i = 0; i < missing.size(); ++i) s << (i ? ", " : "") << missing[i];
        s << " never joined the group at " << where << " within " << ms(o.timeout) << " (WORLD_SIZE=" << o.world << ")";
        throw Error("ERR_DIST_INIT", s.str());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::vector<int> other;
    for (int r = 0; r < o.world; ++r)
      if ((text(g->store_->get(join_key(r))) == "checks") != o.check_collectives) other.push_back(r);
    if (!other.empty()) {
      // Every rank has read the join keys (and says so); the rank that hosts the store waits for
      // that before failing, so that the store does not go away under a rank still reading it:
      // each rank then names the disagreement itself.
      g->store_->set("et/seen/" + std::to_string(o.rank), bytes("1"));
      if (o.rank == 0 && !o.agent_store) {
        auto until = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(o.timeout, std::chrono::milliseconds(10000));
        for (int r = 0; r < o.world; ++r)
          while (!g->store_->check({"et/seen/" + std::to_string(r)}) && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      std::ostringstream s;
      s << "rank " << o.rank << (o.check_collectives ? " checks" : " does not check") << " collectives across ranks but rank"
        << (other.size() > 1 ? "s " : " ");
      for (size_t i = 0; i < other.size(); ++i) s << (i ? ", " : "") << other[i];
      s << (o.check_collectives ? " do not" : " do") << ": set checkCollectives (EMOTORCH_DIST_CHECKS) the same on every rank";
      throw Error("ERR_DIST_INIT", s.str());
    }
  } catch (const Error&) {
    throw;
  } catch (...) {
    throw Error("ERR_DIST_INIT", "rendezvous at " + where + " failed: " + current_message());
  }
  try {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("et/pg/", g->store_);
    if (o.backend == "nccl") g->backend_ = make_nccl(prefixed, o.rank, o.world, o.timeout, o.device_index);
    else g->backend_ = make_gloo(prefixed, o.rank, o.world, o.timeout, o.master_addr);
  } catch (const Error&) {
    throw;
  } catch (...) {
    throw Error("ERR_DIST_INIT", "creating the " + o.backend + " process group (rank " + std::to_string(o.rank) + " of " +
                                     std::to_string(o.world) + ") failed: " + current_message());
  }
  g->hb_store_ = g->store_->clone();
  g->hb_store_->setTimeout(kStoreProbe);
  g->hb_thread_ = std::thread([p = g.get()] { p->heartbeat_loop(); });
  return g;
}

Group::~Group() { shutdown(); }

void Group::shutdown() {
  if (shut_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lk(hb_m_);
  }
  hb_cv_.notify_all();
  if (hb_thread_.joinable()) hb_thread_.join();
  std::lock_guard<std::mutex> lk(issue_mutex_);
  backend_.reset();
  hb_store_.reset();
  store_.reset();
}

void Group::heartbeat_loop() {
  std::unique_lock<std::mutex> lk(hb_m_);
  while (!shut_.load()) {
    ++hb_count_;
    std::string v = std::to_string(hb_count_) + " " + std::to_string(reached_.load());
    lk.unlock();
    try {
      hb_store_->set(hb_key(o_.rank), bytes(v));
    } catch (...) {  // the store's host is gone: diagnosis reports it
    }
    lk.lock();
    hb_cv_.wait_for(lk, kBeat, [&] { return shut_.load(); });
  }
}

Group::Pending Group::issue(const Fingerprint& fp, const std::function<c10::intrusive_ptr<c10d::Work>()>& f, bool check) {
  std::lock_guard<std::mutex> order(order_mutex_);
  std::string what = fp.op == "DDP gradient bucket" ? fp.op + " " + std::to_string(fp.detail) : fp.op;
  auto usable = [&] {
    if (shut_.load() || !backend_) throw Error("ERR_DIST_STATE", what + ": the process group was destroyed");
    if (!broken_.empty())
      throw Error("ERR_DIST_BROKEN", what + ": the process group failed earlier and cannot be used again (" + broken_ +
                                         "); destroy() it and init() a new one");
  };
  {
    std::lock_guard<std::mutex> lk(issue_mutex_);
    usable();
  }
  uint64_t seq = seq_.load() + 1;
  reached_.store(seq);
  if (o_.check_collectives && check) check_same(fp, what, seq);
  std::lock_guard<std::mutex> lk(issue_mutex_);
  usable();
  Pending p;
  p.seq = ++seq_;
  p.what = what;
  at::NoGradGuard no_grad;
  p.work = f();
  return p;
}

void Group::check_same(const Fingerprint& fp, const std::string& what, uint64_t seq) {
  c10::intrusive_ptr<c10d::Backend> backend;
  {
    std::lock_guard<std::mutex> lk(issue_mutex_);
    backend = backend_;
  }
  auto row = encode(fp, seq);
  at::Tensor mine = at::tensor(row, at::kLong);
  if (o_.backend == "nccl") mine = mine.to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(o_.device_index)));
  std::vector<std::vector<at::Tensor>> outs(1);
  for (int r = 0; r < o_.world; ++r) outs[0].push_back(at::empty_like(mine));
  std::vector<at::Tensor> in{mine};
  Pending chk;
  chk.seq = seq;
  chk.what = what;  // a peer lost during the check is reported as for the collective itself
  {
    at::NoGradGuard no_grad;
    chk.work = backend->allgather(outs, in, c10d::AllgatherOptions());
  }
  wait(chk);
  std::vector<at::Tensor> rows;
  bool same = true;
  for (int r = 0; r < o_.world; ++r) {
    rows.push_back(outs[0][r].cpu().contiguous());
    if (!at::equal(rows[r], rows[0])) same = false;
  }
  if (same) return;
  // Every rank has every row, so every rank throws the same message; none issued the collective,
  // so the group stays in step and usable.
  std::vector<bool> told(o_.world, false);
  std::ostringstream s;
  s << "the ranks called different collectives at collective #" << rows[0].data_ptr<int64_t>()[5]
    << " of rank 0 (every rank must call the same collectives, in the same order, with the same shapes and dtypes): ";
  bool first = true;
  for (int r = 0; r < o_.world; ++r) {
    if (told[r]) continue;
    std::vector<int> same_as;
    for (int q = r; q < o_.world; ++q)
      if (!told[q] && at::equal(rows[q], rows[r])) {
        same_as.push_back(q);
        told[q] = true;
      }
    s << (first ? "" : "; ") << (same_as.size() > 1 ? "ranks " : "rank ");
    for (size_t i = 0; i < same_as.size(); ++i) s << (i ? ", " : "") << same_as[i];
    const int64_t* x = rows[r].data_ptr<int64_t>();
    s << " called " << describe(x);
    if (x[5] != rows[0].data_ptr<int64_t>()[5]) s << " as collective #" << x[5];
    first = false;
  }
  throw Error("ERR_DIST_MISMATCH", s.str());
}

Group::Pending Group::all_reduce(at::Tensor t, Op op) {
  at::Tensor c = t.is_contiguous() ? t : t.contiguous();
  auto p = issue(Fingerprint::of("allReduce", c, static_cast<int64_t>(op)), [&] {
    std::vector<at::Tensor> v{c};
    c10d::AllreduceOptions ao;
    ao.reduceOp = reduce_op(op);
    return backend_->allreduce(v, ao);
  });
  int world = o_.world;
  p.after = [t, c, op, world]() mutable {
    at::NoGradGuard no_grad;
    finish_avg(c, op, world);
    if (!c.is_same(t)) t.copy_(c);
  };
  return p;
}

Group::Pending Group::all_reduce_flat(at::Tensor flat, const std::string& what, int64_t number, bool check, int64_t count) {
  Fingerprint fp = Fingerprint::of(what, flat, number);
  fp.tensors = count;
  return issue(fp, [&] {
    std::vector<at::Tensor> v{flat};
    return backend_->allreduce(v, c10d::AllreduceOptions());
  }, check);
}

Group::Pending Group::all_gather_flat(at::Tensor in, at::Tensor out, const std::string& what, int64_t number, bool check) {
  return issue(Fingerprint::of(what, in, number), [&] { return backend_->_allgather_base(out, in, c10d::AllgatherOptions()); }, check);
}

Group::Pending Group::reduce_scatter_flat(at::Tensor in, at::Tensor out, const std::string& what, int64_t number, bool check) {
  return issue(Fingerprint::of(what, in, number), [&] { return backend_->_reduce_scatter_base(out, in, c10d::ReduceScatterOptions()); },
               check);
}

Group::Pending Group::broadcast(std::vector<at::Tensor> ts, int src) {
  // One collective: the tensors travel as one flat buffer (of their common dtype).
  std::vector<at::Tensor> flat_parts;
  for (auto& t : ts) flat_parts.push_back(t.reshape({-1}));
  at::Tensor flat = ts.size() == 1 && ts[0].is_contiguous() ? ts[0] : at::cat(flat_parts);
  // One tensor: its own shape (a strided view and a contiguous tensor of one shape match).
  Fingerprint fp = Fingerprint::of("broadcast", ts.size() == 1 ? ts[0] : flat, src);
  if (ts.size() != 1) fp.sizes = {flat.numel()}, fp.tensors = static_cast<int64_t>(ts.size());
  auto p = issue(fp, [&] {
    std::vector<at::Tensor> v{flat};
    c10d::BroadcastOptions bo;
    bo.rootRank = src;
    return backend_->broadcast(v, bo);
  });
  p.after = [ts, flat]() mutable {
    at::NoGradGuard no_grad;
    if (ts.size() == 1 && flat.is_same(ts[0])) return;
    int64_t off = 0;
    for (auto& t : ts) {
      int64_t n = t.numel();
      t.copy_(flat.narrow(0, off, n).view(t.sizes()));
      off += n;
    }
  };
  return p;
}

Group::Pending Group::all_gather(at::Tensor t, std::shared_ptr<std::vector<at::Tensor>> out) {
  at::Tensor c = t.contiguous();
  out->clear();
  for (int r = 0; r < o_.world; ++r) out->push_back(at::empty_like(c, at::MemoryFormat::Contiguous));
  return issue(Fingerprint::of("allGather", c), [&] {
    std::vector<std::vector<at::Tensor>> outs{*out};
    std::vector<at::Tensor> in{c};
    return backend_->allgather(outs, in, c10d::AllgatherOptions());
  });
}

Group::Pending Group::reduce_scatter(at::Tensor input, Op op, std::shared_ptr<at::Tensor> out) {
  at::Tensor c = input.contiguous();
  auto sizes = c.sizes().vec();
  sizes[0] /= o_.world;
  *out = at::empty(sizes, c.options());
  at::Tensor o = *out;
  auto p = issue(Fingerprint::of("reduceScatter", c, static_cast<int64_t>(op)), [&] {
    c10d::ReduceScatterOptions ro;
    ro.reduceOp = reduce_op(op);
    return backend_->_reduce_scatter_base(o, c, ro);
  });
  int world = o_.world;
  p.after = [o, op, world]() mutable {
    at::NoGradGuard no_grad;
    finish_avg(o, op, world);
  };
  return p;
}

Group::Pending Group::barrier() {
  Fingerprint fp{"barrier", 0, at::kByte, {}, 0};
  return issue(fp, [&] { return backend_->barrier(c10d::BarrierOptions()); });
}

void Group::wait(Pending& p) {
  bool done = false;
  try {
    done = p.work->wait(o_.timeout + kGrace);
  } catch (...) {
    std::string m = current_message();
    bool timed_out = m.find("imed out") != std::string::npos || m.find("imeout") != std::string::npos;
    fail(p, m, timed_out);
  }
  if (!done) fail(p, "no completion", true);
  p.work.reset();
}

void Group::complete(Pending& p) {
  if (p.after) {
    auto f = std::move(p.after);
    p.after = nullptr;
    f();
  }
}

void Group::mark_broken(const std::string& why) {
  std::lock_guard<std::mutex> lk(issue_mutex_);
  if (broken_.empty()) broken_ = why;
}

void Group::fail(const Pending& p, const std::string& cause, bool timed_out) {
  std::string who = diagnose(p.seq);
  std::string msg = p.what + " (collective #" + std::to_string(p.seq) + " of rank " + std::to_string(o_.rank) + ") " +
                    (timed_out ? "timed out after " + ms(o_.timeout) : "failed") + ": " + who + " [" + o_.backend + ": " + cause + "]";
  mark_broken(p.what + " #" + std::to_string(p.seq) + ": " + who);
  throw Error(who.find("rank") != std::string::npos && who.find("every rank") == std::string::npos ? "ERR_DIST_PEER" : "ERR_DIST_TIMEOUT",
              msg);
}

// Which ranks did not take part in collective `seq`: reads every rank's heartbeat (count and
// number of collectives issued) twice, kSilence apart.
std::string Group::diagnose(uint64_t seq) {
  // shutdown() may reset hb_store_ meanwhile (destroy() while a wait fails): use a copy.
  c10::intrusive_ptr<c10d::Store> hb;
  {
    std::lock_guard<std::mutex> lk(issue_mutex_);
    hb = hb_store_;
  }
  if (!hb) return "the process group was destroyed";
  struct Beat {
    bool present = false;
    uint64_t count = 0, issued = 0;
  };
  auto read = [&](std::vector<Beat>& out) -> bool {
    out.assign(o_.world, Beat());
    try {
      for (int r = 0; r < o_.world; ++r) {
        if (!hb->check({hb_key(r)})) continue;
        std::istringstream s(text(hb->get(hb_key(r))));
        s >> out[r].count >> out[r].issued;
        out[r].present = true;
      }
      return true;
    } catch (...) {
      return false;
    }
  };
  std::vector<Beat> a, b;
  if (!read(a) || (std::this_thread::sleep_for(kSilence), !read(b))) {
    if (o_.rank == 0) return "the rendezvous store stopped answering";
    return "rank 0 is gone (the rendezvous store it hosts at " + o_.master_addr + ":" + std::to_string(o_.master_port) +
           " stopped answering: its process died or is stopped)";
  }
  std::vector<std::string> why;
  for (int r = 0; r < o_.world; ++r) {
    if (r == o_.rank) continue;
    if (!b[r].present || b[r].count == a[r].count) {
      why.push_back("rank " + std::to_string(r) + " is gone (no heartbeat for " + ms(kSilence) +
                    ": its process died or is stopped; its last heartbeat reported " + std::to_string(b[r].issued) +
                    " collectives issued)");
    } else if (b[r].issued < seq) {
      why.push_back("rank " + std::to_string(r) + " is alive but has not reached this collective (it has issued " +
                    std::to_string(b[r].issued) +
                    "): it is stuck or slower than the timeout, or the ranks call collectives in different orders");
    }
  }
  if (why.empty()) return "every rank is alive and reached it (mismatched shapes or dtypes across ranks?)";
  std::string s;
  for (size_t i = 0; i < why.size(); ++i) s += (i ? "; " : "") + why[i];
  return s;
}

}  // namespace et::distributed
