// Advisory file locks as Python's filelock takes them (flock(2), exclusive): the locks
// huggingface_hub holds on `.locks/<repo folder>/<etag>.lock` while it downloads a blob.
#pragma once

namespace et::io {

// Takes an exclusive flock on an open descriptor without waiting: true when taken, false when
// another open file description holds it. Throws CodedError ERR_IO for any other failure.
bool try_lock_file(int fd);

// Releases it (closing the descriptor releases it too).
void unlock_file(int fd);

}  // namespace et::io
