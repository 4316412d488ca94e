// safetensors files: reading into owned memory, atomic writing. The JSON header is parsed and
// validated in TypeScript (lib/io/safetensors.ts); these functions take its parsed entries.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace et::io {

struct TensorEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // byte offsets relative to the start of the data section
};

// Reads each entry into a tensor that owns its bytes (so later changes to the file cannot reach
// it); only regular files are opened. Checks every byte range against the file and dtype×shape.
// With `map`, the file is memory-mapped instead (private, copy-on-write) and each tensor whose
// bytes lie aligned to its element size views the mapping without a copy (the others are read as
// above); the mapping lives as long as one of its tensors does. Nothing is read until used, and
// the pages are the page cache's: a checkpoint loads in no more memory than its file. The file must
// not shrink while its tensors live (as with safetensors' own safe_open).
std::vector<at::Tensor> read_safetensors(const std::string& path, uint64_t data_start,
                                         const std::vector<TensorEntry>& entries, bool map = false);

// Writes `header` (the JSON, already laid out for these tensors in order) and the tensors'
// bytes to a uniquely named temporary file in the same folder, then renames it over `path`.
void write_safetensors(const std::string& path, const std::string& header, const std::vector<at::Tensor>& tensors);

}  // namespace et::io
