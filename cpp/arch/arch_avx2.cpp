// The executor built for avx2 (compile flags in CMakeLists.txt).
#include "pymicro/arch.hpp"

#include <immintrin.h>  // max/min instructions for vmax/vmin in kernels.inl
#define PM_X86_MINMAX 1

#define PM_LANES 8
#define PM_NR 3
#define PM_ARCH_NAME "avx2"

namespace pymicro {
namespace arch_avx2 {
#include "pymicro/kernels.inl"
}  // namespace arch_avx2
}  // namespace pymicro
