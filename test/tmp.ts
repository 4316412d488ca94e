import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll } from 'vitest';

// The folders tmpdir made for this test file, removed once its tests have run (every file runs in
// a process of its own; a suite run left some 380 folders, about 1 GB, behind before).
const made: string[] = [];
afterAll(() => {
  for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary folder for one test file, removed after the file's tests. */
export function tmpdir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-test-'));
  made.push(d);
  return d;
}
