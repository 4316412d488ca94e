// The media readers read the named file and nothing else (issue 43). A file whose bytes are an
// HLS playlist, a DASH manifest, an ffconcat script or an SDP description (under any name) would
// make a guessing ffmpeg open what it lists: every reader refuses it, directly and through
// `emotorch serve`. Where strace is installed, ffmpeg and ffprobe run under it (wrappers first on
// PATH) and the test asserts from its log that no file of the test folder but the named one was
// opened, for the attacks and for good reads of every container. Decodes are bounded too:
// duration (maxSeconds, ffmpeg's -t), time (timeoutMs) and the children die with the process.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync, spawn, spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { createServer } from '../../lib/cli/serve';
import type { ChatAdapter, ChatTurn } from '../../lib/data/chat';
import { rejectsWith, tmpdir } from '../helpers';

const HAVE_FFMPEG = !!et.audio.findFfmpeg() && !!et.audio.findFfprobe();
const STRACE = spawnSync('strace', ['-V']).status === 0 ? 'strace' : null;

const dir = tmpdir();
const at = (f: string) => path.join(dir, f);
const ffmpeg = (...args: string[]) => execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', ...args]);
// the files an attack names: a video with audio, a picture
const OTHER_VIDEO = at('other.mp4');
const OTHER_IMAGE = at('other.png');

/** The attack files' contents, each naming OTHER (a video or a picture). */
function attacks(other: string): Record<string, string> {
  return {
    hls: `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n${other}\n#EXT-X-ENDLIST\n`,
    hlsLive: `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n${other}\n`,
    dash: `<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"><Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000"><BaseURL>file:${other}</BaseURL></Representation></AdaptationSet></Period></MPD>\n`,
    ffconcat: `ffconcat version 1.0\nfile '${other}'\n`,
    sdp: 'v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n',
  };
}
const NAMES = ['png', 'mp3', 'mp4', 'wav', 'm3u8', 'mpd', 'ffconcat', 'sdp', 'txt'];

type Reader = [string, (f: string) => Promise<unknown>];
const READERS: Reader[] = [
  ['readImage', (f) => et.vision.readImage(f)],
  ['processImage', (f) => et.vision.processImage(f)],
  ['probeVideo', (f) => et.vision.probeVideo(f)],
  ['readVideoFrames', (f) => et.vision.readVideoFrames(f, { numFrames: 2 })],
  ['processVideo', (f) => et.vision.processVideo(f)],
  ['readAudio', (f) => et.audio.readAudio(f)],
];

// strace wrappers for ffmpeg and ffprobe, first on PATH while this file runs
const LOGS = at('strace');
let savedPath: string | undefined;
beforeAll(() => {
  if (!HAVE_FFMPEG) return;
  ffmpeg(
    '-f',
    'lavfi',
    '-i',
    'testsrc=size=64x48:rate=10',
    '-f',
    'lavfi',
    '-i',
    'sine=sample_rate=16000',
    '-t',
    '1',
    '-pix_fmt',
    'yuv420p',
    '-c:v',
    'libx264',
    '-c:a',
    'aac',
    '-shortest',
    OTHER_VIDEO,
  );
  ffmpeg('-f', 'lavfi', '-i', 'testsrc=size=40x30', '-frames:v', '1', OTHER_IMAGE);
  if (!STRACE) return;
  fs.mkdirSync(LOGS);
  const bin = at('bin');
  fs.mkdirSync(bin);
  for (const tool of ['ffmpeg', 'ffprobe']) {
    const real = tool === 'ffmpeg' ? et.audio.findFfmpeg()! : et.audio.findFfprobe()!;
    fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\nexec strace -f -qq -e trace=open,openat,openat2,creat,execve -o "${LOGS}/${tool}.$$" "${real}" "$@"\n`, {
      mode: 0o755,
    });
  }
  savedPath = process.env.PATH;
  process.env.PATH = `${bin}${path.delimiter}${process.env.PATH}`;
});
afterAll(() => {
  if (savedPath !== undefined) process.env.PATH = savedPath;
});

/** The test folder's files that ffmpeg / ffprobe opened since the last call (strace logs), then clears the logs. */
function opened(): Set<string> {
  const seen = new Set<string>();
  for (const log of fs.readdirSync(LOGS)) {
    const text = fs.readFileSync(path.join(LOGS, log), 'utf8');
    for (const m of text.matchAll(/(?:open|openat|openat2|creat|execve)\((?:AT_FDCWD, )?"([^"]*)"/g)) {
      if (m[1].startsWith(dir) && !m[1].startsWith(path.join(dir, 'bin'))) seen.add(m[1]);
    }
    fs.rmSync(path.join(LOGS, log));
  }
  return seen;
}

describe.skipIf(!HAVE_FFMPEG)('playlists, manifests and scripts under any name: refused by every reader', () => {
  it('every attack kind × name × reader is ERR_FORMAT before anything else is opened', async () => {
    let n = 0;
    for (const [kind, text] of [...Object.entries(attacks(OTHER_VIDEO)), ...Object.entries(attacks(OTHER_IMAGE)).map(([k, t]) => [`${k}-image`, t])]) {
      for (const ext of NAMES) {
        const file = at(`${kind}.${ext}`);
        fs.writeFileSync(file, text);
        for (const [name, read] of READERS) {
          const t0 = Date.now();
          const e = await rejectsWith(read(file), 'ERR_FORMAT', new RegExp(`${kind}\\.${ext}.*not one of the (image|video|audio) formats`));
          expect(Date.now() - t0, `${name} ${kind}.${ext}`).toBeLessThan(5000);
          expect(e.message).not.toContain('other.');
          n++;
        }
        fs.rmSync(file);
      }
    }
    expect(n).toBe(10 * NAMES.length * READERS.length);
    if (STRACE) expect([...opened()]).toEqual([]);
  });

  it('an image sequence pattern in the name is the file of that name, never a sequence', async () => {
    // image2 would read 'pic%d.png' as pic1.png, pic2.png …: the named file (a grey 8×6 PNG) is what comes back
    ffmpeg('-f', 'lavfi', '-i', 'color=c=gray:size=8x6', '-frames:v', '1', at('grey.png'));
    fs.renameSync(at('grey.png'), at('pic%d.png'));
    opened();
    fs.copyFileSync(OTHER_IMAGE, at('pic1.png'));
    const img = await et.vision.readImage(at('pic%d.png'));
    expect(img.shape).toEqual([3, 6, 8]);
    fs.copyFileSync(OTHER_VIDEO, at('clip1.mp4'));
    fs.writeFileSync(at('clip%d.mp4'), 'not a video');
    await rejectsWith(et.vision.probeVideo(at('clip%d.mp4')), 'ERR_FORMAT', /clip%d\.mp4/);
    if (STRACE) expect([...opened()]).toEqual([at('pic%d.png')]);
  });

  it('a container another reader takes is refused by a reader that does not take it (a video named .png)', async () => {
    fs.copyFileSync(OTHER_VIDEO, at('video.png'));
    await rejectsWith(et.vision.readImage(at('video.png')), 'ERR_FORMAT', /video\.png.*it is MP4\/QuickTime, not one of the image formats/);
    fs.copyFileSync(OTHER_IMAGE, at('image.mp4'));
    await rejectsWith(et.vision.readVideoFrames(at('image.mp4')), 'ERR_FORMAT', /image\.mp4.*it is PNG, not one of the video formats/);
    await rejectsWith(et.audio.readAudio(at('image.mp4')), 'ERR_FORMAT', /it is PNG, not one of the audio formats/);
  });

  it.skipIf(!STRACE)('good reads of each container open the named file and nothing else of its folder', async () => {
    const made: Array<[string, string[], (f: string) => Promise<unknown>]> = [
      ['a.jpg', ['-f', 'lavfi', '-i', 'testsrc=size=32x24', '-frames:v', '1'], (f) => et.vision.readImage(f)],
      ['a.gif', ['-f', 'lavfi', '-i', 'testsrc=size=32x24', '-frames:v', '1'], (f) => et.vision.readImage(f)],
      ['a.bmp', ['-f', 'lavfi', '-i', 'testsrc=size=32x24', '-frames:v', '1'], (f) => et.vision.readImage(f)],
      ['a.webp', ['-f', 'lavfi', '-i', 'testsrc=size=32x24', '-frames:v', '1'], (f) => et.vision.readImage(f)],
      ['a.tiff', ['-f', 'lavfi', '-i', 'testsrc=size=32x24', '-frames:v', '1'], (f) => et.vision.readImage(f)],
      ['a.mkv', ['-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=5', '-t', '1'], (f) => et.vision.readVideoFrames(f, { numFrames: 2, backend: 'ffmpeg' })],
      [
        'a.avi',
        ['-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=5', '-t', '1', '-c:v', 'mpeg4'],
        (f) => et.vision.readVideoFrames(f, { numFrames: 2, decode: 'seek', backend: 'ffmpeg' }),
      ],
      ['a.mp3', ['-f', 'lavfi', '-i', 'sine=sample_rate=16000', '-t', '0.5'], (f) => et.audio.readAudio(f)],
      ['a.flac', ['-f', 'lavfi', '-i', 'sine=sample_rate=16000', '-t', '0.5'], (f) => et.audio.readAudio(f)],
      ['a.ogg', ['-f', 'lavfi', '-i', 'sine=sample_rate=16000', '-t', '0.5', '-c:a', 'libvorbis'], (f) => et.audio.readAudio(f)],
      ['a.m4a', ['-f', 'lavfi', '-i', 'sine=sample_rate=16000', '-t', '0.5', '-c:a', 'aac'], (f) => et.audio.readAudio(f)],
    ];
    // the original filenames' copies in the folder: an attack would reach for them
    opened();
    for (const [name, args, read] of made) {
      const file = at(name);
      const env = { ...process.env, PATH: savedPath };
      execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', ...args, file], { env });
      await read(file);
      expect([...opened()], name).toEqual([file]);
    }
    for (const [file, read] of [
      [OTHER_VIDEO, (f: string) => et.vision.processVideo(f, { numFrames: 2, backend: 'ffmpeg' })],
      [OTHER_VIDEO, (f: string) => et.audio.readAudio(f)],
      [OTHER_IMAGE, (f: string) => et.vision.processImage(f)],
    ] as const) {
      await read(file);
      expect([...opened()]).toEqual([file]);
    }
  });

  it.skipIf(!STRACE || !et.vision.libavAvailable())(
    "the in-process video reader (FFmpeg's libraries) opens the named file and nothing else, and starts no process",
    async () => {
      const env = { ...process.env, PATH: savedPath };
      const files = ['b.mkv', 'b.mp4', 'b.avi', 'b.webm'].map(at);
      execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=5', '-t', '2', files[0]], { env });
      execFileSync(
        'ffmpeg',
        ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=5', '-f', 'lavfi', '-i', 'sine', '-t', '2', '-c:a', 'aac', files[1]],
        { env },
      );
      execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=5', '-t', '2', '-c:v', 'mpeg4', files[2]], {
        env,
      });
      execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=32x24:rate=5', '-t', '2', '-c:v', 'libvpx', files[3]], {
        env,
      });
      // a playlist of those files under a video's name: refused before any reader opens it
      fs.writeFileSync(at('list.mp4'), attacks(files[1]).hls);
      const lib = path.join(__dirname, '..', '..', 'dist', 'index.js');
      const script = `const et = require(${JSON.stringify(lib)});
(async () => {
  const out = [];
  for (const f of ${JSON.stringify(files)}) {
    const r = await et.vision.readVideoFrames(f, { numFrames: 3, backend: 'libav' });
    const p = await et.vision.probeVideo(f, { backend: 'libav' });
    out.push([r.backend, r.frames.shape.join('x'), p.frameCount]);
  }
  try { await et.vision.readVideoFrames(${JSON.stringify(at('list.mp4'))}, { backend: 'libav' }); out.push('read'); } catch (e) { out.push(e.code); }
  process.stdout.write(JSON.stringify(out));
})();`;
      const log = at('node.strace');
      const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=open,openat,openat2,creat,execve', '-o', log, process.execPath, '-e', script], {
        env,
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.slice(0, 4)).toEqual([
        ['libav', '3x3x24x32', 10],
        ['libav', '3x3x24x32', 10],
        ['libav', '3x3x24x32', 10],
        ['libav', '3x3x24x32', 10],
      ]);
      expect(out[4]).toBe('ERR_FORMAT');
      const text = fs.readFileSync(log, 'utf8');
      fs.rmSync(log);
      const seen = new Set<string>();
      for (const m of text.matchAll(/(?:open|openat|openat2|creat)\((?:AT_FDCWD, )?"([^"]*)"/g)) if (m[1].startsWith(dir)) seen.add(m[1]);
      expect([...seen].sort()).toEqual([...files, at('list.mp4')].sort());
      const started = [...text.matchAll(/execve\("([^"]*)"/g)].map((m) => m[1]).filter((p) => p !== process.execPath);
      expect(started, 'processes started').toEqual([]);
    },
  );
});

/**
 * A GIF of w × h pixels of one colour, written here: LZW codes of 3 bits (minimum code size 2) with
 * a clear code before every two pixels, so the code size never grows.
 */
function flatGif(w: number, h: number): Buffer {
  const codes: number[] = [];
  for (let i = 0; i < w * h; i += 2) codes.push(4, 0, ...(i + 1 < w * h ? [0] : []));
  codes.push(5);
  const bytes: number[] = [];
  let acc = 0,
    nbits = 0;
  for (const c of codes) {
    acc |= c << nbits;
    nbits += 3;
    while (nbits >= 8) {
      bytes.push(acc & 255);
      acc >>= 8;
      nbits -= 8;
    }
  }
  if (nbits) bytes.push(acc & 255);
  const blocks: number[] = [];
  for (let i = 0; i < bytes.length; i += 255) {
    const part = bytes.slice(i, i + 255);
    blocks.push(part.length, ...part);
  }
  const u16 = (v: number) => [v & 255, v >> 8];
  return Buffer.from([
    ...Buffer.from('GIF89a'),
    ...u16(w),
    ...u16(h),
    0x80,
    0,
    0,
    255,
    0,
    0,
    0,
    0,
    255,
    0x2c,
    0,
    0,
    0,
    0,
    ...u16(w),
    ...u16(h),
    0,
    2,
    ...blocks,
    0,
    0x3b,
  ]);
}

describe.skipIf(!HAVE_FFMPEG)('decodes are bounded in size, duration, time and lifetime', () => {
  it('a 1 × 65535 GIF (37 KB) is decoded, and its resize to a 224 short side is refused, not gigabytes', async () => {
    fs.writeFileSync(at('tall.gif'), flatGif(1, 65535));
    const img = await et.vision.readImage(at('tall.gif'));
    expect(img.shape).toEqual([3, 65535, 1]);
    await rejectsWith(et.vision.processImage(at('tall.gif')), 'ERR_INVALID_ARG', /1×65535 resized to 224×14679840/);
    expect(() => et.vision.videoTransform(et.zeros([3, 2, 1, 65535], { dtype: 'uint8' }))).toThrow(/resize stays within/);
    fs.writeFileSync(at('small.gif'), flatGif(3, 5));
    expect((await et.vision.processImage(at('small.gif'))).shape).toEqual([3, 224, 224]);
  });

  it('readAudio stops at maxSeconds (ffmpeg decodes no further) and refuses a longer file; a WAV from its header', async () => {
    // 60 s of silence: a few KB of FLAC that decode to 60 s × 48 kHz × 2 channels of float
    ffmpeg('-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo', '-t', '60', '-c:a', 'flac', at('long.flac'));
    expect(fs.statSync(at('long.flac')).size).toBeLessThan(200_000);
    await rejectsWith(et.audio.readAudio(at('long.flac'), { maxSeconds: 5 }), 'ERR_FORMAT', /long\.flac.*more than the 5 s read \(maxSeconds\)/);
    const ok = await et.audio.readAudio(at('long.flac'), { maxSeconds: 60 });
    expect(ok.samples.length).toBe(60 * 16000);
    fs.writeFileSync(at('long.wav'), et.audio.encodeWav(new Float32Array(16000 * 6), 16000));
    await rejectsWith(et.audio.readAudio(at('long.wav'), { maxSeconds: 5 }), 'ERR_FORMAT', /long\.wav.*6\.000 s of audio, more than the 5 s/);
    et.audio.decodeWav(fs.readFileSync(at('long.wav')), { maxSeconds: 6 });
    for (const bad of [0, -1, NaN, '5']) await rejectsWith(et.audio.readAudio(at('long.flac'), { maxSeconds: bad as number }), 'ERR_INVALID_ARG', /maxSeconds/);
    await rejectsWith(et.audio.readAudio(at('long.flac'), { maxSecs: 5 } as never), 'ERR_INVALID_ARG', /maxSecs/);
  });

  it('the default bound is an hour, and no temporary file is written', async () => {
    // 3700 s of 1 kHz mono silence: refused after ffmpeg decoded 3601 s, through a pipe
    ffmpeg('-f', 'lavfi', '-i', 'anullsrc=r=1000:cl=mono', '-t', '3700', '-c:a', 'flac', at('hour.flac'));
    const tmp = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('emotorch-ffmpeg-')).length;
    await rejectsWith(et.audio.readAudio(at('hour.flac'), { sampleRate: null }), 'ERR_FORMAT', /more than the 3600 s read \(maxSeconds\)/);
    expect(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('emotorch-ffmpeg-')).length).toBe(tmp);
  }, 60_000);

  it('timeoutMs kills ffmpeg, and ffmpeg children die with the process', async () => {
    ffmpeg('-f', 'lavfi', '-i', 'anullsrc=r=48000:cl=stereo', '-t', '600', '-c:a', 'flac', at('ten.flac'));
    await rejectsWith(et.audio.readAudio(at('ten.flac'), { timeoutMs: 1 }), 'ERR_IO', /ran longer than 1 ms/);
    await rejectsWith(et.vision.readVideoFrames(OTHER_VIDEO, { timeoutMs: 1 }), 'ERR_IO', /ran longer than 1 ms/);
    // A process that exits while its ffmpeg runs leaves none behind. The ffmpeg here is a stand-in
    // that writes nothing and waits 30 s (a real one would die of SIGPIPE at its next write; one
    // stuck on its input would not): the exit kills it.
    const fake = at('fake-bin');
    fs.mkdirSync(fake);
    for (const tool of ['ffmpeg', 'ffprobe'])
      fs.writeFileSync(path.join(fake, tool), `#!/bin/sh\nexec "${process.execPath}" -e "setTimeout(() => {}, 30000)" -- "$@"\n`, { mode: 0o755 });
    const marker = at('exit-marker.flac');
    fs.copyFileSync(at('ten.flac'), marker);
    const script = `const et = require(${JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'index.js'))});
      et.audio.readAudio(${JSON.stringify(marker)}).catch(() => {});
      setTimeout(() => process.exit(0), 1000);`;
    const child = spawn(process.execPath, ['-e', script], {
      stdio: 'ignore',
      env: { ...process.env, PATH: `${fake}${path.delimiter}${savedPath ?? process.env.PATH}` },
    });
    await new Promise((r) => child.on('exit', r));
    await new Promise((r) => setTimeout(r, 300));
    const left = spawnSync('pgrep', ['-f', marker]).stdout.toString().trim();
    if (left) spawnSync('pkill', ['-f', marker]);
    expect(left).toBe('');
  }, 60_000);
});

describe.skipIf(!HAVE_FFMPEG)('emotorch serve refuses the attacks as media parts', () => {
  it('a playlist as data:image/png or as input_audio mp3 / flac is a 400 and reaches no backend', async () => {
    const seen: number[][][] = []; // each request's image shapes (the server disposes the images after it)
    const backend: ChatAdapter = {
      id: 'hand',
      kind: 'llm',
      accepts: { audio: true, image: true },
      async answer(turns: ChatTurn[]) {
        seen.push(turns.flatMap((t) => t.images.map((i) => i.shape)));
        return { tokens: [111, 107], promptTokens: 1, finish: 'stop' };
      },
      decode: async (ids) => String.fromCharCode(...ids),
    };
    const app = createServer(backend);
    if (STRACE) opened();
    try {
      const url = await app.listen({ host: '127.0.0.1', port: 0 });
      const post = async (content: unknown) => {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ messages: [{ role: 'user', content }] }),
        });
        return { status: r.status, body: await r.json() };
      };
      for (const [kind, text] of Object.entries({ ...attacks(OTHER_VIDEO), ...attacks(OTHER_IMAGE) })) {
        const b64 = Buffer.from(text).toString('base64');
        for (const type of ['image/png', 'image/jpeg', 'image/gif']) {
          const r = await post([
            { type: 'image_url', image_url: { url: `data:${type};base64,${b64}` } },
            { type: 'text', text: 'describe' },
          ]);
          expect(r.status, `${kind} as ${type}`).toBe(400);
          expect(r.body.error.message).toMatch(/cannot be decoded/);
        }
        for (const format of ['mp3', 'flac']) {
          const r = await post([
            { type: 'input_audio', input_audio: { data: b64, format } },
            { type: 'text', text: 'describe' },
          ]);
          expect(r.status, `${kind} as ${format}`).toBe(400);
          expect(r.body.error.message).toMatch(/cannot be decoded as (mp3|flac)/);
        }
      }
      expect(seen).toEqual([]);
      // a real picture still passes
      const r = await post([
        { type: 'image_url', image_url: { url: `data:image/png;base64,${fs.readFileSync(OTHER_IMAGE).toString('base64')}` } },
        { type: 'text', text: 'x' },
      ]);
      expect(r.status).toBe(200);
      expect(seen).toEqual([[[3, 30, 40]]]);
      if (STRACE) expect([...opened()].filter((f) => f !== OTHER_IMAGE && !f.includes('emotorch-serve-'))).toEqual([]);
    } finally {
      await app.close();
    }
  });
});
