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

// Reads each entry into a tensor that owns its bytes (pread straight into the tensor's storage,
// in the file's dtype: nothing is staged or allocated twice), so later changes to the file cannot
// reach a loaded tensor: no tensor views a mapping of the file, which would change silently when
// the file is rewritten in place and kill the process with SIGBUS once it is truncated. Only
// regular files are opened. Checks every byte range against the file and dtype×shape, that the
// file still has `file_size` bytes (the size its header was read at), and that it was not
// modified while it was read (its size, modification and change times before and after).
std::vector<at::Tensor> read_safetensors(const std::string& path, uint64_t data_start, const std::vector<TensorEntry>& entries,
                                         uint64_t file_size);

// Writes `header` (the JSON, already laid out for these tensors in order) and the tensors'
// bytes to a uniquely named temporary file in the same folder, then renames it over `path`.
void write_safetensors(const std::string& path, const std::string& header, const std::vector<at::Tensor>& tensors);

}  // namespace et::io
