"""PyTorch side of the emotorch benchmarks. Started once by bench/run.mjs; each line on stdin
asks for one timed trial, answered by one JSON line on stdout, so trials alternate with
emotorch's in one command without paying Python's start-up per trial."""
import json
import sys
import time

import torch
import torch.nn.functional as F


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


SETUPS = {"mlp": mlp_setup}


def main():
    name, cfg = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(cfg["threads"])
    step = SETUPS[name](cfg)
    for _ in range(cfg["warmup"]):
        step()
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "trial":
            break
        t0 = time.perf_counter()
        for _ in range(cfg["steps"]):
            loss = step()
        float(loss.detach())
        dt = time.perf_counter() - t0
        print(json.dumps({"ms_per_step": 1000 * dt / cfg["steps"]}), flush=True)


if __name__ == "__main__":
    main()
