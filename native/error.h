// An exception with a stable code (`EmotorchError.code` in JS), for native code that must not
// include napi.h (native/distributed, ...). The bridge maps it to an EmotorchError with that code.
#pragma once
#include <stdexcept>
#include <string>

namespace et {
struct CodedError : std::runtime_error {
  CodedError(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
  std::string code;
};
}  // namespace et
