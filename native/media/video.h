// Video frames decoded inside the process by the system's FFmpeg libraries (libavformat,
// libavcodec, libswscale), opened with dlopen at first use: the addon keeps no link dependency on
// them, and builds without their headers (or with -DET_NO_LIBAV) leave this reader out
// (lib/vision/video.ts then runs the ffmpeg / ffprobe executables instead). No torch here: bytes
// in, bytes out.
//
// Only the named file is read: the caller opens it and passes the descriptor; the demuxer reads it
// through a custom AVIOContext (pread on a private duplicate), is forced to the one container the
// caller names (sniffed from the file's bytes, lib/io/media.ts), and any attempt to open another
// file or URL (io_open: HLS segments, QuickTime data references, ...) is refused. Every call has a
// deadline (checked by libavformat's interrupt callback and between packets), frames are refused
// past `max_pixels` (the header before decoding, and the decoder's own max_pixels), and the packet
// table is capped.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace et::media {

// Whether the in-process reader can run here (built with the headers, and libraries of the same
// major versions found); `why` says what is missing when it cannot.
bool video_available(std::string* why);

struct VideoInfo {
  int width = 0, height = 0;  // as decoded and rotated upright (ffmpeg's autorotate)
  int64_t frame_count = 0;    // the stream's packets (decord's len(VideoReader))
  double fps = 0, duration = 0;
  bool has_audio = false;
  std::string codec;
  int rotation = 0;  // clockwise degrees applied to the decoded pictures (0, 90, 180, 270)
  // Presentation times in seconds, ascending, one per frame (NaN when a packet has none).
  std::vector<double> times;
  // Whether each frame's packet (in the order of `times`) is a keyframe: the cost of seeking, for
  // the choice between seeking and one pass (lib/vision/video.ts, the same for both readers).
  std::vector<uint8_t> keys;
  bool pts_everywhere = false;  // every packet had a presentation timestamp (not only a decode one)
  // When not empty, frames cannot be produced here exactly as the ffmpeg executable makes them
  // (a rotation other than a quarter turn, a pixel format ffmpeg's transpose does not take): the
  // caller decodes through the executable instead.
  std::string needs_cli;
};

// One rgb24 picture (`w` × `h`, rows `stride` bytes apart) into planar RGB frames (3, T, h, w) at
// `out`, at every frame t whose `slots[t]` is `k`. Both readers place their frames with it (the
// executables' path through the bridge, as ffmpeg's pipe delivers each frame).
void place_rgb24(const uint8_t* rgb, int64_t stride, int64_t w, int64_t h, const std::vector<int64_t>& slots, int64_t k, uint8_t* out);

class VideoReader {
 public:
  // Reads the header and every packet's timestamp of `fd` (duplicated; the caller keeps its own),
  // demuxed as `format`. Throws CodedError ERR_FORMAT (not a readable video, no video stream,
  // frames past max_pixels), ERR_IO (deadline passed). Messages give the reason only; the caller
  // names the file.
  VideoReader(int fd, const std::string& format, int64_t max_pixels, double timeout_ms);
  ~VideoReader();
  const VideoInfo& info() const;
  // The frames at display indices `wanted` (ascending, distinct), as planar RGB (3, T, H, W) at
  // info().width × height into `out`: frame `wanted[slots[t]]` at each t < T = slots.size(). Each
  // frame goes into its places as it is decoded (nothing but the current one is held). `seek`:
  // reach each frame from the keyframe before it (a fresh decoder at each jump), frame i being the
  // first decoded at or after the middle of frame i − 1's and frame i's presentation times, as the
  // executable's accurate seek picks it (the caller checked the times are distinct); otherwise one
  // pass from the start, frames counted in output order.
  void read(const std::vector<int64_t>& wanted, const std::vector<int64_t>& slots, bool seek, double timeout_ms, uint8_t* out);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace et::media
