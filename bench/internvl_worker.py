"""PyTorch side of `npm run bench -- internvl` (bench/internvl.mjs).

    internvl_worker.py <config json>

InternVL's ORIGINAL remote code (InternVLChatModel with InternViT and the Phi-3 LLM, from the
folder in INTERNVL_SRC holding internvl_chat/internvl, as scripts/fixtures/internvl2.py reads it;
timm replaced by the same identity-DropPath stub) at the shapes of the config, float32, eager
attention, random weights; peft LoRA (r 8, alpha 32, dropout 0) on ms-swift's default targets
(every nn.Linear of the LLM and mlp1 but the output head), the vision tower frozen.

Setup saves the weights (emotorch's names: the released folder's) and the inputs into cfg["dir"]
and prints `{"ready": true, ...}`; each `trial` line runs one SFT step (forward with the tiles,
the loss, backward, AdamW on the adapters) and answers `{"ms": .., "loss": ..}`.
"""
import importlib.util
import json
import os
import re
import resource
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def fixture_module():
    spec = importlib.util.spec_from_file_location("internvl2_fixture", os.path.join(HERE, "..", "scripts", "fixtures", "internvl2.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    cfg = json.loads(sys.argv[1])
    # the remote code prints to stdout: the answers go to the real one, everything else to stderr
    answer = sys.stdout
    sys.stdout = sys.stderr
    torch.set_num_threads(cfg["threads"])
    src = os.environ.get("INTERNVL_SRC")
    fx = fixture_module()
    fx.stub_timm()
    sys.path.insert(0, os.path.join(src, "internvl_chat"))
    from internvl.model.internvl_chat import InternVLChatConfig, InternVLChatModel
    from internvl.model.phi3.configuration_phi3 import Phi3Config
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file

    torch.manual_seed(cfg["seed"])
    v, l = cfg["vision"], cfg["llm"]
    llm_cfg = Phi3Config(**l, attn_implementation="eager")
    llm_cfg._attn_implementation = "eager"
    chat = InternVLChatConfig(vision_config={**v, "architectures": ["InternVisionModel"], "use_flash_attn": False},
                              llm_config={**llm_cfg.to_dict(), "architectures": ["Phi3ForCausalLM"], "attn_implementation": "eager"},
                              select_layer=-1, force_image_size=v["image_size"], downsample_ratio=0.5, template="phi3-chat", ps_version="v2")
    chat.llm_config._attn_implementation = "eager"
    model = InternVLChatModel(chat, use_flash_attn=False)
    fx.perturb(model, cfg["seed"] + 1)
    model.img_context_token_id = cfg["img_context"]
    state = {k: t.detach().contiguous() for k, t in model.state_dict().items()}
    save_file(state, os.path.join(cfg["dir"], "model.safetensors"), metadata={"format": "pt"})
    cfg_json = model.config.to_dict()
    cfg_json["architectures"] = ["InternVLChatModel"]
    cfg_json["llm_config"] = fx.released_config(model.language_model)
    with open(os.path.join(cfg["dir"], "config.json"), "w") as f:
        json.dump(cfg_json, f, default=str)

    targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and re.fullmatch(cfg["lora_regex"], n)]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=targets))
    lora = fx.random_lora(model, cfg["seed"] + 2, 0.02)
    g = torch.Generator().manual_seed(cfg["seed"] + 3)
    save_file(lora, os.path.join(cfg["dir"], "lora.safetensors"))
    if cfg["gradient_checkpointing"]:
        inner = model.base_model.model
        inner.language_model.gradient_checkpointing_enable()
        inner.language_model.enable_input_require_grads()
    tiles = cfg["tiles"]
    pixels = torch.randn(tiles, 3, v["image_size"], v["image_size"], generator=g)
    n_img = cfg["tokens_per_tile"] * tiles
    text = torch.randint(10, l["vocab_size"] - 10, (cfg["text_tokens"],), generator=g)
    ids = torch.cat([text[:16], torch.full((n_img,), cfg["img_context"]), text[16:]])[None]
    labels = torch.full_like(ids, -100)
    labels[0, -cfg["label_tokens"]:] = ids[0, -cfg["label_tokens"]:]
    save_file({"input_ids": ids, "labels": labels, "pixel_values": pixels}, os.path.join(cfg["dir"], "inputs.safetensors"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    model.train()
    flags = torch.ones(tiles, 1, dtype=torch.long)

    def step():
        out = model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids), image_flags=flags, labels=labels, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        return out.loss.item()

    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), "trainable": sum(p.numel() for p in params),
                      "lora_layers": len(targets), "seq": ids.shape[1]}), file=answer, flush=True)
    for line in sys.stdin:
        if not line.startswith("trial"):
            continue
        t0 = time.perf_counter()
        loss = step()
        ms = (time.perf_counter() - t0) * 1000
        print(json.dumps({"ms": ms, "loss": loss, "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=answer, flush=True)


if __name__ == "__main__":
    main()
