"""Every quick tier's real data loads with the expected shapes and label ranges (needs ROOTBENCH_DATA;
skips with the reason otherwise). The quick runs themselves are not in the suite: too slow."""

import pytest
import torch

from rootbench.tasks import check_data, create_task, get_task_spec, list_tasks
from rootbench.tasks.data import IMAGE_SETS, DataMissingError
from tests.task_fakes import one_thread  # noqa: F401 - autouse fixture

QUICK_REAL = [
    n for n in list_tasks() if getattr(get_task_spec(n).tiers["quick"], "dataset", None) not in (None, "synthetic")
]


@pytest.mark.data
@pytest.mark.parametrize("name", QUICK_REAL)
def test_quick_tier_data_loads_with_expected_shapes(name, monkeypatch):
    monkeypatch.setenv("ROOTBENCH_OFFLINE", "1")  # the suite never downloads
    c = get_task_spec(name).tiers["quick"]
    try:
        source = check_data(name, "quick")
    except DataMissingError as e:
        pytest.skip(str(e))
    task = create_task(name, "quick")
    assert task.data_source == source and source.startswith("file:")
    if hasattr(task, "streams"):  # text: token ids within the vocabulary, splits long enough
        for split, ids in task.streams.items():
            assert len(ids) > 10 * c.block_size, split
            assert 0 <= int(ids.min()) and int(ids.max()) < task.vocab
        assert task.vocab == (65 if c.dataset == "tinyshakespeare" else c.vocab_size)
        return
    classes = c.class_subset or IMAGE_SETS[c.dataset].num_classes
    sizes = {"val": c.n_val, "test": c.eval_examples, "train_eval": c.eval_examples}
    for split, (x, y) in task.data.items():
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, c.image_size, c.image_size), split
        assert y.dtype == torch.int64 and len(y) == len(x)
        assert 0 <= int(y.min()) and int(y.max()) < classes
        if split in sizes:
            assert len(x) == min(sizes[split], len(x)) and len(x) > 0
        if split != "train":  # fixed random subsets mix the classes (the files are sorted by class)
            assert len(torch.unique(y)) >= min(classes, len(y) // 20)
    assert task.n_train >= 8000 and task.n_train % 1 == 0
    assert task.build_model()(task.augment(task.data["val"][0][:2], False, None)).shape == (2, classes)
