// Model loading and adapter saving under bad files and failures (issue 7: findings 7, 10, 15).
import { describe, it, expect, vi } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

// Makes every safetensors save fail (a full disk, say) for the adapter-saving case below.
const failSaves = vi.hoisted(() => ({ on: false }));
vi.mock('../../lib/io/safetensors', async (orig) => {
  const real = (await orig()) as typeof import('../../lib/io/safetensors');
  return {
    ...real,
    saveSafetensors: async (...args: Parameters<typeof real.saveSafetensors>) => {
      if (failSaves.on) throw new et.EmotorchError('cannot write: no space left on device', 'ERR_IO');
      return real.saveSafetensors(...args);
    },
  };
});

describe('config and index files', () => {
  it('are read only when they are regular files, and their text is never quoted', async () => {
    const dir = tmpdir();
    fs.mkdirSync(path.join(dir, 'config.json'));
    throwsWith(() => et.nn.readConfig(dir), 'ERR_IO', /config\.json/);
    const fifoDir = tmpdir();
    execFileSync('mkfifo', [path.join(fifoDir, 'config.json')]);
    throwsWith(() => et.nn.readConfig(fifoDir), 'ERR_IO', /not a regular file|FIFO/);
    const secret = tmpdir();
    fs.writeFileSync(path.join(secret, 'config.json'), 'root:x:0:0:root:/root:/bin/bash\n');
    const e = throwsWith(() => et.nn.readConfig(secret), 'ERR_FORMAT', /not JSON/);
    expect(e.message).not.toMatch(/root/);
    fs.writeFileSync(path.join(secret, 'config.json'), '[1, 2]');
    throwsWith(() => et.nn.readConfig(secret), 'ERR_FORMAT', /not a JSON object/);
  });
  it('a shard index may only name files in its own folder', async () => {
    const dir = tmpdir();
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: '../../etc/passwd' } }));
    await rejectsWith(() => et.nn.loadCheckpoint(dir), 'ERR_FORMAT', /shard/);
  });
  it('an adapter config that is not an object is a format error', async () => {
    const dir = tmpdir();
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), 'null');
    const m = await et.nn.LlamaForCausalLM.fromPretrained(path.join(FIXTURES, 'llama'));
    await rejectsWith(() => et.nn.loadLoraAdapter(m, dir), 'ERR_FORMAT', /adapter config/);
  });
});

describe('saveLoraAdapter', () => {
  it('leaves no folder behind when the save fails', async () => {
    const m = await et.nn.LlamaForCausalLM.fromPretrained(path.join(FIXTURES, 'llama'));
    et.nn.applyLora(m, { r: 2, alpha: 4, targetModules: ['q_proj'] });
    const parent = tmpdir();
    const target = path.join(parent, 'runs', 'adapter');
    failSaves.on = true;
    try {
      await rejectsWith(() => et.nn.saveLoraAdapter(m, target), 'ERR_IO', /no space/);
    } finally {
      failSaves.on = false;
    }
    expect(fs.readdirSync(parent)).toEqual([]);
    await et.nn.saveLoraAdapter(m, target);
    expect(fs.readdirSync(target).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
  });
});
