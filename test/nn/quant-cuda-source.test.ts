// The quantized layers' CUDA row kernels (native/kernels/quant_cuda.cu) are built only against a
// CUDA libtorch (CMakeLists.txt), which this machine does not have, and run only where a GPU is
// (test/cuda-models.test.ts, scripts/gpu-check.sh). Here nvcc compiles the file on its own (it
// needs no libtorch header) for the GPUs the build targets, so that it cannot rot unseen.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { tmpdir } from '../helpers';

const ROOT = path.join(__dirname, '..', '..');
const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' }).status === 0;

describe('quantized CUDA row kernels', () => {
  it.runIf(nvcc)(
    'nvcc compiles native/kernels/quant_cuda.cu for sm_80 and sm_90, warning-free, exporting et_quant_rows_cuda and et_act_rows_cuda',
    () => {
      const obj = path.join(tmpdir(), 'quant_cuda.o');
      const src = path.join(ROOT, 'native', 'kernels', 'quant_cuda.cu');
      const r = spawnSync(
        'nvcc',
        [
          '-std=c++17',
          '-O3',
          '-gencode',
          'arch=compute_80,code=sm_80',
          '-gencode',
          'arch=compute_90,code=sm_90',
          '-Werror',
          'all-warnings',
          '-c',
          src,
          '-o',
          obj,
        ],
        { encoding: 'utf8', timeout: 240_000 },
      );
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
      const nm = spawnSync('nm', ['-g', '--defined-only', obj], { encoding: 'utf8' });
      expect(nm.stdout).toMatch(/ T et_quant_rows_cuda$/m);
      expect(nm.stdout).toMatch(/ T et_act_rows_cuda$/m);
    },
    300_000,
  );
});
