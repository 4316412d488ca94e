"""PyTorch side of the emotorch benchmarks. Started once by bench/run.mjs; each line on stdin
asks for one timed trial, answered by one JSON line on stdout, so trials alternate with
emotorch's in one command without paying Python's start-up per trial."""
import json
import math
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def amp(cfg):
    """CPU autocast to bfloat16 with --bf16 (around the forward; parameters stay float32)."""
    import contextlib

    return torch.autocast("cpu", dtype=torch.bfloat16) if cfg.get("bf16") else contextlib.nullcontext()


def mlp_setup(cfg):
    torch.manual_seed(0)
    sizes = cfg["sizes"]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # PyTorch's default implementation
    x = torch.randn(cfg["batch"], sizes[0])
    y = torch.randint(0, sizes[-1], (cfg["batch"],))

    def step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    return step


def waves(cfg):
    rng = np.random.default_rng(0)
    n = int(cfg["seconds"] * 16000)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(cfg["batch"])]


def logmel_dialogue_setup(cfg):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=80)
    rng = np.random.default_rng(0)
    w = [(0.1 * rng.standard_normal(s * 16000)).astype(np.float32) for s in cfg["lengths"]]
    return lambda: fe(w, sampling_rate=16000, return_tensors="np").input_features


def logmel_setup(cfg):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=80)
    w = waves(cfg)
    return lambda: fe(w, sampling_rate=16000, return_tensors="np").input_features


def resample_soxr_setup(cfg):
    # librosa.resample(res_type='soxr_hq'), what librosa.load(path, sr=16000) runs (USDM's originals)
    import librosa

    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(cfg["seconds"] * 22050))).astype(np.float32) for _ in range(cfg["batch"])]
    return lambda: [librosa.resample(x, orig_sr=22050, target_sr=16000) for x in clips]


def resample_torchaudio_setup(cfg):
    # torchaudio.functional.resample's defaults as torchaudio runs them (torchaudio has no wheel here):
    # the Hann-windowed sinc kernel of its _get_sinc_resample_kernel, one strided conv1d per clip
    import math

    g = math.gcd(44100, 16000)
    M, L = 44100 // g, 16000 // g
    base = min(M, L) * 0.99
    width = math.ceil(6 * M / base)
    idx = torch.arange(-width, width + M, dtype=torch.float32)[None, None] / M
    t = (torch.arange(0, -L, -1, dtype=torch.float32)[:, None, None] / L + idx).mul(base).clamp(-6, 6)
    window = torch.cos(t * math.pi / 12) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.tensor(1.0), t.sin() / t) * window * (base / M)
    rng = np.random.default_rng(0)
    clips = [torch.tensor((0.1 * rng.standard_normal(int(cfg["seconds"] * 44100))).astype(np.float32)) for _ in range(cfg["batch"])]

    def step():
        with torch.no_grad():
            for x in clips:
                y = torch.nn.functional.conv1d(torch.nn.functional.pad(x[None, None], (width, width + M)), kernel, stride=M)
                y.transpose(1, 2).reshape(-1)[: math.ceil(L * x.shape[0] / M)]

    return step


def fbank_setup(cfg):
    # transformers' numpy Kaldi-compatible fbank, as ASTFeatureExtractor / SeamlessM4T compute it
    # (povey window, Kaldi mel bank, pre-emphasis, DC removal) with BEATs' 128 bins.
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    w = waves(cfg)
    bank = mel_filter_bank(num_frequency_bins=257, num_mel_filters=128, min_frequency=20, max_frequency=8000,
                           sampling_rate=16000, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
    win = window_function(400, "povey", periodic=False)

    def step():
        return [spectrogram(x * 32768, win, frame_length=400, hop_length=160, fft_length=512, power=2.0, center=False,
                            preemphasis=0.97, mel_filters=bank, log_mel="log", mel_floor=1.192092955078125e-07,
                            remove_dc_offset=True).T for x in w]

    return step


class BeatsEager(torch.nn.Module):
    """BEATs' forward in PyTorch eager, structured as the original microsoft/unilm code (bmm attention
    with the max-subtraction trick, gated relative position bias from layer 0's table, deep norm).
    HF transformers has no BEATs and the original package is not installable offline, so this
    port stands in for it; test/fixtures/beats checks emotorch against the original itself."""

    def __init__(self, c):
        super().__init__()
        nn = torch.nn
        d, h = c["encoder_embed_dim"], c["encoder_attention_heads"]
        self.c, self.h = c, h
        self.patch = nn.Conv2d(1, c["embed_dim"], 16, 16, bias=False)
        self.ln = nn.LayerNorm(c["embed_dim"])
        self.proj = nn.Linear(c["embed_dim"], d)
        self.pos = nn.utils.parametrizations.weight_norm(nn.Conv1d(d, d, c["conv_pos"], padding=c["conv_pos"] // 2, groups=c["conv_pos_groups"]), dim=2)
        self.enc_ln = nn.LayerNorm(d)
        self.rel = nn.Embedding(320, h)
        self.alpha = (2 * c["encoder_layers"]) ** 0.25
        self.layers = nn.ModuleList()
        for _ in range(c["encoder_layers"]):
            L = nn.Module()
            L.q, L.k, L.v, L.o = (nn.Linear(d, d) for _ in range(4))
            L.grep = nn.Linear(d // h, 8)
            L.grep_a = nn.Parameter(torch.ones(1, h, 1, 1))
            L.ln1, L.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            L.fc1, L.fc2 = nn.Linear(d, c["encoder_ffn_embed_dim"]), nn.Linear(c["encoder_ffn_embed_dim"], d)
            self.layers.append(L)

    def bias(self, n):
        rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
        nb, me = 160, 80
        b = (rel > 0).long() * nb
        a = rel.abs()
        large = (me + torch.log(a.float() / me) / math.log(800 / me) * (nb - me)).long().clamp(max=nb - 1)
        return self.rel(b + torch.where(a < me, a, large)).permute(2, 0, 1)

    def forward(self, fbank):
        B = fbank.shape[0]
        x = self.patch(fbank.unsqueeze(1))
        x = self.proj(self.ln(x.reshape(B, x.shape[1], -1).transpose(1, 2)))
        c = self.pos(x.transpose(1, 2))[:, :, :-1]
        x = self.enc_ln(x + torch.nn.functional.gelu(c).transpose(1, 2))
        T, H = x.shape[1], self.h
        D = x.shape[2] // H
        pb = self.bias(T).unsqueeze(0).repeat(B, 1, 1, 1).view(B * H, T, T)
        for L in self.layers:
            q = L.q(x) * D ** -0.5 / 32
            qh, kh, vh = (t.view(B, T, H, D).transpose(1, 2).reshape(B * H, T, D) for t in (q, L.k(x), L.v(x)))
            w = torch.bmm(qh, kh.transpose(1, 2))
            w = (w - w.max(dim=-1, keepdim=True)[0]) * 32
            ql = qh.view(B, H, T, D) * 32 / D ** -0.5
            ga, gb = torch.sigmoid(L.grep(ql).view(B, H, T, 2, 4).sum(-1)).chunk(2, dim=-1)
            g = ga * (gb * L.grep_a - 1.0) + 2.0
            w = w + g.view(B * H, T, 1) * pb
            a = torch.bmm(torch.softmax(w.float(), dim=-1), vh).view(B, H, T, D).transpose(1, 2).reshape(B, T, H * D)
            x = L.ln1(x * self.alpha + L.o(a))
            x = L.ln2(x * self.alpha + L.fc2(torch.nn.functional.gelu(L.fc1(x))))
        return x


def hf_model(kind, cfg):
    import transformers as tf

    torch.manual_seed(0)
    if kind == "whisper":
        m = tf.WhisperModel(tf.WhisperConfig(**cfg["config"], attn_implementation="eager")).encoder
    elif kind == "roberta":
        m = tf.RobertaModel(tf.RobertaConfig(**cfg["config"], attn_implementation="eager"), add_pooling_layer=False)
    elif kind == "wavlm":
        m = tf.WavLMModel(tf.WavLMConfig(**cfg["config"]))
    elif kind == "beats":
        m = BeatsEager(cfg["config"])
    else:
        m = tf.LlamaForCausalLM(tf.LlamaConfig(**cfg["config"], attn_implementation="eager"))
    return m.eval()


def model_setup(kind):
    def setup(cfg):
        m = hf_model(kind, cfg)
        if kind == "whisper":
            x = torch.randn(1, cfg["config"]["num_mel_bins"], 3000)
            f = lambda: m(x).last_hidden_state
        elif kind == "roberta":
            x = torch.randint(3, cfg["config"]["vocab_size"], (1, cfg["tokens"]))
            f = lambda: m(input_ids=x).last_hidden_state
        elif kind == "wavlm":
            x = torch.randn(1, cfg["samples"])
            f = lambda: m(x).last_hidden_state
        elif kind == "beats":
            x = torch.randn(1, cfg["frames"], 128)
            f = lambda: m(x)
        else:
            x = torch.randint(3, cfg["config"]["vocab_size"], (1, cfg["prompt"]))
            f = lambda: m.generate(x, max_new_tokens=cfg["new_tokens"], min_new_tokens=cfg["new_tokens"], do_sample=False, pad_token_id=0)

        def step():
            with torch.inference_mode(), amp(cfg):
                return f()

        return step

    return setup


def trainer_setup(cfg):
    """transformers' Trainer on the same tiny LLaMA, data and arguments as bench/trainer.mjs;
    one call = one train() of cfg["trainSteps"] optimizer steps (logging every step, no saving)."""
    import tempfile

    from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, Trainer, TrainingArguments, logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128))
    vocab, seq = 512, cfg["seq"]
    items = []
    for i in range(cfg["examples"]):
        ids = [(i * 7 + j * 13 + ((i * j) % 5)) % vocab for j in range(seq)]
        items.append({"input_ids": ids, "labels": [-100 if j < seq / 4 else x for j, x in enumerate(ids)]})
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="bench-hf-trainer-"), max_steps=cfg["trainSteps"],
                             per_device_train_batch_size=cfg["batch"], gradient_accumulation_steps=cfg["accumulation"],
                             learning_rate=1e-3, warmup_steps=2, lr_scheduler_type="linear", weight_decay=0.01,
                             logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=0, use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=items)
    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it prints every log to stdout (our protocol channel)
    return lambda: trainer.train()


def spectra_setup(cfg):
    """scripts/fixtures/spectra.py's reference SPECTRA (HF WavLM pieces + RobertaModel + RobertaLayer,
    the original ATForSequenceClassification forward) at the given sizes: one fine-tuning step =
    forward, cross-entropy, backward, AdamW (PyTorch's default implementation). Train mode;
    WavLM's layerdrop is 0 (emotorch has none; SPECTRA's audio path never masks time steps)."""
    import importlib.util
    import os
    import warnings

    from transformers import RobertaConfig, WavLMConfig

    warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")  # HF WavLM's bool padding mask + float bias

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "fixtures", "spectra.py")
    spec = importlib.util.spec_from_file_location("spectra_reference", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    torch.manual_seed(0)
    audio = WavLMConfig(**cfg["audio"], layerdrop=0.0)
    model = ref.Classifier(audio, RobertaConfig(**cfg["text"]), num_class=cfg["num_class"], num_fused_layers=cfg["fused"]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, weight_decay=0.01)
    B, S, T = cfg["batch"], cfg["samples"], cfg["tokens"]
    wave = 0.1 * torch.randn(B, S)
    keep = torch.ones(B, S, dtype=torch.long)
    ids = torch.randint(3, cfg["text"]["vocab_size"], (B, T))
    ids[:, 0] = 0
    tam = torch.ones(B, T, dtype=torch.long)
    labels = torch.randint(0, cfg["num_class"], (B,))

    def step():
        with amp(cfg):
            _, loss = model(wave, keep, ids, tam, None, labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    return step


def salmonn_setup(cfg):
    """scripts/fixtures/salmonn.py's reference SALMONN (HF Whisper encoder, that file's BEATs written
    from the original code, Blip2QFormerModel as the window-level Q-Former, LlamaForCausalLM + peft
    LoRA; the original salmonn.py forward) at the given sizes: one LoRA training step = Whisper
    features (WhisperFeatureExtractor, as the original's dataset), forward, loss, backward, AdamW
    (PyTorch's default implementation) on the trainable tensors. Train mode, float32."""
    import importlib.util
    import os

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, WhisperConfig, WhisperFeatureExtractor, WhisperModel

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("salmonn_reference", os.path.join(here, "..", "scripts", "fixtures", "salmonn.py"))
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    torch.manual_seed(0)
    whisper = WhisperModel(WhisperConfig(**cfg["whisper"])).encoder
    beats = ref_mod.Beats(cfg["beats"])
    llm = get_peft_model(LlamaForCausalLM(LlamaConfig(**cfg["llm"])), LoraConfig(task_type="CAUSAL_LM", r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"],
                                                                                  lora_dropout=cfg["lora_dropout"], target_modules=["q_proj", "v_proj"]))
    ref = ref_mod.Ref(whisper, beats, llm, qformer=cfg["qformer"]).train()
    for p in list(ref.speech_encoder.parameters()) + list(ref.beats.parameters()):
        p.requires_grad = False
    opt = torch.optim.AdamW([p for p in ref.parameters() if p.requires_grad], lr=1e-4)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(here, "..", "test", "fixtures", "tokenizers", "llama", "tokenizer.json"),
                                  bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.padding_side = "right"
    fe = WhisperFeatureExtractor(feature_size=80)
    rng = np.random.default_rng(0)
    n = int(cfg["seconds"] * 16000)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(cfg["batch"])]
    raw = torch.tensor(np.stack(waves))
    mask = torch.zeros(raw.shape, dtype=torch.bool)
    prompts = ["USER: <Speech><SpeechHere></Speech> " + cfg["instruction"] + "\nASSISTANT:"] * cfg["batch"]
    texts = [cfg["target"]] * cfg["batch"]
    emb = llm.get_input_embeddings()

    def step():
        spectrogram = torch.tensor(fe(waves, sampling_rate=16000, return_tensors="np").input_features)
        with amp(cfg):
            speech, atts = ref.encode(spectrogram, raw, mask)
            speech, atts = ref_mod.wrap(ref, tok, speech, atts, prompts)
            reg = tok([t + "</s>" for t in texts], return_tensors="pt", padding="longest", truncation=True, max_length=300, add_special_tokens=False)
            targets = reg.input_ids.masked_fill(reg.input_ids == tok.pad_token_id, -100)
            targets = torch.cat([torch.full([len(texts), atts.shape[1] + 1], -100, dtype=torch.long), targets], 1)
            bos = emb(torch.full([len(texts), 1], tok.bos_token_id, dtype=torch.long))
            inputs_embeds = torch.cat([bos, speech, emb(reg.input_ids)], 1)
            attention_mask = torch.cat([atts[:, :1], atts, reg.attention_mask], 1)
            loss = llm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=targets).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    return step


def spectra_pretrain_setup(cfg):
    """The ORIGINAL ATForPreTraining (AlibabaResearch/DAMO-ConvAI spectra/modeling_spectra, from the
    folder in SPECTRA_SRC holding spectra/) with scripts/fixtures/spectra_pretrain_model.py's shims
    for transformers 5, at the given sizes: one pre-training step = forward (its own masked acoustic
    frames, the four losses), backward of their sum, AdamW (PyTorch's default implementation).
    Train mode; WavLM's layerdrop 0 (emotorch has none)."""
    import importlib.util
    import os
    import warnings

    warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
    src = os.environ.get("SPECTRA_SRC")
    if not src or not os.path.isfile(os.path.join(src, "spectra", "modeling_spectra", "model.py")):
        raise SystemExit("spectra_pretrain: set SPECTRA_SRC to a folder holding the original spectra/ (git archive of DAMO-ConvAI)")
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("spectra_pretrain_fixture", os.path.join(here, "..", "scripts", "fixtures", "spectra_pretrain_model.py"))
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    fx.shim()
    sys.path.insert(0, os.path.join(src, "spectra"))
    import modeling_spectra.model as M
    from transformers import RobertaConfig, WavLMConfig
    from utils import ATConfig

    torch.manual_seed(0)
    config = ATConfig()
    config.audio = WavLMConfig(**cfg["audio"], layerdrop=0.0)
    config.text = RobertaConfig(**cfg["text"])
    config.text._attn_implementation = "eager"  # the 2023 code's attention
    config.text.num_fused_layers = cfg["fused"]
    config.set_length(cfg["samples"], cfg["tokens"])
    model = M.ATForPreTraining(config).train()
    model.mlm_head.decoder.bias = model.mlm_head.bias
    fx.tuple_layers(model.model.fused_encoder)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.01)
    B, S, L = cfg["batch"], cfg["samples"], cfg["tokens"]
    g = torch.Generator().manual_seed(1)
    audio = 0.1 * torch.randn(3 * B, S, generator=g)
    a_mask = torch.ones(3 * B, S)
    text = torch.randint(3, cfg["text"]["vocab_size"] - 1, (2 * B, L), generator=g)
    text[:, 0] = 0
    labels = torch.full((B, L), -100, dtype=torch.long)
    pick = torch.rand(B, L, generator=g) < 0.15
    labels[pick] = text.view(B, 2, L)[:, 0][pick]
    t_mask = torch.ones(2 * B, L, dtype=torch.long)
    turn = torch.zeros(2 * B, L, dtype=torch.long)
    turn[:, L // 2:] = 1
    valid = torch.zeros(B, L, dtype=torch.bool)
    valid[:, 1::4] = True
    n = int(valid.sum())
    starts, ends = torch.rand(n, generator=g), torch.rand(n, generator=g)

    def step():
        with amp(cfg):
            mlm, mam, rs, span = model(audio, text, a_mask, t_mask, labels, turn, valid, valid, starts, ends)
            loss = mlm + mam + rs + span
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    return step


def units_setup(cfg):
    """USDM units: seamless's per-clip layer_norm of the waveform, HF Wav2Vec2Model up to the unit
    layer (its hidden_states[layer]), nearest centroid by numpy argmin of |x|^2 - 2 x.c + |c|^2."""
    import transformers as tf

    torch.manual_seed(0)
    c = dict(cfg["config"], num_hidden_layers=cfg["layer"])
    m = tf.Wav2Vec2Model(tf.Wav2Vec2Config(**c)).eval()
    rng = np.random.default_rng(0)
    cent = rng.standard_normal((cfg["units"], c["hidden_size"])).astype(np.float32)
    c2 = (cent ** 2).sum(1)[None]
    x = 0.1 * torch.randn(cfg["batch"], cfg["seconds"] * 16000)

    def step():
        with torch.inference_mode():
            w = torch.stack([F.layer_norm(r, r.shape) for r in x])
            h = m(w, output_hidden_states=True).hidden_states[cfg["layer"]].numpy()
        out = []
        for s in h:
            d2 = (s ** 2).sum(1, keepdims=True) - 2 * s @ cent.T + c2
            out.append(d2.argmin(1))
        return out

    return step


def voicebox_setup(cfg):
    """USDM's unit-to-speech decoder as the ORIGINAL code runs it on PyTorch's CPU path: naver-ai/usdm's
    src/decoder (a checkout named by USDM_DECODER, e.g. `git archive HEAD src/decoder` of the repo),
    Voicebox.generate with the Heun solver and guidance 1.0 (reconstruct_speech's call, no reference),
    then BigVGAN (weight norm removed, as initialize_decoder). Patched in this worker only, as the
    fixture does: `.cuda()` returns the tensor (the ALiBi slopes are put on CUDA unconditionally);
    torchaudio and matplotlib, imported and unused here, are empty stand-ins."""
    import os
    import types

    src = os.environ.get("USDM_DECODER")
    if not src or not os.path.isdir(os.path.join(src, "voicebox")):
        raise SystemExit("bench voicebox: set USDM_DECODER to naver-ai/usdm's src/decoder folder (git archive HEAD src/decoder of the repo)")
    torch.Tensor.cuda = lambda self, *a, **k: self
    for name in ["torchaudio", "torchaudio.transforms", "torchaudio.functional", "matplotlib", "matplotlib.pyplot", "matplotlib.pylab"]:
        m = sys.modules.setdefault(name, types.ModuleType(name))
        m.use = lambda *a, **k: None
    sys.modules["torchaudio"].transforms = sys.modules["torchaudio.transforms"]
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib"].pylab = sys.modules["matplotlib"]
    sys.path.insert(0, src)
    from voicebox.model.voicebox import Voicebox
    from voicebox.vocoder.env import AttrDict
    from voicebox.vocoder.models import BigVGAN

    torch.manual_seed(0)
    vb = Voicebox(**cfg["voicebox"]).eval()
    gan = BigVGAN(AttrDict(cfg["bigvgan"])).eval()
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # it prints "Removing weight norm..."; stdout is the bench's channel
        gan.remove_weight_norm()
    frames = int(cfg["seconds"] * 22050) // 256
    units = torch.randint(0, cfg["voicebox"]["n_tokens"], (1, frames))
    cond = torch.zeros(1, cfg["voicebox"]["n_feats"], frames)

    def step():
        with torch.inference_mode():
            y = vb.generate(units, cond, torch.tensor([frames]), n_timesteps=cfg["steps_n"], solver="heun", gradient_scale=1.0, speech_prompt=False)
            return gan(y * 2.1575 - 5.5419).clamp(-1, 1)

    return step


SETUPS = {"voicebox": voicebox_setup, "voicebox_5s": voicebox_setup, "units": units_setup, "salmonn": salmonn_setup, "trainer": trainer_setup, "spectra": spectra_setup, "spectra_pretrain": spectra_pretrain_setup, "mlp": mlp_setup, "logmel": logmel_setup, "logmel_dialogue": logmel_dialogue_setup, "fbank": fbank_setup, "resample_soxr": resample_soxr_setup, "resample_torchaudio": resample_torchaudio_setup, **{k: model_setup(k) for k in ["whisper", "roberta", "wavlm", "beats", "llama"]}}


def main():
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(cfg["threads"])
    device = cfg.get("device", "cpu")
    if device != "cpu":
        torch.set_default_device(device)  # the references build their models and inputs where the bench runs
    step = SETUPS[name](cfg)
    for _ in range(cfg["warmup"]):
        step()
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() == "profile":
            # the steps under torch.profiler (CPU activity): each op's calls, self and total time per
            # step; then once more recording input shapes, for the calls per op and shapes alone (run.mjs
            # works out the products' flops from them; recording shapes slows the ops, up to 4× here)
            from torch.profiler import ProfilerActivity, profile

            def profiled(record_shapes):
                with profile(activities=[ProfilerActivity.CPU], record_shapes=record_shapes) as prof:
                    for _ in range(cfg["steps"]):
                        step()
                    if device != "cpu":
                        torch.cuda.synchronize()
                return prof

            ops = [{"name": e.key, "calls": e.count / cfg["steps"], "self_ms": e.self_cpu_time_total / 1000 / cfg["steps"],
                    "total_ms": e.cpu_time_total / 1000 / cfg["steps"]} for e in profiled(False).key_averages()]
            shaped = [{"name": e.key, "shapes": e.input_shapes, "calls": e.count / cfg["steps"]}
                      for e in profiled(True).key_averages(group_by_input_shape=True)]
            print(json.dumps({"ops": ops, "shaped": shaped}), flush=True)
            continue
        if line.strip() != "trial":
            break
        t0 = time.perf_counter()
        for _ in range(cfg["steps"]):
            out = step()
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            float(out.detach())
        if device != "cpu":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: this process's peak
        print(json.dumps({"ms_per_step": 1000 * dt / cfg["steps"], "peak_rss_kb": peak_kb}), flush=True)  # per call: run.mjs divides by stepsPerCall


if __name__ == "__main__":
    main()
