// What the shim's sources share: the group, the error plumbing, the rendezvous store.
#pragma once

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace tdist {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int world;
};

inline char* error_of(const std::string& what) {
  char* s = static_cast<char*>(std::malloc(what.size() + 1));
  if (s != nullptr) {
    std::memcpy(s, what.c_str(), what.size() + 1);
  }
  return s;
}

// Runs `f`, turning every C++ exception into a malloc'd message (NULL on success).
template <typename F>
char* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error& e) {
    return error_of(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return error_of(e.what());
  } catch (...) {
    return error_of("an unknown C++ exception");
  }
}

// The rendezvous: a TCPStore at `addr:port`, served by rank 0, waiting for all `world` workers
// at most `timeout`.
inline c10::intrusive_ptr<c10d::Store> rendezvous(
    const char* addr, int port, int rank, int world, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = rank == 0;
  so.numWorkers = static_cast<std::size_t>(world);
  so.waitWorkers = true;
  so.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(std::string(addr), so);
}

} // namespace tdist

extern "C" {
typedef struct tdist::Group tdist_group;
}
