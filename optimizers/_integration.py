"""Using rootbench's optimizers in other training loops (Lightning, the Hugging Face Trainer, plain loops).

The root-free methods scale the squared gradient by B, the number of examples the loss is averaged over
(Lin et al. 2024). Outside the runner that is the *global* batch: the per-device batch times the gradient
accumulation steps times the data-parallel processes whose gradients are averaged. ``global_batch_size``
reads it from a Lightning ``Trainer`` or Hugging Face ``TrainingArguments`` (duck-typed: neither package is
imported) and refuses to guess what it cannot read.

    from rootbench.optimizers import create_optimizer, global_batch_size
    # Hugging Face: Trainer(..., optimizers=(opt, None))
    opt = create_optimizer("rfadamw", model, lr=1e-3, batch_size=global_batch_size(training_args))
    # Lightning, in configure_optimizers (the dataloader is not built yet: say the per-device batch)
    opt = create_optimizer("rfadamw", self, lr=1e-3, batch_size=global_batch_size(self.trainer, per_device=64))
"""

from __future__ import annotations


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"global_batch_size: {what} must be a positive integer, got {value!r}")
    return value


def global_batch_size(source, per_device: int | None = None) -> int:
    """B for the root-free methods: per-device batch x gradient accumulation x data-parallel world size.

    ``source`` is a Hugging Face ``TrainingArguments`` (``per_device_train_batch_size``,
    ``gradient_accumulation_steps``, ``world_size``) or a Lightning ``Trainer`` (``accumulate_grad_batches``,
    ``world_size``; the per-device batch from ``per_device`` or, once built, ``trainer.train_dataloader``).
    ``per_device`` overrides what the source says. Raises ``ValueError`` when a factor cannot be read.
    """
    if hasattr(source, "per_device_train_batch_size") and hasattr(source, "gradient_accumulation_steps"):
        per = source.per_device_train_batch_size if per_device is None else per_device
        accumulation, world = source.gradient_accumulation_steps, getattr(source, "world_size", 1)
    elif hasattr(source, "accumulate_grad_batches") and hasattr(source, "world_size"):
        per = per_device
        if per is None:
            loader = getattr(source, "train_dataloader", None)
            per = getattr(loader, "batch_size", None) if loader is not None and not callable(loader) else None
        if per is None:
            raise ValueError(
                "global_batch_size: the trainer has no training dataloader yet (configure_optimizers runs before "
                "it is built); pass per_device=<the DataLoader's batch_size>"
            )
        accumulation, world = source.accumulate_grad_batches, source.world_size
    else:
        raise ValueError(
            f"global_batch_size: cannot read a batch size from {type(source).__name__}; pass a Lightning Trainer, "
            "Hugging Face TrainingArguments, or compute B = per-device batch x accumulation x processes yourself"
        )
    return (
        _positive_int(per, "the per-device batch size")
        * _positive_int(accumulation, "the gradient accumulation steps")
        * _positive_int(world, "the world size")
    )
