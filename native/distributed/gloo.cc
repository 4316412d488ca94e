// The Gloo backend: the only file that includes ProcessGroupGloo.hpp. The pip-wheel libtorch ships
// that header but not Gloo's own, so the Gloo names it mentions come from emotorch's declaration
// shim (native/distributed/gloo_shim, after libtorch's include directories: real Gloo headers win where
// a libtorch has them). Why that is safe, and what is checked: gloo_shim/gloo/README.md.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>
#include <mutex>

#include "distributed/group.h"

namespace et::distributed {

namespace {
// Reads the protected members the library's constructor sets, at the offsets this translation
// unit computes: if the shim changed the layout, these would not be what the library wrote.
struct Probe : c10d::ProcessGroupGloo {
  static size_t contexts(c10d::ProcessGroupGloo& pg) { return (pg.*(&Probe::contexts_)).size(); }
  static size_t threads(c10d::ProcessGroupGloo& pg) { return (pg.*(&Probe::threads_)).size(); }
  static bool status(c10d::ProcessGroupGloo& pg) { return static_cast<bool>(pg.*(&Probe::pgStatus_)); }
  static bool stopped(c10d::ProcessGroupGloo& pg) { return pg.*(&Probe::stop_); }
};

std::mutex report_mutex;
std::vector<LayoutCheck> last_report;

bool is_loopback(const std::string& a) { return a == "localhost" || a.rfind("127.", 0) == 0 || a == "::1"; }
}  // namespace

std::vector<LayoutCheck> gloo_layout_report() {
  std::lock_guard<std::mutex> lk(report_mutex);
  return last_report;
}

c10::intrusive_ptr<c10d::Backend> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                                            std::chrono::milliseconds timeout, const std::string& master_addr) {
  // Options made by the library (its size, its constructor, its default device).
  auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
  // A job on one machine (MASTER_ADDR loopback) talks over loopback, whatever the host name
  // resolves to, unless GLOO_SOCKET_IFNAME says otherwise (as torch: create_default reads it).
  if (is_loopback(master_addr) && !std::getenv("GLOO_SOCKET_IFNAME"))
    opts->devices = {c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")};
  const size_t devices = opts->devices.size();
  const int threads = opts->threads;
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);

  std::vector<LayoutCheck> r;
  auto row = [&](const char* name, bool ok, std::string detail) { r.push_back({name, ok, std::move(detail)}); };
  row("Options::devices (library-filled) read here", devices >= 1, std::to_string(devices) + " device(s)");
  row("Options::threads read here is sane", threads >= 1 && threads <= 1024, std::to_string(threads));
  row("ProcessGroupGloo::options_ is the Options given", pg->getOptions().get() == opts.get(), "");
  row("Backend rank and size", pg->getRank() == rank && pg->getSize() == world,
      std::to_string(pg->getRank()) + "/" + std::to_string(pg->getSize()));
  row("contexts_ (one per device)", Probe::contexts(*pg) == devices, std::to_string(Probe::contexts(*pg)));
  row("threads_ (one per Options::threads)", Probe::threads(*pg) == static_cast<size_t>(threads), std::to_string(Probe::threads(*pg)));
  row("stop_ is false", !Probe::stopped(*pg), "");
  row("pgStatus_ (last member) set", Probe::status(*pg), "");
  row("backend name through the vtable", pg->getBackendName() == "gloo", pg->getBackendName());
  // Information only (no check: there is no reference size to compare with).
  row("info: sizeof(ProcessGroupGloo) as compiled here", true, std::to_string(sizeof(c10d::ProcessGroupGloo)));
  row("info: sizeof(ProcessGroupGloo::Options) as compiled here", true, std::to_string(sizeof(c10d::ProcessGroupGloo::Options)));
  bool ok = true;
  std::string bad;
  for (auto& c : r)
    if (!c.ok) {
      ok = false;
      bad += (bad.empty() ? "" : ", ") + c.name;
    }
  {
    std::lock_guard<std::mutex> lk(report_mutex);
    last_report = r;
  }
  if (!ok)
    throw Error("ERR_DIST_ABI", "the ProcessGroupGloo of this libtorch does not have the layout emotorch was built for (" + bad +
                                    "): rebuild emotorch against this libtorch (npm run build:native)");
  return pg;
}

}  // namespace et::distributed
