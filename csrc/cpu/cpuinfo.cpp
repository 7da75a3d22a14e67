// cpuinfo.cpp -- cache detection and the GEMM's analytical cache blocking.
//
// The blocking follows the analytical model of BLIS (T. M. Low, F. D. Igual,
// T. M. Smith, E. S. Quintana-Orti, "Analytical modeling is enough for
// high-performance BLIS", ACM TOMS 43(2), 2016), for the loop nest of
// simd/gemm/packed.h (GotoBLAS order: a thread's KC x NC block of packed B,
// MC x KC blocks of packed A, an MR x KC sliver of A against a KC x NR
// micro-panel of B in the micro-kernel):
//   KC: the A sliver and the B micro-panel, (MR + NR) KC elements, fit in W - 1 of
//       the W ways of L1; the free way holds the lines of C and the next A
//       sliver streaming in, so the reused B micro-panel is never evicted.
//   MC: the MC x KC block of A fills about half of L2 (the other half holds the
//       B micro-panels streaming through and C).
//   NC: the KC x NC block of B fills about half of this core's share of L3
//       (without an L3, half of L2: it then streams from memory and NC only
//       has to amortize the packing).
#include "cpuinfo.h"

#include <cpuid.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <string>

#include "../common/backend.h"

namespace lw::cpu {
namespace {

int64_t round_down(int64_t v, int64_t m) { return v / m * m; }
int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

bool read_text(const std::string &path, std::string *out) {
  FILE *f = std::fopen(path.c_str(), "r");
  if (!f) return false;
  char buf[256];
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  *out = buf;
  while (!out->empty() && (out->back() == '\n' || out->back() == ' ')) out->pop_back();
  return true;
}

// "32K", "2048K", "2M", "512" -> bytes; 0 when malformed.
int64_t parse_size(const std::string &s) {
  char *end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || v <= 0) return 0;
  if (*end == 'K') return v << 10;
  if (*end == 'M') return v << 20;
  if (*end == 'G') return v << 30;
  return *end == '\0' ? v : 0;
}

// Number of CPUs in a list such as "0-3,8-11" (0 when malformed).
int count_cpu_list(const std::string &s) {
  int count = 0;
  const char *p = s.c_str();
  while (*p) {
    char *end = nullptr;
    const long a = std::strtol(p, &end, 10);
    if (end == p) return 0;
    long b = a;
    p = end;
    if (*p == '-') {
      b = std::strtol(p + 1, &end, 10);
      if (end == p + 1 || b < a) return 0;
      p = end;
    }
    count += (int)(b - a + 1);
    if (*p == ',') ++p;
    else if (*p) return 0;
  }
  return count;
}

void set_level(CacheInfo *c, int level, bool data, int64_t bytes, int ways, int shared) {
  CacheLevel *l = level == 1 ? (data ? &c->l1d : nullptr) : level == 2 ? &c->l2 : level == 3 ? &c->l3 : nullptr;
  if (!l || bytes <= 0) return;
  l->bytes = bytes;
  l->ways = ways > 0 ? ways : 0;
  l->shared_cpus = shared > 0 ? shared : 1;
}

bool from_sysfs(CacheInfo *c) {
  bool any = false;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::string level, type, size, ways, shared;
    if (!read_text(dir + "level", &level) || !read_text(dir + "type", &type) || !read_text(dir + "size", &size))
      continue;
    if (type != "Data" && type != "Unified") continue;
    read_text(dir + "ways_of_associativity", &ways);
    read_text(dir + "shared_cpu_list", &shared);
    set_level(c, std::atoi(level.c_str()), true, parse_size(size), std::atoi(ways.c_str()), count_cpu_list(shared));
    any = true;
  }
  if (any) c->source = "sysfs";
  return any && c->l1d.bytes > 0;
}

bool from_cpuid(CacheInfo *c) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, cx, d;
  if (!__get_cpuid(0, &a, &b, &cx, &d)) return false;
  const bool amd = b == 0x68747541u || b == 0x6f677948u;  // "Auth"enticAMD, "Hygo"nGenuine
  unsigned leaf = 4;
  if (amd) {
    // 0x8000001D exists when CPUID 0x80000001 ECX has TOPOEXT (bit 22).
    if (!__get_cpuid(0x80000001u, &a, &b, &cx, &d) || !(cx & (1u << 22))) return false;
    leaf = 0x8000001Du;
  } else if (a < 4) {
    return false;
  }
  bool any = false;
  for (unsigned i = 0; i < 16; ++i) {
    __cpuid_count(leaf, i, a, b, cx, d);
    const unsigned type = a & 0x1f;
    if (type == 0) break;
    if (type == 2) continue;  // instruction cache
    const int level = (int)((a >> 5) & 7);
    const int shared = (int)((a >> 14) & 0xfff) + 1;
    const int64_t ways = (int64_t)(b >> 22) + 1, parts = (int64_t)((b >> 12) & 0x3ff) + 1;
    const int64_t line = (int64_t)(b & 0xfff) + 1, sets = (int64_t)cx + 1;
    set_level(c, level, type == 1 || type == 3, ways * parts * line * sets, (int)ways, shared);
    any = true;
  }
  if (any) c->source = "cpuid";
  return any && c->l1d.bytes > 0;
#else
  return false;
#endif
}

CacheInfo detect_caches() {
  CacheInfo c;
  if (!from_sysfs(&c)) {
    c = CacheInfo();
    if (!from_cpuid(&c)) {
      c = CacheInfo();
      c.l1d = {32 << 10, 8, 1};
      c.l2 = {256 << 10, 8, 1};
      c.source = "default";
    }
  }
  c.smt = c.l1d.shared_cpus > 0 ? c.l1d.shared_cpus : 1;
  if (c.l3.bytes > 0) {
    const int cores = c.l3.shared_cpus / c.smt;
    c.l3_per_core = c.l3.bytes / (cores > 0 ? cores : 1);
  }
  return c;
}

std::string detect_model() {
  std::string model;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &a, &b, &c, &d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
    model = brand;
  }
#endif
  if (model.empty()) {
    if (FILE *f = std::fopen("/proc/cpuinfo", "r")) {
      char line[512];
      while (std::fgets(line, sizeof(line), f)) {
        if (std::strncmp(line, "model name", 10) == 0) {
          if (const char *colon = std::strchr(line, ':')) model = colon + 1;
          break;
        }
      }
      std::fclose(f);
    }
  }
  // Trim, and collapse the runs of spaces some brand strings carry.
  std::string out;
  for (char ch : model) {
    if (ch == '\n' || ch == '\r') continue;
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Strictly "mc,kc,nc": decimal digits and two commas, nothing else.
int parse_blocks(const char *s, GemmBlocks *out, const char **why) {
  int64_t v[3];
  const char *p = s;
  for (int i = 0; i < 3; ++i) {
    int64_t x = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
      if (++digits > 6) {
        *why = "LAYERWISE_GEMM_BLOCKS: a value has more than 6 digits";
        return -1;
      }
      x = x * 10 + (*p++ - '0');
    }
    if (digits == 0) {
      *why = "LAYERWISE_GEMM_BLOCKS must be \"mc,kc,nc\": three positive decimal integers separated by commas";
      return -1;
    }
    v[i] = x;
    if (i < 2) {
      if (*p != ',') {
        *why = "LAYERWISE_GEMM_BLOCKS must be \"mc,kc,nc\": three positive decimal integers separated by commas";
        return -1;
      }
      ++p;
    }
  }
  if (*p != '\0') {
    *why = "LAYERWISE_GEMM_BLOCKS must be \"mc,kc,nc\": three positive decimal integers separated by commas";
    return -1;
  }
  if (const char *range = check_blocks(v[0], v[1], v[2])) {
    *why = range;
    return -1;
  }
  out->mc = v[0];
  out->kc = v[1];
  out->nc = v[2];
  return 1;
}

// Tuned blockings per (element size, shape class): every field is read and written
// atomically, so a GEMM running while tune() switches candidates sees valid values.
struct TunedSlot {
  std::atomic<bool> set{false};
  std::atomic<int64_t> mc{0}, kc{0}, nc{0};
};
TunedSlot g_tuned[2][2];  // [f64][shape]

}  // namespace

const char *check_blocks(int64_t mc, int64_t kc, int64_t nc) {
  if (mc < 1 || mc > 16384) return "LAYERWISE_GEMM_BLOCKS: mc must be in [1, 16384]";
  if (kc < 8 || kc > 8192) return "LAYERWISE_GEMM_BLOCKS: kc must be in [8, 8192]";
  if (nc < 1 || nc > 65536) return "LAYERWISE_GEMM_BLOCKS: nc must be in [1, 65536]";
  return nullptr;
}

int shape_class(int64_t M, int64_t N, int64_t K) {
  return M >= 512 && N >= 512 && K >= 512 ? kShapeSquare : kShapeBatch;
}

void set_tuned_blocks(int elem_bytes, int shape, bool set, GemmBlocks b) {
  TunedSlot &t = g_tuned[elem_bytes == 8][shape == kShapeSquare];
  t.set.store(false, std::memory_order_release);
  if (!set) return;
  t.mc.store(b.mc, std::memory_order_relaxed);
  t.kc.store(b.kc, std::memory_order_relaxed);
  t.nc.store(b.nc, std::memory_order_relaxed);
  t.set.store(true, std::memory_order_release);
}

MicroTile micro_tile(Isa isa, int elem_bytes) {
  const bool f32 = elem_bytes == 4;
  switch (isa) {
    case Isa::Avx512: return f32 ? kTileAvx512F32 : kTileAvx512F64;
    case Isa::Avx2: return f32 ? kTileAvx2F32 : kTileAvx2F64;
    default: return {0, 0};
  }
}

const CacheInfo &cache_info() {
  static const CacheInfo info = detect_caches();
  return info;
}

const char *cpu_model() {
  static const std::string model = detect_model();
  return model.c_str();
}

GemmBlocks derive_gemm_blocks(const CacheInfo &c, int elem_bytes, MicroTile tile) {
  const int64_t S = elem_bytes > 0 ? elem_bytes : 4;
  const int64_t mr = tile.mr > 0 ? tile.mr : 1, nr = tile.nr > 0 ? tile.nr : 1;
  const int64_t l1 = c.l1d.bytes > 0 ? c.l1d.bytes : 32 << 10;
  const int64_t ways = c.l1d.ways >= 2 ? c.l1d.ways : 8;
  const int64_t l2 = c.l2.bytes > 0 ? c.l2.bytes : 256 << 10;
  GemmBlocks b{};
  b.kc = clamp(round_down(l1 * (ways - 1) / ways / ((mr + nr) * S), 8), 32, 2048);
  b.mc = clamp(round_down(l2 / 2 / (b.kc * S), mr), mr, round_down(8192, mr));
  const int64_t b_budget = c.l3_per_core > 0 ? c.l3_per_core / 2 : l2 / 2;
  b.nc = clamp(round_down(b_budget / (b.kc * S), nr), nr, round_down(8192, nr));
  return b;
}

int gemm_blocks_env(GemmBlocks *raw, const char **why) {
  struct Parsed {
    int state = 0;
    GemmBlocks blocks{};
    const char *why = "";
  };
  static const Parsed parsed = [] {
    Parsed p;
    if (const char *env = std::getenv("LAYERWISE_GEMM_BLOCKS")) p.state = parse_blocks(env, &p.blocks, &p.why);
    return p;
  }();
  if (raw) *raw = parsed.blocks;
  if (why) *why = parsed.why;
  return parsed.state;
}

GemmBlocks gemm_blocks(int elem_bytes, MicroTile tile, int shape, const char **source) {
  GemmBlocks b{};
  const TunedSlot &t = g_tuned[elem_bytes == 8][shape == kShapeSquare];
  if (gemm_blocks_env(&b, nullptr) == 1) {
    if (source) *source = "env";
  } else if (t.set.load(std::memory_order_acquire)) {
    b.mc = t.mc.load(std::memory_order_relaxed);
    b.kc = t.kc.load(std::memory_order_relaxed);
    b.nc = t.nc.load(std::memory_order_relaxed);
    if (source) *source = "tuned";
  } else {
    if (source) *source = "analytical";
    return derive_gemm_blocks(cache_info(), elem_bytes, tile);
  }
  b.mc = round_up(b.mc, tile.mr > 0 ? tile.mr : 1);
  b.nc = round_up(b.nc, tile.nr > 0 ? tile.nr : 1);
  return b;
}

}  // namespace lw::cpu

// ---- the C API's view (backend.h) ------------------------------------------------
namespace lw::cpu {
namespace {

void copy_str(char *dst, size_t cap, const char *src) {
  std::snprintf(dst, cap, "%s", src ? src : "");
}

lwGemmBlocking_t to_api(GemmBlocks b, MicroTile t) {
  lwGemmBlocking_t r{};
  r.mc = b.mc;
  r.kc = b.kc;
  r.nc = b.nc;
  r.mr = t.mr;
  r.nr = t.nr;
  return r;
}

}  // namespace

lwStatus_t check_environment() {
  const char *why = "";
  if (gemm_blocks_env(nullptr, &why) < 0) return fail(LW_STATUS_BAD_PARAM, why);
  return LW_STATUS_SUCCESS;
}

lwStatus_t describe_cpu(lwCpuInfo_t *info) {
  const lwStatus_t st = check_environment();
  if (st != LW_STATUS_SUCCESS) return st;
  *info = lwCpuInfo_t{};
  const CacheInfo &c = cache_info();
  copy_str(info->model, sizeof info->model, cpu_model());
  copy_str(info->isa, sizeof info->isa, active_isa());
  copy_str(info->cache_source, sizeof info->cache_source, c.source);
  info->caches.l1d_bytes = c.l1d.bytes;
  info->caches.l1d_ways = c.l1d.ways;
  info->caches.l2_bytes = c.l2.bytes;
  info->caches.l2_ways = c.l2.ways;
  info->caches.l3_bytes = c.l3.bytes;
  info->caches.l3_bytes_per_core = c.l3_per_core;
  cpu_set_t set;
  info->logical_cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
  const Isa isa = active();
  const char *source = "none";
  const MicroTile t32 = micro_tile(isa, 4), t64 = micro_tile(isa, 8);
  if (t32.mr > 0) {
    // gemm_source describes float32, the dtype tune() tunes.
    info->gemm_f64 = to_api(gemm_blocks(8, t64, kShapeBatch, &source), t64);
    info->gemm_f32 = to_api(gemm_blocks(4, t32, kShapeBatch, &source), t32);
  }
  copy_str(info->gemm_source, sizeof info->gemm_source, source);
  return LW_STATUS_SUCCESS;
}

lwStatus_t derive_gemm_blocking(const lwCacheSizes_t &caches, bool avx512, DType dtype,
                                lwGemmBlocking_t *out) {
  CacheInfo c;
  c.l1d = {caches.l1d_bytes, caches.l1d_ways, 1};
  c.l2 = {caches.l2_bytes, caches.l2_ways, 1};
  c.l3 = {caches.l3_bytes, 0, 1};
  c.l3_per_core = caches.l3_bytes_per_core > 0 ? caches.l3_bytes_per_core : caches.l3_bytes;
  const int bytes = dtype == DType::F32 ? 4 : 8;
  const MicroTile t = micro_tile(avx512 ? Isa::Avx512 : Isa::Avx2, bytes);
  *out = to_api(derive_gemm_blocks(c, bytes, t), t);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu

namespace lw::cpu {
lwStatus_t set_gemm_blocking(DType dtype, int shape, const lwGemmBlocking_t *b) {
  if (b) {
    if (const char *why = check_blocks(b->mc, b->kc, b->nc))
      return fail(LW_STATUS_BAD_PARAM, std::string("blocking: ") + (why + std::strlen("LAYERWISE_GEMM_BLOCKS: ")));
  }
  GemmBlocks g{};
  if (b) g = GemmBlocks{b->mc, b->kc, b->nc};
  set_tuned_blocks(dtype == DType::F32 ? 4 : 8, shape, b != nullptr, g);
  return LW_STATUS_SUCCESS;
}
}  // namespace lw::cpu
