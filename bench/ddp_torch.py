"""PyTorch side of `npm run bench -- ddp`: the same RoBERTa-base shaped classifier (transformers'
RobertaModel without pooler + nn.Linear on <s>, dropout on), AdamW, the same fixed batch; DDP
when launched by torchrun. Rank 0 prints `RESULT {"ms_per_step": ...}` (median of timed steps).
"""
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from transformers import RobertaConfig, RobertaModel

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
ddp = "WORLD_SIZE" in os.environ
if ddp:
    dist.init_process_group("gloo")
world = dist.get_world_size() if ddp else 1
rank = dist.get_rank() if ddp else 0


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.roberta = RobertaModel(RobertaConfig(**cfg["model"]), add_pooling_layer=False)
        self.head = torch.nn.Linear(cfg["model"]["hidden_size"], cfg["labels"])

    def forward(self, input_ids, attention_mask, labels):
        h = self.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.head(h[:, 0])
        return torch.nn.functional.cross_entropy(logits, labels)


torch.manual_seed(0)
model = Classifier().train()
net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
per = cfg["batch"] // world
rows = range(rank * per, (rank + 1) * per)
ids = torch.tensor([[0 if j == 0 else 3 + ((i * 131 + j * 71) % (cfg["model"]["vocab_size"] - 3)) for j in range(cfg["tokens"])] for i in rows])
mask = torch.ones_like(ids)
labels = torch.tensor([i % cfg["labels"] for i in rows])
times = []
for s in range(cfg["warmup"] + cfg["steps"]):
    t0 = time.perf_counter()
    loss = net(ids, mask, labels)
    loss.backward()
    opt.step()
    opt.zero_grad()
    loss.item()
    if s >= cfg["warmup"]:
        times.append((time.perf_counter() - t0) * 1000)
times.sort()
if ddp:
    dist.destroy_process_group()
if rank == 0:
    print("RESULT " + json.dumps({"ms_per_step": times[len(times) // 2], "all": times}), flush=True)
