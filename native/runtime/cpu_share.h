// Adaptive intra-op threads: how much of this process's CPUs other processes take, and the thread
// count that leaves them their share. With one busy neighbour on 2 cores, a 2-thread team has one
// thread sharing a core with it, and every parallel region waits for that thread: a step took
// 2.5x its quiet time. One thread on the free core takes about 1.7x (npm run bench -- mlp
// --neighbour). Opt-in (et.setAdaptiveThreads): a thread count that follows the load makes
// results depend on it in the last bits (reductions split by thread).
#pragma once

namespace et::runtime {

// The thread count to run with, given `want` (the count asked for), `current` (the count in use),
// `cpus` (the CPUs this process may run on) and `others` (cores' worth of CPU time other processes
// took on them over the last window). A core counts as taken when others use 0.6 of it or more,
// and as free again when they use less than 0.4 (hysteresis). Threads are given up only when two
// windows in a row agree (`pending` carries the first one's vote), so a neighbour that has just
// ended does not cost a core; free cores are taken back at once. Always within [1, want].
int share_threads(int want, int current, int cpus, double others, bool& pending);

// Samples /proc/stat and this process's CPU time; one per compute thread (not thread-safe).
class CpuShare {
 public:
  // The thread count for the next heavy call: `want` until a window of at least 0.2 s has passed
  // since the previous sample, then share_threads over that window. A window in which the compute
  // thread was busy less than half the time gives no vote to give threads up: what others ran
  // then was not beside our calls (trials that alternate with another process's). `want` where
  // /proc/stat or the affinity mask cannot be read (not Linux).
  int threads_for(int want);
  // Adds a heavy call's wall time to the current window.
  void ran(double seconds) { ran_ += seconds; }
  static double now();
  // Forgets the windows so far (when adaptive threads are turned on again).
  void reset() { *this = CpuShare(); }

 private:
  double t_ = -1, busy_ = 0, self_ = 0, ran_ = 0;
  int current_ = 0;
  bool pending_ = false, unavailable_ = false;
};

}  // namespace et::runtime
