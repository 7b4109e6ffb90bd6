// A process-wide pool of worker threads for splitting a batch (Model.predict(x, threads=N)).
//
// No heap allocation per call: the workers are created once (when a call first needs them)
// and wait on a condition variable; a call publishes a plain function pointer and a context,
// runs part 0 itself, and waits for the others. One call at a time: a second caller that
// finds the pool busy gets false from try_run and runs its batch on its own thread (the
// results are the same bits either way).
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace pymicro {

class Pool {
 public:
  static constexpr unsigned kMaxThreads = 256;

  static Pool& get() {
    static Pool* pool = new Pool;  // leaked: its workers wait forever, detached, until exit
    return *pool;
  }

  // CPUs this process may run on (its affinity mask), at least 1.
  static unsigned cpus() {
    static const unsigned n = [] {
#if defined(__linux__)
      cpu_set_t set;
      if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return unsigned(CPU_COUNT(&set));
#endif
      unsigned h = std::thread::hardware_concurrency();
      return h ? h : 1u;
    }();
    return n;
  }

  // fn(ctx, i) for i in [0, parts): part 0 on the caller, the rest on workers. false, having
  // done nothing, if another call holds the pool.
  bool try_run(unsigned parts, void (*fn)(void*, unsigned), void* ctx) {
    std::unique_lock<std::mutex> busy(call_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    grow(parts - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn;
      ctx_ = ctx;
      parts_ = parts;
      pending_ = parts - 1;
      ++generation_;
    }
    start_.notify_all();
    fn(ctx, 0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return pending_ == 0; });
    return true;
  }

 private:
  void grow(unsigned workers) {
    while (threads_ < workers) {
      const unsigned index = ++threads_;  // parts 1.. run on workers 1..
      std::thread([this, index] { work(index); }).detach();
    }
  }

  void work(unsigned index) {
    unsigned long long seen = 0;
    {
      std::lock_guard<std::mutex> lk(m_);
      seen = generation_;  // a worker created for a call joins it below if its part is there
      if (index < parts_ && pending_) seen = generation_ - 1;
    }
    for (;;) {
      void (*fn)(void*, unsigned);
      void* ctx;
      {
        std::unique_lock<std::mutex> lk(m_);
        start_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= parts_) continue;
        fn = fn_;
        ctx = ctx_;
      }
      fn(ctx, index);
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex call_, m_;
  std::condition_variable start_, done_;
  void (*fn_)(void*, unsigned) = nullptr;
  void* ctx_ = nullptr;
  unsigned parts_ = 0, pending_ = 0, threads_ = 0;
  unsigned long long generation_ = 0;
};

}  // namespace pymicro
