// Write crates/tvl-format/tests/data/llamacpp-quant-kblocks.json: rows of f32 (whole
// super-blocks of 256) and their encodings by llama.cpp's own reference quantizers
// (`quantize_row_*_ref` in ggml/src/ggml-quants.c, linked from libggml-base.a), for all
// eight TVL block types. Built and run by scripts/quant-fixture-k.sh.
//
// Each row: its case name, its floats as the hex of their f32 bit patterns (8 digits
// each, in order), and per type the hex of the row's ggml blocks, in order. Then
// "bulk": many more super-blocks from a generator that needs no floating-point library
// (integers scaled by powers of two, see bulk_block), and per type the FNV-1a 64 hash
// of all their ggml blocks in order, so a test can regenerate them and compare.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-quants.h"

#define QK 256
#define MAX_SB 3

static uint64_t state = 0x5EED20261207ull;

static uint64_t next_u64(void) {  // splitmix64
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

static double normal(void) {
    double u = uniform(), v = uniform();
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

static void hex(FILE * f, const void * p, size_t n) {
    const uint8_t * b = p;
    for (size_t i = 0; i < n; ++i) fprintf(f, "%02x", b[i]);
}

static int first = 1;

static void emit(FILE * f, const char * name, const float * x, int nsb) {
    const int64_t k = (int64_t)nsb * QK;
    static uint8_t buf[MAX_SB * QK * 2];
    fprintf(f, "%s{\"case\":\"%s\",\"x\":\"", first ? "" : ",\n", name);
    first = 0;
    for (int64_t i = 0; i < k; ++i) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        fprintf(f, "%08x", u);
    }
    fprintf(f, "\"");
#define TYPE(key, fn, blk, qk)                              \
    fn(x, (blk *)buf, k);                                   \
    fprintf(f, ",\"" key "\":\"");                          \
    hex(f, buf, (size_t)(k / (qk)) * sizeof(blk));          \
    fprintf(f, "\"");
    TYPE("q8_0", quantize_row_q8_0_ref, block_q8_0, QK8_0)
    TYPE("q4_0", quantize_row_q4_0_ref, block_q4_0, QK4_0)
    TYPE("q4_1", quantize_row_q4_1_ref, block_q4_1, QK4_1)
    TYPE("q5_0", quantize_row_q5_0_ref, block_q5_0, QK5_0)
    TYPE("q5_1", quantize_row_q5_1_ref, block_q5_1, QK5_1)
    TYPE("q4_k", quantize_row_q4_K_ref, block_q4_K, QK_K)
    TYPE("q5_k", quantize_row_q5_K_ref, block_q5_K, QK_K)
    TYPE("q6_k", quantize_row_q6_K_ref, block_q6_K, QK_K)
#undef TYPE
    fprintf(f, "}");
}

#define BULK_SUPER_BLOCKS 8192
#define BULK_SEED 0xB01C5EEDull

// FNV-1a 64.
static uint64_t fnv(uint64_t h, const uint8_t * p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

// Super-block `sb` of the bulk set, drawing from `state`: each element the sum of four
// 16-bit draws, centred (about normal, standard deviation ~37837), or every 4th block
// one centred 16-bit draw (uniform); every 8th block has an outlier (x64) at element
// `sb % 256`, every 16th its sub-block `sb / 16 % 8` zero; all times 2^-(12 + sb % 16).
// Every value is exact in f32 (at most 24 significant bits, no subnormals).
static void bulk_block(int sb, float * x) {
    for (int i = 0; i < QK; ++i) {
        uint64_t r = next_u64();
        int32_t a;
        if (sb % 4 == 3) {
            a = (int32_t)(r & 0xFFFF) - 32768;
        } else {
            a = (int32_t)(r & 0xFFFF) + (int32_t)((r >> 16) & 0xFFFF) +
                (int32_t)((r >> 32) & 0xFFFF) + (int32_t)(r >> 48) - 131070;
        }
        if (sb % 8 == 5 && i == sb % QK) a *= 64;
        if (sb % 16 == 9 && i / 32 == (sb / 16) % 8) a = 0;
        x[i] = ldexpf((float)a, -(12 + sb % 16));
    }
}

static void emit_bulk(FILE * f) {
    state = BULK_SEED;
    uint64_t h[8];
    for (int t = 0; t < 8; ++t) h[t] = 0xCBF29CE484222325ull;
    static float x[QK];
    static uint8_t buf[QK * 2];
    for (int sb = 0; sb < BULK_SUPER_BLOCKS; ++sb) {
        bulk_block(sb, x);
        int t = 0;
#define TYPE(fn, blk, qk)                                              \
        fn(x, (blk *)buf, QK);                                         \
        h[t] = fnv(h[t], buf, (size_t)(QK / (qk)) * sizeof(blk));      \
        ++t;
        TYPE(quantize_row_q8_0_ref, block_q8_0, QK8_0)
        TYPE(quantize_row_q4_0_ref, block_q4_0, QK4_0)
        TYPE(quantize_row_q4_1_ref, block_q4_1, QK4_1)
        TYPE(quantize_row_q5_0_ref, block_q5_0, QK5_0)
        TYPE(quantize_row_q5_1_ref, block_q5_1, QK5_1)
        TYPE(quantize_row_q4_K_ref, block_q4_K, QK_K)
        TYPE(quantize_row_q5_K_ref, block_q5_K, QK_K)
        TYPE(quantize_row_q6_K_ref, block_q6_K, QK_K)
#undef TYPE
    }
    static const char * keys[8] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"};
    fprintf(f, "\"bulk\":{\"seed\":%llu,\"super_blocks\":%d", (unsigned long long)BULK_SEED,
            BULK_SUPER_BLOCKS);
    for (int t = 0; t < 8; ++t) fprintf(f, ",\"%s\":\"%016llx\"", keys[t], (unsigned long long)h[t]);
    fprintf(f, "}");
}

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.json\n", argv[0]);
        return 2;
    }
    FILE * f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fprintf(f, "{\"source\":\"llama.cpp quantize_row_*_ref (libggml-base.a), scripts/quant_fixture_k.c\",\n\"rows\":[\n");
    static float x[MAX_SB * QK];
    int n;
#define FILL(expr) for (int i = 0; i < n * QK; ++i) x[i] = (float)(expr)
    // Random normal, one to three super-blocks per row.
    for (int r = 0; r < 11; ++r) {
        n = r < 8 ? 1 : r < 10 ? 2 : 3;
        FILL(normal());
        emit(f, "normal", x, n);
    }
    n = 2; FILL(50.0 * normal()); emit(f, "normal_x50", x, n);
    n = 2; FILL(1e-3 * normal()); emit(f, "normal_x1e-3", x, n);
    // Uniform in [-1, 1), and in [0, 1) (positive only).
    for (int r = 0; r < 3; ++r) { n = 2; FILL(2.0 * uniform() - 1.0); emit(f, "uniform", x, n); }
    n = 2; FILL(uniform()); emit(f, "uniform_positive", x, n);
    // Zero, constant.
    n = 1; FILL(0.0); emit(f, "zero", x, n);
    n = 1; FILL(0.25); emit(f, "constant_0.25", x, n);
    n = 1; FILL(-3.0); emit(f, "constant_-3", x, n);
    n = 1; FILL(1.0); emit(f, "constant_1", x, n);
    // One outlier in a normal row (at different places).
    for (int r = 0; r < 3; ++r) {
        n = 1; FILL(normal());
        x[(int)(next_u64() % QK)] = (float)(r == 1 ? -100.0 : 100.0 + r);
        emit(f, "outlier", x, n);
    }
    // Tiny values, down to subnormal scales (and below GROUP_MAX_EPS).
    n = 1; FILL(1e-8 * normal()); emit(f, "tiny_1e-8", x, n);
    n = 1; FILL(1e-20 * normal()); emit(f, "tiny_1e-20", x, n);
    n = 1; FILL(1e-38 * normal()); emit(f, "tiny_1e-38", x, n);
    // Negative only.
    for (int r = 0; r < 2; ++r) { n = 1; FILL(-fabs(normal())); emit(f, "negative", x, n); }
    // Small integers and half-integer ties.
    n = 1; FILL((double)((int)(next_u64() % 17) - 8)); emit(f, "integers", x, n);
    n = 1; FILL(0.5 * (double)((int)(next_u64() % 65) - 32)); emit(f, "halves", x, n);
    // Some sub-blocks zero, the others normal.
    for (int r = 0; r < 2; ++r) {
        n = 1; FILL(((i / 32) % 3 == r) ? 0.0 : normal());
        emit(f, "some_zero_subblocks", x, n);
    }
    // Heavy tails: normal over uniform.
    for (int r = 0; r < 2; ++r) { n = 1; FILL(normal() / (uniform() + 1e-3)); emit(f, "heavy_tail", x, n); }
    // Sub-blocks of very different magnitudes (1e-3 .. 1e3).
    for (int r = 0; r < 2; ++r) {
        n = 1; FILL(normal() * pow(10.0, (double)((i / 32 + r) % 7) - 3.0));
        emit(f, "wide_range", x, n);
    }
    n = 1; FILL(1e4 * normal()); emit(f, "large_1e4", x, n);
    // One non-zero element per sub-block; a ramp.
    n = 1; FILL((i % 32 == 7) ? normal() : 0.0); emit(f, "sparse", x, n);
    n = 1; FILL((double)i / 255.0 - 0.3); emit(f, "ramp", x, n);
#undef FILL
    fprintf(f, "\n],\n");
    emit_bulk(f);
    fprintf(f, "}\n");
    fclose(f);
    return 0;
}
