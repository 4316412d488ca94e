// Internal to native/kernels: the choice between implementations of one kind of work by timing
// them on first use (linear's products on oneDNN or the BLAS, kernels/linear.cc; conv1d_rows's
// convolutions, kernels/conv.cc), kept per machine in a small file that later processes read, and
// EMOTORCH_CPU_LINEAR, which pins or turns off that choice. Not for use outside native/kernels.
#pragma once
#include <ATen/ATen.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace et::nn {

// EMOTORCH_CPU_LINEAR (lib/runtime.ts checks its value), read once: auto (time each kind), onednn
// or blas (pin linear's products), aten (ATen's own linear and conv1d throughout).
enum class CpuLinear : uint8_t { Auto, OneDnn, Blas, Aten };
inline CpuLinear cpu_linear_env() {
  static const CpuLinear mode = [] {
    const char* env = std::getenv("EMOTORCH_CPU_LINEAR");
    if (env && std::strcmp(env, "onednn") == 0) return CpuLinear::OneDnn;
    if (env && std::strcmp(env, "blas") == 0) return CpuLinear::Blas;
    if (env && std::strcmp(env, "aten") == 0) return CpuLinear::Aten;
    return CpuLinear::Auto;
  }();
  return mode;
}

// A file of measured choices between two implementations of one kind of work (the first, 0, is
// the default), one line per kind: the kind's N numbers, then the choice. The file is per machine:
// <cache>/<prefix>-<hash>.txt, <cache> being EMOTORCH_CACHE_DIR, else $XDG_CACHE_HOME/emotorch,
// else ~/.cache/emotorch; the hash is of the CPU model, the ISA caps in the environment and the
// libtorch version. Later processes read it, so a run and its resumption (or two ranks) make the
// same choice for the same kind: same bits.
template <size_t N>
class ChoiceStore {
 public:
  using Key = std::array<int64_t, N>;
  // `choices`: how many implementations there are (0 … choices − 1)
  ChoiceStore(const char* prefix, int choices) : prefix_(prefix), choices_(choices) {}

  // This process's choice for `k`, else an earlier process's, else none.
  std::optional<int> find(const Key& k) {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = used_.find(k); it != used_.end()) return it->second;
    if (!saved_) saved_ = read(nullptr);
    if (auto it = saved_->find(k); it != saved_->end()) return used_.emplace(k, it->second).first->second;
    return std::nullopt;
  }

  // Keeps `chosen` for `k` (written to the file) unless another process wrote a choice for `k`
  // meanwhile: its choice, written first, is the one later processes read, so it is taken too.
  int record(const Key& k, int chosen) {
    std::lock_guard<std::mutex> lk(mu_);
    bool damaged = false;
    auto now = read(&damaged);
    if (auto it = now.find(k); it != now.end()) chosen = it->second;
    if (used_.emplace(k, chosen).second && !now.count(k)) save(now, k, chosen, damaged);
    return used_.at(k);
  }

  // The kinds this process used, each with its choice.
  std::vector<std::pair<Key, int>> table() {
    std::lock_guard<std::mutex> lk(mu_);
    return {used_.begin(), used_.end()};
  }

 private:
  struct Hash {
    size_t operator()(const Key& k) const {
      size_t h = 0;
      for (int64_t v : k) h = h * 1000003 ^ std::hash<int64_t>()(v);
      return h;
    }
  };
  using Map = std::unordered_map<Key, int, Hash>;

  const std::string& file() {
    if (!file_) file_ = find_file();
    return *file_;
  }
  std::string find_file() const {
    std::string dir;
    if (const char* d = std::getenv("EMOTORCH_CACHE_DIR"); d && *d) dir = d;
    else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::string(x) + "/emotorch";
    else if (const char* h = std::getenv("HOME"); h && *h) dir = std::string(h) + "/.cache/emotorch";
    else return "";
    return dir + "/" + prefix_ + machine_suffix();
  }

  // "-<hash>.txt": the hash (FNV-1a) of the libtorch version, the ISA caps and the CPU model, worked
  // out once for every store.
  static const std::string& machine_suffix() {
    static const std::string suffix = [] {
      std::string id = std::string(TORCH_VERSION) + "|" + at::get_cpu_capability();
      for (const char* v : {"ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY"}) {
        const char* e = std::getenv(v);
        id += std::string("|") + (e ? e : "");
      }
      std::ifstream cpuinfo("/proc/cpuinfo");
      for (std::string line; std::getline(cpuinfo, line);) {
        if (line.rfind("model name", 0) == 0) {
          id += "|" + line;
          break;
        }
      }
      uint64_t h = 1469598103934665603ULL;
      for (unsigned char c : id) h = (h ^ c) * 1099511628211ULL;
      char name[64];
      std::snprintf(name, sizeof name, "-%016llx.txt", static_cast<unsigned long long>(h));
      return std::string(name);
    }();
    return suffix;
  }

  // The choices written to the file so far (the first line of a kind wins). `damaged`: the file
  // has something after the last line it could read.
  Map read(bool* damaged) {
    Map m;
    if (damaged) *damaged = false;
    const std::string& f = file();
    if (f.empty()) return m;
    std::ifstream in(f);
    if (!in) return m;
    Key k{};
    int64_t g;
    bool bad = false;
    for (;;) {
      size_t i = 0;
      while (i < N && in >> k[i]) i++;
      if (i < N || !(in >> g)) break;
      if (g < 0 || g >= choices_) {
        bad = true;
        break;
      }
      m.emplace(k, static_cast<int>(g));
    }
    if (damaged) *damaged = bad || !in.eof();
    return m;
  }

  // Writes the choice for `k` (best effort: an unwritable cache folder only means the next process
  // times again): appended to the file, or, when it was damaged, the file written anew with `keep` first.
  void save(const Map& keep, const Key& k, int g, bool damaged) {
    const std::string& f = file();
    if (f.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(f).parent_path(), ec);
    std::ofstream out(f, damaged ? std::ios::trunc : std::ios::app);
    if (!out) return;
    auto line = [&](const Key& c, int b) {
      for (int64_t v : c) out << v << ' ';
      out << b << '\n';
    };
    if (damaged)
      for (const auto& [c, b] : keep) line(c, b);
    line(k, g);
  }

  const char* prefix_;
  int choices_;
  std::mutex mu_;
  Map used_;
  std::optional<Map> saved_;
  std::optional<std::string> file_;
};

// Times candidates 0 … count − 1 (run(i)) and returns the one to keep: the first (the default)
// unless another is at least 5 % faster both by its best time and by its median time, so that a
// near tie, where timing noise alone would pick, always gives the default (the choice is kept for
// good). Each candidate first runs once untimed (its first call pays for its setup: oneDNN builds
// a primitive, fresh buffers fault in), then all run in turn, in alternating order, five times
// (two where a call takes over 50 ms): a burst of another process's work has to slow most runs of
// one to turn the choice. `out` ends with the result of the call that ran last, candidate `last`.
template <class Run>
int time_each(int count, const Run& run, at::Tensor& out, int& last) {
  using clock = std::chrono::steady_clock;
  auto timed = [&](int i) {
    out = at::Tensor();  // one result alive at a time
    auto t0 = clock::now();
    out = run(i);
    last = i;
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  double slowest = 0;
  for (int i = 0; i < count; i++) slowest = std::max(slowest, timed(i));
  int rounds = slowest > 0.05 ? 2 : 5;
  std::vector<std::vector<double>> times(count);
  for (int round = 0; round < rounds; round++) {
    for (int n = 0; n < count; n++) {
      int i = round % 2 ? count - 1 - n : n;
      times[i].push_back(timed(i));
    }
  }
  for (auto& t : times) std::sort(t.begin(), t.end());
  auto median = [](const std::vector<double>& t) { return t[t.size() / 2]; };
  int fastest = 0;
  for (int i = 1; i < count; i++)
    if (times[i][0] < times[fastest][0]) fastest = i;
  bool clear = fastest != 0 && times[fastest][0] < 0.95 * times[0][0] && median(times[fastest]) < 0.95 * median(times[0]);
  return clear ? fastest : 0;
}

// run(choice) for `key`: the choice this process or an earlier one made (one out of range, from a
// damaged file, runs the default), else the candidates timed and the choice recorded. Hands out the
// kept candidate's own result, so the call that timed them gives the bits of every later call.
template <size_t N, class Run>
at::Tensor run_chosen(ChoiceStore<N>& store, const typename ChoiceStore<N>::Key& key, int count, const Run& run) {
  auto valid = [count](int c) { return c < count ? c : 0; };
  if (auto c = store.find(key)) return run(valid(*c));
  at::Tensor y;
  int last = 0;
  int fastest = time_each(count, run, y, last);
  int kept = valid(store.record(key, fastest));
  return kept == last ? y : run(kept);
}

// The kinds `store` has chosen for in this process, each key followed by its choice.
template <size_t N>
std::vector<std::array<int64_t, N + 1>> flat_table(ChoiceStore<N>& store) {
  std::vector<std::array<int64_t, N + 1>> out;
  for (const auto& [k, c] : store.table()) {
    std::array<int64_t, N + 1> r{};
    std::copy(k.begin(), k.end(), r.begin());
    r[N] = c;
    out.push_back(r);
  }
  return out;
}

inline int64_t pow2_at_least(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

}  // namespace et::nn
