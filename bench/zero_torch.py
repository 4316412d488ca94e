"""PyTorch side of `npm run bench -- zero`: a LLaMA (transformers' LlamaForCausalLM, random weights)
fully fine-tuned on 2 ranks (Gloo, CPU) with PyTorch's own sharding: stage 1 =
ZeroRedundancyOptimizer under DDP, stage 2 = FSDP SHARD_GRAD_OP, stage 3 = FSDP FULL_SHARD (each
decoder layer wrapped); bfloat16 compute with float32 parameters and reduction (MixedPrecision,
for DDP autocast), AdamW. Each rank prints `RESULT {...}`: median step time and its peak RSS.
"""
import functools
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(**cfg["model"], attn_implementation="sdpa")).train()
stage = cfg["stage"]
if stage == 1:
    from torch.distributed.optim import ZeroRedundancyOptimizer

    net = torch.nn.parallel.DistributedDataParallel(model)
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=1e-5, weight_decay=0.0)
    amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
else:
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, MixedPrecision, ShardingStrategy
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    net = FSDP(
        model,
        sharding_strategy=ShardingStrategy.FULL_SHARD if stage == 3 else ShardingStrategy.SHARD_GRAD_OP,
        auto_wrap_policy=functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={LlamaDecoderLayer}),
        mixed_precision=MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.bfloat16),
        device_id=torch.device("cpu"),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5, weight_decay=0.0)
    amp = lambda: torch.autocast("cpu", enabled=False)
V = cfg["model"]["vocab_size"]
ids = torch.tensor([[(i * 131 + j * 71 + rank * 17) % V for j in range(cfg["tokens"])] for i in range(cfg["batch"])])
times = []
for s in range(cfg["warmup"] + cfg["steps"]):
    t0 = time.perf_counter()
    with amp():
        loss = net(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss.item()
    if s >= cfg["warmup"]:
        times.append((time.perf_counter() - t0) * 1000)
times.sort()
with open("/proc/self/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) * 1024
dist.barrier()
print("RESULT " + json.dumps({"rank": rank, "ms_per_step": times[len(times) // 2], "all": times, "peak_rss": hwm}), flush=True)
dist.destroy_process_group()
