// The executor built for avx512 (compile flags in CMakeLists.txt).
#include "pymicro/arch.hpp"

#define PM_LANES 16
#define PM_NR 3
#define PM_MR 4
#define PM_ARCH_NAME "avx512"

namespace pymicro {
namespace arch_avx512 {
#include "pymicro/kernels.inl"
}  // namespace arch_avx512
}  // namespace pymicro
