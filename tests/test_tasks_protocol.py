"""Full tiers reproduce the paper's protocols (the paper): models, schedules, augmentation."""

import importlib
import inspect

import pytest
import torch
from torch import nn

from rootbench.harness.runner import lr_factor
from rootbench.tasks import create_task, get_task_spec
from rootbench.tasks.cifar import EPOCH
from rootbench.tasks.data import IMAGE_SETS
from tests.task_fakes import one_thread, write_image_folder  # noqa: F401 - autouse fixture

CNN = {  # task -> (architecture, epochs, weighted layers on the main path)
    "cifar100-vgg16bn": ("vgg16", 210, 14),  # VGG-16's 13 convolutions + one linear classifier (no FC stack)
    "cifar100-resnet34": ("resnet34", 210, 34),
    "cifar100-resnet50": ("resnet50", 120, 50),
    "cifar100-densenet121": ("densenet121", 210, 121),
}


def named_depth(model: nn.Module) -> int:
    """Convolutions and linear layers on the main path (1x1 projection shortcuts excluded)."""
    return sum(
        1 for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in name
    )


@pytest.mark.parametrize("name", sorted(CNN))
def test_cifar100_cnn_full_tier_is_the_papers_protocol(name):
    arch, epochs, depth = CNN[name]
    c = get_task_spec(name).tiers["full"]
    assert (c.dataset, c.arch, c.width, c.batch_size) == ("cifar100", arch, 64, 128)
    assert (c.pad, c.flip, c.erase_prob, c.label_smoothing) == (4, True, 0.0, 0.0)
    assert EPOCH == (50_000 - c.n_val) // 128 and c.steps == epochs * EPOCH and c.eval_every == EPOCH
    m1, m2 = (70, 140) if epochs == 210 else (40, 80)
    factor = [lr_factor(c.lr_schedule, e * EPOCH, c.steps, c.warmup_steps) for e in (0, m1 - 1, m1, m2 - 1, m2)]
    assert factor == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert lr_factor(c.lr_schedule, m1 * EPOCH - 1, c.steps, 0) == 1, "decays at the epoch boundary, not before"
    s = IMAGE_SETS["cifar100"]
    assert s.mean == (0.5071, 0.4867, 0.4408) and s.std == (0.2675, 0.2565, 0.2761)
    from rootbench.tasks.cifar import cnn_model

    model = cnn_model(100, c)
    assert named_depth(model) == depth
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    q = get_task_spec(name).tiers["quick"]
    assert (q.dataset, q.class_subset, q.arch) == ("tinyimagenet32", 100, arch), "CIFAR-100-shaped stand-in"


VIT = {  # task -> (timm model, epochs, warm-up epochs, drop-path)
    "imagewoof-swin_t": ("swin_tiny_patch4_window7_224", 300, 30, 0.2),
    "imagewoof-gcvit_xxtiny": ("gcvit_xxtiny", 310, 20, 0.2),
    "imagewoof-focalnet_tiny_srf": ("focalnet_tiny_srf", 300, 5, 0.1),
}


@pytest.fixture(scope="module")
def woof_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("woof")
    write_image_folder(str(root / "imagewoof2-320"), classes=10, per_class=2, val_per_class=1)
    return str(root)


@pytest.mark.parametrize("name", sorted(VIT))
def test_imagewoof_full_tier_is_the_papers_vit_protocol(name, woof_root, monkeypatch):
    import timm
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T

    from rootbench.tasks.imagenet_subsets import TIMM_ARCHS, WOOF_EPOCH, timm_model

    model_name, epochs, warmup, drop_path = VIT[name]
    c = get_task_spec(name).tiers["full"]
    assert (c.model, c.image_size, c.batch_size, c.lr_schedule) == (model_name, 224, 128, "cosine")
    assert (c.steps, c.warmup_steps) == (epochs * WOOF_EPOCH, warmup * WOOF_EPOCH)
    assert (c.label_smoothing, c.erase_prob, c.color_jitter, c.drop_path) == (0.1, 0.25, 0.4, drop_path)
    assert lr_factor("cosine", c.warmup_steps - 1, c.steps, c.warmup_steps) == 1.0
    assert lr_factor("cosine", c.steps - 1, c.steps, c.warmup_steps) < 1e-4

    calls = []
    with monkeypatch.context() as mp:  # the full tier is exactly timm's registered model
        mp.setattr(timm, "create_model", lambda *a, **k: calls.append((a, k)) or nn.Identity())
        timm_model(10, c)
    img = {} if model_name.startswith("focalnet") else {"img_size": 224}
    assert calls == [((model_name,), dict(pretrained=False, num_classes=10, drop_path_rate=drop_path, **img))]
    module, _, published, _ = TIMM_ARCHS[model_name]
    captured = {}
    with monkeypatch.context() as mp:  # smaller tiers rescale the class from timm's own arguments
        create = {"swin": "_create_swin_transformer", "gcvi": "_create_gcvit", "foca": "_create_focalnet"}[
            model_name[:4]
        ]
        mp.setattr(importlib.import_module(module), create, lambda variant, pretrained=False, **kw: captured.update(kw))
        getattr(importlib.import_module(module), model_name)()
    cls = getattr(importlib.import_module(module), TIMM_ARCHS[model_name][1])
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items() if k in published}
    assert {**defaults, **{k: tuple(v) if isinstance(v, list) else v for k, v in captured.items()}} == published

    monkeypatch.setenv("ROOTBENCH_DATA", woof_root)
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")
    task = create_task(name, "full", n_val=4, num_workers=0, batch_size=4)
    train_tf, eval_tf = task.train_tf.transforms, task.eval_tf.transforms
    kinds = [type(t).__name__ for t in train_tf]
    assert kinds[0] == "RandomResizedCropAndInterpolation" and train_tf[0].size == (224, 224)
    assert any(isinstance(t, T.RandomHorizontalFlip) and t.p == 0.5 for t in train_tf)
    jitter = next(t for t in train_tf if isinstance(t, T.ColorJitter))
    assert jitter.brightness == (0.6, 1.4)
    erase = next(t for t in train_tf if isinstance(t, RandomErasing))
    assert erase.probability == 0.25 and erase.mode == "pixel"
    assert not any("AutoAugment" in k or "RandAugment" in k for k in kinds)
    assert isinstance(eval_tf[0], T.Resize) and eval_tf[0].size == 256
    assert isinstance(eval_tf[1], T.CenterCrop) and eval_tf[1].size == (224, 224)
    out, y = torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    assert torch.allclose(task.loss(out, y), nn.functional.cross_entropy(out, y, label_smoothing=0.1))
    assert task.n_train == 16 and len(task.test_idx) == 10 and task.data_source.startswith("imagefolder:")


def test_vision_quick_and_full_tiers_of_small_image_tasks():
    vit = get_task_spec("cifar10-vit").tiers["full"]
    assert (vit.patch_size, vit.image_size, vit.lr_schedule, vit.label_smoothing, vit.erase_prob) == (
        4,
        32,
        "cosine",
        0.1,
        0.25,
    )
    for name in ("cifar10-resnet", "cifar10-vgg"):
        c = get_task_spec(name).tiers["full"]
        assert (c.steps, c.batch_size, c.lr_schedule, c.pad, c.flip) == (210 * EPOCH, 128, "multistep", 4, True)
    assert get_task_spec("cifar10-vgg").tiers["full"].arch == "vgg16"


def test_text_full_tiers():
    gpt = get_task_spec("shakespeare-char-gpt").tiers["full"]  # nanoGPT's shakespeare-char recipe
    assert (gpt.n_layer, gpt.n_head, gpt.n_embd, gpt.block_size, gpt.batch_size, gpt.dropout) == (
        6,
        6,
        384,
        256,
        64,
        0.2,
    )
    assert (gpt.steps, gpt.lr_schedule, gpt.warmup_steps) == (5000, "cosine", 100)
    lstm = get_task_spec("shakespeare-char-lstm").tiers["full"]
    assert lstm.n_layer == 3
    from rootbench.tasks.text import LSTMModel

    assert LSTMModel(65, lstm).lstm.num_layers == 3
    wt = get_task_spec("wikitext103-gpt").tiers["full"]
    assert (wt.dataset, wt.vocab_size) == ("wikitext103", 32_768)
    assert get_task_spec("wikitext103-gpt").tiers["quick"].dataset == "wikitext2"
    for name in ("shakespeare-char-gpt", "shakespeare-char-lstm", "wikitext103-gpt"):
        assert not get_task_spec(name).higher_is_better
