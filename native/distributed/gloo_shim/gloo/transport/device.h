// emotorch declaration shim (see README.md): names only; held through smart pointers.
#pragma once

namespace gloo::transport {
class Device;
class UnboundBuffer;
}  // namespace gloo::transport
