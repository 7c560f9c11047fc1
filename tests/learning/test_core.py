"""learning.core: networks, transforms, training (real PneumoniaMNIST subset), MC-dropout scoring, segmentation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from learning.core import (
    Classifier,
    Prepared,
    build_network,
    class_weights,
    classification_metrics,
    eval_transforms,
    evaluate,
    model_from_state,
    prepare_items,
    score_items,
    train_model,
    train_transforms,
    validate_config,
)
from learning.strategies import rank

DATA = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "classification" / "pneumoniamnist_28_full.npz"
)


def config(**changes):
    base = {
        "version": 1,
        "task": "classification",
        "network": "smallcnn",
        "spatial_dims": 2,
        "in_channels": 1,
        "num_classes": 2,
        "dropout": 0.2,
        "input_size": [28, 28],
    }
    base.update(changes)
    return base


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The CI machine has 2 shared cores: one torch thread is faster than two fighting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pneumonia():
    """A stratified real subset of PneumoniaMNIST (read in place): 600 train, 200 val items."""
    if not DATA.is_file():
        pytest.fail(f"the shared real data is missing: expected {DATA}")
    data = np.load(DATA)
    rng = np.random.default_rng(0)

    def subset(split: str, n: int):
        labels = data[f"{split}_labels"].ravel().astype(int)
        idx = rng.choice(labels.size, n, replace=False)
        return [{"image": data[f"{split}_images"][i], "label": int(labels[i])} for i in idx]

    return {"train": subset("train", 600), "val": subset("val", 200)}


@pytest.fixture(scope="module")
def trained(pneumonia):
    """smallcnn trained on the subset with early stopping (max 30 epochs, patience 3); records progress calls."""
    calls = []
    result = train_model(
        config(),
        pneumonia["train"],
        pneumonia["val"],
        epochs=30,
        batch_size=32,
        lr=3e-3,
        patience=3,
        seed=0,
        device="cpu",
        progress=lambda epoch, loss, metric: calls.append((epoch, loss, metric)),
    )
    return result, calls


# ------------------------------------------------------------------------------------------------- networks

CLASSIFIER_CASES = [
    ("smallcnn", 2, 28),
    ("smallcnn", 3, 16),
    ("resnet10", 2, 28),
    ("resnet10", 3, 16),
    ("resnet18", 2, 28),
    ("resnet18", 3, 16),
    ("densenet121", 2, 32),
    ("densenet121", 3, 32),
]


@pytest.mark.parametrize(("network", "dims", "size"), CLASSIFIER_CASES)
def test_every_classifier_builds_and_runs(network, dims, size):
    torch.manual_seed(0)
    cfg = config(network=network, spatial_dims=dims, input_size=[size] * dims, num_classes=3)
    model = build_network(cfg)
    assert isinstance(model, Classifier)
    assert isinstance(model.dropout, torch.nn.Dropout) and model.dropout.p == pytest.approx(0.2)
    x = torch.rand(2, 1, *[size] * dims)
    model.eval()
    with torch.no_grad():
        logits, emb = model(x), model.embed(x)
    assert logits.shape == (2, 3)
    assert emb.shape == (2, model.num_features)
    assert torch.allclose(model.head(emb), logits, atol=1e-5)  # eval mode: dropout is the identity


@pytest.mark.parametrize("dims", [2, 3])
def test_unet_builds_and_runs(dims):
    cfg = config(
        task="segmentation", network="unet", spatial_dims=dims, input_size=[16] * dims, num_classes=3
    )
    model = build_network(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *[16] * dims))
    assert out.shape == (2, 3, *[16] * dims)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 2}, "unsupported config version"),
        ({"network": "vgg16"}, "unknown network"),
        ({"task": "detection"}, "unknown task"),
        ({"network": "unet"}, "not a classifier"),
        ({"task": "segmentation"}, "cannot segment"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"input_size": [28]}, "input_size must list 2"),
        ({"num_classes": 1}, "num_classes"),
        ({"dropout": 1.5}, "dropout"),
        ({"network": "densenet121"}, "needs input_size >= 32"),
        ({"window": {"center": 40}}, "window"),
        ({"balance": "oversample"}, "balance"),
        ({"learning_rate": 0.1}, "unknown key"),
    ],
)
def test_invalid_configs_are_refused_clearly(changes, message):
    with pytest.raises(ValueError, match=message):
        build_network(config(**changes))


def test_missing_key_and_unet_divisibility():
    cfg = config()
    del cfg["num_classes"]
    with pytest.raises(ValueError, match="missing required key"):
        validate_config(cfg)
    with pytest.raises(ValueError, match="divisible"):
        validate_config(config(task="segmentation", network="unet", input_size=[30, 30]))


# ----------------------------------------------------------------------------------------------- transforms


def test_eval_transforms_channel_first_scaled_resized():
    ramp = np.linspace(0, 255, 40 * 30).reshape(40, 30)
    rgb = np.stack([ramp, ramp * 0.5, ramp * 0.25], axis=-1).astype(np.uint8)  # an (H, W, 3) decoded frame
    out = eval_transforms(config())({"image": rgb, "label": 1})
    image = out["image"]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert image.shape == (1, 28, 28)
    assert float(image.min()) == pytest.approx(0.0, abs=0.02) and float(image.max()) == pytest.approx(
        1.0, abs=0.02
    )
    assert float(image[0, -1].mean()) > float(image[0, 0].mean())  # rows stay in order (no transposition)
    assert out["label"] == 1
    grey = eval_transforms(config())({"image": np.arange(28 * 28, dtype=np.float64).reshape(28, 28)})["image"]
    assert grey.shape == (1, 28, 28) and float(grey.min()) == 0.0 and float(grey.max()) == pytest.approx(1.0)


def test_window_and_normalize():
    hu = np.linspace(-1000, 1000, 28 * 28).reshape(28, 28)
    windowed = eval_transforms(config(window={"center": 40, "width": 400}))({"image": hu})["image"]
    assert float(windowed.min()) == 0.0 and float(windowed.max()) == 1.0
    assert float((windowed == 0).float().mean()) > 0.3  # below -160 HU: clipped to 0
    z = eval_transforms(config(intensity="normalize"))({"image": hu})["image"]
    assert abs(float(z.mean())) < 1e-4 and float(z.std()) == pytest.approx(1.0, rel=0.01)


def test_train_transforms_augment_reproducibly_and_keep_masks_integer():
    image = np.random.default_rng(1).random((28, 28)).astype(np.float32)
    a, b = train_transforms(config()), train_transforms(config())
    a.set_random_state(7)
    b.set_random_state(7)
    outs_a = [a({"image": image})["image"] for _ in range(4)]
    outs_b = [b({"image": image})["image"] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(outs_a, outs_b, strict=True))
    assert any(not torch.allclose(x, outs_a[0]) for x in outs_a[1:])  # it does augment
    seg = config(task="segmentation", network="unet", input_size=[32, 32], num_classes=3)
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[10:30, 10:30], mask[32:40, 5:20] = 1, 2
    t = train_transforms(seg)
    t.set_random_state(0)
    for _ in range(5):
        out = t({"image": mask.astype(np.float32), "label": mask})
        assert out["image"].shape == out["label"].shape == (1, 32, 32)
        assert set(out["label"].unique().tolist()) <= {0, 1, 2}


def test_volume_transforms():
    vol = np.random.default_rng(2).random((20, 24, 24))
    cfg = config(network="resnet10", spatial_dims=3, input_size=[16, 16, 16])
    assert eval_transforms(cfg)({"image": vol})["image"].shape == (1, 16, 16, 16)


# ------------------------------------------------------------------------------------------------- training


def test_smallcnn_learns_pneumonia_and_stops_early(trained, pneumonia):
    result, calls = trained
    assert result.metrics["auc"] > 0.75
    assert result.metrics["monitor"] == "auc"
    assert len(result.history) < 30  # the AUC plateaued: stopped before the maximum
    assert result.metrics["stopped_early"]
    assert result.best_epoch == len(result.history) - 3  # patience 3 after the best epoch
    best = max(h["val_auc"] for h in result.history)
    assert result.metrics["auc"] == pytest.approx(best)
    assert all(h["val_auc"] <= best + 1e-4 for h in result.history[result.best_epoch :])
    assert len(result.metrics["recall"]) == 2 and all(0 <= r <= 1 for r in result.metrics["recall"])
    assert 0 <= result.metrics["accuracy"] <= 1 and result.metrics["val_loss"] > 0
    assert [c[0] for c in calls] == list(range(1, len(result.history) + 1))
    assert calls[result.best_epoch - 1][2] == pytest.approx(result.metrics["auc"])
    # the kept weights are the best epoch's: re-evaluating them gives the reported metrics
    model = model_from_state(config(), result.state_dict)
    assert evaluate(model, pneumonia["val"], config())["auc"] == pytest.approx(result.metrics["auc"])


def test_class_weighting_favours_the_rare_class(trained, pneumonia):
    w = class_weights([10, 90])
    assert w[0] > w[1] and w[0] == pytest.approx(5.0) and w[1] == pytest.approx(100 / 180)
    assert class_weights([0, 50])[0] == pytest.approx(50 / 2)  # an absent class gets a finite weight
    result, _ = trained
    counts = result.class_counts
    rare, common = int(np.argmin(counts)), int(np.argmax(counts))
    assert result.class_weights[rare] > result.class_weights[common]
    sampled = train_model(
        config(balance="sampler"),
        pneumonia["train"][:64],
        None,
        epochs=1,
        batch_size=32,
        lr=1e-3,
        patience=None,
        seed=0,
        device="cpu",
    )
    assert sampled.class_weights is None and len(sampled.history) == 1 and sampled.metrics["monitor"] is None


def test_same_seed_same_weights_on_cpu(pneumonia):
    items, val = pneumonia["train"][:64], pneumonia["val"][:40]
    state_before = torch.random.get_rng_state()

    def run(seed):
        return train_model(
            config(), items, val, epochs=2, batch_size=16, lr=1e-3, patience=None, seed=seed, device="cpu"
        ).state_dict

    a, b, c = run(3), run(3), run(4)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    assert torch.equal(torch.random.get_rng_state(), state_before)  # the global RNG is left alone


def test_single_class_validation_falls_back_to_loss(pneumonia):
    val = [item for item in pneumonia["val"] if item["label"] == 1][:30]
    result = train_model(
        config(),
        pneumonia["train"][:48],
        val,
        epochs=2,
        batch_size=16,
        lr=1e-3,
        patience=5,
        seed=0,
        device="cpu",
    )
    assert result.metrics["monitor"] == "val_loss" and result.metrics["auc"] is None
    assert result.metrics["recall"][0] is None


def test_classification_metrics_multiclass():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    m = classification_metrics(y, p)
    assert m["auc"] == pytest.approx(np.mean([1.0, 1.0, 1.0]))
    assert m["recall"] == [1.0, 1.0, 0.5] and m["accuracy"] == 0.75


# -------------------------------------------------------------------------------------------------- scoring


def test_mc_dropout_scores_and_embeddings(trained, pneumonia):
    result, _ = trained
    cfg = config()
    model = model_from_state(cfg, result.state_dict)
    items = [{"image": item["image"]} for item in pneumonia["val"][:100]]
    scores = score_items(model, items, config=cfg, mc_passes=6, batch_size=32, device="cpu", seed=1)
    assert scores.probs.shape == (100, 2) and scores.mc_probs.shape == (6, 100, 2)
    assert scores.embeddings.shape == (100, model.num_features)
    np.testing.assert_allclose(scores.probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(scores.mc_probs.sum(axis=2), 1.0, atol=1e-9)
    np.testing.assert_allclose(scores.probs, scores.mc_probs.mean(axis=0), atol=1e-9)
    assert not np.allclose(scores.mc_probs[0], scores.mc_probs[1])  # dropout samples differ between passes
    assert not model.training  # mode restored
    again = score_items(model, prepare_items(items, cfg), config=cfg, mc_passes=6, device="cpu", seed=1)
    np.testing.assert_array_equal(again.mc_probs, scores.mc_probs)
    np.testing.assert_allclose(again.embeddings, scores.embeddings, rtol=1e-5, atol=1e-6)
    single = score_items(model, items, config=cfg, mc_passes=1, device="cpu")
    assert single.mc_probs.shape == (1, 100, 2)
    with torch.no_grad():
        plain = torch.softmax(model(prepare_items(items, cfg).images), dim=1).numpy()
    np.testing.assert_allclose(single.probs, plain, atol=1e-5)  # T = 1: deterministic
    tta = score_items(model, items, config=cfg, mc_passes=2, device="cpu", tta=True, seed=0)
    assert tta.probs.shape == (100, 2) and tta.embeddings.shape == (100, model.num_features)
    for name in ("hybrid", "bald", "badge", "coreset"):
        ranking = rank(
            name,
            probs=scores.probs[20:],
            mc_probs=scores.mc_probs[:, 20:],
            embeddings=scores.embeddings[20:],
            labelled_embeddings=scores.embeddings[:20],
            budget=10,
            rng=0,
            class_prior=np.array([2, 18]),
        )
        assert len(ranking) == 10


def test_mc_dropout_through_a_backbone_with_inner_dropout():
    torch.manual_seed(0)
    cfg = config(input_size=[16, 16])
    model = build_network(cfg)
    model.features.insert(3, torch.nn.Dropout2d(0.3))  # stochastic backbone: full passes are needed
    items = Prepared(torch.rand(12, 1, 16, 16), None)
    scores = score_items(model, items, config=cfg, mc_passes=3, device="cpu", seed=0)
    assert scores.mc_probs.shape == (3, 12, 2)
    assert not np.allclose(scores.mc_probs[0], scores.mc_probs[2])


# --------------------------------------------------------------------------------------------- segmentation


def blobs(n: int, seed: int, size: int = 32):
    """Noisy images with one bright disc each; the mask is the disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for _ in range(n):
        r = rng.uniform(4, 8)
        cy, cx = rng.uniform(r, size - r, size=2)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.uint8)
        image = mask * 1.0 + rng.normal(0, 0.35, size=(size, size))
        items.append({"image": image.astype(np.float32), "label": mask})
    return items


def test_unet_segments_synthetic_blobs():
    cfg = config(
        task="segmentation",
        network="unet",
        input_size=[32, 32],
        num_classes=2,
        channels=[8, 16, 32],
        strides=[2, 2],
        dropout=0.0,
    )
    result = train_model(
        cfg, blobs(48, 0), blobs(16, 1), epochs=12, batch_size=8, lr=1e-2, patience=4, seed=0, device="cpu"
    )
    assert result.metrics["monitor"] == "dice"
    assert result.metrics["dice"] > 0.5
    assert result.class_counts[1] > 0 and result.class_counts[0] > result.class_counts[1]
    model = model_from_state(cfg, result.state_dict)
    metrics = evaluate(model, blobs(16, 1), cfg)
    assert metrics["dice"] == pytest.approx(result.metrics["dice"], abs=1e-6)
    with pytest.raises(ValueError, match="classifiers"):
        score_items(model, blobs(2, 2), config=cfg)
