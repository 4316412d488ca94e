/**
 * The page `emotorch serve` shows at `/`: record or upload audio (or pick an image), type a
 * prompt, and watch the answer stream in from `/v1/chat/completions`; a model that speaks (USDM)
 * is asked for audio too, and its spoken answer is played. Audio that is not WAV,
 * MP3 or FLAC (a recording is WebM/Ogg) is decoded by the browser and sent as 16 kHz WAV.
 */
export const SERVE_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>emotorch serve</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#1d2330}
h1{font-size:1.3em;margin-bottom:.2em} #model{color:#5b6475;margin-top:0}
fieldset{border:1px solid #d5d9e2;border-radius:8px;margin:1em 0;padding:.8em 1em}
textarea{width:100%;box-sizing:border-box;min-height:4.5em;font:inherit}
button{font:inherit;padding:.35em 1em;border-radius:6px;border:1px solid #8a94a8;background:#f4f6fa;cursor:pointer}
button.primary{background:#2f5bd3;color:#fff;border-color:#2f5bd3} button:disabled{opacity:.5;cursor:default}
#answer{white-space:pre-wrap;background:#f7f8fb;border:1px solid #d5d9e2;border-radius:8px;padding:.8em 1em;min-height:3em}
#status{color:#5b6475;font-size:.9em} .error{color:#b3261e}
</style></head>
<body>
<h1>emotorch serve</h1>
<p id="model">connecting…</p>
<fieldset id="audio-box" hidden><legend>Audio</legend>
  <input type="file" id="audio" accept="audio/*">
  <button id="record" type="button">● Record</button>
  <audio id="playback" controls hidden></audio>
</fieldset>
<fieldset id="image-box" hidden><legend>Image</legend>
  <input type="file" id="image" accept="image/png,image/jpeg,image/webp,image/bmp,image/gif">
</fieldset>
<fieldset id="prompt-box"><legend>Prompt</legend>
  <textarea id="prompt" placeholder="Describe the emotion of the speaker."></textarea>
  <p><button id="send" class="primary" type="button">Send</button> <button id="stop" type="button" disabled>Stop</button></p>
</fieldset>
<div id="answer" aria-live="polite"></div>
<audio id="spoken" controls hidden></audio>
<p id="status"></p>
<script>
const $ = (id) => document.getElementById(id);
let info = null, recorded = null, recorder = null, controller = null;
const status = (text, error) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };

fetch('/health').then((r) => r.json()).then((h) => {
  info = h;
  $('model').textContent = 'model: ' + h.model + ' (' + h.kind + ')';
  $('audio-box').hidden = !h.accepts.audio;
  $('image-box').hidden = !h.accepts.image;
  // a model that hears speech only (USDM): no prompt to type, the button stays
  if (h.accepts.text === false) { $('prompt').hidden = true; $('prompt-box').querySelector('legend').textContent = 'Ask (by speech)'; }
}).catch((e) => status('cannot reach the server: ' + e, true));

const b64 = (buf) => { let s = ''; const u = new Uint8Array(buf); for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000)); return btoa(s); };

// 16 kHz mono PCM16 WAV of any audio the browser decodes
async function toWav(blob) {
  const ctx = new AudioContext();
  const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
  ctx.close();
  const n = Math.max(1, Math.round(decoded.duration * 16000));
  const off = new OfflineAudioContext(1, n, 16000);
  const src = off.createBufferSource(); src.buffer = decoded; src.connect(off.destination); src.start();
  const x = (await off.startRendering()).getChannelData(0);
  const buf = new ArrayBuffer(44 + 2 * x.length), v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, 'RIFF'); v.setUint32(4, 36 + 2 * x.length, true); str(8, 'WAVE'); str(12, 'fmt '); v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, 16000, true); v.setUint32(28, 32000, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, 'data'); v.setUint32(40, 2 * x.length, true);
  for (let i = 0; i < x.length; i++) v.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, x[i])) * 32767, true);
  return buf;
}

async function audioPart() {
  const file = recorded || $('audio').files[0];
  if (!file) return null;
  const ext = (file.name || '').split('.').pop().toLowerCase();
  if (['wav', 'mp3', 'flac'].includes(ext)) return { type: 'input_audio', input_audio: { data: b64(await file.arrayBuffer()), format: ext } };
  return { type: 'input_audio', input_audio: { data: b64(await toWav(file)), format: 'wav' } };
}

async function imagePart() {
  const file = $('image').files[0];
  if (!file) return null;
  return { type: 'image_url', image_url: { url: 'data:' + file.type + ';base64,' + b64(await file.arrayBuffer()) } };
}

$('audio').addEventListener('change', () => { recorded = null; const f = $('audio').files[0]; if (f) { $('playback').src = URL.createObjectURL(f); $('playback').hidden = false; } });

$('record').addEventListener('click', async () => {
  if (recorder) { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      recorded = new Blob(chunks, { type: recorder.mimeType });
      recorder = null;
      $('record').textContent = '● Record';
      $('playback').src = URL.createObjectURL(recorded); $('playback').hidden = false;
      $('audio').value = '';
    };
    recorder.start();
    $('record').textContent = '■ Stop recording';
  } catch (e) { status('cannot record: ' + e.message, true); }
});

$('stop').addEventListener('click', () => controller && controller.abort());

$('send').addEventListener('click', async () => {
  const parts = [];
  try {
    const a = info && info.accepts.audio ? await audioPart() : null;
    const i = info && info.accepts.image ? await imagePart() : null;
    if (a) parts.push(a);
    if (i) parts.push(i);
  } catch (e) { status('cannot read the file: ' + e.message, true); return; }
  if (!info || info.accepts.text !== false) parts.push({ type: 'text', text: $('prompt').value });
  $('answer').textContent = '';
  $('spoken').hidden = true; $('spoken').removeAttribute('src');
  $('send').disabled = true; $('stop').disabled = false;
  status('waiting…');
  controller = new AbortController();
  const t0 = performance.now();
  try {
    const r = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, signal: controller.signal,
      body: JSON.stringify({ model: info.model, stream: true, messages: [{ role: 'user', content: parts }],
        ...(info.speaks ? { modalities: ['text', 'audio'], audio: { voice: 'default', format: 'wav' } } : {}) }) });
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error((e.error && e.error.message) || r.statusText); }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '', finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let k;
      while ((k = buf.indexOf('\\n\\n')) >= 0) {
        const line = buf.slice(0, k); buf = buf.slice(k + 2);
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') continue;
        const o = JSON.parse(data);
        if (o.error) throw new Error(o.error.message);
        const c = o.choices[0];
        if (c && c.delta && c.delta.content) $('answer').textContent += c.delta.content;
        // a spoken answer: its transcript as it grows, then the WAV, played
        if (c && c.delta && c.delta.audio && c.delta.audio.transcript) $('answer').textContent += c.delta.audio.transcript;
        if (c && c.delta && c.delta.audio && c.delta.audio.data) {
          $('spoken').src = 'data:audio/wav;base64,' + c.delta.audio.data; $('spoken').hidden = false; $('spoken').play().catch(() => {});
        }
        if (c && c.finish_reason) finish = c.finish_reason;
      }
    }
    status('done (' + finish + ', ' + ((performance.now() - t0) / 1000).toFixed(1) + ' s)');
  } catch (e) {
    status(e.name === 'AbortError' ? 'stopped' : 'error: ' + e.message, e.name !== 'AbortError');
  } finally {
    $('send').disabled = false; $('stop').disabled = true; controller = null;
  }
});
</script>
</body></html>
`;
