#include "io/safetensors.h"

#include <ATen/Parallel.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace et::io {

namespace {

std::string sys_error(const std::string& what, const std::string& path) { return what + " '" + path + "': " + std::strerror(errno); }

// Opens a regular file for reading without blocking on FIFOs or devices.
int open_regular(const std::string& path, struct stat* st) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  TORCH_CHECK(fd >= 0, sys_error("cannot open", path));
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    int err = errno;
    ::close(fd);
    errno = err;
    TORCH_CHECK(false, "'", path, "' is not a regular file");
  }
  return fd;
}

// Reads exactly n bytes at offset, or fails naming the file (short reads mean it shrank).
void read_exact(int fd, char* dst, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t r = ::pread(fd, dst, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    TORCH_CHECK(r >= 0, sys_error("cannot read", path));
    TORCH_CHECK(r > 0, "safetensors file '", path, "' is truncated (it changed while being read?)");
    dst += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// Removes `<name>.tmp-<pid>[-…]` files next to `path` left by saves whose process is gone (a
// save killed mid-write cannot clean up after itself).
void remove_stale_temporaries(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (struct dirent* ent = ::readdir(d)) {
    std::string name = ent->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* end = nullptr;
    long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (pid <= 0 || end == name.c_str() + prefix.size() || (*end != '\0' && *end != '-')) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // its writer may still be running
    std::remove((dir + "/" + name).c_str());
  }
  ::closedir(d);
}

struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

// What changes when a file is rewritten or truncated in place.
bool same_file_state(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

// One pread of a tensor's bytes (a large tensor is read as several, in parallel).
struct Piece {
  char* dst;
  uint64_t n, offset;
};

}  // namespace

// Tensors own their bytes, read with pread into each tensor's own storage: a view of a mapped
// file (mmap, private or shared) follows the file when another program rewrites it in place
// (unmodified private pages are the page cache's) and dies with SIGBUS once it is truncated, so
// no loaded tensor may alias the file. Memory at load is the tensors' own, nothing else.
std::vector<at::Tensor> read_safetensors(const std::string& path, uint64_t data_start, const std::vector<TensorEntry>& entries,
                                         uint64_t file_size) {
  struct stat st;
  Fd file{open_regular(path, &st)};
  uint64_t size = static_cast<uint64_t>(st.st_size);
  TORCH_CHECK(size == file_size, "safetensors file '", path, "' changed after its header was read: it had ", file_size,
              " bytes and now has ", size);
  TORCH_CHECK(data_start <= size, "safetensors file '", path, "' is truncated: header ends at byte ", data_start, " but the file has ",
              size);
  uint64_t data_size = size - data_start;
  std::vector<at::Tensor> out;
  out.reserve(entries.size());
  std::vector<Piece> pieces;
  constexpr uint64_t kPiece = 16ull << 20;
  for (const auto& e : entries) {
    TORCH_CHECK(e.begin <= e.end && e.end <= data_size, "safetensors file '", path, "' is truncated: tensor '", e.name, "' needs bytes [",
                e.begin, ", ", e.end, ") of a data section of ", data_size);
    int64_t numel = 1;
    for (auto d : e.shape) numel *= d;
    uint64_t nbytes = static_cast<uint64_t>(numel) * at::elementSize(e.dtype);
    TORCH_CHECK(nbytes == e.end - e.begin, "safetensors file '", path, "': tensor '", e.name, "' has ", e.end - e.begin,
                " bytes but its dtype and shape need ", nbytes);
    auto t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    auto* dst = static_cast<char*>(t.data_ptr());
    for (uint64_t off = 0; off < nbytes; off += kPiece)
      pieces.push_back({dst + off, std::min(kPiece, nbytes - off), data_start + e.begin + off});
    out.push_back(std::move(t));
  }
  ::posix_fadvise(file.fd, static_cast<off_t>(data_start), 0, POSIX_FADV_SEQUENTIAL);
  // the pieces in parallel: copying out of the page cache into fresh pages is bound by the page
  // faults of one thread, not by the memory's bandwidth
  at::parallel_for(0, static_cast<int64_t>(pieces.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) read_exact(file.fd, pieces[i].dst, pieces[i].n, pieces[i].offset, path);
  });
  struct stat after;
  TORCH_CHECK(::fstat(file.fd, &after) == 0, sys_error("cannot stat", path));
  TORCH_CHECK(same_file_state(st, after), "safetensors file '", path,
              "' was modified while it was read (another program wrote to it): load it again once it is complete");
  return out;
}

void write_safetensors(const std::string& path, const std::string& header, const std::vector<at::Tensor>& tensors) {
  // A temporary name no other save shares (same process included), created exclusively; the
  // rename makes the file appear whole or not at all.
  remove_stale_temporaries(path);
  static std::atomic<uint64_t> counter{0};
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
                    std::to_string(static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) & 0xffffff);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  TORCH_CHECK(fd >= 0, sys_error("cannot create", tmp));
  FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    ::close(fd);
    std::remove(tmp.c_str());
    TORCH_CHECK(false, sys_error("cannot open", tmp));
  }
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
