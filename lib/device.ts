import { binding } from './native';
import { EmotorchError, invalid } from './errors';

/** `'cpu'`, `'cuda'` (the current CUDA device) or `'cuda:N'`. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

/**
 * Checks a device string; a CUDA device where none is present is an ERR_NO_CUDA error.
 * @throws EmotorchError
 */
export function checkDevice(v: unknown, name = 'device'): Device {
  if (typeof v !== 'string' || !/^(cpu|cuda(:\d+)?)$/.test(v)) invalid("'cpu', 'cuda' or 'cuda:N'", name, v);
  if (v !== 'cpu') {
    const n = binding.cudaDeviceCount();
    if (n === 0) throw new EmotorchError(`${name} '${v}' was requested but CUDA is not available on this machine or in this libtorch build`, 'ERR_NO_CUDA');
    const idx = v.includes(':') ? Number(v.split(':')[1]) : 0;
    if (idx >= n) throw new EmotorchError(`${name} '${v}' does not exist: ${n} CUDA device(s)`, 'ERR_NO_CUDA');
  }
  return v as Device;
}

/** CUDA queries. */
export const cuda = {
  /** True when libtorch was built with CUDA and a device is present. */
  isAvailable(): boolean {
    return binding.cudaDeviceCount() > 0;
  },
  /** Number of visible CUDA devices (0 without CUDA). */
  deviceCount(): number {
    return binding.cudaDeviceCount();
  },
  /**
   * Waits until every kernel queued on the current CUDA device has finished (CUDA runs them
   * asynchronously: time GPU work after this). Returns at once without CUDA.
   */
  synchronize(): void {
    binding.cudaSynchronize();
  },
};
