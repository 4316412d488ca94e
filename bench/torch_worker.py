"""PyTorch side of the emotorch benchmarks. Started once by bench/run.mjs; each line on stdin
asks for one timed trial, answered by one JSON line on stdout, so trials alternate with
emotorch's in one command without paying Python's start-up per trial."""
import json
import sys
import time

import numpy as np
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


def waves(cfg):
    rng = np.random.default_rng(0)
    n = int(cfg["seconds"] * 16000)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(cfg["batch"])]


def logmel_dialogue_setup(cfg):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=80)
    rng = np.random.default_rng(0)
    w = [(0.1 * rng.standard_normal(s * 16000)).astype(np.float32) for s in cfg["lengths"]]
    return lambda: fe(w, sampling_rate=16000, return_tensors="np").input_features


def logmel_setup(cfg):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=80)
    w = waves(cfg)
    return lambda: fe(w, sampling_rate=16000, return_tensors="np").input_features


def fbank_setup(cfg):
    # transformers' numpy Kaldi-compatible fbank, as ASTFeatureExtractor / SeamlessM4T compute it
    # (povey window, Kaldi mel bank, pre-emphasis, DC removal) with BEATs' 128 bins.
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    w = waves(cfg)
    bank = mel_filter_bank(num_frequency_bins=257, num_mel_filters=128, min_frequency=20, max_frequency=8000,
                           sampling_rate=16000, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)
    win = window_function(400, "povey", periodic=False)

    def step():
        return [spectrogram(x * 32768, win, frame_length=400, hop_length=160, fft_length=512, power=2.0, center=False,
                            preemphasis=0.97, mel_filters=bank, log_mel="log", mel_floor=1.192092955078125e-07,
                            remove_dc_offset=True).T for x in w]

    return step


def hf_model(kind, cfg):
    import transformers as tf

    torch.manual_seed(0)
    if kind == "whisper":
        m = tf.WhisperModel(tf.WhisperConfig(**cfg["config"], attn_implementation="eager")).encoder
    elif kind == "roberta":
        m = tf.RobertaModel(tf.RobertaConfig(**cfg["config"], attn_implementation="eager"), add_pooling_layer=False)
    elif kind == "wavlm":
        m = tf.WavLMModel(tf.WavLMConfig(**cfg["config"]))
    else:
        m = tf.LlamaForCausalLM(tf.LlamaConfig(**cfg["config"], attn_implementation="eager"))
    return m.eval()


def model_setup(kind):
    def setup(cfg):
        m = hf_model(kind, cfg)
        if kind == "whisper":
            x = torch.randn(1, cfg["config"]["num_mel_bins"], 3000)
            f = lambda: m(x).last_hidden_state
        elif kind == "roberta":
            x = torch.randint(3, cfg["config"]["vocab_size"], (1, cfg["tokens"]))
            f = lambda: m(input_ids=x).last_hidden_state
        elif kind == "wavlm":
            x = torch.randn(1, cfg["samples"])
            f = lambda: m(x).last_hidden_state
        else:
            x = torch.randint(3, cfg["config"]["vocab_size"], (1, cfg["prompt"]))
            f = lambda: m.generate(x, max_new_tokens=cfg["new_tokens"], min_new_tokens=cfg["new_tokens"], do_sample=False, pad_token_id=0)

        def step():
            with torch.inference_mode():
                return f()

        return step

    return setup


SETUPS = {"mlp": mlp_setup, "logmel": logmel_setup, "logmel_dialogue": logmel_dialogue_setup, "fbank": fbank_setup, **{k: model_setup(k) for k in ["whisper", "roberta", "wavlm", "llama"]}}


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
            out = step()
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            float(out.detach())
        dt = time.perf_counter() - t0
        print(json.dumps({"ms_per_step": 1000 * dt / cfg["steps"]}), flush=True)


if __name__ == "__main__":
    main()
