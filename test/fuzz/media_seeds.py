"""Writes the media fuzz seeds (run by hand, not by tests; make_seeds.py runs it too):

    python3 test/fuzz/media_seeds.py [image|video|audio ...]     (default: all three)

Needs the ffmpeg CLI on PATH and Python with pillow, soundfile and numpy (no torch). Writes
  - corpus/image/: extra pictures made by PIL (animated GIF, APNG, palette and 1-bit BMP) beside
    the fixtures that make_seeds.py copies from test/fixtures/images;
  - corpus/video/: a few frames of ffmpeg's testsrc2 at 32x24 in MP4 (h264 with B-frames,
    fragmented, MPEG-4 with an AAC track), MOV, AVI (MPEG-4, MJPEG), Matroska (h264 + Opus),
    WebM (VP8, VP9), YUV4MPEG, and an M4A that has no video;
  - corpus/audio/: 0.25 s of a tone written by soundfile (WAV PCM16 and float, FLAC 16 / 24-bit,
    MP3) and by ffmpeg (Ogg Vorbis, Ogg Opus, MP3 with an ID3v2 tag, M4A / ADTS AAC, Matroska
    audio, MP4 and AVI with video and audio);
  - in all three, the attack files (named `attack-*`): an HLS playlist, a DASH manifest, an
    ffconcat script, an SDP file and an image2 pattern, each naming absolute paths, and the same
    playlist behind an ID3v2 tag and inside a RIFF/AVI header. The readers must refuse every one
    with ERR_FORMAT (test/fuzz/corpus.test.ts checks it) and never let ffmpeg follow them.
Every file is a few KB at most; ffmpeg runs single-threaded with bitexact flags and no metadata, so
the output is the same on the same ffmpeg / libsndfile build.
"""
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def put(fmt, name, data):
    d = os.path.join(OUT, fmt)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def ffmpeg(*args, ext):
    """Runs ffmpeg (inputs and output options in `args`) into a temporary `ext` file; its bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out" + ext)
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args,
                        "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", out],
                       check=True)
        with open(out, "rb") as f:
            return f.read()


SRC = ["-f", "lavfi", "-i", "testsrc2=size=32x24:rate=10"]
TONE = ["-f", "lavfi", "-i", "sine=frequency=300:sample_rate=8000"]
# the AVI muxer reserves 4 KB a stream for an OpenDML index by default
AVI = ["-reserve_index_space", "256"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "40", "-pix_fmt", "yuv420p", "-x264-params", "threads=1"]


def attacks(fmt):
    """Files that would make a guessing ffmpeg open other files or the network."""
    hls = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n/etc/passwd\n#EXTINF:10.0,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n"
    put(fmt, "attack-hls.m3u8", hls)
    put(fmt, "attack-dash.mpd",
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S" minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">\n'
        ' <Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000" width="32" height="24">\n'
        '  <BaseURL>file:///etc/passwd</BaseURL>\n'
        ' </Representation></AdaptationSet></Period>\n</MPD>\n')
    put(fmt, "attack-ffconcat.txt", "ffconcat version 1.0\nfile /etc/passwd\nfile 'subfile,,start,0,end,64,,:/etc/hostname'\n")
    put(fmt, "attack-sdp.sdp", "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=emotorch\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n")
    put(fmt, "attack-image2.txt", "/etc/%d.png\n/proc/self/fd/%d\n/etc/*\n")
    # the playlist behind an ID3v2 tag (sniffed as MP3) and inside a RIFF 'AVI ' header (sniffed as AVI)
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    put(fmt, "attack-id3-hls.mp3", id3 + hls.encode())
    body = b"AVI " + hls.encode()
    put(fmt, "attack-riff-hls.avi", b"RIFF" + struct.pack("<I", len(body)) + body)


def images():
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE, colors=16) for _ in range(2)]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("image", "anim.gif", b.getvalue())
    rgb = [Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)) for _ in range(2)]
    b = io.BytesIO()
    rgb[0].save(b, "PNG", save_all=True, append_images=rgb[1:], duration=100)
    put("image", "anim.png", b.getvalue())
    for mode, name in (("P", "pal8.bmp"), ("1", "bw.bmp")):
        b = io.BytesIO()
        rgb[0].convert(mode).save(b, "BMP")
        put("image", name, b.getvalue())
    attacks("image")


def videos():
    put("video", "h264.mp4", ffmpeg(*SRC, "-frames:v", "5", *X264, "-bf", "2", "-g", "3", ext=".mp4"))
    put("video", "frag.mp4", ffmpeg(*SRC, "-frames:v", "4", *X264, "-g", "2", "-movflags", "frag_keyframe+empty_moov", ext=".mp4"))
    put("video", "mpeg4_aac.mp4", ffmpeg(*SRC, *TONE, "-t", "0.3", "-c:v", "mpeg4", "-q:v", "15", "-c:a", "aac", "-b:a", "8k", ext=".mp4"))
    put("video", "mpeg4.mov", ffmpeg(*SRC, "-frames:v", "3", "-c:v", "mpeg4", "-q:v", "15", ext=".mov"))
    put("video", "mpeg4.avi", ffmpeg(*SRC, "-frames:v", "4", "-c:v", "mpeg4", "-q:v", "15", "-bf", "1", *AVI, ext=".avi"))
    put("video", "mjpeg.avi", ffmpeg(*SRC, "-frames:v", "2", "-c:v", "mjpeg", "-q:v", "20", *AVI, ext=".avi"))
    put("video", "h264_opus.mkv", ffmpeg(*SRC, *TONE, "-t", "0.3", *X264, "-c:a", "libopus", "-b:a", "6k", ext=".mkv"))
    put("video", "vp8.webm", ffmpeg(*SRC, "-frames:v", "3", "-c:v", "libvpx", "-b:v", "30k", ext=".webm"))
    put("video", "vp9.webm", ffmpeg(*SRC, "-frames:v", "2", "-c:v", "libvpx-vp9", "-b:v", "30k", "-row-mt", "0", ext=".webm"))
    put("video", "tiny.y4m", ffmpeg("-f", "lavfi", "-i", "testsrc2=size=8x8:rate=10", "-frames:v", "2", "-pix_fmt", "yuv420p", ext=".y4m"))
    put("video", "no_video.m4a", ffmpeg(*TONE, "-t", "0.2", "-c:a", "aac", "-b:a", "8k", ext=".m4a"))
    attacks("video")


def audios():
    t = np.arange(2000) / 8000
    mono = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    stereo = np.stack([mono, (0.2 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)], axis=1)
    for name, data, rate, fmt, sub in [("pcm16.wav", mono, 8000, "WAV", "PCM_16"), ("float_stereo.wav", stereo[:800], 8000, "WAV", "FLOAT"),
                                       ("mono.flac", mono, 8000, "FLAC", "PCM_16"), ("stereo24.flac", stereo[:1000], 8000, "FLAC", "PCM_24"),
                                       ("mono.mp3", mono, 8000, "MP3", "MPEG_LAYER_III")]:
        b = io.BytesIO()
        sf.write(b, data, rate, format=fmt, subtype=sub)
        data = bytearray(b.getvalue())
        peak = data.find(b"PEAK")  # libsndfile's PEAK chunk of a float WAV holds the time of writing
        if fmt == "WAV" and peak > 0:
            data[peak + 12:peak + 16] = bytes(4)
        put("audio", name, bytes(data))
    # Ogg by ffmpeg, whose bitexact stream serial numbers are fixed (libsndfile's are random)
    put("audio", "vorbis.ogg", ffmpeg(*TONE, "-t", "0.25", "-c:a", "libvorbis", "-q:a", "0", ext=".ogg"))
    put("audio", "opus.ogg", ffmpeg(*TONE, "-t", "0.25", "-c:a", "libopus", "-b:a", "6k", ext=".ogg"))
    put("audio", "id3.mp3", ffmpeg(*TONE, "-t", "0.25", "-c:a", "libmp3lame", "-b:a", "8k", "-write_xing", "0", "-id3v2_version", "3", ext=".mp3"))
    put("audio", "aac.m4a", ffmpeg(*TONE, "-t", "0.25", "-c:a", "aac", "-b:a", "8k", ext=".m4a"))
    put("audio", "adts.aac", ffmpeg(*TONE, "-t", "0.25", "-c:a", "aac", "-b:a", "8k", ext=".aac"))
    put("audio", "vorbis.mka", ffmpeg(*TONE, "-t", "0.25", "-c:a", "libvorbis", "-q:a", "0", ext=".mka"))
    put("audio", "video_aac.mp4", ffmpeg(*SRC, *TONE, "-t", "0.2", "-c:v", "mpeg4", "-q:v", "20", "-c:a", "aac", "-b:a", "8k", ext=".mp4"))
    put("audio", "mjpeg_pcm.avi", ffmpeg(*SRC, *TONE, "-t", "0.2", "-c:v", "mjpeg", "-q:v", "25", "-c:a", "pcm_s16le", *AVI, ext=".avi"))
    attacks("audio")


ALL = {"image": images, "video": videos, "audio": audios}


def main(which=None):
    for name in which or list(ALL):
        if name != "image":  # corpus/image also holds make_seeds.py's copies of test/fixtures/images
            shutil.rmtree(os.path.join(OUT, name), ignore_errors=True)
        ALL[name]()
        d = os.path.join(OUT, name)
        print(f"{name}: {len(os.listdir(d))} seeds, {sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))} bytes")


if __name__ == "__main__":
    bad = [a for a in sys.argv[1:] if a not in ALL]
    if bad:
        sys.exit(f"usage: media_seeds.py [{'|'.join(ALL)} ...] (not {bad})")
    main(sys.argv[1:])
