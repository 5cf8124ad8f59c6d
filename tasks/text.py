"""Language modelling: character-level Shakespeare (GPT and 3-layer LSTM) and word-level WikiText.

The metric is the mean next-token cross-entropy on held-out text (nats per token; lower is better;
perplexity = exp). Batches are random windows of ``block_size + 1`` tokens drawn with the run's
generator from a token tensor that lives on the training device; evaluation walks the first
``eval_examples`` non-overlapping windows of each split. The loss is the mean over all B x T tokens.
``batch_size`` counts sequences: it is the B that root-free methods receive.

- ``shakespeare-char-gpt``: a decoder-only transformer written in-house (pre-LayerNorm blocks, causal
  ``scaled_dot_product_attention``, GELU MLP, learned positions, tied embedding; GPT-2 initialisation:
  Radford et al. 2019). Full tier: nanoGPT's Shakespeare-char recipe (6 layers, 6 heads, 384 wide,
  256 characters of context, batch 64, dropout 0.2, 5,000 steps, cosine with 100 warm-up steps).
- ``shakespeare-char-lstm``: embedding + 3-layer ``nn.LSTM`` + linear head. The paper mentions "a
  3-layer LSTM" (Lin et al., ICML 2024, Fig. 1) without its setup [UNVERIFIED]; this one follows the
  char-rnn tradition (Karpathy 2015): 512 units, dropout 0.2, 256 steps of context.
- ``wikitext103-gpt``: word-level WikiText-103 (Merity et al. 2016, v1 tokens with <unk>), read from
  ``wikitext103_{train,valid,test}.txt`` or Hugging Face ``datasets`` (Salesforce/wikitext). Every line
  ends with <eos> (as pytorch/examples' word_language_model). The vocabulary is the 32,768 most frequent
  training words (the rest become <unk>; the official vocabulary has 267,735 words, too wide for a
  softmax an optimizer benchmark should be about), so losses are not comparable with published
  perplexities. Here the official valid split is the validation split and test is only reported.

Splits. tinyshakespeare (1,115,394 characters, 65 symbols) has no official split: characters [0, 85%)
train; the last 15% is dealt in 4,096-character blocks to validation (every third block) and test (the
rest), so validation and test come from the same text (contiguous [85, 90%) and [90, 100%) splits differed
by 0.1-0.3 nats, which made validation a biased guide for selection). WikiText-103's train
split is not in the offline pack, so the quick tier of ``wikitext103-gpt`` trains on WikiText-2's valid
file (217,646 tokens) minus its last 10% (the validation split) and reports on WikiText-2's test file;
its vocabulary is the 8,192 most frequent words of that training part (the rest become <unk>).

Quick tiers (fp32, context 64, cosine schedule with 10% warm-up, no dropout). Reference runs: default
sgd / adamw hyperparameters, seed 0, one thread each, two runs at a time on a shared 2-core Xeon
(``rootbench bench``, committed under ``runs/<task>/<optimizer>/``; wall = the run's ``wall_time_s``),
final validation / test loss (nats per token); targets sit a little above the better final loss:

  task                   model, params                     steps x batch  sgd val/test  adamw val/test  target  wall s
  shakespeare-char-gpt   GPT 4 layers x 128, 4 heads, 0.81M  700 x 32      2.297/2.339   1.963/2.067     2.0     90/89
  shakespeare-char-lstm  LSTM 3 layers x 256, 1.61M          600 x 32      2.675/2.687   1.980/2.074     2.05    102/108
  wikitext103-gpt        GPT 2 layers x 128, vocab 8,192,    600 x 16      5.156/5.395   5.012/5.186     5.1     113/114
                         1.45M (WikiText-2 valid/test)

Long tier of ``shakespeare-char-gpt`` (where claim 2 is tested on a language model): the quick model for
3 x its steps (2,100 x 32, about 4.5 passes over the training text), cosine with 210 warm-up steps. Measured
on an AMD EPYC (AVX2), one thread per run with the other run beside it, default hyperparameters, seed 0:
sgd val/test 1.743/1.709, adamw 1.599/1.562 (quick tier: 2.297/2.339 and 1.963/2.067), 408 s of training
and 7.1 min a run in all; target 1.65.

(run ids: gpt fce06b73029b / 2bbab55e5c01, lstm 040fd69b79bd / 75c1800f857c, wikitext bd7ae6ccee61 /
44e049216d6d; an earlier version of this table, measured while the tasks were being written, gave
2.623 for sgd on the GPT.) Data wait was about 0.1% of the train time.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rootbench.tasks import Task, TierConfig, register_task
from rootbench.tasks.data import data_root, load_text, write_npz

PAPER = "https://arxiv.org/abs/2402.03496"
UNK, EOS = "<unk>", "<eos>"


@dataclass(frozen=True)
class TextConfig(TierConfig):
    dataset: str = "tinyshakespeare"  # tinyshakespeare | wikitext2 | wikitext103 | synthetic (smoke)
    block_size: int = 256  # tokens of context per sequence
    vocab_size: int = 0  # word level: keep the most frequent training words (0: all); char level: unused
    n_layer: int = 6
    n_embd: int = 384
    n_head: int = 6  # GPT only
    dropout: float = 0.0
    synthetic_vocab: int = 65  # the smoke stand-in's vocabulary (real corpora have their own)


# ---------------------------------------------------------------------------------------------
# models


class CausalSelfAttention(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.n_head, self.dropout = c.n_head, c.dropout
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.resid_drop = nn.Dropout(c.dropout)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    def __init__(self, c: TextConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(c.n_embd), CausalSelfAttention(c)
        self.ln2 = nn.LayerNorm(c.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(), nn.Linear(4 * c.n_embd, c.n_embd), nn.Dropout(c.dropout)
        )

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer with learned positions and a head tied to the token embedding."""

    def __init__(self, vocab: int, c: TextConfig):
        super().__init__()
        if c.n_embd % c.n_head:
            raise ValueError(f"n_embd={c.n_embd} must be a multiple of n_head={c.n_head}")
        self.tok = nn.Embedding(vocab, c.n_embd)
        self.pos = nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, vocab, bias=False)
        self.head.weight = self.tok.weight  # weight tying (one parameter)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * layers)
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.drop(self.tok(idx) + self.pos(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class LSTMModel(nn.Module):
    """Embedding, a stacked ``nn.LSTM`` (dropout between layers) and a linear head."""

    def __init__(self, vocab: int, c: TextConfig):
        super().__init__()
        self.emb = nn.Embedding(vocab, c.n_embd)
        self.lstm = nn.LSTM(
            c.n_embd, c.n_embd, num_layers=c.n_layer, dropout=c.dropout if c.n_layer > 1 else 0.0, batch_first=True
        )
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.n_embd, vocab)

    def forward(self, idx):
        out, _ = self.lstm(self.drop(self.emb(idx)))
        return self.head(self.drop(out))


MODELS = {"gpt": GPT, "lstm": LSTMModel}


# ---------------------------------------------------------------------------------------------
# tokenisation and splits


HELD_OUT_BLOCK = 4096  # characters per held-out block; every third block is validation, the others test


def char_streams(text: str) -> tuple[dict, int]:
    """Character ids over the corpus' sorted alphabet: train [0, 85%); the held-out last 15 % is cut into
    ``HELD_OUT_BLOCK``-character blocks dealt to validation (every third) and test (the rest), so that both
    come from the same stretch of text: contiguous val [85, 90 %) and test [90, 100 %) differ in
    difficulty (the late plays are 0.1-0.3 nats harder), which would make validation a biased proxy."""
    chars = sorted(set(text))
    lut = np.zeros(max(map(ord, chars)) + 1, np.int32)
    lut[[ord(ch) for ch in chars]] = np.arange(len(chars), dtype=np.int32)
    ids = lut[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]
    a = int(0.85 * len(ids))
    block = max(1, min(HELD_OUT_BLOCK, (len(ids) - a) // 12))  # small corpora (tests): at least 12 blocks
    held = [ids[i : i + block] for i in range(a, len(ids), block)]
    val = np.concatenate([blk for i, blk in enumerate(held) if i % 3 == 0])
    test = np.concatenate([blk for i, blk in enumerate(held) if i % 3 != 0])
    return {"train": ids[:a], "val": val, "test": test}, len(chars)


def text_lines(text: str) -> list[str]:
    """The lines of ``text`` as a file iterator gives them (no empty line after a final newline)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def word_lines(lines: list[str]):
    """WikiText word tokens: each line's whitespace-separated words, then <eos> (pytorch/examples)."""
    for line in lines:
        yield line.split() + [EOS]


def build_vocab(lines, size: int) -> dict:
    """The ``size`` most frequent words (ties: first seen), always with <unk>; 0 keeps all."""
    counts = Counter()
    for words in lines:
        counts.update(words)
    counts.pop(UNK, None)
    words = [w for w, _ in counts.most_common((size - 1) if size else None)]
    return {w: i for i, w in enumerate([UNK] + words)}


def encode_words(lines: list[str], vocab: dict) -> np.ndarray:
    unk = vocab[UNK]
    chunks, buf = [], []
    for words in word_lines(lines):
        buf.extend(vocab.get(w, unk) for w in words)
        if len(buf) > 1 << 20:
            chunks.append(np.asarray(buf, np.int32))
            buf = []
    chunks.append(np.asarray(buf, np.int32))
    return np.concatenate(chunks)


def word_streams(c: TextConfig) -> tuple[dict, int, str]:
    """Token ids of the word-level corpus (train, val, test), cached as an npz in the data root."""
    # WikiText-103 (103M words) takes minutes to tokenise: its ids are cached in the data root
    cache = os.path.join(data_root(), "cache", f"{c.dataset}_words_v{c.vocab_size}.npz")
    if c.dataset == "wikitext103" and os.path.isfile(cache):
        with np.load(cache) as z:
            return {k: z[k] for k in ("train", "val", "test")}, int(z["vocab"]), f"file:{cache}"
    texts, source = load_text(c.dataset)
    if c.dataset == "wikitext2":  # train on WikiText-2 valid minus its last 10% of lines (validation)
        lines = text_lines(texts["valid"])
        cut = int(0.9 * len(lines))
        parts = {"train": lines[:cut], "val": lines[cut:], "test": text_lines(texts["test"])}
    else:
        parts = {
            "train": text_lines(texts["train"]),
            "val": text_lines(texts["valid"]),
            "test": text_lines(texts["test"]),
        }
    vocab = build_vocab(word_lines(parts["train"]), c.vocab_size)
    streams = {k: encode_words(lines, vocab) for k, lines in parts.items()}
    if c.dataset == "wikitext103":
        try:
            write_npz(cache, vocab=np.asarray(len(vocab)), **streams)
        except OSError:
            pass
    return streams, len(vocab), source


def text_data(c: TextConfig) -> tuple[dict, int, str]:
    if c.dataset == "synthetic":  # a noisy repeating pattern: learnable, of the right shape
        g = torch.Generator().manual_seed(0)
        base = torch.randint(0, c.synthetic_vocab, (97,), generator=g)
        ids = base.repeat(64)
        noise = torch.rand(len(ids), generator=g) < 0.1
        ids = torch.where(noise, torch.randint(0, c.synthetic_vocab, (len(ids),), generator=g), ids).int().numpy()
        n = len(ids)
        return (
            {"train": ids[: int(0.8 * n)], "val": ids[int(0.8 * n) : int(0.9 * n)], "test": ids[int(0.9 * n) :]},
            c.synthetic_vocab,
            "synthetic stand-in",
        )
    if c.dataset == "tinyshakespeare":
        texts, source = load_text("tinyshakespeare")
        streams, vocab = char_streams(texts[""])
        return streams, vocab, source
    if c.dataset in ("wikitext2", "wikitext103"):
        return word_streams(c)
    raise ValueError(f"unknown text data set {c.dataset!r}; use tinyshakespeare, wikitext2, wikitext103 or synthetic")


# ---------------------------------------------------------------------------------------------
# the task


class TextTask(Task):
    metric_name = "loss"

    def __init__(self, spec, tier, config: TextConfig, streams: dict, vocab: int, model: str, source: str):
        super().__init__(spec, tier, config)
        self.streams = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int32)) for k, v in streams.items()}
        self.vocab, self.model_name, self.data_source = vocab, model, source
        t = config.block_size
        for split, ids in self.streams.items():
            if len(ids) < t + 1:
                raise ValueError(
                    f"task {spec.name}: the {split} split has {len(ids)} tokens, fewer than block_size + 1 = {t + 1}"
                )
        self.n_train = len(self.streams["train"]) // t  # sequences per "epoch"
        self._on_device: dict = {}

    def on(self, device) -> dict:
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device = {key: {k: v.to(device) for k, v in self.streams.items()}}
        return self._on_device[key]

    def build_model(self):
        return MODELS[self.model_name](self.vocab, self.config)

    def train_batches(self, generator, device):
        data = self.on(device)["train"]
        t, b = self.config.block_size, self.config.batch_size
        window = torch.arange(t + 1, device=data.device)
        # window starts are drawn on the device (no host-to-device copy, hence no GPU sync, per batch)
        gen = torch.Generator(device=data.device if data.device.type == "cuda" else "cpu")
        gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        while True:
            starts = torch.randint(0, len(data) - t, (b,), generator=gen, device=data.device)
            chunk = data[starts[:, None] + window].long()
            yield chunk[:, :-1], chunk[:, 1:]

    def eval_batches(self, split, device):
        data = self.on(device)[split]
        t, bs = self.config.block_size, self.config.eval_batch_size
        n = min((len(data) - 1) // t, self.config.eval_examples)
        window = torch.arange(t + 1, device=data.device)
        for i in range(0, n, bs):
            starts = torch.arange(i, min(i + bs, n), device=data.device) * t
            chunk = data[starts[:, None] + window].long()
            yield chunk[:, :-1], chunk[:, 1:]

    def metric(self, outputs, targets):
        """Per-token cross-entropy (nats)."""
        return F.cross_entropy(outputs.float().flatten(0, -2), targets.flatten(), reduction="none")


def _builder(model: str):
    def build(spec, tier, c: TextConfig):
        streams, vocab, source = text_data(c)
        return TextTask(spec, tier, c, streams, vocab, model, source)

    return build


def _smoke(**kw) -> TextConfig:
    return TextConfig(
        **{
            **dict(
                steps=3,
                batch_size=8,
                eval_every=3,
                eval_examples=8,
                eval_batch_size=8,
                dataset="synthetic",
                block_size=16,
                n_layer=1,
                n_embd=16,
                n_head=2,
            ),
            **kw,
        }
    )


GPT_QUICK = TextConfig(
    steps=700,
    batch_size=32,
    eval_every=175,
    target=2.0,
    block_size=64,
    n_layer=4,
    n_embd=128,
    n_head=4,
    lr_schedule="cosine",
    warmup_steps=70,
    eval_examples=256,
    eval_batch_size=64,
)

register_task(
    "shakespeare-char-gpt",
    build=_builder("gpt"),
    metric="loss",
    higher_is_better=False,
    family="text",
    model_kind="transformer",
    paper="https://github.com/karpathy/nanoGPT",
    data="tinyshakespeare",
    description="tinyshakespeare, character level, small GPT (in-house decoder-only transformer); val loss",
    minutes={"long": 7.1},
    tiers={
        "smoke": _smoke(),
        "quick": GPT_QUICK,
        # claim 2 at CPU scale: the quick model for three times its steps (about 4.5 passes over the text)
        "long": replace(GPT_QUICK, steps=2100, eval_every=525, target=1.65, warmup_steps=210),
        "full": TextConfig(
            steps=5000,
            batch_size=64,
            eval_every=250,
            block_size=256,
            n_layer=6,
            n_embd=384,
            n_head=6,
            dropout=0.2,
            lr_schedule="cosine",
            warmup_steps=100,
            eval_examples=400,
            eval_batch_size=100,
        ),
    },
)

register_task(
    "shakespeare-char-lstm",
    build=_builder("lstm"),
    metric="loss",
    higher_is_better=False,
    family="text",
    model_kind="rnn",
    paper=PAPER,
    data="tinyshakespeare",
    description="tinyshakespeare, character level, 3-layer LSTM; val loss",
    tiers={
        "smoke": _smoke(n_layer=3),
        "quick": TextConfig(
            steps=600,
            batch_size=32,
            eval_every=150,
            target=2.05,
            block_size=64,
            n_layer=3,
            n_embd=256,
            lr_schedule="cosine",
            warmup_steps=60,
            eval_examples=256,
            eval_batch_size=64,
        ),
        "full": TextConfig(
            steps=5000,
            batch_size=64,
            eval_every=250,
            block_size=256,
            n_layer=3,
            n_embd=512,
            dropout=0.2,
            lr_schedule="cosine",
            warmup_steps=100,
            eval_examples=400,
            eval_batch_size=100,
        ),
    },
)

register_task(
    "wikitext103-gpt",
    build=_builder("gpt"),
    metric="loss",
    higher_is_better=False,
    family="text",
    model_kind="transformer",
    paper="https://arxiv.org/abs/1609.07843",
    data="wikitext103",
    description="WikiText-103, word level, GPT (8 layers, 512 wide); val loss. Quick tier: WikiText-2 valid/test",
    tiers={
        "smoke": _smoke(synthetic_vocab=100),
        "quick": TextConfig(
            steps=600,
            batch_size=16,
            eval_every=150,
            target=5.1,
            dataset="wikitext2",
            block_size=64,
            vocab_size=8192,
            n_layer=2,
            n_embd=128,
            n_head=4,
            lr_schedule="cosine",
            warmup_steps=60,
            eval_examples=256,
            eval_batch_size=16,
        ),
        "full": TextConfig(
            steps=50_000,
            batch_size=32,
            eval_every=1000,
            dataset="wikitext103",
            block_size=512,
            vocab_size=32_768,
            n_layer=8,
            n_embd=512,
            n_head=8,
            dropout=0.1,
            lr_schedule="cosine",
            warmup_steps=2000,
            eval_examples=1000,
            eval_batch_size=32,
        ),
    },
)
