"""The checkpoints of `npm run bench -- quant` (bench/quant.mjs): one random LLaMA, written twice.

    python bench/quant_gguf.py OUT_DIR CONFIG_JSON [--seed N] [--types BF16,Q8_0,Q4_0] [--head bf16|quantized]

writes, from one seed, tensor by tensor (nothing of the model's size is held in memory, so a 7B
fits a 24 GB machine):
  OUT_DIR/hf/config.json + model.safetensors   transformers' LLaMA layout (its key names), bfloat16
  OUT_DIR/model-BF16.gguf, model-Q8_0.gguf, model-Q4_0.gguf
                                               the same weights for llama.cpp's `llama` architecture,
                                               written with the `gguf` package's GGUFWriter; Q8_0 and
                                               Q4_0 by gguf.quants.quantize from the bfloat16 values:
                                               the decoder's linear layers, the embedding and the
                                               output (LM head) left in BF16 as emotorch's `quantize`
                                               and transformers + bitsandbytes leave them, so both
                                               sides read the same bytes per token (--head quantized:
                                               those two in Q8_0 / Q4_0 too, llama-quantize's --pure);
                                               the norms float32
and prints one JSON line {"bytes": {...}} with each file's size.

Weights: N(0, 0.02) for every matrix (transformers' initializer_range), 1 + N(0, 0.1) for the
RMSNorm weights (not all ones, so a norm read wrongly on either side shows in the logits), rounded
once to bfloat16; every GGUF is made from those bfloat16 values. llama.cpp's `llama` rotary
embedding rotates adjacent pairs where transformers rotates the two halves of a head, so the query
and key rows of each head are reordered for the GGUF (what llama.cpp's converter does for LLaMA).
The tokenizer metadata is the minimum llama.cpp loads: an SPM ("llama") vocabulary of <unk>, <s>,
</s>, the 256 byte tokens, "▁" and unused tokens up to vocab_size; the bench feeds token ids, never text.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import gguf

FILE_TYPE = {  # llama.cpp's llama_ftype of a file whose weights are all of one type
    "BF16": gguf.LlamaFileType.MOSTLY_BF16,
    "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}


def tensors(cfg):
    """(HF name, GGUF name, shape, kind, heads to reorder for llama.cpp's rotary) in writing order."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    out = [("model.embed_tokens.weight", "token_embd.weight", (v, h), "head", 0)]
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        out += [
            (p + "input_layernorm.weight", b + "attn_norm.weight", (h,), "norm", 0),
            (p + "self_attn.q_proj.weight", b + "attn_q.weight", (heads * hd, h), "matrix", heads),
            (p + "self_attn.k_proj.weight", b + "attn_k.weight", (kv * hd, h), "matrix", kv),
            (p + "self_attn.v_proj.weight", b + "attn_v.weight", (kv * hd, h), "matrix", 0),
            (p + "self_attn.o_proj.weight", b + "attn_output.weight", (h, heads * hd), "matrix", 0),
            (p + "post_attention_layernorm.weight", b + "ffn_norm.weight", (h,), "norm", 0),
            (p + "mlp.gate_proj.weight", b + "ffn_gate.weight", (inter, h), "matrix", 0),
            (p + "mlp.up_proj.weight", b + "ffn_up.weight", (inter, h), "matrix", 0),
            (p + "mlp.down_proj.weight", b + "ffn_down.weight", (h, inter), "matrix", 0),
        ]
    out += [
        ("model.norm.weight", "output_norm.weight", (h,), "norm", 0),
        ("lm_head.weight", "output.weight", (v, h), "head", 0),
    ]
    return out


def rotary_rows(w, n_heads):
    """Rows of each head reordered from the half-split rotary layout (transformers: element j pairs
    with j + d/2) to the interleaved one (llama.cpp's `llama`: element 2j pairs with 2j + 1)."""
    rows, cols = w.shape
    d = rows // n_heads
    return w.reshape(n_heads, 2, d // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def gguf_bytes(w32, qtype, chunk_rows=512):
    """The GGUF payload of a float32 matrix (its values already bfloat16) in `qtype`, quantized a
    few rows at a time (the blocks of Q8_0 / Q4_0 run along a row, so the rows are independent)."""
    t = gguf.GGMLQuantizationType[qtype]
    return np.concatenate([gguf.quants.quantize(np.ascontiguousarray(w32[r : r + chunk_rows]), t) for r in range(0, w32.shape[0], chunk_rows)])


def byte_shape(shape, qtype):
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    if shape[-1] % block:
        raise SystemExit(f"a row of {shape[-1]} does not split into {qtype} blocks of {block}")
    return (*shape[:-1], shape[-1] // block * size)


def vocabulary(n):
    # "▁" (SPM's space) lets text made of bytes and spaces read back as it was written
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL]
    if n < len(tokens):
        raise SystemExit(f"vocab_size {n} is smaller than the {len(tokens)} tokens every SPM vocabulary has")
    tokens += [f"<unused{i}>" for i in range(n - len(tokens))]
    types += [gguf.TokenType.NORMAL] * (n - len(types))
    return tokens, [0.0] * n, [int(t) for t in types]


def tensor_type(kind, qtype, head):
    """The GGUF type of a tensor of this kind in a file of `qtype`."""
    if kind == "norm":
        return "F32"
    return "BF16" if kind == "head" and head == "bf16" else qtype


def gguf_writer(path, cfg, qtype, specs, head):
    w = gguf.GGUFWriter(path, "llama")
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    w.add_name(f"random LLaMA {qtype} (emotorch bench quant)")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(h)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_rope_dimension_count(h // heads)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(FILE_TYPE[qtype])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, scores, types = vocabulary(cfg["vocab_size"])
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    for _, name, shape, kind, _ in specs:
        t = tensor_type(kind, qtype, head)
        if t == "F32":
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
        else:
            bs = byte_shape(shape, t)
            w.add_tensor_info(name, bs, np.dtype(np.uint8), int(np.prod(bs)), raw_dtype=gguf.GGMLQuantizationType[t])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    return w


class SafetensorsWriter:
    """One safetensors file written tensor by tensor: the header (every name, dtype, shape and
    offset) first, then each tensor's bytes in the header's order."""

    def __init__(self, path, specs):
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in specs:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.f = open(path, "wb")
        self.f.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, bf16):
        self.f.write(bf16.contiguous().view(torch.int16).numpy().tobytes())

    def close(self):
        self.f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("config", help="the LLaMA's shape as JSON (transformers' LlamaConfig names)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--types", default="BF16,Q8_0,Q4_0")
    ap.add_argument("--head", choices=["bf16", "quantized"], default="bf16", help="the embedding and LM head of the Q8_0 / Q4_0 files")
    a = ap.parse_args()
    cfg = {"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048, "bos_token_id": 1, "eos_token_id": 2, **json.loads(a.config)}
    qtypes = [t for t in a.types.split(",") if t]
    for t in qtypes:
        if t not in FILE_TYPE:
            raise SystemExit(f"unknown GGUF type {t!r}: {', '.join(FILE_TYPE)}")
    specs = tensors(cfg)
    os.makedirs(os.path.join(a.out, "hf"), exist_ok=True)
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "head_dim": cfg["hidden_size"] // cfg["num_attention_heads"],
        "vocab_size": cfg["vocab_size"],
        "max_position_embeddings": cfg["max_position_embeddings"],
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "bos_token_id": cfg["bos_token_id"],
        "eos_token_id": cfg["eos_token_id"],
        "pretraining_tp": 1,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }
    st_path = os.path.join(a.out, "hf", "model.safetensors")
    st = SafetensorsWriter(st_path + ".part", [(n, s) for n, _, s, _, _ in specs])
    writers = {t: gguf_writer(os.path.join(a.out, f"model-{t}.gguf.part"), cfg, t, specs, a.head) for t in qtypes}
    gen = torch.Generator().manual_seed(a.seed)
    for i, (name, gname, shape, kind, rot_heads) in enumerate(specs):
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
        w = (1 + 0.1 * x if kind == "norm" else 0.02 * x).to(torch.bfloat16)
        del x
        st.write(w)
        w32 = w.float().numpy()
        del w
        if rot_heads:
            w32 = rotary_rows(w32, rot_heads)
        for t, gw in writers.items():
            tt = tensor_type(kind, t, a.head)
            gw.write_tensor_data(w32 if tt == "F32" else gguf_bytes(w32, tt))
        del w32
        if name.endswith("mlp.down_proj.weight"):
            print(f"  layer {name.split('.')[2]} of {cfg['num_hidden_layers']} written", file=sys.stderr, flush=True)
    st.close()
    for gw in writers.values():
        gw.close()
    # complete files only under their final names (an interrupted run leaves .part files)
    os.replace(st_path + ".part", st_path)
    for t in qtypes:
        os.replace(os.path.join(a.out, f"model-{t}.gguf.part"), os.path.join(a.out, f"model-{t}.gguf"))
    with open(os.path.join(a.out, "hf", "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    sizes = {"hf": os.path.getsize(st_path), **{t: os.path.getsize(os.path.join(a.out, f"model-{t}.gguf")) for t in qtypes}}
    print(json.dumps({"bytes": sizes, "seed": a.seed, "head": a.head}))


if __name__ == "__main__":
    main()
