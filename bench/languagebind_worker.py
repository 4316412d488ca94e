"""PyTorch side of `npm run bench -- languagebind` (bench/languagebind.mjs).

    languagebind_worker.py <case> <config json>      case: forward | train | decode

The video tower is scripts/fixtures/clip.py's LBVision: LanguageBind's video tower
(PKU-YuanGroup/LanguageBind languagebind/video/modeling_video.py: CLIPEncoderLayer with temporal
attention before the spatial one, mean of the per-frame CLS over the frames) re-implemented on HF
transformers' CLIPAttention / CLIPMLP (eager attention, as the original's own copy of them), plus
`visual_projection`. The original package itself does not import with transformers 5.

Setup writes what emotorch needs into cfg["dir"] (the weights under emotorch's names, the inputs,
the reference outputs) and prints one JSON line `{"ready": true, ...}`; then every `trial [arg]`
line on stdin runs one timed call and answers one JSON line. Nothing runs between requests, so the
two sides never share the cores.
"""
import contextlib
import importlib.util
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def reference():
    """scripts/fixtures/clip.py as a module (LBVision, perturb)."""
    spec = importlib.util.spec_from_file_location("clip_reference", os.path.join(HERE, "..", "scripts", "fixtures", "clip.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Tower(torch.nn.Module):
    """vision_model (LBVision) + visual_projection: LanguageBind's video tower with its head."""

    def __init__(self, ref, cfg):
        super().__init__()
        from transformers import CLIPVisionConfig

        c = cfg["tower"]
        vc = CLIPVisionConfig(hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"], num_hidden_layers=c["num_hidden_layers"],
                              num_attention_heads=c["num_attention_heads"], image_size=c["image_size"], patch_size=c["patch_size"],
                              hidden_act=c["hidden_act"], num_channels=3, attn_implementation=cfg.get("attn", "eager"))
        vc.num_frames = c["num_frames"]
        grid = c["image_size"] // c["patch_size"]
        self.vision_model = ref.LBVision(vc, (grid, grid), time_attn=c["add_time_attn"], tube=0)
        self.visual_projection = torch.nn.Linear(c["hidden_size"], c["projection_dim"], bias=False)

    def forward(self, pixels):
        last, pooled = self.vision_model(pixels)
        return last, pooled, self.visual_projection(pooled)


def build(cfg):
    ref = reference()
    torch.manual_seed(cfg["seed"])
    tower = Tower(ref, cfg)
    ref.perturb(tower, seed=cfg["seed"] + 1)  # norm weights / biases off their constant init, so the parity check sees them
    c = cfg["tower"]
    g = torch.Generator().manual_seed(cfg["seed"] + 2)
    pixels = torch.randn(cfg["batch"], 3, c["num_frames"], c["image_size"], c["image_size"], generator=g)
    return tower, pixels


def ours(sd):
    """peft's names → emotorch's (its LoRA layers keep peft's `lora_A.default.weight`)."""
    return {k.replace(".encoder.base_model.model.", ".encoder.").replace(".base_layer.", "."): v.detach().contiguous() for k, v in sd.items()}


def save(cfg, name, tensors):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(cfg["dir"], name))


def forward_setup(cfg):
    tower, pixels = build(cfg)
    tower.eval()
    with torch.inference_mode():
        last, pooled, embeds = tower(pixels)
    save(cfg, "forward_weights.safetensors", ours(tower.state_dict()))
    save(cfg, "forward_io.safetensors", {"pixel_values": pixels, "last_hidden_state": last, "pooler_output": pooled, "image_embeds": embeds})

    def trial(_):
        with torch.inference_mode():
            tower(pixels)
        return {}

    return trial, {}


def train_setup(cfg):
    from peft import LoraConfig, get_peft_model

    tower, pixels = build(cfg)
    lora = cfg["lora"]
    torch.manual_seed(cfg["seed"] + 3)
    tower.vision_model.encoder = get_peft_model(tower.vision_model.encoder, LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=lora["targets"], bias="none"))
    head = torch.nn.Linear(cfg["tower"]["projection_dim"], cfg["classes"], bias=False)
    # peft froze the encoder's base weights; the embeddings, norms and projection outside it are
    # frozen here too: only the adapters and the head train (as et.nn.applyLora leaves the tower).
    for n, p in tower.named_parameters():
        p.requires_grad = "lora_" in n
    tower.train()
    labels = torch.tensor(cfg["labels"], dtype=torch.long)
    params = [p for p in tower.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])  # PyTorch's default implementation
    save(cfg, "train_weights.safetensors", ours(tower.state_dict()))
    save(cfg, "train_head.safetensors", {"weight": head.weight})
    save(cfg, "train_io.safetensors", {"pixel_values": pixels, "labels": labels})
    info = {"trainable": sum(p.numel() for p in params), "lora_layers": sum(1 for n, _ in tower.named_modules() if n.endswith("lora_A"))}

    amp = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.get("bf16") else contextlib.nullcontext()

    def trial(_):
        with amp:
            _, _, e = tower(pixels)
            e = e / e.norm(p=2, dim=-1, keepdim=True)
            logits = head(e)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return {"loss": float(loss.detach())}

    return trial, info


def decode_setup(cfg):
    """PyAV, as HF's `read_video_pyav` example reads given frames: decode from the start in display
    order, keep the wanted indices, stop after the last (decord, LanguageBind's reader, is not
    installable here). The indices are LanguageBind's: np.linspace(0, n - 1, 8).astype(int), n
    from the stream header."""
    import av

    file, k = cfg["file"], cfg["num_frames"]

    def read(threading):
        with av.open(file) as container:
            stream = container.streams.video[0]
            if threading == "auto":
                stream.thread_type = "AUTO"  # frame + slice threads, as the ffmpeg command line decodes
                stream.thread_count = cfg["threads"]
            n = stream.frames
            idx = np.linspace(0, n - 1, k).astype(int)
            want, last, got = set(idx.tolist()), int(idx[-1]), {}
            for i, frame in enumerate(container.decode(stream)):
                if i in want:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
            return np.stack([got[i] for i in idx.tolist()]), idx, n

    frames, idx, n = read("default")
    from safetensors.numpy import save_file

    save_file({"frames": np.ascontiguousarray(frames)}, os.path.join(cfg["dir"], "decode_frames.safetensors"))

    def trial(arg):
        read(arg or "default")
        return {}

    return trial, {"indices": idx.tolist(), "frame_count": int(n), "pyav": av.__version__}


SETUPS = {"forward": forward_setup, "train": train_setup, "decode": decode_setup}


def main():
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(cfg["threads"])
    trial, info = SETUPS[name](cfg)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), **info}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "profile":
            # one call under torch.profiler (CPU): each op's calls and self time; then one more
            # recording input shapes, for the products' work alone (floor.mjs)
            from torch.profiler import ProfilerActivity, profile

            def profiled(record_shapes):
                with profile(activities=[ProfilerActivity.CPU], record_shapes=record_shapes) as prof:
                    trial(None)
                return prof

            ops = [{"name": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000} for e in profiled(False).key_averages()]
            shaped = [{"name": e.key, "shapes": e.input_shapes, "calls": e.count} for e in profiled(True).key_averages(group_by_input_shape=True)]
            print(json.dumps({"ops": ops, "shaped": shaped}), flush=True)
            continue
        if not words or words[0] != "trial":
            break
        t0 = time.perf_counter()
        out = trial(words[1] if len(words) > 1 else None)
        print(json.dumps({"ms": 1000 * (time.perf_counter() - t0), **out}), flush=True)


if __name__ == "__main__":
    main()
