// LD_PRELOAD shim for tests/test_allocations.py: counts every call into the C heap
// (malloc, calloc, realloc, posix_memalign, aligned_alloc; C++'s operator new goes
// through malloc) and exposes the count as pm_malloc_count().
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
static unsigned long long n_malloc;
static void* (*real_malloc)(size_t);
static void* (*real_calloc)(size_t, size_t);
static void* (*real_realloc)(void*, size_t);
static int (*real_posix_memalign)(void**, size_t, size_t);
static void* (*real_aligned_alloc)(size_t, size_t);
void* malloc(size_t n) { if (!real_malloc) real_malloc = dlsym(RTLD_NEXT, "malloc"); __atomic_add_fetch(&n_malloc, 1, __ATOMIC_RELAXED); return real_malloc(n); }
static char boot[4096];
static size_t boot_used;
void* calloc(size_t k, size_t n) {
  if (!real_calloc) {  // dlsym itself may call calloc: serve it from a static buffer
    static int resolving;
    if (resolving) {
      size_t want = (k * n + 15) & ~(size_t)15;
      if (boot_used + want > sizeof boot) return NULL;
      void* p = boot + boot_used;
      boot_used += want;
      return p;  // static storage is zeroed
    }
    resolving = 1;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    resolving = 0;
  }
  __atomic_add_fetch(&n_malloc, 1, __ATOMIC_RELAXED);
  return real_calloc(k, n);
}
void* realloc(void* p, size_t n) { if (!real_realloc) real_realloc = dlsym(RTLD_NEXT, "realloc"); __atomic_add_fetch(&n_malloc, 1, __ATOMIC_RELAXED); return real_realloc(p, n); }
int posix_memalign(void** p, size_t a, size_t n) { if (!real_posix_memalign) real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign"); __atomic_add_fetch(&n_malloc, 1, __ATOMIC_RELAXED); return real_posix_memalign(p, a, n); }
void* aligned_alloc(size_t a, size_t n) { if (!real_aligned_alloc) real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc"); __atomic_add_fetch(&n_malloc, 1, __ATOMIC_RELAXED); return real_aligned_alloc(a, n); }
void free(void* p) {
  static void (*real_free)(void*);
  if ((char*)p >= boot && (char*)p < boot + sizeof boot) return;  // from the static buffer
  if (!real_free) real_free = dlsym(RTLD_NEXT, "free");
  real_free(p);
}
unsigned long long pm_malloc_count(void) { return __atomic_load_n(&n_malloc, __ATOMIC_RELAXED); }
