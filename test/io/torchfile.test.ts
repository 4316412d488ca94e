import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

/** A minimal stored-entry zip (what torch.save writes), for crafted archives. */
function zip(files: Record<string, Buffer>): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(files)) {
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(n.length, 28);
    cd.writeUInt32LE(offset, 42);
    parts.push(local, n, data);
    central.push(cd, n);
    offset += 30 + n.length + data.length;
  }
  const cdBuf = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(Object.keys(files).length, 8);
  eocd.writeUInt16LE(Object.keys(files).length, 10);
  eocd.writeUInt32LE(cdBuf.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cdBuf, eocd]);
}

describe('torch.save files', () => {
  it('loads pytorch_model.bin through fromPretrained without Python', async () => {
    const m = await et.nn.RobertaModel.fromPretrained(path.join(FIXTURES, 'pytorch_bin'));
    const t = (await et.io.loadSafetensors(path.join(FIXTURES, 'roberta', 'io.safetensors'))).tensors;
    const out = await m.forward({ inputIds: t.get('input_ids'), attentionMask: t.get('attention_mask'), tokenTypeIds: t.get('token_type_ids') });
    expect(maxAbsDiff(out.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(1e-4);
  });

  it('loads the original BEATs {cfg, model} file, shared storages shared', async () => {
    // written as the BEATs authors do: torch.save({'cfg': cfg, 'model': model.state_dict()})
    const obj = (await et.io.loadTorchFile(path.join(FIXTURES, 'beats', 'beats.pt'))) as Map<string, unknown>;
    const sd = obj.get('model') as Map<string, et.Tensor>;
    // the OrderedDict's `_metadata` attribute is an attribute, as in Python: not an item
    expect([...sd.values()].every((v) => v instanceof et.Tensor)).toBe(true);
    const meta = et.io.pickleAttributes.get(sd) as Map<string, unknown>;
    expect(meta.get('_metadata')).toBeInstanceOf(Map);
    expect((meta.get('_metadata') as Map<string, Map<string, unknown>>).get('encoder')?.get('version')).toBe(1);
    const a = sd.get('encoder.layers.0.self_attn.relative_attention_bias.weight')!;
    const b = sd.get('encoder.layers.1.self_attn.relative_attention_bias.weight')!;
    expect(a.handle.sameStorage(b.handle)).toBe(true);
    const m = await et.nn.BeatsEncoder.fromPretrained(path.join(FIXTURES, 'beats', 'beats.pt'));
    const t = (await et.io.loadSafetensors(path.join(FIXTURES, 'beats', 'inputs.safetensors'))).tensors;
    expect(maxAbsDiff((await m.forward({ inputFeatures: t.get('fbank')! })).lastHiddenState, t.get('output')!)).toBeLessThan(1e-4);
  });

  it('never runs code from the file and rejects corrupt archives', async () => {
    const dir = tmpdir();
    // pickle: os.system('echo pwned') — refused by the allow-list before anything is called
    const evil = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\nq\x00X\x0b\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.', 'latin1')]);
    fs.writeFileSync(path.join(dir, 'evil.pt'), zip({ 'archive/data.pkl': evil }));
    await rejectsWith(() => et.io.loadTorchFile(path.join(dir, 'evil.pt')), 'ERR_FORMAT', /references os\.system, which emotorch does not load/);
    const good = fs.readFileSync(path.join(FIXTURES, 'beats', 'beats.pt'));
    fs.writeFileSync(path.join(dir, 'cut.pt'), good.subarray(0, good.length - 100));
    await rejectsWith(() => et.io.loadTorchFile(path.join(dir, 'cut.pt')), 'ERR_FORMAT', /cut\.pt' is not a readable torch\.save file/);
    fs.writeFileSync(path.join(dir, 'nopkl.pt'), zip({ 'archive/other': Buffer.from('x') }));
    await rejectsWith(() => et.io.loadTorchFile(path.join(dir, 'nopkl.pt')), 'ERR_FORMAT', /no data\.pkl/);
    fs.writeFileSync(path.join(dir, 'plain.pt'), Buffer.from('not a zip at all'));
    await rejectsWith(() => et.io.loadTorchFile(path.join(dir, 'plain.pt')), 'ERR_FORMAT', /not a zip archive/);
    await rejectsWith(() => et.io.loadTorchFile(path.join(dir, 'missing.pt')), 'ERR_IO', /cannot read/);
    await rejectsWith(() => et.nn.LlamaForCausalLM.fromPretrained(dir), 'ERR_IO', /config\.json/);
  });
});
