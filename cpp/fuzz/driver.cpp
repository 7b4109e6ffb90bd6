// A main() for cpp/fuzz/fuzz_blob.cpp where libFuzzer is not available (g++).
//
//   fuzz_blob [-runs=N] [-seed=S] [-max_total_time=SEC] [-artifact_prefix=DIR/] SEED...
//
// SEED is a blob file or a directory of them. Every seed runs once as given
// (so `fuzz_blob crash-1234` replays a crash), then N mutants run: each is a
// seed with one to four mutations, chosen to reach every check of the parser:
// bit flips, byte sets, truncations, insertions and deletions, splices with
// another seed, and overwrites of header fields, layer and tensor record
// fields, float32 weights and string bytes with boundary values. Three mutants
// in four are then "repaired" (total_size, footer magic and CRC rewritten, and
// sometimes data_size) so that they get past the cheap checks into the deep ones.
//
// Not coverage-guided: it is the portable smoke test that runs under
// AddressSanitizer and UBSan in tests/test_sanitizers.py. For real fuzzing use
// libFuzzer (docs/blob-format.md, "Fuzzing and sanitizers").
//
// If the target crashes, the input is written to ARTIFACT_PREFIX crash-<hash>.
// Exit status: 0 when every run returned, 2 for a usage error; a crash aborts.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pymicro/container.hpp"  // parse.hpp, and the ensemble container's parser

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace {

using Bytes = std::vector<uint8_t>;
constexpr size_t kMaxSize = 1 << 20;

// ---------------------------------------------------------------- crash artifacts

const Bytes* g_current = nullptr;
char g_artifact[4096] = "./";

void dump_current() {  // async-signal-safe: no allocation, no stdio
  static volatile sig_atomic_t dumped = 0;
  if (!g_current || dumped) return;
  dumped = 1;
  uint32_t h = 2166136261u;
  for (uint8_t c : *g_current) h = (h ^ c) * 16777619u;
  char path[4200];
  size_t n = strlen(g_artifact);
  memcpy(path, g_artifact, n);
  memcpy(path + n, "crash-", 6);
  n += 6;
  for (int k = 7; k >= 0; --k) path[n++] = "0123456789abcdef"[(h >> (4 * k)) & 15];
  path[n] = 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    ssize_t w = write(fd, g_current->data(), g_current->size());
    (void)w;
    close(fd);
  }
  const char msg[] = "\nfuzz driver: the crashing input was written to ";
  ssize_t w = write(2, msg, sizeof msg - 1);
  w = write(2, path, n);
  w = write(2, "\n", 1);
  (void)w;
}

void on_signal(int sig) {
  dump_current();
  signal(sig, SIG_DFL);
  raise(sig);
}

// ---------------------------------------------------------------- randomness

struct Rng {
  uint64_t s;
  uint64_t next() {  // xorshift64*
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }
  bool chance(uint32_t num, uint32_t den) { return below(den) < num; }
};

// ---------------------------------------------------------------- blob surgery

uint64_t rd(const Bytes& b, size_t at, int width) {
  uint64_t v = 0;
  for (int k = 0; k < width && at + k < b.size(); ++k) v |= uint64_t(b[at + k]) << (8 * k);
  return v;
}

void wr(Bytes& b, size_t at, int width, uint64_t v) {
  for (int k = 0; k < width && at + k < b.size(); ++k) b[at + k] = uint8_t(v >> (8 * k));
}

uint64_t interesting(Rng& r, uint64_t current, uint64_t size) {
  static const uint64_t fixed[] = {
      0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64, 65, 127, 128, 129, 255, 256, 257,
      258, 259, 4095, 4096, 4097, 1u << 20, (1u << 20) + 1, 1u << 24, 0x7FFFFFFF, 0x80000000u,
      0xFFFFFFFFu, 1ull << 32, 1ull << 63, ~0ull, 1000000000, 1000000};
  switch (r.below(4)) {
    case 0: return current + 1 - 2 * r.below(2);
    case 1: return current + 64 - 128 * r.below(2);
    case 2: return size - r.below(130);
    default: return fixed[r.below(sizeof fixed / sizeof fixed[0])];
  }
}

struct Layout {  // where the sections are, as far as the (maybe broken) header says
  uint64_t n_layers, n_tensors, tensors_off, strings_off, data_off;
};

Layout layout(const Bytes& b) {
  Layout L;
  L.n_layers = rd(b, 32, 4) % 65;
  L.n_tensors = rd(b, 36, 4) % 259;
  L.tensors_off = 128 + 32 * L.n_layers;
  L.strings_off = L.tensors_off + 32 * L.n_tensors;
  L.data_off = rd(b, 72, 8);
  if (L.data_off > b.size()) L.data_off = b.size();
  return L;
}

// Makes the size fields, footer magic and CRC agree with the bytes; with
// `resize_data`, data_size too, so that a blob that grew or shrank gets past the
// header and fails (or not) on its tables, strings or tensors.
void repair(Bytes& b, bool resize_data) {
  if (b.size() < 24) return;
  wr(b, 16, 8, b.size());
  if (b.size() < 136) return;
  const uint64_t data_off = rd(b, 72, 8);
  if (resize_data && data_off + 8 <= b.size()) wr(b, 80, 8, b.size() - 8 - data_off);
  memcpy(b.data() + b.size() - 4, "PMBE", 4);
  wr(b, b.size() - 8, 4, pymicro::detail::crc32(b.data(), b.size() - 8));
}

void mutate(Rng& r, Bytes& b, const std::vector<Bytes>& seeds) {
  const Layout L = layout(b);
  const size_t n = b.size();
  switch (r.below(11)) {
    case 0:  // bit flip
      if (n) b[r.below(n)] ^= uint8_t(1u << r.below(8));
      break;
    case 1: {  // byte set
      static const uint8_t vals[] = {0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xED, 0xF4, 0x3F, 0x40};
      if (n) b[r.below(n)] = r.chance(1, 2) ? vals[r.below(sizeof vals)] : uint8_t(r.next());
      break;
    }
    case 2: {  // truncate, anywhere or by whole 64-byte blocks (data_size stays aligned)
      size_t cut = r.chance(1, 2) ? r.below(n + 1) : 64 * (1 + r.below(8));
      b.resize(cut < n ? n - cut : 0);
      break;
    }
    case 3: {  // insert or delete a range, of any length or of 64-byte blocks
      size_t at = r.below(n + 1);
      size_t len = r.chance(1, 2) ? 1 + r.below(r.chance(1, 2) ? 8 : 256) : 64 * (1 + r.below(4));
      if (r.chance(1, 2)) {
        if (n + len <= kMaxSize) b.insert(b.begin() + at, len, uint8_t(r.chance(1, 2) ? 0 : r.next()));
      } else {
        b.erase(b.begin() + at, b.begin() + (at + len < n ? at + len : n));
      }
      break;
    }
    case 4: {  // splice: a prefix of this blob, a suffix of another
      const Bytes& o = seeds[r.below(seeds.size())];
      size_t cut = r.below(n + 1), from = r.below(o.size() + 1);
      b.resize(cut);
      if (cut + (o.size() - from) <= kMaxSize) b.insert(b.end(), o.begin() + from, o.end());
      break;
    }
    case 5: {  // header field
      static const uint8_t u32s[] = {4, 8, 12, 24, 28, 32, 36};
      static const uint8_t u64s[] = {16, 40, 48, 56, 64, 72, 80};
      if (r.chance(1, 2)) {
        size_t at = u32s[r.below(sizeof u32s)];
        wr(b, at, 4, interesting(r, rd(b, at, 4), n));
      } else {
        size_t at = u64s[r.below(sizeof u64s)];
        wr(b, at, 8, interesting(r, rd(b, at, 8), n));
      }
      if (r.chance(1, 8) && n > 88) b[88 + r.below(40)] = uint8_t(r.next());
      break;
    }
    case 6: {  // layer record field (kind, activation, in, out, first, count, reserved)
      if (!L.n_layers) break;
      size_t at = 128 + 32 * r.below(L.n_layers) + 4 * r.below(8);
      wr(b, at, 4, r.chance(1, 2) ? r.below(6) : interesting(r, rd(b, at, 4), n));
      break;
    }
    case 7: {  // tensor record field (role, dtype, rows, cols, offset, nbytes)
      if (!L.n_tensors) break;
      size_t rec = L.tensors_off + 32 * r.below(L.n_tensors), field = r.below(6);
      size_t at = rec + (field < 4 ? 4 * field : 16 + 8 * (field - 4));
      int width = field < 4 ? 4 : 8;
      wr(b, at, width, r.chance(1, 3) ? r.below(10) : interesting(r, rd(b, at, width), n));
      break;
    }
    case 8: {  // a float32 in the data section (weights, normalisation)
      static const uint32_t vals[] = {0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x00000000u,
                                      0x80000000u, 0x00000001u, 0x00800000u, 0x7F7FFFFFu,
                                      0xFF7FFFFFu, 0xBF800000u, 0x7149F2CAu, 0x7F800001u};
      if (n < L.data_off + 12) break;
      size_t at = L.data_off + 4 * r.below((n - 8 - L.data_off) / 4);
      wr(b, at, 4, vals[r.below(sizeof vals / sizeof vals[0])]);
      break;
    }
    case 9: {  // string section: counts, lengths, UTF-8 lead and continuation bytes
      if (L.data_off <= L.strings_off + 2) break;
      size_t at = L.strings_off + r.below(L.data_off - L.strings_off);
      if (r.chance(1, 2)) {
        static const uint8_t vals[] = {0x00, 0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF};
        b[at] = vals[r.below(sizeof vals)];
      } else {
        wr(b, at, r.chance(1, 2) ? 2 : 4, interesting(r, rd(b, at, 2), n));
      }
      break;
    }
    default: {  // duplicate a range in place
      if (n < 2) break;
      size_t from = r.below(n), len = 1 + r.below(n - from), to = r.below(n);
      Bytes chunk(b.begin() + from, b.begin() + from + len);
      for (size_t k = 0; k < len && to + k < n; ++k) b[to + k] = chunk[k];
      break;
    }
  }
}

// ---------------------------------------------------------------- seeds and the loop

bool read_file(const std::string& path, Bytes* out) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return false;
  out->clear();
  uint8_t buf[65536];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, f)) > 0 && out->size() <= kMaxSize) out->insert(out->end(), buf, buf + k);
  fclose(f);
  return true;
}

bool add_seeds(const std::string& path, std::vector<Bytes>* seeds) {
  struct stat s;
  if (stat(path.c_str(), &s) != 0) return false;
  if (!S_ISDIR(s.st_mode)) {
    Bytes b;
    if (!read_file(path, &b)) return false;
    seeds->push_back(b);
    return true;
  }
  DIR* d = opendir(path.c_str());
  if (!d) return false;
  std::vector<std::string> names;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') names.push_back(path + "/" + e->d_name);
  closedir(d);
  std::sort(names.begin(), names.end());  // the same seed order everywhere: runs are reproducible
  for (const auto& name : names) {
    Bytes b;
    if (read_file(name, &b)) seeds->push_back(b);
  }
  return true;
}

double now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Where the parser (without the checksum) stopped, by section: shows the deep checks ran.
enum { kAccepted, kHeader, kLayers, kTensors, kStrings, kData, kFooter, kContainerHead,
       kContainerDeep, kBuckets };
const char* const kBucketNames[kBuckets] = {"accepted", "header", "layer-table", "tensor-table",
                                            "strings", "data", "footer", "container-header",
                                            "container-deep"};

int classify(const Bytes& b) {
  static pymicro::BlobView v;
  pymicro::Status st;
  if (pymicro::is_container(b.data(), b.size())) {  // ensembles (cpp/pymicro/container.hpp)
    static pymicro::ContainerView cv;
    if (pymicro::parse_container(b.data(), b.size(), &cv, &st, false)) return kAccepted;
    return st.offset < 128 || (b.size() >= 8 && st.offset >= b.size() - 8) ? kContainerHead
                                                                            : kContainerDeep;
  }
  if (pymicro::parse(b.data(), b.size(), &v, &st, false)) return kAccepted;
  const Layout L = layout(b);
  const uint64_t off = st.offset;
  if (b.size() >= 8 && off >= b.size() - 8) return kFooter;
  if (off < 128) return kHeader;
  if (off < L.tensors_off) return kLayers;
  if (off < L.strings_off) return kTensors;
  if (off < L.data_off) return kStrings;
  return kData;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t runs = 10000, seed = 1;
  double max_time = 0;
  std::vector<Bytes> seeds;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (!strncmp(a, "-runs=", 6)) runs = strtoull(a + 6, nullptr, 10);
    else if (!strncmp(a, "-seed=", 6)) seed = strtoull(a + 6, nullptr, 10);
    else if (!strncmp(a, "-max_total_time=", 16)) max_time = strtod(a + 16, nullptr);
    else if (!strncmp(a, "-artifact_prefix=", 17)) snprintf(g_artifact, sizeof g_artifact, "%s", a + 17);
    else if (a[0] == '-') {
      fprintf(stderr, "fuzz driver: unknown option %s\nusage: %s [-runs=N] [-seed=S] "
              "[-max_total_time=SEC] [-artifact_prefix=DIR/] SEED_FILE_OR_DIR...\n", a, argv[0]);
      return 2;
    } else if (!add_seeds(a, &seeds)) {
      fprintf(stderr, "fuzz driver: cannot read seed %s\n", a);
      return 2;
    }
  }
  if (seeds.empty()) {
    fprintf(stderr, "fuzz driver: no seed blobs given (files or directories)\n");
    return 2;
  }
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(dump_current);
  signal(SIGABRT, on_signal);
  signal(SIGSEGV, on_signal);
  signal(SIGBUS, on_signal);
  signal(SIGFPE, on_signal);

  uint64_t buckets[kBuckets] = {0}, seeds_valid = 0;
  for (const Bytes& s : seeds) {
    g_current = &s;
    LLVMFuzzerTestOneInput(s.data(), s.size());
    seeds_valid += classify(s) == kAccepted;
  }
  Rng r{seed * 0x9E3779B97F4A7C15ull + 1};
  const double start = now();
  uint64_t done = 0;
  Bytes b;
  for (; done < runs; ++done) {
    if (max_time > 0 && (done & 63) == 0 && now() - start > max_time) break;
    b = seeds[r.below(seeds.size())];
    for (uint64_t k = 1 + r.below(4); k; --k) mutate(r, b, seeds);
    if (b.size() > kMaxSize) b.resize(kMaxSize);
    if (r.chance(3, 4)) repair(b, r.chance(1, 2));
    g_current = &b;
    LLVMFuzzerTestOneInput(b.data(), b.size());
    ++buckets[classify(b)];
  }
  g_current = nullptr;
  fprintf(stderr, "fuzz driver: %zu seeds (%llu valid), %llu mutants in %.2f s; stopped in:",
          seeds.size(), (unsigned long long)seeds_valid, (unsigned long long)done, now() - start);
  for (int k = 0; k < kBuckets; ++k)
    fprintf(stderr, " %s=%llu", kBucketNames[k], (unsigned long long)buckets[k]);
  fprintf(stderr, "\n");
  return 0;
}
