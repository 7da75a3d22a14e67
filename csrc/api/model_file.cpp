// model_file.cpp -- lwNetworkSave / lwNetworkLoad: networks as safetensors
// files (format in layerwise.h). The JSON header is parsed by nlohmann/json;
// this file only decides what a valid layerwise model file is. A load reads
// and checks the whole header against the file's real size before it
// allocates the network, so a crafted file costs at most its own size.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "device_memory.h"
#include "guard.h"

using json = nlohmann::json;
using lw::api::bad;
using lw::api::check;
using lw::api::failure;
using lw::api::guarded;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // safetensors' own cap
constexpr int kMaxJsonDepth = 64;
constexpr uint64_t kMaxWidth = (uint64_t{1} << 31) - 1;

const char *const kActivationNames[] = {"identity", "sigmoid", "tanh", "relu", "threshold"};

// ---- reading bytes: a file or a memory block ----------------------------------
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly len bytes at offset (the caller has checked the range).
  virtual void read(uint64_t offset, void *dst, size_t len) const = 0;
};

class MemorySource : public Source {
 public:
  MemorySource(const void *data, size_t size) : data_(static_cast<const char *>(data)), size_(size) {}
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, void *dst, size_t len) const override {
    if (len) std::memcpy(dst, data_ + offset, len);
  }

 private:
  const char *data_;
  size_t size_;
};

class FileSource : public Source {
 public:
  explicit FileSource(const std::string &path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) io_error("cannot open for reading");
    struct stat st;
    if (::fstat(fd_, &st) != 0) io_error("cannot stat");
    if (!S_ISREG(st.st_mode)) bad(path_ + ": not a regular file");
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override {
    if (fd_ >= 0) ::close(fd_);
  }
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, void *dst, size_t len) const override {
    char *p = static_cast<char *>(dst);
    while (len > 0) {
      const ssize_t got = ::pread(fd_, p, len, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) io_error("read failed");
      if (got == 0) bad(path_ + ": file shrank while being read");
      p += got;
      len -= static_cast<size_t>(got);
      offset += static_cast<uint64_t>(got);
    }
  }

 private:
  [[noreturn]] void io_error(const char *what) const {
    failure(LW_STATUS_EXECUTION_FAILED, path_ + ": " + what + " (" + std::strerror(errno) + ")");
  }
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// ---- JSON with bounded nesting ------------------------------------------------
json parse_json(const std::string &text, const std::string &where) {
  // The callback sees every value with its depth; deeper than the cap aborts the parse.
  const json::parser_callback_t limit = [](int depth, json::parse_event_t, json &) {
    if (depth > kMaxJsonDepth) throw std::length_error("nesting");
    return true;
  };
  try {
    return json::parse(text, limit);
  } catch (const std::length_error &) {
    bad(where + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  } catch (const json::exception &e) {
    bad(where + " is not valid JSON (" + e.what() + ")");
  }
}

// ---- the architecture -----------------------------------------------------------
struct LayerSpec {
  int64_t in = 0, out = 0;
  bool bias = true;
  int activation = LW_ACTIVATION_IDENTITY;
  std::string weight_name, bias_name;
};

int activation_from_name(const std::string &name, const std::string &where) {
  for (int i = 0; i < 5; ++i)
    if (name == kActivationNames[i]) return i;
  bad(where + ": unknown activation \"" + name + "\"");
}

int64_t positive_width(const json &m, const char *key, const std::string &where) {
  auto it = m.find(key);
  if (it == m.end() || !it->is_number_unsigned() || it->get<uint64_t>() < 1 ||
      it->get<uint64_t>() > kMaxWidth)
    bad(where + ": \"" + key + "\" must be an integer in [1, 2^31 - 1]");
  return static_cast<int64_t>(it->get<uint64_t>());
}

// Appends the Linear layers of module m (named by prefix, "" or "i.j.") to layers.
// Activation modules fuse into the preceding Linear; Dropout is the identity.
void walk(const json &m, const std::string &prefix, const std::string &file,
          std::vector<LayerSpec> &layers) {
  const std::string where = file + ": architecture module \"" +
                            (prefix.empty() ? std::string("<root>") : prefix.substr(0, prefix.size() - 1)) +
                            "\"";
  if (!m.is_object()) bad(where + " is not a JSON object");
  auto t = m.find("type");
  if (t == m.end() || !t->is_string()) bad(where + " has no string \"type\"");
  const std::string type = t->get<std::string>();
  if (type == "Sequential") {
    auto mods = m.find("modules");
    if (mods == m.end() || !mods->is_array()) bad(where + ": Sequential needs a \"modules\" array");
    for (size_t i = 0; i < mods->size(); ++i)
      walk((*mods)[i], prefix + std::to_string(i) + ".", file, layers);
  } else if (type == "Linear") {
    LayerSpec l;
    l.in = positive_width(m, "in_features", where);
    l.out = positive_width(m, "out_features", where);
    auto b = m.find("bias");
    if (b == m.end() || !b->is_boolean()) bad(where + ": \"bias\" must be true or false");
    l.bias = b->get<bool>();
    auto a = m.find("activation");
    if (a == m.end() || !a->is_string()) bad(where + ": \"activation\" must be a string");
    l.activation = activation_from_name(a->get<std::string>(), where);
    l.weight_name = prefix + "weight";
    l.bias_name = prefix + "bias";
    if (!layers.empty() && layers.back().out != l.in)
      bad(where + ": in_features " + std::to_string(l.in) + " does not match the previous layer's " +
          "out_features " + std::to_string(layers.back().out));
    layers.push_back(std::move(l));
  } else if (type == "Activation") {
    auto a = m.find("mode");
    if (a == m.end() || !a->is_string()) bad(where + ": \"mode\" must be a string");
    const int mode = activation_from_name(a->get<std::string>(), where);
    if (layers.empty())
      failure(LW_STATUS_NOT_SUPPORTED, where + ": an Activation before any Linear has no layer to fuse into");
    if (mode == LW_ACTIVATION_IDENTITY) return;
    if (layers.back().activation != LW_ACTIVATION_IDENTITY)
      failure(LW_STATUS_NOT_SUPPORTED,
              where + ": an Activation after a Linear that already has activation \"" +
                  kActivationNames[layers.back().activation] + "\" cannot be fused");
    layers.back().activation = mode;
  } else if (type == "Dropout") {
    // Identity at inference; the C training step does not drop units.
  } else {
    failure(LW_STATUS_NOT_SUPPORTED,
            where + ": module type \"" + type + "\" is not supported by the C loader " +
                "(Sequential, Linear, Activation and Dropout are)");
  }
}

// ---- tensors --------------------------------------------------------------------
struct TensorSpec {
  uint64_t begin = 0, end = 0;
  std::vector<uint64_t> shape;
};

TensorSpec tensor_spec(const std::string &name, const json &t, const std::string &dtype_tag,
                       const std::string &file) {
  const std::string where = file + ": tensor \"" + name + "\"";
  if (!t.is_object()) bad(where + " is not a JSON object");
  auto dt = t.find("dtype");
  if (dt == t.end() || !dt->is_string()) bad(where + " has no string \"dtype\"");
  if (dt->get<std::string>() != dtype_tag)
    bad(where + " has dtype " + dt->get<std::string>() + ", the file's dtype is " + dtype_tag);
  TensorSpec s;
  auto sh = t.find("shape");
  if (sh == t.end() || !sh->is_array() || sh->size() > 8) bad(where + ": \"shape\" must be a short array");
  for (const auto &d : *sh) {
    if (!d.is_number_unsigned()) bad(where + ": shape entries must be non-negative integers");
    s.shape.push_back(d.get<uint64_t>());
  }
  auto off = t.find("data_offsets");
  if (off == t.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    bad(where + ": \"data_offsets\" must be two non-negative integers");
  s.begin = (*off)[0].get<uint64_t>();
  s.end = (*off)[1].get<uint64_t>();
  if (s.end < s.begin) bad(where + ": data_offsets end before they begin");
  return s;
}

std::string shape_str(const std::vector<uint64_t> &s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void want_shape(const std::string &file, const std::string &name, const TensorSpec &t,
                const std::vector<uint64_t> &expected, size_t elem) {
  if (t.shape != expected)
    bad(file + ": tensor \"" + name + "\" has shape " + shape_str(t.shape) + ", the architecture needs " +
        shape_str(expected));
  uint64_t count = 1;
  for (uint64_t d : expected) count *= d;  // widths < 2^31, at most 2 of them: no overflow
  if (t.end - t.begin != count * elem)
    bad(file + ": tensor \"" + name + "\" spans " + std::to_string(t.end - t.begin) + " bytes, its shape needs " +
        std::to_string(count * elem));
}

std::string metadata_string(const json &meta, const char *key, const std::string &file) {
  auto it = meta.find(key);
  if (it == meta.end()) bad(file + ": __metadata__ has no \"" + key + "\"");
  if (!it->is_string()) bad(file + ": __metadata__ \"" + key + "\" is not a string");
  return it->get<std::string>();
}

// Validates the whole file, then builds the network from it.
lwNetwork_t load(lwHandle_t handle, const Source &src, const std::string &file) {
  const uint64_t size = src.size();
  if (size < 8) bad(file + ": too short for a safetensors file (" + std::to_string(size) + " bytes)");
  unsigned char len_bytes[8];
  src.read(0, len_bytes, 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes)
    bad(file + ": header length " + std::to_string(header_len) + " exceeds the 100 MB cap");
  if (header_len > size - 8)
    bad(file + ": header length " + std::to_string(header_len) + " runs past the end of the " +
        std::to_string(size) + "-byte file");
  std::string text(static_cast<size_t>(header_len), '\0');
  src.read(8, &text[0], text.size());
  const json header = parse_json(text, file + ": header");
  if (!header.is_object()) bad(file + ": header is not a JSON object");

  auto meta_it = header.find("__metadata__");
  if (meta_it == header.end() || !meta_it->is_object())
    bad(file + ": no __metadata__ object (not a layerwise model file)");
  const json &meta = *meta_it;
  for (auto it = meta.begin(); it != meta.end(); ++it)
    if (!it->is_string()) bad(file + ": __metadata__ \"" + it.key() + "\" is not a string");
  if (metadata_string(meta, "format", file) != "layerwise")
    bad(file + ": __metadata__ format is not \"layerwise\"");
  const std::string version = metadata_string(meta, "format_version", file);
  if (version != "1")
    failure(LW_STATUS_NOT_SUPPORTED, file + ": format_version \"" + version + "\" is not supported (1 is)");
  const std::string dtype_name = metadata_string(meta, "dtype", file);
  if (dtype_name != "float32" && dtype_name != "float64")
    bad(file + ": dtype \"" + dtype_name + "\" is not float32 or float64");
  const lwDataType_t dtype = dtype_name == "float32" ? LW_FLOAT32 : LW_FLOAT64;
  const size_t elem = dtype == LW_FLOAT32 ? 4 : 8;
  const std::string dtype_tag = dtype == LW_FLOAT32 ? "F32" : "F64";

  const json arch = parse_json(metadata_string(meta, "architecture", file), file + ": architecture");
  std::vector<LayerSpec> layers;
  walk(arch, "", file, layers);
  if (layers.empty()) bad(file + ": the architecture has no Linear layer");
  if (layers.size() > (1u << 16)) bad(file + ": more than 65536 layers");

  // Every tensor in the header is one the architecture names, and vice versa.
  std::vector<std::pair<std::string, TensorSpec>> tensors;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    tensors.emplace_back(it.key(), tensor_spec(it.key(), it.value(), dtype_tag, file));
  }
  auto find = [&](const std::string &name) -> const TensorSpec * {
    for (const auto &t : tensors)
      if (t.first == name) return &t.second;
    return nullptr;
  };
  size_t expected = 0;
  for (const auto &l : layers) {
    const TensorSpec *w = find(l.weight_name);
    if (!w) bad(file + ": tensor \"" + l.weight_name + "\" is missing");
    want_shape(file, l.weight_name, *w, {uint64_t(l.out), uint64_t(l.in)}, elem);
    ++expected;
    const TensorSpec *b = find(l.bias_name);
    if (l.bias) {
      if (!b) bad(file + ": tensor \"" + l.bias_name + "\" is missing");
      want_shape(file, l.bias_name, *b, {uint64_t(l.out)}, elem);
      ++expected;
    } else if (b) {
      bad(file + ": tensor \"" + l.bias_name + "\" is present but the layer has no bias");
    }
  }
  if (tensors.size() != expected) {
    for (const auto &t : tensors) {
      bool known = false;
      for (const auto &l : layers) known |= t.first == l.weight_name || (l.bias && t.first == l.bias_name);
      if (!known) bad(file + ": tensor \"" + t.first + "\" is not a parameter of the architecture");
    }
  }
  // The data buffer is covered exactly: sorted byte ranges abut, from 0 to its end.
  const uint64_t data_start = 8 + header_len, data_size = size - data_start;
  std::vector<const std::pair<std::string, TensorSpec> *> order;
  for (const auto &t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](auto *a, auto *b) { return a->second.begin < b->second.begin; });
  uint64_t pos = 0;
  for (auto *t : order) {
    if (t->second.begin != pos)
      bad(file + ": tensor \"" + t->first + "\" starts at byte " + std::to_string(t->second.begin) +
          " of the data, expected " + std::to_string(pos) + (t->second.begin < pos ? " (overlap)" : " (gap)"));
    if (t->second.end > data_size)
      bad(file + ": tensor \"" + t->first + "\" ends at byte " + std::to_string(t->second.end) +
          " past the " + std::to_string(data_size) + " data bytes (truncated file?)");
    pos = t->second.end;
  }
  if (pos != data_size)
    bad(file + ": " + std::to_string(data_size - pos) + " bytes after the last tensor");

  // Valid: allocate and fill.
  const int L = static_cast<int>(layers.size());
  std::vector<int64_t> sizes{layers[0].in};
  std::vector<lwActivationMode_t> acts;
  std::vector<int> has_bias;
  for (const auto &l : layers) {
    sizes.push_back(l.out);
    acts.push_back(static_cast<lwActivationMode_t>(l.activation));
    has_bias.push_back(l.bias ? 1 : 0);
  }
  lwNetwork_t net = nullptr;
  check(lwNetworkCreate(handle, L, sizes.data(), acts.data(), has_bias.data(), dtype, &net),
        file + ": creating the network");
  try {
    lwDevice_t device;
    check(lwGetDevice(handle, &device), file);
    std::vector<char> staging;
    auto fill = [&](const TensorSpec &t, void *dst) {
      const size_t bytes = static_cast<size_t>(t.end - t.begin);
      if (device == LW_DEVICE_CPU) {
        src.read(data_start + t.begin, dst, bytes);
      } else {
        staging.resize(bytes);
        src.read(data_start + t.begin, staging.data(), bytes);
        lw::api::copy_from_host(device, dst, staging.data(), bytes);
      }
    };
    for (int i = 0; i < L; ++i) {
      void *w, *b;
      check(lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b), file);
      fill(*find(layers[i].weight_name), w);
      if (layers[i].bias) fill(*find(layers[i].bias_name), b);
    }
  } catch (...) {
    lwNetworkDestroy(net);
    throw;
  }
  return net;
}

// ---- saving -----------------------------------------------------------------------
// Writes all of buf to fd, or throws naming path.
void write_all(int fd, const char *buf, size_t len, const std::string &path) {
  while (len > 0) {
    const ssize_t put = ::write(fd, buf, len);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0)
      failure(LW_STATUS_EXECUTION_FAILED, path + ": write failed (" + std::strerror(errno) + ")");
    buf += put;
    len -= static_cast<size_t>(put);
  }
}

// The file's bytes: header and tensors, built in host memory.
std::vector<char> serialize(lwNetwork_t net) {
  int L;
  check(lwNetworkGetLayerCount(net, &L), "lwNetworkSave");
  std::vector<int64_t> sizes(L + 1);
  check(lwNetworkGetSizes(net, sizes.data()), "lwNetworkSave");
  lwDataType_t dtype;
  check(lwNetworkGetDataType(net, &dtype), "lwNetworkSave");
  lwHandle_t handle;
  check(lwNetworkGetHandle(net, &handle), "lwNetworkSave");
  lwDevice_t device;
  check(lwGetDevice(handle, &device), "lwNetworkSave");
  const size_t elem = dtype == LW_FLOAT32 ? 4 : 8;
  const char *tag = dtype == LW_FLOAT32 ? "F32" : "F64";

  json modules = json::array();
  json header = json::object();
  struct Piece {
    const void *ptr;
    size_t bytes;
  };
  std::vector<Piece> pieces;
  uint64_t offset = 0;
  for (int i = 0; i < L; ++i) {
    lwActivationMode_t act;
    check(lwNetworkGetActivation(net, i, &act), "lwNetworkSave");
    void *w, *b;
    check(lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b), "lwNetworkSave");
    const uint64_t in = sizes[i], out = sizes[i + 1];
    modules.push_back({{"type", "Linear"}, {"in_features", in}, {"out_features", out},
                       {"bias", b != nullptr}, {"activation", kActivationNames[act]}});
    const size_t wbytes = static_cast<size_t>(in * out) * elem;
    header[std::to_string(i) + ".weight"] = {
        {"dtype", tag}, {"shape", {out, in}}, {"data_offsets", {offset, offset + wbytes}}};
    pieces.push_back({w, wbytes});
    offset += wbytes;
    if (b) {
      const size_t bbytes = static_cast<size_t>(out) * elem;
      header[std::to_string(i) + ".bias"] = {
          {"dtype", tag}, {"shape", {out}}, {"data_offsets", {offset, offset + bbytes}}};
      pieces.push_back({b, bbytes});
      offset += bbytes;
    }
  }
  const json arch = {{"type", "Sequential"}, {"modules", modules}};
  header["__metadata__"] = {{"format", "layerwise"},
                            {"format_version", "1"},
                            {"dtype", dtype == LW_FLOAT32 ? "float32" : "float64"},
                            {"architecture", arch.dump()}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  std::vector<char> out(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, text.data(), text.size());
  char *p = out.data() + 8 + text.size();
  for (const auto &piece : pieces) {
    lw::api::copy_to_host(device, p, piece.ptr, piece.bytes);
    p += piece.bytes;
  }
  return out;
}

void save(lwNetwork_t net, const std::string &path) {
  const std::vector<char> bytes = serialize(net);
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string tmp = path + ".tmp.XXXXXX";
  std::vector<char> tmpl(tmp.begin(), tmp.end());
  tmpl.push_back('\0');
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    failure(LW_STATUS_EXECUTION_FAILED,
            path + ": cannot create a temporary file next to it (" + std::strerror(errno) + ")");
  tmp.assign(tmpl.data());
  try {
    write_all(fd, bytes.data(), bytes.size(), tmp);
    if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0)
      failure(LW_STATUS_EXECUTION_FAILED, tmp + ": fsync failed (" + std::strerror(errno) + ")");
    if (::close(fd) != 0) {
      failure(LW_STATUS_EXECUTION_FAILED, tmp + ": close failed (" + std::strerror(errno) + ")");
    }
  } catch (...) {
    ::close(fd);  // may fail again after a failed close; the unlink is what matters
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    failure(LW_STATUS_EXECUTION_FAILED, path + ": rename failed (" + std::strerror(err) + ")");
  }
  // Persist the rename itself.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

extern "C" {

lwStatus_t lwNetworkSave(lwNetwork_t net, const char *path) {
  return guarded([&] {
    if (!net) bad("net is NULL");
    if (!path || !*path) bad("path is NULL or empty");
    save(net, path);
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkLoad(lwHandle_t handle, const char *path, lwNetwork_t *net) {
  return guarded([&] {
    if (!net) bad("net: output pointer is NULL");
    *net = nullptr;
    if (!handle) bad("handle is NULL");
    if (!path || !*path) bad("path is NULL or empty");
    FileSource src(path);
    *net = load(handle, src, path);
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkLoadFromMemory(lwHandle_t handle, const void *data, size_t size, const char *name,
                                   lwNetwork_t *net) {
  return guarded([&] {
    if (!net) bad("net: output pointer is NULL");
    *net = nullptr;
    if (!handle) bad("handle is NULL");
    if (!data && size > 0) bad("data is NULL");
    MemorySource src(data ? data : "", size);
    *net = load(handle, src, name && *name ? name : "<memory>");
    return LW_STATUS_SUCCESS;
  });
}

}  // extern "C"
