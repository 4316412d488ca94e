// The in-process video reader (native/media) for lib/vision/video.ts: marshalling only. Its calls
// run on the libuv pool, not on the compute thread (decoding is I/O-like work beside the model's).
#include "bridge/bridge.h"
#include "media/video.h"

namespace et::bridge {
namespace {

// A reader held by JS; dropped by closeVideo or when the handle is collected.
struct Held {
  std::mutex m;
  std::unique_ptr<media::VideoReader> reader;
};

class MediaTask : public Napi::AsyncWorker {
 public:
  MediaTask(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env, "emotorch.video"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (...) {
      auto [code, msg] = describe_current_exception("ERR_FORMAT");
      code_ = code;
      message_ = msg;
      failed_ = true;
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failed_) {
      deferred_.Reject(make_error(env, code_, message_).Value());
      return;
    }
    try {
      deferred_.Resolve(done_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  bool failed_ = false;
  std::string code_, message_;
};

Napi::Promise start(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done) {
  auto* t = new MediaTask(env, std::move(work), std::move(done));
  auto p = t->promise();
  t->Queue();
  return p;
}

std::shared_ptr<Held> held(const Napi::Value& v) {
  if (!v.IsExternal()) throw CodedError("ERR_INVALID_ARG", "not a video reader handle");
  auto* h = v.As<Napi::External<std::shared_ptr<Held>>>().Data();
  if (!h || !*h) throw CodedError("ERR_INVALID_ARG", "not a video reader handle");
  return *h;
}

// videoAvailable() → null when the in-process reader runs here, else why not
Napi::Value VideoAvailable(const Napi::CallbackInfo& info) {
  std::string why;
  if (media::video_available(&why)) return info.Env().Null();
  return Napi::String::New(info.Env(), why);
}

// openVideo(fd, format, maxPixels, timeoutMs) → Promise<{ handle, width, height, ... }>
Napi::Value OpenVideo(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    int fd = static_cast<int>(to_double(info[0], "fd"));
    std::string format = to_string(info[1], "format");
    auto max_pixels = static_cast<int64_t>(to_double(info[2], "maxPixels"));
    double timeout = to_double(info[3], "timeoutMs");
    auto h = std::make_shared<Held>();
    return start(info.Env(), [h, fd, format, max_pixels, timeout] {
      h->reader = std::make_unique<media::VideoReader>(fd, format, max_pixels, timeout);
    }, [h](Napi::Env env) -> Napi::Value {
      const media::VideoInfo& v = h->reader->info();
      auto o = Napi::Object::New(env);
      o.Set("handle", Napi::External<std::shared_ptr<Held>>::New(env, new std::shared_ptr<Held>(h),
                                                                 [](Napi::Env, std::shared_ptr<Held>* p) { delete p; }));
      o.Set("width", v.width);
      o.Set("height", v.height);
      o.Set("frameCount", static_cast<double>(v.frame_count));
      o.Set("fps", v.fps);
      o.Set("duration", v.duration);
      o.Set("hasAudio", v.has_audio);
      o.Set("codec", v.codec);
      o.Set("needsCli", v.needs_cli);
      o.Set("ptsEverywhere", v.pts_everywhere);
      auto times = Napi::Float64Array::New(env, v.times.size());
      std::copy(v.times.begin(), v.times.end(), times.Data());
      o.Set("times", times);
      auto keys = Napi::Uint8Array::New(env, v.keys.size());
      std::copy(v.keys.begin(), v.keys.end(), keys.Data());
      o.Set("keys", keys);
      return o;
    });
  }, "ERR_FORMAT");
}

// Each of `slots` an index into `wanted` (of `n` entries).
void check_slots(const std::vector<int64_t>& slots, size_t n) {
  for (int64_t k : slots)
    if (k < 0 || static_cast<size_t>(k) >= n) throw CodedError("ERR_INVALID_ARG", "a slot past the frames read");
}

// readVideo(handle, wanted (ascending distinct), slots (an index into wanted for each of the T
// frames), seek, timeoutMs) → Promise<uint8 Tensor (3, T, H, W)>
Napi::Value ReadVideo(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto h = held(info[0]);
    auto wanted = to_ints(info[1], "wanted");
    auto slots = to_ints(info[2], "slots");
    bool seek = info[3].ToBoolean().Value();
    double timeout = to_double(info[4], "timeoutMs");
    if (!h->reader) throw CodedError("ERR_DISPOSED", "the video reader was closed");
    check_slots(slots, wanted.size());
    const auto& v = h->reader->info();
    at::Tensor out = at::empty({3, static_cast<int64_t>(slots.size()), v.height, v.width}, at::kByte);
    return start(info.Env(), [h, wanted, slots, seek, timeout, out] {
      std::lock_guard<std::mutex> lk(h->m);
      if (!h->reader) throw CodedError("ERR_DISPOSED", "the video reader was closed");
      h->reader->read(wanted, slots, seek, timeout, out.data_ptr<uint8_t>());
    }, [out](Napi::Env env) -> Napi::Value { return TensorHandle::wrap(env, out); });
  }, "ERR_FORMAT");
}

// placeVideoFrame(frames (uint8 (3, T, H, W)), rgb (H · W · 3 bytes), slots, k): the executables'
// frame k into its places
Napi::Value PlaceVideoFrame(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor out = to_tensor(info[0], "frames");
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw CodedError("ERR_INVALID_ARG", "rgb must be a Uint8Array");
    }
    auto rgb = info[1].As<Napi::Uint8Array>();
    auto slots = to_ints(info[2], "slots");
    auto k = static_cast<int64_t>(to_double(info[3], "k"));
    if (out.scalar_type() != at::kByte || !out.is_contiguous() || out.dim() != 4 || out.size(0) != 3 ||
        out.size(1) != static_cast<int64_t>(slots.size()) || static_cast<int64_t>(rgb.ByteLength()) != out.size(2) * out.size(3) * 3) {
      throw CodedError("ERR_INVALID_ARG", "frames and rgb do not match");
    }
    if (k < 0) throw CodedError("ERR_INVALID_ARG", "k must be at least 0");
    media::place_rgb24(rgb.Data(), out.size(3) * 3, out.size(3), out.size(2), slots, k, out.data_ptr<uint8_t>());
    return info.Env().Undefined();
  });
}

// closeVideo(handle): the reader and its descriptor go now (a read in flight finishes first)
Napi::Value CloseVideo(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto h = held(info[0]);
    std::lock_guard<std::mutex> lk(h->m);
    h->reader.reset();
    return info.Env().Undefined();
  });
}

}  // namespace

void init_media(Napi::Env env, Napi::Object exports) {
  exports.Set("videoAvailable", Napi::Function::New(env, VideoAvailable));
  exports.Set("openVideo", Napi::Function::New(env, OpenVideo));
  exports.Set("readVideo", Napi::Function::New(env, ReadVideo));
  exports.Set("closeVideo", Napi::Function::New(env, CloseVideo));
  exports.Set("placeVideoFrame", Napi::Function::New(env, PlaceVideoFrame));
}

}  // namespace et::bridge
