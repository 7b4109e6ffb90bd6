// The executor built for sse2 (compile flags in CMakeLists.txt).
#include "pymicro/arch.hpp"

#include <immintrin.h>  // max/min instructions for vmax/vmin in kernels.inl
#define PM_X86_MINMAX 1

#define PM_LANES 4
#define PM_NR 2
#define PM_ARCH_NAME "sse2"

namespace pymicro {
namespace arch_sse2 {
#include "pymicro/kernels.inl"
}  // namespace arch_sse2
}  // namespace pymicro
