// Model configs: one field list per config, read by name from what lib/nn sends.
//
// A config is declared once in C++, as a field list in the spirit of libtorch's TORCH_ARG: each
// field's type, name and default, in one line, from which ET_CONFIG makes the struct (with the
// defaults as member initializers), its reader `from` and its description `describe`:
//
//   #define WHISPER_FIELDS(X) X(int64_t, num_mel_bins, 80) X(std::string, activation_function, "gelu")
//   ET_CONFIG(WhisperConfig, WHISPER_FIELDS);
//
// (one X(…) a line, each line ending in a backslash, in the model headers). A default holding a
// comma goes in parentheses: X(std::vector<int64_t>, conv_stride, (std::vector<int64_t>{5, 2})).
//
// TypeScript declares the same config once too (lib/nn/<model>.ts, through lib/nn/config.ts), with
// its HF names, checks and renames; it always sends every field, so `from` reads each one and a
// field the TypeScript side does not send is an error naming it (the defaults here are not used to
// fill gaps). test/nn/config-agreement.test.ts compares both declarations for every registered
// kind through `describe`: each field's name, type and default.
// Each model file registers the kinds it builds (`ModelKind`); the bridge looks them up by name
// and knows no model.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace et::nn {

struct Model;

// Reads one field; each getter throws CodedError(ERR_INVALID_ARG) naming a missing or mistyped field.
struct ConfigReader {
  virtual ~ConfigReader() = default;
  virtual int64_t i64(const char* key) const = 0;
  virtual double f64(const char* key) const = 0;
  virtual bool flag(const char* key) const = 0;
  virtual std::string str(const char* key) const = 0;
  virtual std::vector<int64_t> ints(const char* key) const = 0;
  virtual std::vector<double> nums(const char* key) const = 0;
  // A nested config object (CLIP's text_config / vision_config), read the same way.
  virtual std::unique_ptr<ConfigReader> sub(const char* key) const = 0;
};

// One declared field: its name, its type on the wire ("i64", "f64", "bool", "str", "i64[]",
// "f64[]", or "config" for a nested config with `fields`), and its default as JSON text.
struct FieldInfo {
  std::string name, type, default_json;
  std::vector<FieldInfo> fields;
};

namespace config_detail {
template <class T, class = void>
struct is_config : std::false_type {};
template <class T>
struct is_config<T, std::void_t<decltype(T::describe())>> : std::true_type {};

inline std::string json(int64_t v) { return std::to_string(v); }
inline std::string json(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}
inline std::string json(bool v) { return v ? "true" : "false"; }
inline std::string json(const std::string& v) {
  std::string out = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}
template <class T>
std::string json(const std::vector<T>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + json(v[i]);
  return out + "]";
}

inline void read(const ConfigReader& c, const char* k, int64_t& v) { v = c.i64(k); }
inline void read(const ConfigReader& c, const char* k, double& v) { v = c.f64(k); }
inline void read(const ConfigReader& c, const char* k, bool& v) { v = c.flag(k); }
inline void read(const ConfigReader& c, const char* k, std::string& v) { v = c.str(k); }
inline void read(const ConfigReader& c, const char* k, std::vector<int64_t>& v) { v = c.ints(k); }
inline void read(const ConfigReader& c, const char* k, std::vector<double>& v) { v = c.nums(k); }
template <class T, std::enable_if_t<is_config<T>::value, int> = 0>
void read(const ConfigReader& c, const char* k, T& v) {
  v = T::from(*c.sub(k));
}

template <class T>
FieldInfo info(const char* name, const T& v) {
  if constexpr (is_config<T>::value) {
    return {name, "config", "{}", T::describe_values(v)};
  } else {
    const char* type = std::is_same_v<T, int64_t>                ? "i64"
                       : std::is_same_v<T, double>               ? "f64"
                       : std::is_same_v<T, bool>                 ? "bool"
                       : std::is_same_v<T, std::string>          ? "str"
                       : std::is_same_v<T, std::vector<int64_t>> ? "i64[]"
                                                                 : "f64[]";
    return {name, type, json(v), {}};
  }
}
}  // namespace config_detail

#define ET_CONFIG_MEMBER(type, name, def) type name = def;
#define ET_CONFIG_READ(type, name, def) ::et::nn::config_detail::read(c, #name, x.name);
#define ET_CONFIG_INFO(type, name, def) f.push_back(::et::nn::config_detail::info(#name, d.name));

// struct Name with the fields of FIELDS(X), `static Name from(const ConfigReader&)` and
// `static std::vector<FieldInfo> describe()` (each field's name, type and default; describe_values(x):
// the same with x's values).
#define ET_CONFIG(Name, FIELDS)                                                            \
  struct Name {                                                                            \
    FIELDS(ET_CONFIG_MEMBER)                                                               \
    static Name from(const ::et::nn::ConfigReader& c) {                                    \
      Name x;                                                                              \
      FIELDS(ET_CONFIG_READ)                                                               \
      return x;                                                                            \
    }                                                                                      \
    static std::vector<::et::nn::FieldInfo> describe_values(const Name& d) {               \
      std::vector<::et::nn::FieldInfo> f;                                                  \
      FIELDS(ET_CONFIG_INFO)                                                               \
      return f;                                                                            \
    }                                                                                      \
    static std::vector<::et::nn::FieldInfo> describe() { return describe_values(Name()); } \
  }

// The same, extending Base: Base's fields first, then these (WavLM's over the speech encoder's).
// DEFAULTS(X) lists Base fields whose default differs here, as X(type, name, default) (ET_NO_FIELDS
// for none).
#define ET_NO_FIELDS(X)
#define ET_CONFIG_DEFAULT(type, name, def) this->name = def;
#define ET_CONFIG_EXTENDS(Name, Base, DEFAULTS, FIELDS)                                    \
  struct Name : Base {                                                                     \
    FIELDS(ET_CONFIG_MEMBER)                                                               \
    Name() { DEFAULTS(ET_CONFIG_DEFAULT) }                                                 \
    static Name from(const ::et::nn::ConfigReader& c) {                                    \
      Name x;                                                                              \
      static_cast<Base&>(x) = Base::from(c);                                               \
      FIELDS(ET_CONFIG_READ)                                                               \
      return x;                                                                            \
    }                                                                                      \
    static std::vector<::et::nn::FieldInfo> describe_values(const Name& d) {               \
      auto f = Base::describe_values(d);                                                   \
      FIELDS(ET_CONFIG_INFO)                                                               \
      return f;                                                                            \
    }                                                                                      \
    static std::vector<::et::nn::FieldInfo> describe() { return describe_values(Name()); } \
  }

using ModelFactory = std::function<std::shared_ptr<Model>(const ConfigReader&)>;

struct KindEntry {
  ModelFactory make;
  std::function<std::vector<FieldInfo>()> describe;
};

// Every registered kind ("roberta", "llama", …): its factory and its config's fields.
inline std::map<std::string, KindEntry>& model_kinds() {
  static std::map<std::string, KindEntry> kinds;
  return kinds;
}

// `static const ModelKind k = ModelKind::of<WhisperEncoder, WhisperConfig>("whisper_encoder");`
// in the model's .cc: the model built from its config read by name.
struct ModelKind {
  ModelKind(const char* kind, KindEntry e) { model_kinds()[kind] = std::move(e); }
  template <class M, class C>
  static ModelKind of(const char* kind) {
    return ModelKind(kind, {[](const ConfigReader& c) -> std::shared_ptr<Model> { return std::make_shared<M>(C::from(c)); }, &C::describe});
  }
};

}  // namespace et::nn
