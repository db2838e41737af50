"""The small CNN classifier of the image evaluation (SPEC §10): it learns, it is reproducible without touching the
caller's random state, and bad input is refused before training."""

import pytest
import torch

from learned_manifold.classifier import SmallCNN, train_classifier


def bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8×8 images of a bright horizontal (class 0) or vertical (class 1) bar at a random place, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(1, 7, (n,), generator=g)
    x = 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    for i in range(n):
        if labels[i] == 0:
            x[i, 0, where[i], :] += 1
        else:
            x[i, 0, :, where[i]] += 1
    return x, labels


def test_it_learns_separable_images_and_leaves_the_global_random_state_alone():
    x, y = bars(200, 0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    net = train_classifier(x, y, steps=80, seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # before: reseeded to ``seed``, the caller's seed lost
    test_x, test_y = bars(200, 1)
    assert (net(test_x).argmax(-1) == test_y).float().mean() > 0.95
    again = train_classifier(x, y, steps=80, seed=0)
    assert torch.equal(net(test_x), again(test_x))


@pytest.mark.parametrize(("images", "labels", "message"), [
    (torch.full((4, 1, 8, 8), float("nan")), torch.zeros(4, dtype=torch.long), "NaN or inf"),
    (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), "N >= 1"),
    (torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, -1, 0]), "class indices 0, 1, ..., got -1"),
    (torch.zeros(4, 1, 8, 8), torch.zeros(4), "integer class indices, got dtype torch.float32"),
    (torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=torch.long), r"shape \(4,\), one per image"),
])
def test_bad_input_is_one_clear_error(images, labels, message):
    with pytest.raises(ValueError, match=message):
        train_classifier(images, labels, steps=1)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "autocast"])
def test_the_callers_grad_inference_and_autocast_modes_change_nothing(mode):
    """Under the caller's ``no_grad`` or ``inference_mode`` (the first step failed: "does not require grad") or
    bf16 ``torch.autocast`` (it trained in bf16) the classifier trains to the weights it reaches outside them;
    the caller's mode is on again afterwards."""
    x, y = bars(60, 0)
    reference = train_classifier(x, y, steps=5, width=8, seed=0).state_dict()
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
               "autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}[mode]
    with context():
        got = train_classifier(x, y, steps=5, width=8, seed=0).state_dict()
        assert torch.is_grad_enabled() == (mode == "autocast")
        assert torch.is_autocast_enabled("cpu") == (mode == "autocast")
    assert got.keys() == reference.keys()
    for key in reference:
        assert got[key].dtype == torch.float32 and torch.equal(got[key], reference[key]), key


def test_it_reseeds_no_accelerator_generator(monkeypatch):
    """`torch.manual_seed` inside ``fork_rng(devices=[])`` reset the caller's CUDA generators to ``seed``: only the
    CPU generator is seeded now (and put back)."""
    calls: list[str] = []
    for module, name in [(torch.cuda, "manual_seed_all"), (torch.cuda, "manual_seed"), (torch.mps, "manual_seed"),
                         (torch.xpu, "manual_seed_all")]:
        monkeypatch.setattr(module, name, lambda seed, label=f"{module.__name__}.{name}": calls.append(label))
    x, y = bars(20, 0)
    before = torch.get_rng_state()
    train_classifier(x, y, steps=2, seed=4)
    assert calls == []
    assert torch.equal(torch.get_rng_state(), before)


def test_proba_gives_each_image_class_probabilities_that_do_not_depend_on_its_batch_mates():
    """``proba`` is a softmax over the classes of each image (tester A, item 6: one over the batch axis passed):
    rows are probability vectors and an image scored alone gets what it gets in a batch."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SmallCNN(1, 3, width=4).eval()
        images = torch.rand(5, 1, 6, 6)
    with torch.no_grad():
        batch = net.proba(images)
        alone = net.proba(images[:1])
    assert batch.shape == (5, 3)
    assert bool((batch >= 0).all())
    torch.testing.assert_close(batch.sum(-1), torch.ones(5))
    torch.testing.assert_close(alone[0], batch[0])
    torch.testing.assert_close(batch, net(images).softmax(-1))
