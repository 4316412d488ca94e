// File I/O that runs native: safetensors read (into owned memory) and write; flock on a descriptor.
#include "bridge/bridge.h"
#include "io/filelock.h"
#include "io/safetensors.h"

namespace et::bridge {
namespace {

// readSafetensors(path, dataStart, [[name, dtype, shape, begin, end], ...], fileSize) → Promise<Tensor[]>
Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto path = to_string(info[0], "path");
    auto start = static_cast<uint64_t>(to_double(info[1], "dataStart"));
    auto arr = info[2].As<Napi::Array>();
    std::vector<io::TensorEntry> entries;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto e = arr.Get(i).As<Napi::Array>();
      entries.push_back({to_string(e.Get(0u), "name"), to_dtype(e.Get(1u)), to_ints(e.Get(2u), "shape"),
                         static_cast<uint64_t>(to_double(e.Get(3u), "begin")), static_cast<uint64_t>(to_double(e.Get(4u), "end"))});
    }
    auto size = static_cast<uint64_t>(to_double(info[3], "fileSize"));
    auto out = std::make_shared<std::vector<at::Tensor>>();
    return run_async(info.Env(), "emotorch.readSafetensors", nullptr, [path, start, entries, out, size] {
      *out = io::read_safetensors(path, start, entries, size);
    }, [out](Napi::Env env) { return from_tensors(env, *out); }, "ERR_IO");
  });
}

// writeSafetensors(path, headerJson, tensors) → Promise<void>
Napi::Value WriteSafetensors(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto path = to_string(info[0], "path");
    auto header = to_string(info[1], "header");
    auto ts = to_tensors(info[2], "tensors");
    return run_async(info.Env(), "emotorch.writeSafetensors", nullptr, [path, header, ts] { io::write_safetensors(path, header, ts); },
                     nullptr, "ERR_IO");
  });
}

// tryLockFile(fd) → boolean: an exclusive flock taken without waiting (false: held elsewhere)
Napi::Value TryLockFile(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    return Napi::Boolean::New(info.Env(), io::try_lock_file(static_cast<int>(to_double(info[0], "fd"))));
  }, "ERR_IO");
}

// unlockFile(fd)
Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    io::unlock_file(static_cast<int>(to_double(info[0], "fd")));
    return info.Env().Undefined();
  }, "ERR_IO");
}

}  // namespace

void init_io(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockFile", Napi::Function::New(env, TryLockFile));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile));
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensors));
  exports.Set("writeSafetensors", Napi::Function::New(env, WriteSafetensors));
}

}  // namespace et::bridge
