// cpu.c — which instruction sets this CPU *and* this OS support, asked once.
//
// CPUID says what the core implements; XGETBV says which register state the OS saves on a
// context switch. Both are needed: a hypervisor can expose AVX-512 in CPUID while the OS does
// not enable zmm state. (AMX is never used: on this project's machines it faults.)
#include <cpuid.h>

#include "ggufref_internal.h"

static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static int detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
              f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t xcr0 = xgetbv0();
    const int os_ymm = (xcr0 & 0x6) == 0x6;   // SSE + AVX state
    const int os_zmm = (xcr0 & 0xe6) == 0xe6; // + opmask, ZMM_Hi256, Hi16_ZMM
    if (!os_ymm || __get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1;
    const int avx512 = ((b >> 16) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1); // F, BW, VL
    const int vnni = (c >> 11) & 1;
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    int f = 0;
    if (avx2 && fma && f16c) f |= GGR_CPU_AVX2;
    if ((f & GGR_CPU_AVX2) && avx512 && os_zmm) {
        f |= GGR_CPU_AVX512;
        if (vnni) f |= GGR_CPU_VNNI;
        if ((a1 >> 5) & 1) f |= GGR_CPU_BF16;
    }
    if ((f & GGR_CPU_AVX2) && ((a1 >> 4) & 1)) f |= GGR_CPU_AVX_VNNI;
    return f;
}

int ggr_cpu_features(void) {
    static int cached = -1; // benign race: every thread computes the same value
    if (cached < 0) cached = detect();
    return cached;
}

int ggr_best_isa(void) {
    const int f = ggr_cpu_features();
    if ((f & GGR_CPU_AVX512) && (f & GGR_CPU_VNNI)) return ISA_AVX512;
    if (f & GGR_CPU_AVX2) return ISA_AVX2;
    return ISA_SCALAR;
}
