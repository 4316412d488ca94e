#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace et::io {

namespace {

struct Mapping {
  void* addr = MAP_FAILED;
  size_t size = 0;
  ~Mapping() {
    if (addr != MAP_FAILED && size > 0) munmap(addr, size);
  }
};

std::string sys_error(const std::string& what, const std::string& path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

}  // namespace

std::vector<at::Tensor> read_safetensors(const std::string& path, uint64_t data_start,
                                         const std::vector<TensorEntry>& entries) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, sys_error("cannot open", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    TORCH_CHECK(false, sys_error("cannot stat", path));
  }
  auto map = std::make_shared<Mapping>();
  map->size = static_cast<size_t>(st.st_size);
  if (map->size > 0) map->addr = mmap(nullptr, map->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  TORCH_CHECK(map->size == 0 || map->addr != MAP_FAILED, sys_error("cannot map", path));
  TORCH_CHECK(data_start <= map->size, "safetensors file '", path, "' is truncated: header ends at byte ", data_start,
              " but the file has ", map->size);
  uint64_t data_size = map->size - data_start;
  std::vector<at::Tensor> out;
  out.reserve(entries.size());
  for (const auto& e : entries) {
    TORCH_CHECK(e.begin <= e.end && e.end <= data_size, "safetensors file '", path, "' is truncated: tensor '", e.name,
                "' needs bytes [", e.begin, ", ", e.end, ") of a data section of ", data_size);
    int64_t numel = 1;
    for (auto d : e.shape) numel *= d;
    uint64_t nbytes = static_cast<uint64_t>(numel) * at::elementSize(e.dtype);
    TORCH_CHECK(nbytes == e.end - e.begin, "safetensors file '", path, "': tensor '", e.name, "' has ", e.end - e.begin,
                " bytes but its dtype and shape need ", nbytes);
    char* ptr = static_cast<char*>(map->addr) + data_start + e.begin;
    auto opts = at::TensorOptions().dtype(e.dtype);
    if (nbytes == 0) {
      out.push_back(at::empty(e.shape, opts));
    } else if (reinterpret_cast<uintptr_t>(ptr) % at::elementSize(e.dtype) != 0) {
      // Misaligned data (a header not padded to 8 bytes): copy instead of viewing.
      auto t = at::empty(e.shape, opts);
      std::memcpy(t.data_ptr(), ptr, nbytes);
      out.push_back(t);
    } else {
      out.push_back(at::from_blob(ptr, e.shape, [map](void*) {}, opts));
    }
  }
  return out;
}

void write_safetensors(const std::string& path, const std::string& header, const std::vector<at::Tensor>& tensors) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  TORCH_CHECK(f, sys_error("cannot create", tmp));
  auto fail = [&](const std::string& msg) {
    std::fclose(f);
    std::remove(tmp.c_str());
    TORCH_CHECK(false, msg);
  };
  uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  if (std::fwrite(len, 1, 8, f) != 8 || std::fwrite(header.data(), 1, n, f) != n) fail(sys_error("cannot write", tmp));
  for (const auto& t : tensors) {
    auto c = t.detach().to(at::kCPU).contiguous();
    size_t nbytes = c.numel() * c.element_size();
    if (nbytes && std::fwrite(c.data_ptr(), 1, nbytes, f) != nbytes) fail(sys_error("cannot write", tmp));
  }
  if (std::fflush(f) != 0 || fsync(fileno(f)) != 0) fail(sys_error("cannot flush", tmp));
  std::fclose(f);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    TORCH_CHECK(false, sys_error("cannot rename into", path));
  }
}

}  // namespace et::io
