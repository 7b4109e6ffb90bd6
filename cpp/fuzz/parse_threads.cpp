// Concurrent parsing, for ThreadSanitizer (tests/test_sanitizers.py).
//
//   parse_threads [--canary] THREADS ROUNDS BLOB...
//
// Starts THREADS threads that meet at a barrier, then each parses every BLOB (checksum
// included) ROUNDS times: the process's first parses run concurrently, which is where a
// lazily initialised table would race. Afterwards each thread's answers (accepted or not,
// the offset at fault, the CRC) must equal a parse made alone.
// --canary adds a deliberate data race (an unsynchronised counter) so a test can show the
// sanitizer is live. Exit status: 0 clean, 1 a thread disagreed, 2 usage; a TSan report
// exits nonzero by itself (TSAN_OPTIONS=halt_on_error=1 exitcode=66).
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <memory>

#include "pymicro/container.hpp"  // parse.hpp, and ensemble containers

namespace {

struct Result {
  bool ok;
  uint64_t offset;
  uint32_t crc;
};

Result parse_one(const std::vector<uint8_t>& b) {
  if (pymicro::is_container(b.data(), b.size())) {  // an ensemble: its members parse concurrently too
    auto cv = std::make_unique<pymicro::ContainerView>();
    pymicro::Status st;
    bool ok = pymicro::parse_container(b.data(), b.size(), cv.get(), &st, true);
    return {ok, ok ? 0 : st.offset, ok ? cv->crc : 0};
  }
  pymicro::BlobView v;
  pymicro::Status st;
  bool ok = pymicro::parse(b.data(), b.size(), &v, &st, true);
  return {ok, ok ? 0 : st.offset, ok ? v.crc : 0};
}

long canary_counter = 0;  // written by every thread with no synchronisation (--canary)

}  // namespace

int main(int argc, char** argv) {
  int a = 1;
  bool canary = false;
  if (a < argc && std::strcmp(argv[a], "--canary") == 0) {
    canary = true;
    ++a;
  }
  if (argc - a < 3) {
    std::fprintf(stderr, "usage: parse_threads [--canary] THREADS ROUNDS BLOB...\n");
    return 2;
  }
  const int threads = std::atoi(argv[a]), rounds = std::atoi(argv[a + 1]);
  std::vector<std::vector<uint8_t>> blobs;
  for (int i = a + 2; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "cannot read %s\n", argv[i]);
      return 2;
    }
    blobs.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  std::atomic<int> arrived{0};
  std::vector<std::vector<Result>> got(threads, std::vector<Result>(blobs.size()));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      arrived.fetch_add(1);
      while (arrived.load() < threads) {
      }
      for (int r = 0; r < rounds; ++r)
        for (size_t i = 0; i < blobs.size(); ++i) {
          got[t][i] = parse_one(blobs[i]);
          if (canary) canary_counter = canary_counter + 1;
        }
    });
  for (auto& th : pool) th.join();
  int accepted = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const Result want = parse_one(blobs[i]);  // after the threads: the answer of a quiet process
    accepted += want.ok;
    for (int t = 0; t < threads; ++t)
      if (got[t][i].ok != want.ok || got[t][i].offset != want.offset || got[t][i].crc != want.crc) {
        std::fprintf(stderr, "thread %d disagrees on blob %zu\n", t, i);
        return 1;
      }
  }
  std::fprintf(stderr, "parse_threads: %d threads x %d rounds x %zu blobs (%d valid): all agree\n",
               threads, rounds, blobs.size(), accepted);
  return 0;
}
