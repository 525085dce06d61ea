/*
 * gemm_dnnl_stubs.c -- embed/gemm_dnnl.c as a build without oneDNN compiles
 * it (SN_HAVE_DNNL undefined: CMake defines it for that file alone). CMake
 * builds this into an object nothing links, in every build that has
 * oneDNN, so the stubs keep the real functions' signatures: CI always
 * installs libdnnl-dev and would otherwise never compile them.
 */
#ifdef SN_HAVE_DNNL
#error "the stubs' check must compile without SN_HAVE_DNNL"
#endif
#include "gemm_dnnl.c"
