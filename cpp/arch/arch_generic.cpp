// The executor built for generic (compile flags in CMakeLists.txt).
#include "pymicro/arch.hpp"

#define PM_LANES 4
#define PM_NR 2
#define PM_ARCH_NAME "generic"

namespace pymicro {
namespace arch_generic {
#include "pymicro/kernels.inl"
}  // namespace arch_generic
}  // namespace pymicro
