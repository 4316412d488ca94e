# The PyTorch side of bench/quant_cuda.cjs: transformers' LlamaForCausalLM in bfloat16 with random
# weights of the given shape on the device, `generate` greedy with every token forced, timed as the
# emotorch side: one row's tokens/s after the first token, the first token's time, 16 rows together.
# Prints one JSON line. Argument: a JSON object {shape, device, prompt, tokens, batch}.
import json
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

a = json.loads(sys.argv[1])
dev = a["device"]
cfg = LlamaConfig(**a["shape"], max_position_embeddings=2048, tie_word_embeddings=False)
with torch.device(dev):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()


def sync():
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def prompt(seed, rows=1):
    ids = [[3 + ((i * 7919 + (seed + r) * 104729) % (a["shape"]["vocab_size"] - 10)) for i in range(a["prompt"])] for r in range(rows)]
    return torch.tensor(ids, device=dev)


@torch.no_grad()
def run(n, rows=1):
    x = prompt(1, rows)
    sync()
    t0 = time.perf_counter()
    model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    sync()
    return (time.perf_counter() - t0) * 1000


N = a["tokens"]
run(4)
first, rate = [], []
for _ in range(3):
    t1 = run(1)
    tn = run(N + 1)
    first.append(t1)
    rate.append(N * 1000 / (tn - t1))
B = a["batch"]
steps = max(8, N >> 1)
t1 = run(1, B)
tn = run(steps + 1, B)
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"torch": torch.__version__, "tokS": statistics.median(rate), "firstMs": statistics.median(first), "batched": B * steps * 1000 / (tn - t1), "gib": weights / 2**30}))
