/**
 * Vision: images and video frames (FFmpeg's libraries or executables), CLIP / LanguageBind transforms and InternVL2's dynamic tiles.
 * @module
 */
export { probeVideo, readVideoFrames, linspaceIndices, libavAvailable, MAX_FRAME_PIXELS } from './video';
export type { VideoInfo, ProbeVideoOptions, ReadVideoFramesOptions, VideoFrames, VideoBackend } from './video';
export { readImage } from './image';
export type { ReadImageOptions } from './image';
export { videoTransform, clipImageTransform, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD } from './transforms';
export type { VideoTransformOptions, ClipImageTransformOptions } from './transforms';
export { processVideo, processImage } from './processors';
export type { ProcessVideoOptions, ProcessImageOptions } from './processors';
export { internvlTiles, internvlTileCount, internvlGrids, internvlFrameIndices, findClosestAspectRatio, IMAGENET_MEAN, IMAGENET_STD } from './internvl';
export type { InternVLTilesOptions, InternVLTiles } from './internvl';
