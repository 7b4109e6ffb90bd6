# pymicro.wasm: the same cpp/ headers compiled to wasm32 + SIMD128 (see wasm/README.md).
#
# Included by the top-level CMakeLists.txt; builds ${CMAKE_CURRENT_BINARY_DIR}/pymicro.wasm
# as part of `all` and installs it beside the native module (pymicro/ in the wheel).
#
# Toolchain (PYMICRO_WASM_TOOLCHAIN, a cache variable or environment variable):
#   auto  (default) a system clang that can compile *and link* (wasm-ld) for wasm32 if there
#         is one, else zig's clang from PyPI (`python -m ziglang`, a build requirement);
#   clang that clang only (PYMICRO_WASM_CLANG names it; default: clang++ or clang on PATH);
#   zig   `${Python_EXECUTABLE} -m ziglang c++` only.
# With none usable the configure step fails and says how to get one: the wasm build is part
# of the package, never skipped.
#
# Flags, both drivers: -O3; SIMD128 and relaxed-simd on, with -ffp-contract=fast exactly as the
# native kernels are built, so `acc + w * x` becomes f32x4.relaxed_madd wherever the native
# AVX2/AVX-512 build emits an FMA (the wasm engines run relaxed-simd in wasmtime's
# deterministic mode, where relaxed_madd is always fused: docs/wasm.md); no libc and no C++
# runtime, no exceptions or RTTI, no entry point, a 256 KiB shadow stack, symbols stripped.
# The exports are named in the source (export_name attributes).

set(PYMICRO_WASM_TOOLCHAIN "$ENV{PYMICRO_WASM_TOOLCHAIN}" CACHE STRING
    "Toolchain for pymicro.wasm: auto, clang or zig")
if(NOT PYMICRO_WASM_TOOLCHAIN)
  set(PYMICRO_WASM_TOOLCHAIN auto)
endif()
set(PYMICRO_WASM_CLANG "$ENV{PYMICRO_WASM_CLANG}" CACHE STRING "clang driver for pymicro.wasm")

set(PM_WASM_SRC ${CMAKE_CURRENT_SOURCE_DIR}/wasm/pymicro_wasm.cpp)
set(PM_WASM_OUT ${CMAKE_CURRENT_BINARY_DIR}/pymicro.wasm)
set(PM_WASM_COMMON_FLAGS
  -O3 -ffp-contract=fast -fno-math-errno -fno-exceptions -fno-rtti -nostdlib -Werror=switch
  -Wl,--no-entry -Wl,-z,stack-size=262144)
set(PM_WASM_CLANG_FLAGS --target=wasm32 -msimd128 -mrelaxed-simd ${PM_WASM_COMMON_FLAGS}
    -Wl,--strip-all)
set(PM_WASM_ZIG_FLAGS -target wasm32-freestanding -mcpu=generic+simd128+relaxed_simd -nostdlib++
    ${PM_WASM_COMMON_FLAGS} -s)

# Compiles and links a one-function program: the driver, its wasm32 backend and wasm-ld all work.
function(pm_wasm_probe out_var)
  set(dir ${CMAKE_CURRENT_BINARY_DIR}/pm_wasm_probe)
  file(MAKE_DIRECTORY ${dir})
  file(WRITE ${dir}/probe.cpp
    "typedef float v4 __attribute__((vector_size(16)));\n"
    "extern \"C\" __attribute__((export_name(\"f\"))) float f(float x) {\n"
    "  v4 v = v4{} + x; v = v * v + v; return v[0] + v[3]; }\n")
  execute_process(COMMAND ${ARGN} -o ${dir}/probe.wasm ${dir}/probe.cpp
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0 AND EXISTS ${dir}/probe.wasm)
    set(${out_var} TRUE PARENT_SCOPE)
  else()
    set(${out_var} FALSE PARENT_SCOPE)
    string(STRIP "${err}" err)
    set(PM_WASM_PROBE_ERROR "${err}" PARENT_SCOPE)
  endif()
endfunction()

set(PM_WASM_CMD "")
set(PM_WASM_WHY "")
if(PYMICRO_WASM_TOOLCHAIN STREQUAL "auto" OR PYMICRO_WASM_TOOLCHAIN STREQUAL "clang")
  if(PYMICRO_WASM_CLANG)
    set(pm_clang ${PYMICRO_WASM_CLANG})
  else()
    find_program(pm_clang NAMES clang++ clang)
  endif()
  if(pm_clang)
    pm_wasm_probe(pm_ok ${pm_clang} ${PM_WASM_CLANG_FLAGS})
    if(pm_ok)
      set(PM_WASM_CMD ${pm_clang} ${PM_WASM_CLANG_FLAGS})
      set(PM_WASM_NAME "${pm_clang}")
    else()
      string(APPEND PM_WASM_WHY "  ${pm_clang} cannot build for wasm32: ${PM_WASM_PROBE_ERROR}\n")
    endif()
  else()
    string(APPEND PM_WASM_WHY "  no clang on PATH\n")
  endif()
endif()
if(NOT PM_WASM_CMD AND (PYMICRO_WASM_TOOLCHAIN STREQUAL "auto" OR PYMICRO_WASM_TOOLCHAIN STREQUAL "zig"))
  # The first wasm build fills zig's cache (about a minute); later builds take a second.
  pm_wasm_probe(pm_ok ${Python_EXECUTABLE} -m ziglang c++ ${PM_WASM_ZIG_FLAGS})
  if(pm_ok)
    set(PM_WASM_CMD ${Python_EXECUTABLE} -m ziglang c++ ${PM_WASM_ZIG_FLAGS})
    set(PM_WASM_NAME "zig c++ (PyPI ziglang)")
  else()
    string(APPEND PM_WASM_WHY "  ${Python_EXECUTABLE} -m ziglang failed: ${PM_WASM_PROBE_ERROR}\n")
  endif()
endif()
if(NOT PM_WASM_CMD)
  message(FATAL_ERROR
    "pymicro.wasm cannot be built: no usable wasm32 toolchain "
    "(PYMICRO_WASM_TOOLCHAIN=${PYMICRO_WASM_TOOLCHAIN}).\n${PM_WASM_WHY}"
    "Install the PyPI package `ziglang` into the Python that builds pymicro "
    "(pip install ziglang; pip install . does this by itself through [build-system].requires), "
    "or a clang with the wasm32 target and wasm-ld (Debian: apt-get install clang lld).")
endif()
message(STATUS "pymicro.wasm: building with ${PM_WASM_NAME}")

add_custom_command(
  OUTPUT ${PM_WASM_OUT}
  COMMAND ${PM_WASM_CMD} -I${CMAKE_CURRENT_SOURCE_DIR}/cpp -o ${PM_WASM_OUT} ${PM_WASM_SRC}
  DEPENDS ${PM_WASM_SRC}
          ${CMAKE_CURRENT_SOURCE_DIR}/cpp/pymicro/kernels.inl
          ${CMAKE_CURRENT_SOURCE_DIR}/cpp/pymicro/parse.hpp
          ${CMAKE_CURRENT_SOURCE_DIR}/cpp/pymicro/container.hpp
          ${CMAKE_CURRENT_SOURCE_DIR}/cpp/pymicro/format.hpp
          ${CMAKE_CURRENT_SOURCE_DIR}/cpp/pymicro/arch.hpp
          ${CMAKE_CURRENT_SOURCE_DIR}/cpp/pymicro/stream.hpp
  COMMENT "Building pymicro.wasm (wasm32 + SIMD128) with ${PM_WASM_NAME}"
  VERBATIM)
add_custom_target(pymicro_wasm ALL DEPENDS ${PM_WASM_OUT})
install(FILES ${PM_WASM_OUT} DESTINATION pymicro)
