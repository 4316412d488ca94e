// The in-process video reader (video.h): FFmpeg's libraries through dlopen, frames made as the
// ffmpeg executable makes them for lib/vision/video.ts (`-vf scale=W:H,format=rgb24` after its
// autorotate), so that both paths give the same bytes.
#include "media/video.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "error.h"

#if !defined(ET_NO_LIBAV) && __has_include(<libavformat/avformat.h>) && __has_include(<libavcodec/avcodec.h>) && \
    __has_include(<libswscale/swscale.h>)
#define ET_WITH_LIBAV 1
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}
#endif

namespace et::media {

void place_rgb24(const uint8_t* rgb, int64_t stride, int64_t w, int64_t h, const std::vector<int64_t>& slots, int64_t k, uint8_t* out) {
  const int64_t T = static_cast<int64_t>(slots.size()), plane = w * h;
  for (int64_t t = 0; t < T; t++) {
    if (slots[t] != k) continue;
    uint8_t* r = out + t * plane;
    uint8_t* g = r + T * plane;
    uint8_t* b = g + T * plane;
    for (int64_t y = 0; y < h; y++) {
      const uint8_t* p = rgb + y * stride;
      const int64_t o = y * w;
      for (int64_t x = 0; x < w; x++) {
        r[o + x] = p[3 * x];
        g[o + x] = p[3 * x + 1];
        b[o + x] = p[3 * x + 2];
      }
    }
  }
}

#ifndef ET_WITH_LIBAV

bool video_available(std::string* why) {
  *why = "emotorch was built without FFmpeg's headers (libavformat-dev, libavcodec-dev, libswscale-dev)";
  return false;
}
struct VideoReader::State {};
VideoReader::VideoReader(int, const std::string&, int64_t, double) {
  std::string why;
  video_available(&why);
  throw CodedError("ERR_IO", why);
}
VideoReader::~VideoReader() = default;
const VideoInfo& VideoReader::info() const { throw CodedError("ERR_IO", "no in-process video reader"); }
void VideoReader::read(const std::vector<int64_t>&, const std::vector<int64_t>&, bool, double, uint8_t*) {}

#else

namespace {

// ---- the libraries, opened once by soname of the major versions built against ----
#define ET_STR2(x) #x
#define ET_STR(x) ET_STR2(x)
#define ET_AVUTIL(X)            \
  X(avutil_version)             \
  X(av_frame_alloc)             \
  X(av_frame_free)              \
  X(av_frame_unref)             \
  X(av_frame_get_buffer)        \
  X(av_malloc)                  \
  X(av_free)                    \
  X(av_strerror)                \
  X(av_log_set_callback)        \
  X(av_display_rotation_get)    \
  X(av_pix_fmt_desc_get)        \
  X(av_image_fill_max_pixsteps) \
  X(av_dict_set)                \
  X(av_dict_free)
#define ET_AVCODEC(X)              \
  X(avcodec_version)               \
  X(avcodec_find_decoder)          \
  X(avcodec_alloc_context3)        \
  X(avcodec_parameters_to_context) \
  X(avcodec_open2)                 \
  X(avcodec_send_packet)           \
  X(avcodec_receive_frame)         \
  X(avcodec_free_context)          \
  X(avcodec_flush_buffers)         \
  X(av_packet_alloc)               \
  X(av_packet_free)                \
  X(av_packet_unref)               \
  X(avcodec_get_name)              \
  X(avcodec_default_get_buffer2)   \
  X(avcodec_parameters_alloc)      \
  X(avcodec_parameters_copy)       \
  X(avcodec_parameters_free)
#define ET_AVFORMAT(X)         \
  X(avformat_version)          \
  X(avformat_alloc_context)    \
  X(avformat_open_input)       \
  X(avformat_find_stream_info) \
  X(avformat_close_input)      \
  X(av_read_frame)             \
  X(av_seek_frame)             \
  X(avio_alloc_context)        \
  X(avio_context_free)         \
  X(av_find_input_format)      \
  X(av_stream_get_side_data)
#define ET_SWSCALE(X)         \
  X(swscale_version)          \
  X(sws_getContext)           \
  X(sws_isSupportedInput)     \
  X(sws_freeContext)          \
  X(sws_scale)                \
  X(sws_getColorspaceDetails) \
  X(sws_setColorspaceDetails) \
  X(sws_getCoefficients)

struct Av {
#define ET_DECL(f) decltype(&::f) f = nullptr;
  ET_AVUTIL(ET_DECL)
  ET_AVCODEC(ET_DECL)
  ET_AVFORMAT(ET_DECL)
  ET_SWSCALE(ET_DECL)
#undef ET_DECL
  bool ok = false;
  std::string why;
};

// libav's messages of error level, kept per thread for the error a call reports (its other
// messages, warnings about damaged streams included, are dropped: no output on the user's stderr).
thread_local std::string last_log;
// Whether an allocation failed on this thread since the call began: FFmpeg's decoders report a
// picture buffer they could not get as damage ("get_buffer() failed", then AVERROR_INVALIDDATA),
// so its messages are the only sign. A buffer refused for its size (past max_pixels, invalid
// dimensions: a message saying so comes first) is damage, not memory.
thread_local bool saw_nomem = false;
void log_cb(void*, int level, const char* fmt, va_list vl) {
  if (level > AV_LOG_ERROR) return;
  char buf[512];
  va_list copy;
  va_copy(copy, vl);
  vsnprintf(buf, sizeof buf, fmt, copy);
  va_end(copy);
  std::string s(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.empty()) return;
  bool size_refused = last_log.find("exceeds") != std::string::npos || last_log.find("invalid") != std::string::npos ||
                      last_log.find("Invalid") != std::string::npos;
  if (s.find("Cannot allocate memory") != std::string::npos || (s.find("get_buffer() failed") != std::string::npos && !size_refused)) {
    saw_nomem = true;
  }
  last_log = s;
}

const Av& av() {
  static Av a = [] {
    Av a;
    struct Lib {
      const char* name;
      unsigned major;
      void* h;
    };
    Lib libs[] = {{"libavutil.so." ET_STR(LIBAVUTIL_VERSION_MAJOR), LIBAVUTIL_VERSION_MAJOR, nullptr},
                  {"libavcodec.so." ET_STR(LIBAVCODEC_VERSION_MAJOR), LIBAVCODEC_VERSION_MAJOR, nullptr},
                  {"libavformat.so." ET_STR(LIBAVFORMAT_VERSION_MAJOR), LIBAVFORMAT_VERSION_MAJOR, nullptr},
                  {"libswscale.so." ET_STR(LIBSWSCALE_VERSION_MAJOR), LIBSWSCALE_VERSION_MAJOR, nullptr}};
    for (auto& l : libs) {
      l.h = dlopen(l.name, RTLD_NOW | RTLD_LOCAL);
      if (!l.h) {
        a.why = std::string(l.name) + " (FFmpeg's library, of the major version emotorch was built with) is not installed";
        return a;
      }
    }
    std::string missing;
#define ET_LOAD(lib, f)                                          \
  a.f = reinterpret_cast<decltype(a.f)>(dlsym(libs[lib].h, #f)); \
  if (!a.f) missing += std::string(missing.empty() ? "" : ", ") + #f;
#define ET_U(f) ET_LOAD(0, f)
#define ET_C(f) ET_LOAD(1, f)
#define ET_F(f) ET_LOAD(2, f)
#define ET_S(f) ET_LOAD(3, f)
    ET_AVUTIL(ET_U)
    ET_AVCODEC(ET_C)
    ET_AVFORMAT(ET_F)
    ET_SWSCALE(ET_S)
#undef ET_U
#undef ET_C
#undef ET_F
#undef ET_S
#undef ET_LOAD
    if (!missing.empty()) {
      a.why = "FFmpeg's libraries lack " + missing;
      return a;
    }
    if ((a.avutil_version() >> 16) != LIBAVUTIL_VERSION_MAJOR || (a.avcodec_version() >> 16) != LIBAVCODEC_VERSION_MAJOR ||
        (a.avformat_version() >> 16) != LIBAVFORMAT_VERSION_MAJOR || (a.swscale_version() >> 16) != LIBSWSCALE_VERSION_MAJOR) {
      a.why = "FFmpeg's libraries are not of the major versions emotorch was built with";
      return a;
    }
    a.av_log_set_callback(log_cb);
    a.ok = true;
    return a;
  }();
  return a;
}

std::string av_error(int ret) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av().av_strerror(ret, buf, sizeof buf);
  std::string s = buf;
  if (!last_log.empty()) s += " (" + last_log + ")";
  last_log.clear();
  return s;
}

using Clock = std::chrono::steady_clock;

// One demuxer reading the descriptor through pread: the only input it has.
struct Input {
  int fd = -1;
  int64_t size = 0, pos = 0;
  AVFormatContext* fmt = nullptr;
  AVIOContext* io = nullptr;
  ~Input() {
    const Av& a = av();
    if (fmt) a.avformat_close_input(&fmt);  // a custom AVIOContext is left to its owner
    if (io) {
      a.av_free(io->buffer);
      io->buffer = nullptr;
      a.avio_context_free(&io);
    }
  }
  static int read(void* opaque, uint8_t* buf, int n) {
    auto* in = static_cast<Input*>(opaque);
    ssize_t got;
    do got = pread(in->fd, buf, static_cast<size_t>(n), in->pos);
    while (got < 0 && errno == EINTR);
    if (got < 0) return AVERROR(errno);
    if (got == 0) return AVERROR_EOF;
    in->pos += got;
    return static_cast<int>(got);
  }
  static int64_t seek(void* opaque, int64_t off, int whence) {
    auto* in = static_cast<Input*>(opaque);
    int64_t p;
    switch (whence & ~AVSEEK_FORCE) {
      case AVSEEK_SIZE: return in->size;
      case SEEK_SET: p = off; break;
      case SEEK_CUR: p = in->pos + off; break;
      case SEEK_END: p = in->size + off; break;
      default: return AVERROR(EINVAL);
    }
    if (p < 0) return AVERROR(EINVAL);
    in->pos = p;
    return p;
  }
  // Nothing but the one descriptor: an HLS segment, a QuickTime data reference or any other name
  // a demuxer would open is refused.
  static int refuse(AVFormatContext*, AVIOContext**, const char*, int, AVDictionary**) { return AVERROR(EPERM); }
};

}  // namespace

bool video_available(std::string* why) {
  const Av& a = av();
  if (!a.ok) *why = a.why;
  return a.ok;
}

struct VideoReader::State {
  int fd = -1;
  int64_t size = 0;
  std::string format;
  int64_t max_pixels = 0;
  std::atomic<int64_t> deadline{0};  // steady-clock nanoseconds
  double timeout_ms = 0;
  VideoInfo info;
  int stream = -1;
  AVRational tb{0, 1};
  int coded_w = 0, coded_h = 0;  // the stream's declared size before rotation
  // Packets in decode order: timestamp (pts, else dts) and keyframe flag; and display order.
  std::vector<int64_t> dec_ts;
  std::vector<uint8_t> dec_key;
  std::vector<int64_t> sorted_ts;     // display order (only when every packet has a timestamp)
  std::vector<int64_t> disp_to_dec;   // display index → decode index
  bool timed = false;
  AVCodecContext* dec = nullptr;
  const AVCodec* codec = nullptr;
  AVCodecParameters* par = nullptr;
  std::unique_ptr<Input> in;  // the decoding pass's demuxer
  int64_t next_dec = 0;       // decode index of the next packet `in` gives (-1: unknown)
  SwsContext* sws = nullptr;
  int sws_w = 0, sws_h = 0, sws_fmt = -1;
  AVFrame* turned = nullptr;  // a frame rotated upright
  AVFrame* rgb = nullptr;     // swscale's output

  ~State() {
    const Av& a = av();
    if (dec) a.avcodec_free_context(&dec);
    if (par) a.avcodec_parameters_free(&par);
    in.reset();
    if (sws) a.sws_freeContext(sws);
    if (turned) a.av_frame_free(&turned);
    if (rgb) a.av_frame_free(&rgb);
    if (fd >= 0) close(fd);
  }
  void arm(double ms) {
    timeout_ms = ms;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
    deadline = ns + static_cast<int64_t>(std::min(ms, 1e12) * 1e6);
  }
  bool late() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count() > deadline.load();
  }
  [[noreturn]] void fail(int ret, const char* doing) {
    if (ret == AVERROR_EXIT || late()) timeout();
    throw CodedError("ERR_FORMAT", std::string(doing) + ": " + av_error(ret));
  }
  [[noreturn]] void timeout() const {
    last_log.clear();
    char buf[160];
    snprintf(buf, sizeof buf, "decoding ran longer than %g ms and was stopped (raise timeoutMs for very long files)", timeout_ms);
    throw CodedError("ERR_IO", buf);
  }
  // FFmpeg could not allocate (AVERROR(ENOMEM)): the machine's memory, not the file, is at fault.
  [[noreturn]] static void out_of_memory(const char* doing) {
    last_log.clear();
    saw_nomem = false;
    throw CodedError("ERR_OUT_OF_MEMORY", std::string("out of memory (").append(doing).append(")"));
  }
  // A call's result that ends a loop (the end of the file, or damage, as the executable goes on)
  // unless it is the deadline.
  void check_late(int ret) {
    if (ret == AVERROR_EXIT || late()) timeout();
  }
  // A decoding call's result: as check_late, and memory running out is ERR_OUT_OF_MEMORY. (Only
  // here: a demuxer's ENOMEM is a header or packet declaring an absurd size, the file's fault; a
  // decoder allocates by the frame size, bounded by max_pixels.)
  void check(int ret, const char* doing) {
    check_late(ret);
    if (ret == AVERROR(ENOMEM)) out_of_memory(doing);
  }
  // A fresh decoder (the one before, if any, closed).
  void open_decoder() {
    const Av& a = av();
    if (dec) a.avcodec_free_context(&dec);
    dec = a.avcodec_alloc_context3(codec);
    if (!dec) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory opening a decoder");
    int ret = a.avcodec_parameters_to_context(dec, par);
    if (ret < 0) fail(ret, "its video stream's parameters are invalid");
    dec->pkt_timebase = tb;
    dec->get_buffer2 = &State::get_buffer;
    // Slice threads only, one per core (lib/vision/video.ts gives the executable the same
    // `-thread_type slice`): frame threads would hold a picture per thread (gigabytes at 8192²)
    // and make a damaged stream's concealed frames depend on the threads' timing.
    dec->thread_count = 0;
    dec->thread_type = FF_THREAD_SLICE;
    dec->max_pixels = std::max<int64_t>(1, std::min<int64_t>(max_pixels, INT_MAX));
    ret = a.avcodec_open2(dec, codec, nullptr);
    if (ret < 0) fail(ret, "its video decoder could not start");
  }
  // The decoder's default picture allocator, noting a failure for want of memory.
  static int get_buffer(AVCodecContext* c, AVFrame* f, int flags) {
    int r = av().avcodec_default_get_buffer2(c, f, flags);
    if (r == AVERROR(ENOMEM)) saw_nomem = true;
    return r;
  }
  static int interrupted(void* opaque) { return static_cast<State*>(opaque)->late() ? 1 : 0; }

  std::unique_ptr<Input> open_input() {
    const Av& a = av();
    auto in = std::make_unique<Input>();
    in->fd = fd;
    in->size = size;
    const AVInputFormat* ifmt = a.av_find_input_format(format.c_str());
    if (!ifmt) throw CodedError("ERR_FORMAT", "FFmpeg's libraries here have no '" + format + "' demuxer");
    in->fmt = a.avformat_alloc_context();
    auto* buf = static_cast<unsigned char*>(a.av_malloc(1 << 16));
    if (!in->fmt || !buf) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory opening a demuxer");
    in->io = a.avio_alloc_context(buf, 1 << 16, 0, in.get(), &Input::read, nullptr, &Input::seek);
    if (!in->io) {
      a.av_free(buf);
      throw CodedError("ERR_OUT_OF_MEMORY", "out of memory opening a demuxer");
    }
    in->fmt->pb = in->io;
    in->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    in->fmt->io_open = &Input::refuse;
    in->fmt->interrupt_callback.callback = &State::interrupted;
    in->fmt->interrupt_callback.opaque = this;
    AVDictionary* opts = nullptr;
    a.av_dict_set(&opts, "format_whitelist", format.c_str(), 0);
    a.av_dict_set(&opts, "protocol_whitelist", "none", 0);
    int ret = a.avformat_open_input(&in->fmt, "", ifmt, &opts);  // frees the context when it fails
    a.av_dict_free(&opts);
    if (ret < 0) fail(ret, "it is not a video FFmpeg can read");
    for (unsigned i = 0; i < in->fmt->nb_streams; i++)
      if (static_cast<int>(i) != stream && stream >= 0) in->fmt->streams[i]->discard = AVDISCARD_ALL;
    return in;
  }
};

namespace {

// ffmpeg's autorotate: the display matrix's angle, counter-clockwise in the matrix, as a clockwise
// turn in [0, 360).
double rotation_of(const Av& a, AVStream* st) {
  const uint8_t* m = a.av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, nullptr);
  double theta = m ? -std::round(a.av_display_rotation_get(reinterpret_cast<const int32_t*>(m))) : 0;
  if (std::isnan(theta)) theta = 0;
  theta -= 360 * std::floor(theta / 360 + 0.9 / 360);
  return theta;
}

// The codecs decoded in the process: those of the datasets' videos and of cameras and phones, all
// under continuous fuzzing upstream. Any other codec a container may carry is decoded by the ffmpeg
// executable, in a process of its own, so that a fault in a rarely used decoder cannot take the
// caller's process down.
bool in_process_codec(AVCodecID id) {
  switch (id) {
    case AV_CODEC_ID_H264:
    case AV_CODEC_ID_HEVC:
    case AV_CODEC_ID_VP8:
    case AV_CODEC_ID_VP9:
    case AV_CODEC_ID_AV1:
    case AV_CODEC_ID_MPEG4:
    case AV_CODEC_ID_MPEG1VIDEO:
    case AV_CODEC_ID_MPEG2VIDEO:
    case AV_CODEC_ID_H263:
    case AV_CODEC_ID_MJPEG:
    case AV_CODEC_ID_PRORES:
    case AV_CODEC_ID_RAWVIDEO: return true;
    default: return false;
  }
}

// Whether ffmpeg's transpose / hflip+vflip filters take this pixel format as it is (no conversion
// before turning): no palette, hardware or bitstream formats, the same chroma subsampling both ways.
bool turnable(const AVPixFmtDescriptor* d) {
  return d && !(d->flags & (AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_BITSTREAM)) &&
         d->log2_chroma_w == d->log2_chroma_h;
}

}  // namespace

VideoReader::VideoReader(int fd, const std::string& format, int64_t max_pixels, double timeout_ms) : s_(std::make_unique<State>()) {
  const Av& a = av();
  if (!a.ok) throw CodedError("ERR_IO", a.why);
  State& s = *s_;
  last_log.clear();
  saw_nomem = false;
  s.format = format;
  s.max_pixels = max_pixels;
  s.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  struct stat st;
  if (s.fd < 0 || fstat(s.fd, &st) != 0) throw CodedError("ERR_IO", std::string("cannot read it: ") + strerror(errno));
  s.size = st.st_size;
  s.arm(timeout_ms);

  auto in = s.open_input();
  AVFormatContext* fmt = in->fmt;
  int ret = a.avformat_find_stream_info(fmt, nullptr);
  if (ret < 0) s.fail(ret, "FFmpeg could not read its streams");
  bool cover = false;
  for (unsigned i = 0; i < fmt->nb_streams; i++) {
    AVStream* t = fmt->streams[i];
    if (t->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) s.info.has_audio = true;
    if (t->codecpar->codec_type != AVMEDIA_TYPE_VIDEO) continue;
    if (t->disposition & AV_DISPOSITION_ATTACHED_PIC) cover = true;
    else if (s.stream < 0) s.stream = static_cast<int>(i);
  }
  if (s.stream < 0) throw CodedError("ERR_FORMAT", cover ? "its only video stream is a cover picture" : "it has no video stream");
  AVStream* v = fmt->streams[s.stream];
  AVCodecParameters* par = v->codecpar;
  s.tb = v->time_base;
  s.coded_w = par->width;
  s.coded_h = par->height;
  if (par->width <= 0 || par->height <= 0) {
    throw CodedError("ERR_FORMAT", "its video stream has no frame size (width " + std::to_string(par->width) + ", height " +
                                       std::to_string(par->height) + ")");
  }
  int64_t pixels = static_cast<int64_t>(par->width) * par->height;
  if (pixels > max_pixels) {
    throw CodedError("ERR_FORMAT", "its frames are " + std::to_string(par->width) + "×" + std::to_string(par->height) + " (" +
                                       std::to_string(pixels) + " pixels), more than the " + std::to_string(max_pixels) +
                                       " decoded (maxPixels)");
  }
  VideoInfo& info = s.info;
  info.width = par->width;
  info.height = par->height;
  double theta = rotation_of(a, v);
  for (int q : {90, 180, 270})
    if (std::fabs(theta - q) < 1.0) info.rotation = q;
  if (info.rotation == 0 && std::fabs(theta) > 1.0) {
    info.needs_cli = "its picture is turned by " + std::to_string(static_cast<int>(std::lround(theta))) + " degrees";
  } else if (info.rotation != 0 && !turnable(a.av_pix_fmt_desc_get(static_cast<AVPixelFormat>(par->format)))) {
    info.needs_cli = "its rotated pictures' pixel format is turned through a conversion";
  }
  if (info.rotation == 90 || info.rotation == 270) std::swap(info.width, info.height);
  auto q2d = [](AVRational r) { return r.den ? static_cast<double>(r.num) / r.den : 0.0; };
  double fps = q2d(v->avg_frame_rate);
  if (!(std::isfinite(fps) && fps > 0)) fps = q2d(v->r_frame_rate);
  info.fps = std::isfinite(fps) && fps > 0 ? fps : 0;
  if (fmt->duration != AV_NOPTS_VALUE && fmt->duration > 0) info.duration = fmt->duration / 1e6;
  else if (v->duration != AV_NOPTS_VALUE && v->duration > 0) info.duration = v->duration * q2d(s.tb);
  info.codec = a.avcodec_get_name(par->codec_id);

  // The decoder, from the parameters as probed (kept: every pass from the start or a jump opens
  // a fresh one, as each input of the executable has its own).
  s.codec = in_process_codec(par->codec_id) ? a.avcodec_find_decoder(par->codec_id) : nullptr;
  if (s.codec) {
    s.par = a.avcodec_parameters_alloc();
    if (!s.par) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory opening a decoder");
    if ((ret = a.avcodec_parameters_copy(s.par, par)) < 0) s.fail(ret, "its video stream's parameters are invalid");
    s.open_decoder();
  }

  // Every packet of the stream, demuxed (not decoded): decord's frame table.
  for (unsigned i = 0; i < fmt->nb_streams; i++)
    if (static_cast<int>(i) != s.stream) fmt->streams[i]->discard = AVDISCARD_ALL;
  AVPacket* pkt = a.av_packet_alloc();
  if (!pkt) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory");
  constexpr size_t kMaxPackets = size_t(8) << 20;
  bool no_pts = false;
  try {
    for (;;) {
      ret = a.av_read_frame(fmt, pkt);
      s.check_late(ret);
      // the end, or damage (a size past what can be allocated included): the packets read so far
      // are the stream, as ffprobe lists them
      if (ret < 0) break;
      if (pkt->stream_index == s.stream) {
        if (s.dec_ts.size() >= kMaxPackets)
          throw CodedError("ERR_FORMAT", "its video stream has more than " + std::to_string(kMaxPackets) + " packets");
        s.dec_ts.push_back(pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts);
        if (pkt->pts == AV_NOPTS_VALUE) no_pts = true;
        s.dec_key.push_back((pkt->flags & AV_PKT_FLAG_KEY) ? 1 : 0);
      }
      a.av_packet_unref(pkt);
    }
  } catch (...) {
    a.av_packet_free(&pkt);
    throw;
  }
  a.av_packet_free(&pkt);
  last_log.clear();
  const size_t n = s.dec_ts.size();
  info.frame_count = static_cast<int64_t>(n);
  info.pts_everywhere = !no_pts;
  s.timed = std::none_of(s.dec_ts.begin(), s.dec_ts.end(), [](int64_t t) { return t == AV_NOPTS_VALUE; });
  std::vector<int64_t> order(n);
  for (size_t i = 0; i < n; i++) order[i] = static_cast<int64_t>(i);
  if (s.timed) std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return s.dec_ts[x] < s.dec_ts[y]; });
  s.disp_to_dec = order;
  info.times.resize(n);
  info.keys.resize(n);
  if (s.timed) s.sorted_ts.resize(n);
  const double tb = q2d(s.tb);
  for (size_t i = 0; i < n; i++) {
    int64_t d = order[i];
    info.times[i] = s.timed && tb > 0 ? s.dec_ts[d] * tb : NAN;
    info.keys[i] = s.dec_key[d];
    if (s.timed) s.sorted_ts[i] = s.dec_ts[d];
  }
  if (!s.dec && info.needs_cli.empty()) {
    info.needs_cli = in_process_codec(par->codec_id) ? "FFmpeg's libraries here have no decoder for " + info.codec
                                                     : "its " + info.codec + " video is decoded in a process of its own";
  }
}

VideoReader::~VideoReader() = default;

const VideoInfo& VideoReader::info() const { return s_->info; }

namespace {

// Whether `bytes` can be allocated now (touching none of it).
bool memory_left(size_t bytes) {
  void* p = std::malloc(bytes);
  std::free(p);
  return p != nullptr;
}

// Turns one plane of `src` into `dst` by a quarter or half turn, clockwise, `step` bytes a pixel.
void turn_plane(const uint8_t* src, int sls, int w, int h, uint8_t* dst, int dls, int step, int rotation) {
  if (rotation == 180) {
    for (int y = 0; y < h; y++) {
      const uint8_t* s = src + static_cast<int64_t>(h - 1 - y) * sls;
      uint8_t* d = dst + static_cast<int64_t>(y) * dls;
      for (int x = 0; x < w; x++) std::memcpy(d + static_cast<int64_t>(x) * step, s + static_cast<int64_t>(w - 1 - x) * step, step);
    }
    return;
  }
  // The output is h wide and w high. Clockwise: out(y, x) = in(h − 1 − x, y); counter-clockwise:
  // out(y, x) = in(x, w − 1 − y).
  for (int y = 0; y < w; y++) {
    uint8_t* d = dst + static_cast<int64_t>(y) * dls;
    for (int x = 0; x < h; x++) {
      const uint8_t* s = rotation == 90 ? src + static_cast<int64_t>(h - 1 - x) * sls + static_cast<int64_t>(y) * step
                                        : src + static_cast<int64_t>(x) * sls + static_cast<int64_t>(w - 1 - y) * step;
      std::memcpy(d + static_cast<int64_t>(x) * step, s, step);
    }
  }
}

}  // namespace

void VideoReader::read(const std::vector<int64_t>& wanted, const std::vector<int64_t>& slots, bool seek, double timeout_ms, uint8_t* out) {
  const Av& a = av();
  State& s = *s_;
  VideoInfo& info = s.info;
  last_log.clear();
  saw_nomem = false;
  if (!s.dec) throw CodedError("ERR_FORMAT", info.needs_cli);
  if (seek && !(s.timed && info.pts_everywhere)) throw CodedError("ERR_FORMAT", "its frames have no presentation timestamps to seek to");
  s.arm(timeout_ms);
  const int W = info.width, H = info.height;
  const int64_t n = info.frame_count;
  std::vector<uint8_t> done(wanted.size(), 0);
  size_t remaining = wanted.size();
  auto slot_of = [&](int64_t i) -> int64_t {
    auto it = std::lower_bound(wanted.begin(), wanted.end(), i);
    return it != wanted.end() && *it == i ? it - wanted.begin() : -1;
  };
  // display index of a frame by its timestamp (seek mode): the frame whose time it is, or for a
  // time between frames the next one (as the executable's accurate seek takes the first frame at
  // or after the time it is given)
  auto display_of = [&](int64_t ts) -> int64_t {
    return std::lower_bound(s.sorted_ts.begin(), s.sorted_ts.end(), ts) - s.sorted_ts.begin();
  };

  // Converts frame `f` (turned upright first) into slot `k` of the output.
  auto place = [&](AVFrame* f, size_t k) {
    if (f->width <= 0 || f->height <= 0 || static_cast<int64_t>(f->width) * f->height > s.max_pixels) {
      throw CodedError("ERR_FORMAT",
                       "a frame of " + std::to_string(f->width) + "×" + std::to_string(f->height) + " is larger than maxPixels");
    }
    AVFrame* src = f;
    if (info.rotation) {
      const AVPixFmtDescriptor* d = a.av_pix_fmt_desc_get(static_cast<AVPixelFormat>(f->format));
      if (!turnable(d)) throw CodedError("ERR_FORMAT", "its rotated pictures change to a pixel format turned through a conversion");
      bool quarter = info.rotation != 180;
      int tw = quarter ? f->height : f->width, th = quarter ? f->width : f->height;
      if (!s.turned || s.turned->width != tw || s.turned->height != th || s.turned->format != f->format) {
        if (s.turned) a.av_frame_free(&s.turned);
        s.turned = a.av_frame_alloc();
        if (!s.turned) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory");
        s.turned->width = tw;
        s.turned->height = th;
        s.turned->format = f->format;
        if (a.av_frame_get_buffer(s.turned, 0) < 0) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory for a turned frame");
      }
      int steps[4];
      a.av_image_fill_max_pixsteps(steps, nullptr, d);
      for (int p = 0; p < 4 && f->data[p]; p++) {
        int hs = (p == 1 || p == 2) ? d->log2_chroma_w : 0, vs = (p == 1 || p == 2) ? d->log2_chroma_h : 0;
        int pw = -((-f->width) >> hs), ph = -((-f->height) >> vs);
        turn_plane(f->data[p], f->linesize[p], pw, ph, s.turned->data[p], s.turned->linesize[p], steps[p], info.rotation);
      }
      s.turned->colorspace = f->colorspace;
      s.turned->color_range = f->color_range;
      src = s.turned;
    }
    if (!s.sws || s.sws_w != src->width || s.sws_h != src->height || s.sws_fmt != src->format) {
      if (s.sws) a.sws_freeContext(s.sws);
      // the executable's scale filter: bicubic (its default sws_flags), straight to rgb24
      s.sws = a.sws_getContext(src->width, src->height, static_cast<AVPixelFormat>(src->format), W, H, AV_PIX_FMT_RGB24, SWS_BICUBIC,
                               nullptr, nullptr, nullptr);
      if (!s.sws) {
        // swscale says nothing of why: a pixel format it takes means its tables could not be had
        if (saw_nomem || a.sws_isSupportedInput(static_cast<AVPixelFormat>(src->format)) > 0)
          throw CodedError("ERR_OUT_OF_MEMORY", "out of memory for the conversion of its frames to RGB");
        throw CodedError("ERR_FORMAT", "its frames' pixel format cannot be converted to RGB");
      }
      s.sws_w = src->width;
      s.sws_h = src->height;
      s.sws_fmt = src->format;
    }
    // the scale filter's colour handling: the frame's matrix (BT.601 unless it names another) and,
    // when the frame says, its range
    int *inv = nullptr, *tab = nullptr, in_full = 0, out_full = 0, bright = 0, contrast = 0, sat = 0;
    a.sws_getColorspaceDetails(s.sws, &inv, &in_full, &tab, &out_full, &bright, &contrast, &sat);
    int cs = src->colorspace;
    if (cs < 1 || cs > 10 || cs == 8) cs = AVCOL_SPC_BT470BG;
    const int* coef = a.sws_getCoefficients(cs);
    if (src->color_range != AVCOL_RANGE_UNSPECIFIED) in_full = src->color_range == AVCOL_RANGE_JPEG;
    a.sws_setColorspaceDetails(s.sws, coef, in_full, coef, out_full, bright, contrast, sat);
    // into a padded frame (swscale's vector code writes past a row's end), then into its places, planar
    if (!s.rgb) {
      s.rgb = a.av_frame_alloc();
      if (!s.rgb) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory");
      s.rgb->width = W;
      s.rgb->height = H;
      s.rgb->format = AV_PIX_FMT_RGB24;
      if (a.av_frame_get_buffer(s.rgb, 0) < 0) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory for an RGB frame");
    }
    int scaled = a.sws_scale(s.sws, src->data, src->linesize, 0, src->height, s.rgb->data, s.rgb->linesize);
    if (scaled == AVERROR(ENOMEM)) State::out_of_memory("converting a frame to RGB");
    if (scaled != H) throw CodedError("ERR_FORMAT", "a frame could not be converted to RGB");
    place_rgb24(s.rgb->data[0], s.rgb->linesize[0], W, H, slots, static_cast<int64_t>(k), out);
    done[k] = 1;
    remaining--;
  };

  AVPacket* pkt = a.av_packet_alloc();
  AVFrame* frame = a.av_frame_alloc();
  int64_t counted = 0;  // frames out of the decoder since the start (scan mode)
  auto cleanup = [&] {
    a.av_packet_free(&pkt);
    a.av_frame_free(&frame);
  };
  try {
    if (!pkt || !frame) throw CodedError("ERR_OUT_OF_MEMORY", "out of memory");
    // a fresh pass from the start (the table's demuxer is closed; decoding has its own)
    auto restart = [&] {
      s.in.reset();
      s.in = s.open_input();
      s.open_decoder();
      s.next_dec = 0;
      counted = 0;
    };
    restart();
    auto take = [&](AVFrame* f) {
      if (!seek) {
        int64_t k = slot_of(counted++);
        if (k >= 0 && !done[k]) place(f, static_cast<size_t>(k));
        return;
      }
      // As the executable's accurate seek: frame i is the first frame decoded (its best-effort
      // time, as ffmpeg stamps it) at or after the middle of frame i − 1 and frame i; frame 0 the
      // first frame decoded. Each wanted frame still to come whose middle this frame reaches gets it.
      int64_t ts = f->best_effort_timestamp != AV_NOPTS_VALUE ? f->best_effort_timestamp : f->pts;
      for (size_t k = 0; k < wanted.size(); k++) {
        if (done[k]) continue;
        int64_t i = wanted[k];
        if (i > 0) {
          if (ts == AV_NOPTS_VALUE) return;
          // ts ≥ (t[i − 1] + t[i]) / 2, without overflow
          long double mid = (static_cast<long double>(s.sorted_ts[i - 1]) + static_cast<long double>(s.sorted_ts[i])) / 2;
          if (static_cast<long double>(ts) < mid) return;
        }
        place(f, k);
      }
    };
    auto drain = [&]() {
      for (;;) {
        int r = a.avcodec_receive_frame(s.dec, frame);
        s.check(r, "decoding it");
        if (r < 0) return;  // none ready (EAGAIN, EOF), or a damaged frame skipped (as the executable goes on)
        take(frame);
        a.av_frame_unref(frame);  // the decoder's buffers back at once
        if (remaining == 0) return;
      }
    };
    bool eof = false;
    size_t first = 0;             // the first frame still wanted
    int64_t key_of = -1, key = 0; // the keyframe (decode order) that frame is reached from
    int64_t landing_limit = 0;    // the decode index a seek must land at or before
    while (remaining > 0 && !eof) {
      if (s.late()) s.timeout();
      if (seek) {
        // the first frame still wanted, and the keyframe (decode order) it is reached from
        while (done[first]) first++;
        int64_t target = wanted[first];
        if (target != key_of) {
          key_of = target;
          key = s.disp_to_dec[target];
          while (key > 0 && !(s.dec_key[key] && s.dec_ts[key] <= s.sorted_ts[target])) key--;
        }
        if (s.next_dec >= 0 && key > s.next_dec) {  // (after a seek, not before its landing is known)
          // jump there with a fresh decoder: frames before the wanted one's predecessor's time are dropped
          s.open_decoder();
          // by the keyframe's presentation time: demuxers index by decode or presentation times,
          // sometimes shifted (an edit list), and land on the last keyframe at or before the time
          int r = a.av_seek_frame(s.in->fmt, s.stream, s.dec_ts[key], AVSEEK_FLAG_BACKWARD);
          landing_limit = key;
          if (r < 0) {
            s.check_late(r);
            restart();  // no seeking here: on from the start
          } else {
            s.next_dec = -1;
          }
          key = 0;  // positioned at or before the keyframe: no further seek for this frame
        }
      }
      int r = a.av_read_frame(s.in->fmt, pkt);
      s.check_late(r);
      if (r < 0) {
        eof = true;
        break;
      }
      if (pkt->stream_index != s.stream) {
        a.av_packet_unref(pkt);
        continue;
      }
      if (s.next_dec < 0) {
        // where a seek landed, found by the packet's timestamp
        int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
        int64_t i = ts == AV_NOPTS_VALUE ? n : display_of(ts);
        if (i < n && s.sorted_ts[i] == ts) {
          s.next_dec = s.disp_to_dec[i];
        }
        if (s.next_dec < 0 || s.next_dec > landing_limit) {
          // landed on no known packet, or past the keyframe (a frame decoded from a later one
          // could miss its references): on from the start instead
          a.av_packet_unref(pkt);
          restart();
          key = 0;
          continue;
        }
      }
      // In seek mode a packet that no wanted frame is made from is skipped when nothing refers to it.
      if (seek && s.next_dec < n) {
        int64_t i = display_of(s.dec_ts[s.next_dec]);
        s.dec->skip_frame = slot_of(i) >= 0 ? AVDISCARD_DEFAULT : AVDISCARD_NONREF;
      }
      s.next_dec++;
      // a damaged packet is passed over, as the executable does; a full decoder is emptied first
      while ((r = a.avcodec_send_packet(s.dec, pkt)) == AVERROR(EAGAIN) && remaining > 0) drain();
      a.av_packet_unref(pkt);
      s.check(r, "decoding it");
      drain();
    }
    if (remaining > 0) {
      s.dec->skip_frame = AVDISCARD_DEFAULT;
      s.check(a.avcodec_send_packet(s.dec, nullptr), "decoding it");  // the frames still held back
      drain();
      a.avcodec_flush_buffers(s.dec);
      s.next_dec = -1;
    }
    s.dec->skip_frame = AVDISCARD_DEFAULT;
    if (remaining > 0) {
      // FFmpeg's decoders turn most failed allocations into "damage" (h264's tables: a slice header
      // error, then no frame): when frames are missing and memory for four pictures of this size
      // cannot be had now either, memory is what failed, not the file.
      if (saw_nomem || !memory_left(static_cast<size_t>(s.coded_w) * s.coded_h * 6)) {
        State::out_of_memory("decoding it: FFmpeg could not allocate its pictures");
      }
      size_t w = 0;
      while (done[w]) w++;
      std::string why = last_log;
      last_log.clear();
      throw CodedError("ERR_FORMAT", "only " + std::to_string(wanted.size() - remaining) + " of the " + std::to_string(wanted.size()) +
                                         " wanted frames could be decoded (frame " + std::to_string(wanted[w]) + " of its " +
                                         std::to_string(n) + " could not" + (why.empty() ? ")" : "; " + why + ")"));
    }
  } catch (...) {
    cleanup();
    s.next_dec = -1;
    throw;
  }
  cleanup();
}

#endif

}  // namespace et::media
