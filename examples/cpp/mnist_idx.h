// mnist_idx.h -- reading the MNIST IDX files (gzip-compressed or raw: zlib's
// gzread passes uncompressed files through) for the C++ examples, with the
// pixel scaling of layerwise.datasets (pixel * (1/255) in the target dtype).
#pragma once

#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mnist {

struct Set {
  int64_t count = 0, pixels = 0;
  std::vector<uint8_t> images;  // count x pixels
  std::vector<int32_t> labels;  // count
};

inline std::string find(const std::string &dir, const std::string &stem) {
  for (const char *suffix : {".gz", ""}) {
    const std::string path = dir + "/" + stem + suffix;
    if (gzFile f = gzopen(path.c_str(), "rb")) {
      gzclose(f);
      return path;
    }
  }
  throw std::runtime_error(dir + ": no " + stem + "(.gz)");
}

inline std::vector<uint8_t> read_all(const std::string &path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + got);
  const bool failed = got < 0;
  gzclose(f);
  if (failed) throw std::runtime_error(path + ": read error (corrupt gzip?)");
  return out;
}

inline uint32_t be32(const std::vector<uint8_t> &b, size_t at) {
  return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8) | b[at + 3];
}

// split: "t10k" (test) or "train".
inline Set load(const std::string &dir, const std::string &split) {
  const std::string ipath = find(dir, split + "-images-idx3-ubyte"), lpath = find(dir, split + "-labels-idx1-ubyte");
  const auto img = read_all(ipath), lab = read_all(lpath);
  if (img.size() < 16 || be32(img, 0) != 0x803) throw std::runtime_error(ipath + ": not an IDX image file");
  if (lab.size() < 8 || be32(lab, 0) != 0x801) throw std::runtime_error(lpath + ": not an IDX label file");
  Set s;
  s.count = be32(img, 4);
  s.pixels = int64_t(be32(img, 8)) * be32(img, 12);
  if (be32(lab, 4) != s.count) throw std::runtime_error(lpath + ": label count differs from the images'");
  if (img.size() != 16 + size_t(s.count * s.pixels) || lab.size() != 8 + size_t(s.count))
    throw std::runtime_error(dir + ": IDX file sizes do not match their headers");
  s.images.assign(img.begin() + 16, img.end());
  s.labels.assign(lab.begin() + 8, lab.end());
  return s;
}

// Rows [first, first + n) as T in [0, 1], scaled as layerwise.datasets does.
template <typename T>
void pixels(const Set &s, int64_t first, int64_t n, std::vector<T> &out) {
  out.resize(size_t(n * s.pixels));
  const T scale = T(1.0 / 255.0);
  for (int64_t k = 0; k < n * s.pixels; ++k) out[k] = T(s.images[size_t(first * s.pixels + k)]) * scale;
}

}  // namespace mnist
