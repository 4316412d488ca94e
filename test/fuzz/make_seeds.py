"""Writes the fuzz seed corpora, test/fuzz/corpus/<format>/ (run by hand, not by tests):

    /work/venv/bin/python test/fuzz/make_seeds.py [sample-data-dir]
    /work/venv/bin/python test/fuzz/make_seeds.py --only npy      (that corpus alone; also w2v_checkpoint, sentencepiece, image, video, audio)

The seeds are small valid (and a few edge-case) inputs made by the reference tools, never by
emotorch: Python's pickle (protocols 0-5, numpy arrays), safetensors written by the official
`safetensors` library, torch.save archives written by torch, WAV from test/fixtures/wav (made with
soundfile), pictures, video and audio (media_seeds.py: ffmpeg CLI, PIL, soundfile; it runs on its own
without torch), tokenizer.json files trained with the `tokenizers` library, and dataset JSON in the
originals' layouts (audio paths point at wav/a.wav and wav/b.wav, which the targets provide).
With a sample-data folder (`node scripts/make-sample-data.mjs DIR --per-class 2`), a few of its
records are added as dataset seeds. Deterministic except for the order in which the tokenizers
trainers break ties (regenerate only what changed); keep the whole corpus under ~2 MB.
"""
import io
import json
import os
import pickle
import shutil
import sys

import numpy as np
import torch
from safetensors.numpy import save as st_save_np
from safetensors.torch import save as st_save_torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "test", "fixtures")
OUT = os.path.join(HERE, "corpus")


def put(fmt, name, data):
    """Writes one seed to corpus/<fmt>/<name> (media_seeds.py's writer, the one of both scripts)."""
    media_seeds().put(fmt, name, data)


def copy(fmt, src, name=None):
    with open(src, "rb") as f:
        put(fmt, name or os.path.basename(src), f.read())


def pickles():
    rng = np.random.default_rng(0)
    values = {
        "scalars": [None, True, False, 0, -1, 255, 65535, 2**31, -(2**63), 2**80, 1.5, float("-inf"), "text", "ünï", b"\x00\xff", bytearray(b"ab")],
        "containers": {"a": [1, 2, (3, 4)], "b": {5, 6}, "c": frozenset([7]), "d": (), "e": [], "f": {}},
        "shared": None,
        "numpy": {"f32": rng.standard_normal((2, 3)).astype(np.float32), "i64": np.arange(5), "f16": np.ones(3, np.float16),
                  "bool": np.array([True, False]), "u8": np.arange(4, dtype=np.uint8), "empty": np.zeros((0, 2), np.float32),
                  "scalar": np.float64(2.5), "strided": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2],
                  "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))},
        "spectra": [(rng.standard_normal(40).astype(np.float32), [0, 101, 2], 3, [1, 1, 1], None)],
    }
    lst = [1, 2]
    values["shared"] = [lst, lst, {"self": lst}]
    for name, v in values.items():
        for proto in range(0, 6):
            if name in ("numpy", "spectra") and proto < 2:
                continue
            put("pickle", f"{name}_p{proto}.pkl", pickle.dumps(v, protocol=proto))
    put("pickle", "long4.pkl", pickle.dumps(2**3000, protocol=2))
    for f in ["arrays_np1_p5.pkl", "arrays_np2_p2.pkl", "text_p0.pkl", "evil_eval.pkl", "evil_os_system.pkl", "spectra_bad.pkl"]:
        copy("pickle", os.path.join(FIX, "pickle", f))


def safetensors():
    g = torch.Generator().manual_seed(0)
    put("safetensors", "dtypes.safetensors", st_save_torch({
        "f32": torch.randn(2, 3, generator=g), "f16": torch.randn(3, generator=g).half(), "bf16": torch.randn(2, 2, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(), "i64": torch.arange(4), "i32": torch.arange(3, dtype=torch.int32),
        "i16": torch.arange(2, dtype=torch.int16), "i8": torch.arange(-2, 2, dtype=torch.int8), "u8": torch.arange(5, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
    }))
    put("safetensors", "metadata.safetensors", st_save_torch({"w": torch.ones(2, 2)}, metadata={"format": "pt", "note": "x"}))
    put("safetensors", "edge.safetensors", st_save_np({"scalar": np.array(3.0, np.float32), "empty": np.zeros((0, 4), np.float32), "one": np.ones(1, np.int64)}))
    put("safetensors", "none.safetensors", st_save_torch({}))
    for f in ["mixed_dtypes.safetensors", "mlp_gelu_io.safetensors"]:
        copy("safetensors", os.path.join(FIX, "foundation", f))


def torchfiles():
    g = torch.Generator().manual_seed(0)

    def save(obj, name, **kw):
        b = io.BytesIO()
        torch.save(obj, b, **kw)
        put("torchfile", name, b.getvalue())

    base = torch.randn(4, 3, generator=g)
    save({"weight": torch.randn(3, 2, generator=g), "bias": torch.zeros(2), "step": torch.tensor(7)}, "state_dict.bin")
    save({"a": base, "view": base[1:3], "t": base.t(), "half": torch.ones(3).half(), "bf16": torch.ones(2).bfloat16(),
          "i64": torch.arange(5), "bool": torch.tensor([True, False]), "u8": torch.arange(3, dtype=torch.uint8), "empty": torch.zeros(0, 3)},
         "dtypes_views.bin")
    save({"cfg": {"layers": 2, "name": "beats", "rates": [0.1, 0.2], "flag": True}, "model": {"w": torch.ones(2, 2)}}, "nested.pt")
    save([torch.ones(1), (torch.zeros(2), None), "x", 3.5], "list.pt")
    save({"w": torch.ones(2)}, "proto4.pt", pickle_protocol=4)


def wavs():
    for f in sorted(os.listdir(os.path.join(FIX, "wav"))):
        if f.endswith(".wav"):
            copy("wav", os.path.join(FIX, "wav", f))


def datasets(sample_dir):
    salmonn = [
        {"path": "wav/a.wav", "instruction": "What emotion does the speaker express?", "target": "joy", "task": "emotion_recognition"},
        {"path": "wav/b.wav", "text": "hello", "task": "asr", "Q": "Transcribe."},
    ]
    put("salmonn", "list.json", json.dumps(salmonn))
    put("salmonn", "annotation.json", json.dumps({"annotation": salmonn}, indent=1))
    put("salmonn", "unicode.json", json.dumps([{"path": "wav/a.wav", "instruction": "情绪是什么？", "target": "平静", "task": "er"}], ensure_ascii=False))
    trajectory = [{
        "dialogue_id": "dlg_0", "task": "task1_emotional_trajectory",
        "input_text": "A: i feel great\nB: i am sad\nA: we think so",
        "target_text": "The conversation starts happy, turns sad and ends neutral.",
        "emotion_sequence": ["happy", "sad", "neutral"], "audio_files": ["wav/a.wav", "wav/b.wav", "wav/a.wav"],
    }]
    put("trajectory", "trajectory.json", json.dumps(trajectory, indent=1))
    put("trajectory", "mixed.json", json.dumps({"annotation": trajectory + salmonn[:1]}))
    ecf = [
        {"conversation_ID": 1, "conversation": [
            {"utterance_ID": 1, "text": "Hi.", "speaker": "Ross", "emotion": "neutral", "video_name": "dia1utt1.mp4"},
            {"utterance_ID": 2, "text": "You did what?!", "speaker": "Rachel", "emotion": "surprise", "video_name": "dia1utt2.mp4"},
            {"utterance_ID": 3, "text": "Ugh.", "speaker": "Ross", "emotion": "disgust", "video_name": "dia1utt3.mp4"}],
         "emotion-cause_pairs": [["2_surprise", "1"], ["3_disgust", "2"]]},
        {"conversation_ID": 2, "conversation": [
            {"utterance_ID": 1, "text": "Great!", "speaker": "Joey", "emotion": "joy"}],
         "emotion-cause_pairs": [["1_joy", "1_Great"]]},
    ]
    put("ecf", "ecf.json", json.dumps(ecf, indent=1))
    put("ecf", "test_no_emotion.json", json.dumps([{"conversation_ID": 3, "conversation": [{"utterance_ID": 1, "text": "x", "speaker": "A"}]}]))
    swift = [
        {"query": "<audio>What is the sentiment of the speaker?", "response": "positive", "audios": ["wav/a.wav"]},
        {"system": "You are helpful.", "query": "<audio>Which emotion?", "response": "anger", "audios": "wav/b.wav"},
        {"query": "Just text", "response": "ok", "images": [], "videos": None},
    ]
    put("swift", "swift.json", json.dumps(swift, indent=1))
    if sample_dir:
        with open(os.path.join(sample_dir, "salmonn.json")) as f:
            s = json.load(f)
        remap = lambda p: "wav/a.wav" if p.endswith("_0.wav") else "wav/b.wav"
        plain = [dict(x, path=remap(x["path"])) for x in s if "path" in x][:3]
        traj = [dict(x, audio_files=[remap(p) for p in x["audio_files"]]) for x in s if "audio_files" in x][:2]
        put("salmonn", "sample.json", json.dumps(plain, indent=1))
        put("trajectory", "sample.json", json.dumps(traj, indent=1))
        with open(os.path.join(sample_dir, "ecf.json")) as f:
            e = json.load(f)
        put("ecf", "sample.json", json.dumps([c for c in e if c["conversation_ID"] <= 3], indent=1))
        with open(os.path.join(sample_dir, "swift.json")) as f:
            w = json.load(f)
        put("swift", "sample.json", json.dumps([dict(x, audios=[remap(p) for p in x["audios"]]) for x in w[:4]], indent=1))


def tokenizers_():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    text = ["Hello world, this is a tiny corpus.", "Wörter und Zahlen 123 456.", "emotion: joy, anger, sadness!", "情绪 序列"] * 5

    def save(tok, name):
        put("tokenizer", name, tok.to_str())

    bl = Tokenizer(models.BPE())
    bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bl.decoder = decoders.ByteLevel()
    bl.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bl.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    save(bl, "bytelevel_bpe.json")

    ms = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    ms.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    ms.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    ms.train_from_iterator(text, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]))
    ms.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    ms.add_tokens(["<|unit5|>"])
    save(ms, "metaspace_bpe.json")

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.decoder = decoders.WordPiece()
    wp.train_from_iterator(text, trainers.WordPieceTrainer(vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    wp.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    save(wp, "wordpiece.json")

    ug = Tokenizer(models.Unigram())
    ug.pre_tokenizer = pre_tokenizers.Metaspace()
    ug.decoder = decoders.Metaspace()
    ug.train_from_iterator(text, trainers.UnigramTrainer(vocab_size=60, special_tokens=["<unk>"], unk_token="<unk>"))
    save(ug, "unigram.json")
    copy("tokenizer", os.path.join(FIX, "tokenizers", "bytelevel", "tokenizer.json"), "fixture_bytelevel.json")


def sentencepieces():
    """Small SentencePiece .model files trained by `sentencepiece` (identity normalization, and a
    tiny rule set so the precompiled charsmap stays small), BPE and Unigram."""
    import sentencepiece as spm

    text = ["Hello world, this is a tiny corpus.", "Wörter und Zahlen 123 456.", "emotion: joy, anger, sadness!", "情绪 序列"] * 20
    rules = os.path.join(OUT, "rules.tsv")
    with open(rules, "w") as f:
        f.write("FF21\t41\nA0\t20\n65 301\tE9\n")
    common = dict(num_threads=1, minloglevel=2, character_coverage=1.0, hard_vocab_limit=False)
    kinds = {
        "bpe_llama.model": dict(model_type="bpe", vocab_size=330, normalization_rule_name="identity", remove_extra_whitespaces=False,
                                byte_fallback=True, user_defined_symbols=["<sep>"]),
        "unigram_rules.model": dict(model_type="unigram", vocab_size=60, normalization_rule_tsv=rules, user_defined_symbols=["[M]"]),
        "unigram_bytes.model": dict(model_type="unigram", vocab_size=330, byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False),
    }
    for name, kw in kinds.items():
        b = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=b, **common, **kw)
        put("sentencepiece", name, b.getvalue())
    os.remove(rules)


def tokens():
    # [tokenizer, count, (flags, length, content) x count, text]: see the `tokens` target.
    def seed(tok, added, text):
        b = bytes([tok, len(added)])
        for flags, content in added:
            c = content.encode("utf-8")
            b += bytes([flags, len(c)]) + c
        return b + text.encode("utf-8")

    put("tokens", "plain.bin", seed(0, [], "Hello world, this is a tiny corpus."))
    put("tokens", "units.bin", seed(1, [(0, "<|unit5|>"), (32, "<|continue|>")], "A <|unit5|><|unit5|> b <|continue|> c"))
    put("tokens", "strip.bin", seed(2, [(1 | 4, "[E]"), (8 | 16, "joy"), (2, "Wörter")], " [E]  joy Wörter und Zahlen 123"))
    put("tokens", "unigram.bin", seed(3, [(1, "<s>"), (0, "情绪")], "<s>情绪 序列 emotion: anger!"))


def npys():
    """numpy's own np.save: float16/32/64, both byte orders, 0-d to 3-d, an empty array, a
    Fortran-order one (refused), an int array (refused), and a version 2.0 header."""
    def save(arr, name, version=None):
        b = io.BytesIO()
        if version is None:
            np.save(b, arr, allow_pickle=False)
        else:
            np.lib.format.write_array(b, arr, version=version, allow_pickle=False)
        put("npy", name, b.getvalue())

    rng = np.random.default_rng(0)
    save(rng.standard_normal((4, 3)).astype(np.float32), "f32.npy")
    save(rng.standard_normal((2, 3, 2)).astype(">f8"), "f64_big.npy")
    save(rng.standard_normal(5).astype(np.float16), "f16.npy")
    save(np.float32(1.5), "scalar.npy")
    save(np.zeros((0, 4), np.float32), "empty.npy")
    save(np.asfortranarray(rng.standard_normal((3, 2)).astype(np.float32)), "fortran.npy")
    save(np.arange(6, dtype=np.int64).reshape(2, 3), "int.npy")
    save(rng.standard_normal((2, 2)).astype(np.float32), "v2.npy", version=(2, 0))


def w2v_checkpoints():
    """Tiny Wav2Vec2 / XLS-R checkpoints (the w2v_checkpoint target's config: layer-norm convs [8, 8],
    kernels [10, 3], strides [5, 2], hidden 8, 1 layer, 2 heads, 16 inner, 4-tap positions in 2
    groups) under HF, fairseq and fairseq2 names, written by transformers / torch."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(conv_dim=[8, 8], conv_kernel=[10, 3], conv_stride=[5, 2], conv_bias=True, feat_extract_norm="layer",
                         do_stable_layer_norm=True, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                         num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    m = Wav2Vec2Model(cfg).eval()
    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    put("w2v_checkpoint", "hf.safetensors", st_save_torch(sd))
    g, v = sd["encoder.pos_conv_embed.conv.parametrizations.weight.original0"], sd["encoder.pos_conv_embed.conv.parametrizations.weight.original1"]
    fe, ffn = m.feature_extractor.conv_layers, m.encoder.layers[0].feed_forward
    a, L = m.encoder.layers[0].attention, m.encoder.layers[0]
    w = lambda mod: {"weight": mod.weight.detach().clone(), "bias": mod.bias.detach().clone()}
    def named(pairs):
        return {f"{n}.{k}": t for n, mod in pairs for k, t in w(mod).items()}
    fairseq = named([(f"feature_extractor.conv_layers.{i}.0", c.conv) for i, c in enumerate(fe)]
                    + [(f"feature_extractor.conv_layers.{i}.2.1", c.layer_norm) for i, c in enumerate(fe)]
                    + [("layer_norm", m.feature_projection.layer_norm), ("post_extract_proj", m.feature_projection.projection),
                       ("encoder.layer_norm", m.encoder.layer_norm), ("encoder.layers.0.self_attn.q_proj", a.q_proj),
                       ("encoder.layers.0.self_attn.k_proj", a.k_proj), ("encoder.layers.0.self_attn.v_proj", a.v_proj),
                       ("encoder.layers.0.self_attn.out_proj", a.out_proj), ("encoder.layers.0.self_attn_layer_norm", L.layer_norm),
                       ("encoder.layers.0.fc1", ffn.intermediate_dense), ("encoder.layers.0.fc2", ffn.output_dense),
                       ("encoder.layers.0.final_layer_norm", L.final_layer_norm)])
    fairseq.update({"encoder.pos_conv.0.weight_g": g, "encoder.pos_conv.0.weight_v": v, "encoder.pos_conv.0.bias": sd["encoder.pos_conv_embed.conv.bias"],
                    "mask_emb": sd["masked_spec_embed"], "project_q.weight": torch.zeros(2, 4), "project_q.bias": torch.zeros(2)})
    b = io.BytesIO()
    torch.save({"model": {f"w2v_encoder.w2v_model.{k}": t for k, t in fairseq.items()}, "extra_state": {"epoch": 1}}, b)
    put("w2v_checkpoint", "fairseq_ctc.pt", b.getvalue())
    fairseq2 = named([(f"encoder_frontend.feature_extractor.layers.{i}.conv", c.conv) for i, c in enumerate(fe)]
                     + [(f"encoder_frontend.feature_extractor.layers.{i}.layer_norm", c.layer_norm) for i, c in enumerate(fe)]
                     + [("encoder_frontend.post_extract_layer_norm", m.feature_projection.layer_norm),
                        ("encoder_frontend.model_dim_proj", m.feature_projection.projection), ("encoder.layer_norm", m.encoder.layer_norm),
                        ("encoder.layers.0.self_attn.q_proj", a.q_proj), ("encoder.layers.0.self_attn.k_proj", a.k_proj),
                        ("encoder.layers.0.self_attn.v_proj", a.v_proj), ("encoder.layers.0.self_attn.output_proj", a.out_proj),
                        ("encoder.layers.0.self_attn_layer_norm", L.layer_norm), ("encoder.layers.0.ffn.inner_proj", ffn.intermediate_dense),
                        ("encoder.layers.0.ffn.output_proj", ffn.output_dense), ("encoder.layers.0.ffn_layer_norm", L.final_layer_norm)])
    fairseq2.update({"encoder_frontend.pos_encoder.conv.weight_g": g, "encoder_frontend.pos_encoder.conv.weight_v": v,
                     "encoder_frontend.pos_encoder.conv.bias": sd["encoder.pos_conv_embed.conv.bias"], "masker.temporal_mask_embed": sd["masked_spec_embed"],
                     "quantizer.num_updates": torch.zeros(())})
    b = io.BytesIO()
    torch.save({"model": fairseq2}, b)
    put("w2v_checkpoint", "fairseq2.pt", b.getvalue())


def speech_decoders():
    """USDM's speech decoder files (the speech_decoder target): the tiny Voicebox model.safetensors and
    BigVGAN bigvgan_generator.pt that scripts/fixtures/usdm_voicebox.py writes with the original code."""
    src = os.path.join(os.path.dirname(OUT), "..", "fixtures", "usdm_voicebox")
    copy("speech_decoder", os.path.join(src, "voicebox", "model.safetensors"), "voicebox.safetensors")
    copy("speech_decoder", os.path.join(src, "bigvgan", "bigvgan_generator.pt"), "bigvgan_generator.pt")


def images():
    # the pictures of scripts/fixtures/images.py (PIL, and ffmpeg for 16-bit RGB): every mode and
    # container, a cut JPEG, a PNG declaring 20000x20000, a text file
    src = os.path.join(os.path.dirname(OUT), "..", "fixtures", "images")
    for name in sorted(os.listdir(src)):
        if name not in ("io.safetensors", "README.md"):
            copy("image", os.path.join(src, name))
    media_seeds().images()  # animated GIF / APNG, BMP variants, the attack files


def media_seeds():
    # test/fuzz/media_seeds.py (ffmpeg CLI, PIL, soundfile): the image extras and the video and audio corpora
    sys.path.insert(0, HERE)
    import media_seeds as m
    return m


def videos():
    media_seeds().videos()


def audios():
    media_seeds().audios()


if __name__ == "__main__":
    only = {"npy": npys, "w2v_checkpoint": w2v_checkpoints, "speech_decoder": speech_decoders, "sentencepiece": sentencepieces, "image": images, "video": videos, "audio": audios}
    if sys.argv[1:2] == ["--only"] and sys.argv[2:3] and sys.argv[2] in only:  # one format on its own, leaving the others as they are
        shutil.rmtree(os.path.join(OUT, sys.argv[2]), ignore_errors=True)
        only[sys.argv[2]]()
        sys.exit(0)
    for fmt in ["pickle", "safetensors", "torchfile", "wav", "salmonn", "trajectory", "ecf", "swift", "tokenizer", "tokens", "npy", "w2v_checkpoint", "speech_decoder", "sentencepiece", "image", "video", "audio"]:
        shutil.rmtree(os.path.join(OUT, fmt), ignore_errors=True)
    pickles()
    safetensors()
    torchfiles()
    wavs()
    datasets(sys.argv[1] if len(sys.argv) > 1 else None)
    tokenizers_()
    tokens()
    npys()
    w2v_checkpoints()
    speech_decoders()
    sentencepieces()
    images()
    videos()
    audios()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {sum(len(fs) for _, _, fs in os.walk(OUT))} seeds, {total} bytes")
