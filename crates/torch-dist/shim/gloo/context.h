#pragma once
// Opaque declaration (see README.md): ProcessGroupGloo holds contexts behind shared_ptr and its
// inline `setTimeout` (never called by the shim) names this member.
#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
