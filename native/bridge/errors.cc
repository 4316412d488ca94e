// Errors: every C++ failure becomes an EmotorchError (lib/errors.ts) with a stable code and the
// message without the C++ backtrace; the per-environment constructors the bridge builds objects with.
#include "bridge/bridge.h"

#include <c10/util/Exception.h>

namespace et::bridge {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  auto& d = data(env);
  if (!d.error_ctor.IsEmpty()) {
    Napi::Object e = d.error_ctor.New({Napi::String::New(env, message), Napi::String::New(env, code)});
    return Napi::Error(env, e);
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

static std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::pair<std::string, std::string> describe_current_exception(const std::string& default_code) {
  try {
    throw;
  } catch (const CodedError& e) {
    return {e.code, e.what()};
  } catch (const c10::OutOfMemoryError& e) {
    return {"ERR_OUT_OF_MEMORY", trim(e.what_without_backtrace())};
  } catch (const c10::IndexError& e) {
    return {"ERR_INDEX", trim(e.what_without_backtrace())};
  } catch (const c10::TypeError& e) {
    return {"ERR_TYPE", trim(e.what_without_backtrace())};
  } catch (const c10::ValueError& e) {
    return {"ERR_VALUE", trim(e.what_without_backtrace())};
  } catch (const c10::NotImplementedError& e) {
    return {"ERR_NOT_IMPLEMENTED", trim(e.what_without_backtrace())};
  } catch (const c10::Error& e) {
    std::string msg = trim(e.what_without_backtrace());
    // The CPU allocator reports exhaustion as a plain c10::Error.
    if (msg.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos ||
        msg.find("DefaultCPUAllocator: not enough memory") != std::string::npos)
      return {"ERR_OUT_OF_MEMORY", msg};
    return {default_code, msg};
  } catch (const std::bad_alloc&) {
    return {"ERR_OUT_OF_MEMORY", "out of memory"};
  } catch (const std::exception& e) {
    return {"ERR_NATIVE", e.what()};
  } catch (...) {
    return {"ERR_NATIVE", "unknown native error"};
  }
}

static Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  data(info.Env()).error_ctor = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

void init_errors(Napi::Env env, Napi::Object exports) { exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass)); }

}  // namespace et::bridge
