"""The independent reference of `npm run bench -- quant` (bench/quant.mjs): transformers' LLaMA in
float32 on the folder bench/quant_gguf.py wrote.

    python bench/quant_reference.py HF_DIR IDS OUT

IDS: the prompt's token ids, comma-separated. Writes to OUT, as JSON, the float32 logits of the
prompt's last position (one per vocabulary id) and the transformers version; every row of the
bench (emotorch's and llama.cpp's) is compared with them.
"""

import json
import os
import sys

import torch
import transformers
from transformers import LlamaForCausalLM


def main():
    hf_dir, ids, out = sys.argv[1:4]
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    prompt = [int(t) for t in ids.split(",")]
    model = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1]
    with open(out, "w") as f:
        json.dump({"logits": logits.tolist(), "version": f"transformers {transformers.__version__}, torch {torch.__version__}"}, f)


if __name__ == "__main__":
    main()
