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


def make(d, cfg, dtype, shard_bytes=4 << 30):
    """Random weights tensor by tensor (N(0, 0.02), norms 1), written as transformers lays out a
    released checkpoint: one model.safetensors, or shards of at most 4 GiB with
    model.safetensors.index.json. Nothing of the model's size is held in float32, so a 7B fits."""
    from safetensors.torch import save_file

    os.makedirs(d, exist_ok=True)
    config = LlamaConfig(**cfg, dtype=dtype)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(config).state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    g = torch.Generator().manual_seed(0)
    groups, cur, size = [], [], 0
    for k, shape in shapes.items():
        n = torch.Size(shape).numel() * torch.tensor([], dtype=DTYPES[dtype]).element_size()
        if cur and size + n > shard_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(k)
        size += n
    groups.append(cur)
    names = ["model.safetensors"] if len(groups) == 1 else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map, total = {}, 0
    for name, keys in zip(names, groups):
        part = {}
        for k in keys:
            t = torch.ones(shapes[k]) if k.endswith("norm.weight") else torch.randn(shapes[k], generator=g) * 0.02
            part[k] = t.to(DTYPES[dtype])
            weight_map[k] = name
        save_file(part, os.path.join(d, name), metadata={"format": "pt"})
        total += os.path.getsize(os.path.join(d, name))
        del part
    if len(names) > 1:
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    config.save_pretrained(d)
    print(json.dumps({"bytes": total, "files": len(names)}))


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


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    else:
        load(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
