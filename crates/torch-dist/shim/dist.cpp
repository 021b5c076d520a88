// The C face of c10d that the Rust crate `torch-dist` calls: a TCPStore rendezvous, a Gloo
// process group (an NCCL one is in `nccl.cpp`, built with the `nccl` feature), and the
// all_reduce / broadcast / barrier of either, each waited on with a timeout.
//
// Every function catches every C++ exception and returns its message as a malloc'd string
// (NULL on success; the caller frees it with `tdist_free_error`): nothing unwinds into Rust.
// Tensors arrive as `at::Tensor*`, the representation of torch-sys's `C_tensor`.

#include "common.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

namespace {

using tdist::Group;
using tdist::guarded;

std::vector<at::Tensor> tensors_of(at::Tensor** ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    out.push_back(*ts[i]);
  }
  return out;
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, std::chrono::milliseconds timeout) {
  if (!work->wait(timeout)) {
    throw std::runtime_error("the collective did not complete within the timeout");
  }
}

// One collective per tensor (Gloo reads a list as one tensor per local device), all queued
// before the first wait.
template <typename Issue>
void each_then_wait(std::vector<at::Tensor>& tensors, std::chrono::milliseconds timeout, Issue issue) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (auto& t : tensors) {
    std::vector<at::Tensor> one{t};
    works.push_back(issue(one));
  }
  for (auto& w : works) {
    wait(w, timeout);
  }
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

} // namespace

extern "C" {

void tdist_free_error(char* e) {
  std::free(e);
}

// Rendezvous at `addr:port` (rank 0 serves the store) and a Gloo group over it.
// `ifname`: the network interface Gloo binds to (GLOO_SOCKET_IFNAME), or NULL/empty for the
// loopback when `addr` is a loopback address, else the address this host's name resolves to.
char* tdist_new_gloo(
    const char* addr,
    int port,
    int rank,
    int world,
    int64_t timeout_ms,
    const char* ifname,
    tdist_group** out) {
  *out = nullptr;
  return guarded([&] {
    std::chrono::milliseconds timeout(timeout_ms);
    auto store = tdist::rendezvous(addr, port, rank, world, timeout);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    std::string host(addr);
    if (ifname != nullptr && ifname[0] != '\0') {
      options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForInterface(std::string(ifname)));
    } else if (is_loopback(host)) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 1;
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);
    *out = new Group{store, backend, rank, world};
  });
}

void tdist_free(tdist_group* g) {
  delete g;
}

// `op`: 0 sum, 1 average (a sum divided by the world size: Gloo has no AVG).
char* tdist_all_reduce(tdist_group* g, at::Tensor** ts, int n, int op, int64_t timeout_ms) {
  return guarded([&] {
    std::vector<at::Tensor> tensors = tensors_of(ts, n);
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    each_then_wait(tensors, o.timeout, [&](std::vector<at::Tensor>& one) {
      return g->backend->allreduce(one, o);
    });
    if (op == 1) {
      for (auto& t : tensors) {
        t.div_(g->world);
      }
    }
  });
}

char* tdist_broadcast(tdist_group* g, at::Tensor** ts, int n, int root, int64_t timeout_ms) {
  return guarded([&] {
    std::vector<at::Tensor> tensors = tensors_of(ts, n);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.rootTensor = 0;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    each_then_wait(tensors, o.timeout, [&](std::vector<at::Tensor>& one) {
      return g->backend->broadcast(one, o);
    });
  });
}

char* tdist_barrier(tdist_group* g, int64_t timeout_ms) {
  return guarded([&] {
    c10d::BarrierOptions o;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    wait(g->backend->barrier(o), o.timeout);
  });
}

} // extern "C"
