// The NCCL process group of the shim (built with the `nccl` feature): `ProcessGroupNCCL` from
// `libtorch_cuda.so`, over the same TCPStore rendezvous as the Gloo group. Its collectives are
// the backend-independent `tdist_all_reduce` / `tdist_broadcast` / `tdist_barrier` of
// `dist.cpp`; NCCL reduces CUDA tensors on the group's device.

#include "common.hpp"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

extern "C" {

// Rendezvous at `addr:port` and an NCCL group over it, on CUDA device `device` (made this
// thread's current device). Fails with a message when no CUDA device is visible or `device` is
// not one of them.
char* tdist_new_nccl(
    const char* addr,
    int port,
    int rank,
    int world,
    int64_t timeout_ms,
    int device,
    tdist_group** out) {
  *out = nullptr;
  return tdist::guarded([&] {
    const auto count = static_cast<int>(c10::cuda::device_count());
    if (count == 0) {
      throw std::runtime_error("NCCL needs a CUDA device, and this process sees none");
    }
    if (device < 0 || device >= count) {
      throw std::runtime_error(
          "CUDA device " + std::to_string(device) + " does not exist (this process sees " +
          std::to_string(count) + ")");
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    std::chrono::milliseconds timeout(timeout_ms);
    auto store = tdist::rendezvous(addr, port, rank, world, timeout);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
    *out = new tdist::Group{store, backend, rank, world};
  });
}

} // extern "C"
