// Discrete speech units: nearest k-means centroid (squared L2) for every frame of a layer's
// hidden states, batched, with optional run-length deduplication (USDM / seamless UnitExtractor).
#pragma once
#include "models/model.h"

namespace et::audio {

// states (B, T, H), centroids (K, H), valid (B, T) bool or undefined → units (B, T) int64, −1 at
// invalid frames. Distances are computed in float32 (or the states' wider dtype) in row chunks.
// half_norms (K) = ½‖c_k‖² in that dtype on the states' device, or undefined (computed here).
at::Tensor assign_units(const at::Tensor& states, const at::Tensor& centroids, const at::Tensor& valid, const at::Tensor& half_norms = {});

// units (B, T) int64 with −1 padding → (units (B, T') with runs of one unit collapsed, −1 after
// each row's end; lengths (B) int64).
std::pair<at::Tensor, at::Tensor> dedup_units(const at::Tensor& units);

// A module holding the centroids as the buffer `centroids` (K, H).
// inputs: states (B, T, H), valid (B, T) or undefined, dedup (0-d, nonzero = collapse runs) or undefined
// outputs: units (B, T') int64 (−1 = none), lengths (B) int64
#define KMEANS_UNITS_FIELDS(X) \
  X(int64_t, num_units, 1)     \
  X(int64_t, dim, 1)
ET_CONFIG(KMeansUnitsConfig, KMEANS_UNITS_FIELDS);

struct KMeansUnits : nn::Model {
  explicit KMeansUnits(const KMeansUnitsConfig& c) : KMeansUnits(c.num_units, c.dim) {}
  KMeansUnits(int64_t num_units, int64_t dim);
  nn::Outputs forward(const nn::Inputs& in) override;
  at::Tensor centroids;

 private:
  at::Tensor half_norms;     // ½‖c_k‖² of the centroids in cached_storage at cached_version
  c10::Storage cached_storage;  // held, so that its address is not reused while cached
  int64_t cached_version = -1;
};

}  // namespace et::audio
