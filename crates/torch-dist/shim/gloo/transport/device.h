#pragma once
// Opaque declarations (see README.md): only ever held behind shared_ptr/unique_ptr.
namespace gloo {
namespace transport {
class Device;
class UnboundBuffer;
} // namespace transport
} // namespace gloo
