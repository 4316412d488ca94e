#include "audio/units.h"

#include "kernels/linear.h"

namespace et::audio {

at::Tensor assign_units(const at::Tensor& states, const at::Tensor& centroids, const at::Tensor& valid, const at::Tensor& half_norms) {
  TORCH_CHECK(states.dim() == 3, "units: expected states (batch, frames, dim) but got ", states.sizes());
  TORCH_CHECK(centroids.dim() == 2 && centroids.size(1) == states.size(2), "units: centroids ", centroids.sizes(),
              " do not match the states' dimension ", states.size(2));
  TORCH_CHECK(centroids.size(0) > 0, "units: no centroids");
  at::NoGradGuard g;
  auto dt = states.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  int64_t B = states.size(0), T = states.size(1), H = states.size(2), K = centroids.size(0);
  auto c = centroids.to(states.device(), dt);  // (K, H); a no-op for float32 centroids on the states' device
  // argmin_k ‖s − c_k‖² = argmax_k (s·c_k − ½‖c_k‖²): one linear layer per chunk, s Cᵀ with the
  // bias −½‖c‖² (nn::linear: oneDNN for float32 on CPU, reading C as it is).
  auto h = half_norms.defined() && half_norms.scalar_type() == dt && half_norms.device() == c.device() ? half_norms.view({K})
                                                                                                       : (c * c).sum(1).mul_(0.5);  // (K)
  auto bias = h.neg();
  auto rows = states.reshape({B * T, H}).to(dt);  // (B·T, H)
  auto out = at::empty({B * T}, at::TensorOptions().dtype(at::kLong).device(states.device()));
  // Row chunks keep the (rows, K) score matrix near 16 M entries.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 24) / K);
  at::Tensor scores;
  for (int64_t s = 0; s < B * T; s += chunk) {
    int64_t n = std::min(chunk, B * T - s);
    scores = nn::linear(rows.narrow(0, s, n), c, bias);  // (n, K)
    out.narrow(0, s, n).copy_(scores.argmax(1));
  }
  out = out.view({B, T});
  if (valid.defined()) {
    TORCH_CHECK(valid.sizes() == out.sizes(), "units: valid ", valid.sizes(), " does not match the states' frames ", out.sizes());
    out.masked_fill_(valid.to(at::kBool).logical_not(), -1);
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> dedup_units(const at::Tensor& units) {
  TORCH_CHECK(units.dim() == 2, "units: expected (batch, frames) but got ", units.sizes());
  auto u = units.to(at::kCPU, at::kLong).contiguous();
  int64_t B = u.size(0), T = u.size(1);
  auto out = at::full({B, T}, -1, u.options());
  auto len = at::zeros({B}, u.options());
  auto src = u.accessor<int64_t, 2>();
  auto dst = out.accessor<int64_t, 2>();
  int64_t longest = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t n = 0;
    for (int64_t t = 0; t < T; ++t) {
      int64_t v = src[b][t];
      if (v < 0) continue;
      if (n == 0 || dst[b][n - 1] != v) dst[b][n++] = v;
    }
    len[b] = n;
    longest = std::max(longest, n);
  }
  return {out.narrow(1, 0, longest).contiguous().to(units.device()), len.to(units.device())};
}

KMeansUnits::KMeansUnits(int64_t num_units, int64_t dim) {
  TORCH_CHECK(num_units > 0 && dim > 0, "units: centroids must be (K > 0, dim > 0)");
  centroids = register_buffer("centroids", at::zeros({num_units, dim}));
}

nn::Outputs KMeansUnits::forward(const nn::Inputs& in) {
  const at::Tensor& states = in.at("hidden_states");
  const at::Tensor valid = in.opt("attention_mask");
  const at::Tensor dedup_flag = in.opt("dedup");
  bool dedup = dedup_flag.defined() && dedup_flag.item<double>() != 0;
  // ½‖c‖² is cached until the centroids change: a load copies into them (their version moves), a
  // move or a dtype change gives them new storage (the cached storage is held, so its memory
  // cannot come back at the same address; inference tensors have no version: never cached). Calls
  // on one module are serialized: no lock needed.
  auto dt = states.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (centroids.is_inference() || !half_norms.defined() || !cached_storage.unsafeGetStorageImpl() ||
      centroids.storage().unsafeGetStorageImpl() != cached_storage.unsafeGetStorageImpl() || cached_version != centroids._version() ||
      half_norms.scalar_type() != dt || half_norms.device() != states.device()) {
    at::NoGradGuard g;
    auto c = centroids.to(states.device(), dt);
    half_norms = (c * c).sum(1).mul_(0.5);
    cached_storage = centroids.storage();
    cached_version = centroids.is_inference() ? -1 : centroids._version();
  }
  auto units = assign_units(states, centroids, valid, half_norms);
  if (dedup) {
    auto [d, len] = dedup_units(units);
    return {{"units", d}, {"lengths", len}};
  }
  auto len = valid.defined() ? valid.to(at::kLong).sum(1) : at::full({units.size(0)}, units.size(1), units.options());
  return {{"units", units}, {"lengths", len}};
}

static const nn::ModelKind kmeans_units_kind = nn::ModelKind::of<KMeansUnits, KMeansUnitsConfig>("kmeans_units");

}  // namespace et::audio
