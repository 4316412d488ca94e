#include "runtime/cpu_share.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace et::runtime {

namespace {

// User + system CPU time of every thread of this process (children not included: they count as
// other processes).
double self_cpu_s() {
  rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// Busy seconds summed over the CPUs this process may run on (user, nice, system, irq, softirq and
// steal: a core the hypervisor took is not ours either), from /proc/stat's per-CPU lines; also how
// many CPUs those are. False where either cannot be read.
bool busy_cpu_s(double* busy, int* cpus) {
  cpu_set_t mask;
  if (sched_getaffinity(0, sizeof mask, &mask) != 0) return false;
  FILE* f = std::fopen("/proc/stat", "re");
  if (!f) return false;
  static const double tick = 1.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  char line[512];
  unsigned long long total = 0;
  int n = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "cpu", 3) != 0) {
      if (n) break;  // the per-CPU lines come first, together
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(line[3]))) continue;  // "cpu  ..." is the sum
    int id = -1;
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    if (std::sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &id, &user, &nice, &system, &idle, &iowait, &irq, &softirq,
                    &steal) < 5)
      continue;
    if (id < 0 || id >= CPU_SETSIZE || !CPU_ISSET(id, &mask)) continue;
    total += user + nice + system + irq + softirq + steal;
    ++n;
  }
  std::fclose(f);
  if (n == 0) return false;
  *busy = static_cast<double>(total) * tick;
  *cpus = n;
  return true;
}

}  // namespace

int share_threads(int want, int current, int cpus, double others, bool& pending) {
  want = std::max(want, 1);
  current = std::clamp(current, 1, want);
  double idle = cpus - std::max(others, 0.0);
  int keep = std::clamp(static_cast<int>(std::floor(idle + 0.6)), 1, want);  // others < 0.4 of a core: free
  int take = std::clamp(static_cast<int>(std::floor(idle + 0.4)), 1, want);  // others ≥ 0.6: taken
  if (current < take) {
    pending = false;
    return take;
  }
  if (current > keep) {
    if (pending) {
      pending = false;
      return keep;
    }
    pending = true;
    return current;
  }
  pending = false;
  return current;
}

double CpuShare::now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int CpuShare::threads_for(int want) {
  if (unavailable_) return want;
  want = std::max(want, 1);
  current_ = current_ > 0 ? std::min(current_, want) : want;
  double t = now();
  if (t_ >= 0 && t - t_ < 0.2) return current_;
  double busy = 0, self = self_cpu_s();
  int cpus = 0;
  if (self < 0 || !busy_cpu_s(&busy, &cpus)) {
    unavailable_ = true;
    return want;
  }
  if (t_ >= 0) {
    // /proc/stat counts in ticks (10 ms) and this process's time more finely: clamp the noise
    double others = std::max(0.0, ((busy - busy_) - (self - self_)) / (t - t_));
    int next = share_threads(want, current_, cpus, others, pending_);
    if (ran_ < 0.5 * (t - t_) && (next < current_ || pending_)) pending_ = false;  // mostly idle: no vote to give threads up
    else current_ = next;
  }
  ran_ = 0;
  t_ = t;
  busy_ = busy;
  self_ = self;
  return current_;
}

}  // namespace et::runtime
