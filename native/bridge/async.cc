// The one async helper (run_async, run_async_comm) and the one compute thread every heavy call
// runs on; grad mode and autocast are captured on the JS thread and applied there.
#include "bridge/bridge.h"
#include "runtime/cpu_share.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <thread>

namespace et::bridge {

namespace {

// Autocast state is thread-local like grad mode: captured on the JS thread, applied in the worker.
struct AutocastState {
  bool cpu = false, cuda = false;
  at::ScalarType cpu_dtype = at::kBFloat16, cuda_dtype = at::kHalf;
  static AutocastState capture() {
    AutocastState s;
    s.cpu = at::autocast::is_autocast_enabled(at::kCPU);
    s.cuda = at::autocast::is_autocast_enabled(at::kCUDA);
    s.cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    s.cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
    return s;
  }
  void apply() const {
    at::autocast::set_autocast_enabled(at::kCPU, cpu);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
  }
  bool any() const { return cpu || cuda; }
};

// ATen sets a thread's OpenMP thread count from a process-wide value the first time the thread
// reaches a parallel loop (at::internal::lazy_init_num_threads, inline, so libtorch and this addon
// each have a per-thread flag of their own). Run both first, so that a later first parallel loop
// cannot overwrite the count this thread is given.
void settle_lazy_thread_init() {
  at::internal::lazy_init_num_threads();  // this addon's copy
  at::get_num_threads();                  // libtorch's
}

// The one compute thread. Every heavy call runs here, not on the libuv thread that picked it up:
// libgomp gives each thread that opens a parallel region a team of its own, and once a process
// has more OpenMP threads than cores, every team stops spinning between regions and pays a futex
// wake-up per region (the LLaMA step of `npm run bench -- trainer` ran 2.8x slower than PyTorch
// on 2 cores because of this). One thread, one team: the way PyTorch runs from Python. A call's
// job is queued on the JS thread when the call is made, so jobs run in call order (collectives
// must start in the same order on every rank); the libuv thread of its async work only waits for
// it, so Node's async-work lifecycle (cancellation, env teardown) is unchanged. The JS thread
// itself runs its synchronous ops single-threaded (init_threads).
class ComputeThread {
 public:
  struct Job {
    std::function<void()> f;  // must not throw
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  static ComputeThread& get() {
    static ComputeThread* t = new ComputeThread();  // never destroyed: the thread outlives statics
    return *t;
  }
  // Queues `f` behind every job queued before it.
  std::shared_ptr<Job> submit(std::function<void()> f) {
    auto job = std::make_shared<Job>();
    job->f = std::move(f);
    {
      std::lock_guard<std::mutex> lk(m_);
      queue_.push_back(job);
    }
    cv_.notify_one();
    return job;
  }
  static void wait(Job& job) {
    std::unique_lock<std::mutex> lk(job.m);
    job.cv.wait(lk, [&] { return job.done; });
  }
  void set_threads(int n) { threads_.store(n); }
  int threads() const { return threads_.load(); }
  // Adaptive threads (runtime/cpu_share.h): fewer than threads() while other processes take cores.
  void set_adaptive(bool on) { adaptive_.store(on); }
  bool adaptive() const { return adaptive_.load(); }
  // The count the last heavy call ran with (threads() before the first).
  int active_threads() const {
    int a = active_.load();
    return a > 0 ? a : threads_.load();
  }

 private:
  ComputeThread() {
    std::thread([this] { loop(); }).detach();
  }
  void loop() {
    int applied = -1;
    bool was_adaptive = false;
    runtime::CpuShare share;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return !queue_.empty(); });
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      int want = threads_.load();
      bool adaptive = adaptive_.load();
      if (adaptive && !was_adaptive) share.reset();
      was_adaptive = adaptive;
      if (adaptive) want = share.threads_for(want);
      if (want != applied) {
        settle_lazy_thread_init();
        at::set_num_threads(want);
        applied = want;
        active_.store(want);
      }
      if (adaptive) {
        double t0 = runtime::CpuShare::now();
        job->f();
        share.ran(runtime::CpuShare::now() - t0);
      } else {
        job->f();
      }
      job->f = nullptr;  // drop what it captured here
      {
        std::lock_guard<std::mutex> lk(job->m);
        job->done = true;
      }
      job->cv.notify_one();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::atomic<int> threads_{0};
  std::atomic<int> active_{0};
  std::atomic<bool> adaptive_{false};
};

// What a call's jobs share with its async work (owned by both, so a job queued for a task that
// Node drops still has what it runs on).
struct TaskState {
  std::shared_ptr<std::mutex> lock;
  std::function<void()> work, wait, after;
  std::string default_code, code, message;
  bool grad, failed = false;
  AutocastState autocast;

  void fail() {
    std::tie(code, message) = describe_current_exception(default_code);
    failed = true;
  }
  // Runs `work` with the caller's grad mode and autocast state (thread-local, so set here).
  void compute() {
    c10::AutoGradMode g(grad);
    std::unique_lock<std::mutex> held;
    if (lock) held = std::unique_lock<std::mutex>(*lock);
    AutocastState before = AutocastState::capture();
    autocast.apply();
    if (autocast.any()) at::autocast::increment_nesting();
    try {
      work();
    } catch (...) {
      fail();
    }
    if (autocast.any() && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    before.apply();
    work = nullptr;  // drop captured tensors on the compute thread
  }
};

class Task : public Napi::AsyncWorker {
 public:
  Task(Napi::Env env, const char* name, std::shared_ptr<std::mutex> lock, std::function<void()> work,
       std::function<Napi::Value(Napi::Env)> done, std::string default_code)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        s_(std::make_shared<TaskState>()),
        done_(std::move(done)) {
    s_->lock = std::move(lock);
    s_->work = std::move(work);
    s_->default_code = std::move(default_code);
    s_->grad = c10::GradMode::is_enabled();
    s_->autocast = AutocastState::capture();
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  // Communication tasks: a wait on the libuv thread, then more work on the compute thread.
  void set_comm(std::function<void()> wait, std::function<void()> after) {
    s_->wait = std::move(wait);
    s_->after = std::move(after);
  }
  // On the JS thread, at call time: the first job joins the compute queue, then the async work.
  void start() {
    first_ = ComputeThread::get().submit([s = s_] { s->compute(); });
    Queue();
  }

  void Execute() override {
    ComputeThread::wait(*first_);
    first_.reset();
    TaskState& s = *s_;
    if (!s.failed && s.wait) {
      try {
        s.wait();
      } catch (...) {
        s.fail();
      }
    }
    s.wait = nullptr;
    if (!s.failed && s.after) {
      s.work = std::move(s.after);
      ComputeThread::wait(*ComputeThread::get().submit([st = s_] { st->compute(); }));
    }
    s.after = nullptr;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (s_->failed) {
      deferred_.Reject(make_error(env, s_->code, s_->message).Value());
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      auto [code, msg] = describe_current_exception(s_->default_code);
      deferred_.Reject(make_error(env, code, msg).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  // Replaces node-addon-api's version, which lets a failing N-API call escape as a C++ exception
  // (std::terminate) when the environment is being torn down, e.g. a worker_threads Worker
  // terminated while this task ran: then nobody is left to receive the result, so drop it.
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status != napi_cancelled) {
      try {
        Napi::HandleScope scope(env);
        OnOK();
      } catch (...) {
      }
    }
    Destroy();
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<TaskState> s_;
  std::shared_ptr<ComputeThread::Job> first_;
  std::function<Napi::Value(Napi::Env)> done_;
};
}  // namespace

Napi::Promise run_async(Napi::Env env, const char* name, std::shared_ptr<std::mutex> lock, std::function<void()> work,
                        std::function<Napi::Value(Napi::Env)> done, std::string default_code) {
  auto* task = new Task(env, name, std::move(lock), std::move(work), std::move(done), std::move(default_code));
  auto p = task->promise();
  task->start();
  return p;
}

Napi::Promise run_async_comm(Napi::Env env, const char* name, std::function<void()> issue, std::function<void()> wait,
                             std::function<void()> after, std::function<Napi::Value(Napi::Env)> done, std::string default_code) {
  auto* task = new Task(env, name, nullptr, std::move(issue), std::move(done), std::move(default_code));
  task->set_comm(std::move(wait), std::move(after));
  auto p = task->promise();
  task->start();
  return p;
}

int compute_threads() { return ComputeThread::get().threads(); }
void set_compute_threads(int n) { ComputeThread::get().set_threads(n); }
void set_adaptive_threads(bool on) { ComputeThread::get().set_adaptive(on); }
bool adaptive_threads() { return ComputeThread::get().adaptive(); }
int active_compute_threads() { return ComputeThread::get().active_threads(); }

void init_compute_thread() {
  static std::once_flag once;
  std::call_once(once, [] { ComputeThread::get().set_threads(at::get_num_threads()); });  // libtorch's default
  settle_lazy_thread_init();
  at::set_num_threads(1);
}

}  // namespace et::bridge
