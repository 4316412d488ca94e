#include "io/filelock.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "error.h"

#if defined(_WIN32)
namespace et::io {
bool try_lock_file(int) { throw CodedError("ERR_IO", "file locks (flock) are not available on Windows"); }
void unlock_file(int) {}
}  // namespace et::io
#else
#include <sys/file.h>

namespace et::io {

bool try_lock_file(int fd) {
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    // filelock treats these as "held elsewhere"; EINTR is retried
    if (errno == EWOULDBLOCK || errno == EAGAIN || errno == EACCES) return false;
    if (errno == EINTR) continue;
    throw CodedError("ERR_IO", std::string("cannot lock the file: flock: ") + std::strerror(errno));
  }
}

void unlock_file(int fd) {
  while (::flock(fd, LOCK_UN) != 0 && errno == EINTR) {
  }
}

}  // namespace et::io
#endif
