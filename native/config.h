// A model's config as lib/nn sends it: complete, because TypeScript declares each model's fields,
// HF names, defaults and checks in one place (lib/nn/<model>.ts). Each C++ model reads its own
// fields in its own file (`XConfig::from`) and sets no defaults: a field the TypeScript side does
// not send is an error naming it, so the two declarations cannot drift apart unnoticed.
// Each model file registers the kinds it builds (`ModelKind`); the bridge looks them up by name
// and knows no model.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
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

using ModelFactory = std::function<std::shared_ptr<Model>(const ConfigReader&)>;

// Every registered kind ("roberta", "llama", …) and its factory.
inline std::map<std::string, ModelFactory>& model_kinds() {
  static std::map<std::string, ModelFactory> kinds;
  return kinds;
}

// `static const ModelKind k("roberta", [](const ConfigReader& c) { … });` in the model's .cc.
struct ModelKind {
  ModelKind(const char* kind, ModelFactory make) { model_kinds()[kind] = std::move(make); }
};

}  // namespace et::nn
