// The emotional-trajectory fork's task1 answers (`…\n情绪序列: a -> b -> c`, as its dataset.py builds
// targets) drawn as a per-turn timeline SVG (the sequence read by et.metrics.parseEmotionSequence).
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { throwsWith } from '../helpers';

describe('SALMONN emotional trajectory timeline', () => {
  it('reads the 情绪序列 line and draws one point per turn, labelled with its emotion', () => {
    const answer = '用户一开始很平静，随后变得难过，最后释然。\n情绪序列: neutral -> sad -> sad -> happy';
    const svg = et.systems.salmonn.salmonnTrajectorySvg(answer, { title: 'dialogue 7' });
    expect(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>')).toBe(true);
    for (const t of ['turn 1', 'turn 2', 'turn 3', 'turn 4', 'dialogue 7']) expect(svg).toContain(`>${t}<`);
    const labels = [...svg.matchAll(/<text[^>]*>(neutral|sad|happy)<\/text>/g)].map((m) => m[1]);
    expect(labels.filter((l) => l === 'sad').length).toBeGreaterThanOrEqual(3); // two points + the axis row
    expect(et.systems.salmonn.salmonnTrajectorySvg(['joy', 'anger'])).toContain('>anger<');
    throwsWith(() => et.systems.salmonn.salmonnTrajectorySvg('nothing to draw'), 'ERR_INVALID_ARG', /情绪序列/);
    throwsWith(() => et.systems.salmonn.salmonnTrajectorySvg([]), 'ERR_INVALID_ARG', /trajectory/);
  });
});
