// What a binary was built from and how, baked in by CMake so that every benchmark result names
// its build: the version, the git commit (refreshed at build time, cmake/git_state.cmake), the
// build type, compiler and flags (fixed at configure time, src/bench/build_info.cpp.in).
#pragma once

namespace realizar::bench {

extern const char* const kVersion;            // the CMake project version, "0.1.0"
extern const char* const kGitCommit;          // 40 hex digits, or "unknown" outside a checkout
extern const bool kGitDirty;                  // the working tree had uncommitted changes
extern const char* const kBuildType;          // CMAKE_BUILD_TYPE: "Release", "Debug", ...
extern const char* const kCompiler;           // "GNU 12.2.0"
extern const char* const kCompilerFlags;      // CMAKE_CXX_FLAGS and the build type's flags
extern const char* const kBuildOptions;       // the REALIZAR_* options, "REALIZAR_NATIVE=ON ..."
extern const char* const kCudaArchitectures;  // CMAKE_CUDA_ARCHITECTURES; "" without CUDA
extern const char* const kSourceDataDir;      // tests/data of the source tree built from

}  // namespace realizar::bench
