import * as fs from 'fs';
import * as path from 'path';
import { createHash } from 'crypto';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';

export const DIR = path.join(FIXTURES, 'languagebind_proc');
/** ffmpeg and ffprobe are both needed; tests that decode skip without them. */
export const HAVE_FFMPEG = !!et.audio.findFfmpeg() && !!et.audio.findFfprobe();
export const NO_FFMPEG = 'ffmpeg / ffprobe not on PATH';

export interface Meta {
  video: Record<
    string,
    {
      file: string;
      frameCount: number;
      width: number;
      height: number;
      fps: number;
      indices: number[];
      hasAudio: boolean;
      framesSha256: string;
      outSha256: string;
    }
  >;
  image: Record<string, { file: string; width: number; height: number; rgbSha256: string; outSha256: string }>;
  audio: Record<string, { file: string; numMelBins: number; targetLength: number; frames: number; firstStarts?: number[] | null; samples?: number }>;
  torchBicubicAntialiasVsPil: Record<string, number>;
}
export const META: Meta = JSON.parse(fs.readFileSync(path.join(DIR, 'refs.json'), 'utf8'));

let refs: Map<string, et.Tensor> | null = null;
export async function ref(name: string): Promise<et.Tensor> {
  refs ??= (await et.io.loadSafetensors(path.join(DIR, 'refs.safetensors'))).tensors;
  const t = refs.get(name);
  if (!t) throw new Error(`no reference ${name}`);
  return t;
}

export async function sha256(t: et.Tensor): Promise<string> {
  const a = await t.contiguous().data();
  return createHash('sha256')
    .update(Buffer.from(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');
}
