"""The Python side of `npm run bench -- load` (bench/load.mjs), one fresh process per call:

  python3 bench/load_worker.py make DIR CONFIG_JSON DTYPE     writes a LLaMA-shaped checkpoint of
      random weights with transformers (save_pretrained: config.json + safetensors), as released
      checkpoints are laid out; prints {"bytes": ...}
  python3 bench/load_worker.py load DIR DTYPE PROMPT NEW       loads it with from_pretrained in
      DTYPE, then greedy-decodes NEW tokens after a PROMPT-token prompt; prints one JSON line:
      load_ms, peak_rss_mb (VmHWM after the load), rss_mb (VmRSS after the load), first_token_ms,
      tokens_per_s (the NEW − 1 tokens after the first: a NEW-token run less a 1-token run, both
      warm), end_peak_rss_mb (VmHWM after decoding:
      a memory-mapped checkpoint's pages count once touched), tokens (the ids)
  python3 bench/load_worker.py make-salmonn DIR SIZES_JSON DTYPE   writes a SALMONN-shaped set as
      users download it: whisper/ (a whole WhisperForConditionalGeneration, Whisper-large-v2's
      shape, in DTYPE), beats.pt (the original BEATs `torch.save({'cfg', 'model'})`, float32, as
      released), llm/ (a LLaMA, as `make`) and salmonn.pth (the trainable parts under the original
      key names, float32, as the original's runner saves them)
  python3 bench/load_worker.py load-salmonn DIR DTYPE SECONDS NEW    loads them in the order and
      the way the original models/salmonn.py does (tokenizer + [PAD]; the LLaMA with from_pretrained
      in DTYPE, frozen, peft LoRA r 8 on q_proj/v_proj; WhisperModel.from_pretrained(...).encoder;
      BEATs from its .pt; the Q-Former and projection built and the checkpoint loaded with
      strict=False), rewritten on HF modules as scripts/fixtures/salmonn.py (the original's own
      modeling copies do not import under transformers 5), with Whisper and BEATs in DTYPE too;
      then answers an instruction about a SECONDS-long clip (padded to 30 s for Whisper, as the
      original), greedy, NEW tokens; prints the fields of `load`, the first token's latency being
      audio encoding + prompt + one token, and the decode rate timed between the first and the last
      token of that one answer
  python3 bench/load_worker.py make-internvl DIR SIZES_JSON DTYPE   writes an InternVL2-shaped
      chat folder as released (config.json with vision_config and llm_config, the InternViT +
      mlp1 + InternLM2 weights under the released names in 4 GiB safetensors shards with their
      index, and test/fixtures/m2se_internvl's tokenizer, which has InternVL's image tokens)
"""
import json
import os
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def random_state(shapes, dtype, g):
    """N(0, 0.02) tensors, norm weights 1, each made in DTYPE tensor by tensor."""
    for k, shape in shapes.items():
        t = torch.ones(shape) if k.endswith("norm.weight") else torch.randn(shape, generator=g) * 0.02
        yield k, t.to(DTYPES[dtype])


def make(d, cfg, dtype):
    """Random weights tensor by tensor (N(0, 0.02), norms 1), written as transformers lays out a
    released checkpoint: one model.safetensors, or shards of at most 4 GiB with
    model.safetensors.index.json. Nothing of the model's size is held in float32, so a 7B fits."""
    os.makedirs(d, exist_ok=True)
    config = LlamaConfig(**cfg, dtype=dtype)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(config).state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    total = save_sharded(d, shapes, dtype, torch.Generator().manual_seed(0))
    config.save_pretrained(d)
    print(json.dumps({"bytes": total}))


def load(d, dtype, prompt, new):
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    t0 = time.perf_counter()
    model = LlamaForCausalLM.from_pretrained(d, dtype=DTYPES[dtype])
    model.eval()
    load_ms = (time.perf_counter() - t0) * 1000
    peak, rss = status("VmHWM"), status("VmRSS")
    ids = torch.arange(3, 3 + prompt).reshape(1, prompt)
    with torch.no_grad():
        t1 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, do_sample=False)
        first = (time.perf_counter() - t1) * 1000
        # decoding: N tokens less 1 token, both timed warm, so the prompt's cost cancels
        t2 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, do_sample=False)
        one = time.perf_counter() - t2
        t3 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        total = time.perf_counter() - t3
    tps = (new - 1) / max(total - one, 1e-9)
    print(json.dumps({"load_ms": load_ms, "peak_rss_mb": peak, "rss_mb": rss, "first_token_ms": first, "tokens_per_s": tps, "end_peak_rss_mb": status("VmHWM"),
                      "tokens": out[0, prompt:].tolist(), "torch": torch.__version__}))


# ---------------------------------------------------------------- InternVL2-shaped
def internvl_shapes(v, l, downsample=0.5):
    """The released key names and shapes of InternVLChatModel: InternViT (layer_norm, qkv bias, no
    qk norm), mlp1 (LayerNorm, Linear, GELU, Linear) and InternLM2ForCausalLM."""
    d, n = v["hidden_size"], v["image_size"] // v["patch_size"]
    shapes = {
        "vision_model.embeddings.class_embedding": (1, 1, d),
        "vision_model.embeddings.patch_embedding.weight": (d, 3, v["patch_size"], v["patch_size"]),
        "vision_model.embeddings.patch_embedding.bias": (d,),
        "vision_model.embeddings.position_embedding": (1, n * n + 1, d),
    }
    for i in range(v["num_hidden_layers"]):
        pre = f"vision_model.encoder.layers.{i}."
        shapes.update({pre + "attn.qkv.weight": (3 * d, d), pre + "attn.qkv.bias": (3 * d,), pre + "attn.proj.weight": (d, d), pre + "attn.proj.bias": (d,),
                       pre + "ls1": (d,), pre + "ls2": (d,), pre + "norm1.weight": (d,), pre + "norm1.bias": (d,), pre + "norm2.weight": (d,), pre + "norm2.bias": (d,),
                       pre + "mlp.fc1.weight": (v["intermediate_size"], d), pre + "mlp.fc1.bias": (v["intermediate_size"],),
                       pre + "mlp.fc2.weight": (d, v["intermediate_size"]), pre + "mlp.fc2.bias": (d,)})
    h = l["hidden_size"]
    shuffled = d * int(1 / downsample) ** 2
    shapes.update({"mlp1.0.weight": (shuffled,), "mlp1.0.bias": (shuffled,), "mlp1.1.weight": (h, shuffled), "mlp1.1.bias": (h,),
                   "mlp1.3.weight": (h, h), "mlp1.3.bias": (h,)})
    hd = h // l["num_attention_heads"]
    shapes["language_model.model.tok_embeddings.weight"] = (l["vocab_size"], h)
    for i in range(l["num_hidden_layers"]):
        pre = f"language_model.model.layers.{i}."
        shapes.update({pre + "attention.wqkv.weight": ((l["num_attention_heads"] + 2 * l["num_key_value_heads"]) * hd, h), pre + "attention.wo.weight": (h, h),
                       pre + "feed_forward.w1.weight": (l["intermediate_size"], h), pre + "feed_forward.w3.weight": (l["intermediate_size"], h),
                       pre + "feed_forward.w2.weight": (h, l["intermediate_size"]), pre + "attention_norm.weight": (h,), pre + "ffn_norm.weight": (h,)})
    shapes["language_model.model.norm.weight"] = (h,)
    shapes["language_model.output.weight"] = (l["vocab_size"], h)
    return shapes


def save_sharded(d, shapes, dtype, g, shard_bytes=4 << 30):
    """Random tensors (random_state) in shards of at most shard_bytes, with an index when there are
    several, as transformers' save_pretrained lays a checkpoint out; returns the bytes written."""
    from safetensors.torch import save_file

    size_of = lambda k: torch.Size(shapes[k]).numel() * torch.tensor([], dtype=DTYPES[dtype]).element_size()
    groups, cur, size = [], [], 0
    for k in shapes:
        if cur and size + size_of(k) > shard_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(k)
        size += size_of(k)
    groups.append(cur)
    names = ["model.safetensors"] if len(groups) == 1 else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map, total = {}, 0
    for name, keys in zip(names, groups):
        part = dict(random_state({k: shapes[k] for k in keys}, dtype, g))
        weight_map.update({k: name for k in keys})
        save_file(part, os.path.join(d, name), metadata={"format": "pt"})
        total += os.path.getsize(os.path.join(d, name))
        del part
    if len(names) > 1:
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    return total


def make_internvl(d, sizes, dtype):
    import shutil

    here = os.path.dirname(os.path.abspath(__file__))
    fixtures = os.path.join(here, "..", "test", "fixtures")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(fixtures, "internvl_chat", "internlm2", "config.json")) as f:
        cfg = json.load(f)
    v, l = sizes["vision"], sizes["llm"]
    cfg["vision_config"].update(v)
    cfg["llm_config"].update(l)
    cfg.update(force_image_size=v["image_size"], hidden_size=l["hidden_size"], dtype=dtype)
    cfg["vision_config"]["dtype"] = cfg["llm_config"]["dtype"] = dtype
    total = save_sharded(d, internvl_shapes(v, l, cfg["downsample_ratio"]), dtype, torch.Generator().manual_seed(2))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(fixtures, "m2se_internvl", name), os.path.join(d, name))
    print(json.dumps({"bytes": total}))


# ---------------------------------------------------------------- SALMONN-shaped
def salmonn_reference():
    """scripts/fixtures/salmonn.py: the original's BEATs and forward on HF modules."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("salmonn_reference", os.path.join(here, "..", "scripts", "fixtures", "salmonn.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def llama_tokenizer_file():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "tokenizers", "llama", "tokenizer.json")


def make_salmonn(d, sizes, dtype):
    from safetensors.torch import save_file
    from transformers import Blip2QFormerConfig, Blip2QFormerModel, WhisperConfig, WhisperForConditionalGeneration

    ref = salmonn_reference()
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    total = 0
    # whisper/: the whole model (encoder and decoder), as openai/whisper-large-v2 is released
    wd = os.path.join(d, "whisper")
    os.makedirs(wd, exist_ok=True)
    wc = WhisperConfig(**sizes["whisper"], dtype=dtype)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WhisperForConditionalGeneration(wc).state_dict().items() if k != "proj_out.weight"}  # tied to the decoder's embeddings
    save_file(dict(random_state(shapes, dtype, g)), os.path.join(wd, "model.safetensors"), metadata={"format": "pt"})
    wc.save_pretrained(wd)
    total += os.path.getsize(os.path.join(wd, "model.safetensors"))
    # beats.pt: the original's torch.save({'cfg', 'model'}), float32
    bc = sizes["beats"]
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in ref.Beats(bc).state_dict().items()}
    bsd = dict(random_state(shapes, "float32", g))
    torch.save({"cfg": bc, "model": bsd}, os.path.join(d, "beats.pt"))
    total += os.path.getsize(os.path.join(d, "beats.pt"))
    # llm/: a LLaMA as `make` writes it, with the llama tokenizer fixture
    ld = os.path.join(d, "llm")
    with open(os.devnull, "w") as null:
        stdout, sys.stdout = sys.stdout, null
        make(ld, sizes["llm"], dtype)
        sys.stdout = stdout
    total += sum(os.path.getsize(os.path.join(ld, f)) for f in os.listdir(ld) if f.endswith(".safetensors"))
    # salmonn.pth: the trainable parts under the original key names, float32
    lc = sizes["llm"]
    hq = 768
    enc_width = sizes["whisper"]["d_model"] + bc["encoder_embed_dim"]
    qc = Blip2QFormerConfig(hidden_size=hq, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072, layer_norm_eps=1e-12,
                            encoder_hidden_size=enc_width, cross_attention_frequency=1)
    with torch.device("meta"):
        qshapes = {k: v.shape for k, v in Blip2QFormerModel(qc).state_dict().items()}
    sd = {"speech_Qformer." + ref.lavis_name(k): v for k, v in random_state(qshapes, "float32", g)}
    for name, dim in (("ln_speech", sizes["whisper"]["d_model"]), ("ln_audio", bc["encoder_embed_dim"])):
        sd[f"{name}.weight"] = torch.ones(dim)
        sd[f"{name}.bias"] = torch.zeros(dim)
    sd["speech_query_tokens"] = torch.randn(1, 1, hq, generator=g) * 0.02
    sd["speech_llama_proj.weight"] = torch.randn(lc["hidden_size"], hq, generator=g) * 0.02
    sd["speech_llama_proj.bias"] = torch.zeros(lc["hidden_size"])
    head = lc["hidden_size"] // lc["num_attention_heads"]
    for i in range(lc["num_hidden_layers"]):
        for proj, out in (("q_proj", lc["hidden_size"]), ("v_proj", lc["num_key_value_heads"] * head)):
            pre = f"llama_model.base_model.model.model.layers.{i}.self_attn.{proj}"
            sd[f"{pre}.lora_A.default.weight"] = torch.randn(8, lc["hidden_size"], generator=g) * 0.02
            sd[f"{pre}.lora_B.default.weight"] = torch.randn(out, 8, generator=g) * 0.02
    torch.save({"model": sd}, os.path.join(d, "salmonn.pth"))
    total += os.path.getsize(os.path.join(d, "salmonn.pth"))
    print(json.dumps({"bytes": total}))


def load_salmonn(d, dtype, seconds, new):
    import numpy as np
    from peft import LoraConfig, get_peft_model
    from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerFast, WhisperFeatureExtractor, WhisperModel

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    ref = salmonn_reference()  # module code, imported before the clock starts
    t0 = time.perf_counter()
    # models/salmonn.py's order: tokenizer, LLaMA (torch_dtype), freeze, LoRA, Whisper encoder, BEATs, Q-Former, checkpoint
    tok = PreTrainedTokenizerFast(tokenizer_file=llama_tokenizer_file(), bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.add_special_tokens({"pad_token": "[PAD]"})
    tok.padding_side = "right"
    llm = LlamaForCausalLM.from_pretrained(os.path.join(d, "llm"), dtype=DTYPES[dtype])
    for p in llm.parameters():
        p.requires_grad = False
    llm = get_peft_model(llm, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=32, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    whisper = WhisperModel.from_pretrained(os.path.join(d, "whisper"), dtype=DTYPES[dtype]).encoder
    ckpt = torch.load(os.path.join(d, "beats.pt"), map_location="cpu")
    beats = ref.Beats(ckpt["cfg"])
    beats.load_state_dict(ckpt["model"])
    beats.to(DTYPES[dtype])
    model = ref.Ref(whisper, beats, llm, qformer=dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072,
                                                      initializer_range=0.02, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    names = {ref.original_state_dict(model, {k: k}).popitem()[0]: k for k in model.state_dict()}
    sd = torch.load(os.path.join(d, "salmonn.pth"), map_location="cpu")["model"]
    missing, unexpected = model.load_state_dict({names[k]: v for k, v in sd.items()}, strict=False)
    assert not unexpected, unexpected
    model.eval()
    load_ms = (time.perf_counter() - t0) * 1000
    peak, rss = status("VmHWM"), status("VmRSS")

    # the half-precision towers take their inputs in their dtype and give float32 on (as emotorch)
    half = DTYPES[dtype]
    model.beats.patch_embedding = CastIn(model.beats.patch_embedding, half)
    model.ln_speech = CastIn(model.ln_speech, torch.float32)
    model.ln_audio = CastIn(model.ln_audio, torch.float32)
    t = np.arange(int(seconds * 16000)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (220 * t + 40 * t ** 2)) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    fe = WhisperFeatureExtractor(feature_size=whisper.config.num_mel_bins)
    prompt = "USER: <Speech><SpeechHere></Speech> Describe the emotion of the speaker.\nASSISTANT:"
    stamps = []

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores

    with torch.no_grad():
        t1 = time.perf_counter()
        spec = torch.tensor(fe([wave], sampling_rate=16000, return_tensors="np").input_features).to(half)
        speech, atts = model.encode(spec, torch.tensor(wave)[None], None)
        embeds, mask = ref.wrap(model, tok, speech.to(half), atts, [prompt])
        bos = llm.get_input_embeddings()(torch.tensor([[tok.bos_token_id]]))
        embeds = torch.cat([bos, embeds], 1)
        mask = torch.cat([mask[:, :1], mask], 1)
        out = llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False, num_beams=1,
                           eos_token_id=2, pad_token_id=0, logits_processor=LogitsProcessorList([Stamp()]))
        end = time.perf_counter()
    first = (stamps[0] - t1) * 1000
    tps = (new - 1) / max(end - stamps[0], 1e-9)
    print(json.dumps({"load_ms": load_ms, "peak_rss_mb": peak, "rss_mb": rss, "first_token_ms": first, "tokens_per_s": tps, "end_peak_rss_mb": status("VmHWM"),
                      "tokens": out[0].tolist(), "torch": torch.__version__}))


class CastIn(torch.nn.Module):
    """A module run on its input cast to a dtype (how the half-precision towers meet float32 parts)."""

    def __init__(self, inner, dtype):
        super().__init__()
        self.inner, self.dtype = inner, dtype

    def forward(self, x):
        return self.inner(x.to(self.dtype))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "make-salmonn":
        make_salmonn(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "make-internvl":
        make_internvl(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "load-salmonn":
        load_salmonn(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    else:
        load(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
