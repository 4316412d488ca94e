// emotorch declaration shim (see README.md). Declared only: emotorch never calls it (the inline
// ProcessGroupGloo::setTimeout that mentions it is not used).
#pragma once
#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
}  // namespace gloo
