"""Training throughput of a config: the data pipeline alone, the train step alone, the full loop.

The full loop should reach at least 90% of the slower of the other two when the loader and
the step run on different hardware (CPU workers feeding a GPU); if it does not, something in
the loop (logging, synchronisation, a starved loader) costs more than it should. On a CPU-only
machine the workers and the step share the same cores, so the loop is bounded instead by
doing both in turn: :func:`measure_throughput` also gives that serial bound, 1 / (1/data + 1/step).
"""

from __future__ import annotations

import copy
import os
import platform
import time
from pathlib import Path

import torch

from faceattr.config import Config, load_config
from faceattr.files import save_table

TABLE_HEADER = ("| config | backbone | px | batch | workers | data img/s | step img/s | loop img/s | loop / slower "
                "| loop / serial bound |\n|---|---|---|---|---|---|---|---|---|---|\n")


def _rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_throughput(config: Config, steps: int = 20, warmup: int = 3) -> dict:
    """Images per second of the loader, of the train step on one resident batch, and of the loop.

    Args:
        config: The run to measure (left unchanged).
        steps: Timed batches per measurement.
        warmup: Untimed batches before each.

    Returns:
        ``data_images_per_s``, ``step_images_per_s``, ``loop_images_per_s``, ``loop_vs_slower``,
        ``serial_bound_images_per_s``, ``loop_vs_serial_bound``, ``device`` and
        ``peak_gpu_memory_gib`` (None without a GPU).

    >>> figures = measure_throughput(load_config("configs/demo.yaml"), steps=5)  # doctest: +SKIP
    """
    from faceattr.data.loader import build_data, build_loaders
    from faceattr.runtime import select_device
    from faceattr.training.engine import seed_everything, train_one_epoch, train_step
    from faceattr.training.parts import build_training

    config = copy.deepcopy(config)
    seed_everything(config.train.seed)
    device = select_device(config.train.device)
    bundle = build_data(config.data)
    train_loader, _ = build_loaders(bundle, config.data, config.train.seed, device=device)
    parts = build_training(config, bundle.positive_rate, device, len(train_loader))
    # The loop is compared with the step alone, which updates no EMA: left in, the EMA's cost
    # would read as loop overhead.
    parts.ema = None
    batch_size = config.data.batch_size
    train_loader.sampler.set_epoch(0)

    batches = iter(train_loader)
    for _ in range(warmup):
        next(batches)
    started = time.perf_counter()
    for _ in range(steps):
        next(batches)
    data_rate = _rate(steps * batch_size, time.perf_counter() - started)

    batch = {key: value.to(device) for key, value in next(iter(train_loader)).items()}
    parts.model.train()
    for _ in range(warmup):
        train_step(parts, batch, config, device=device)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(parts, batch, config, device=device)
    _synchronize(device)
    step_rate = _rate(steps * batch_size, time.perf_counter() - started)

    config.train.max_steps_per_epoch = warmup
    train_one_epoch(parts, train_loader, config, epoch=0, step=0, device=device)
    config.train.max_steps_per_epoch = steps
    _synchronize(device)
    started = time.perf_counter()
    train_one_epoch(parts, train_loader, config, epoch=1, step=0, device=device)
    _synchronize(device)
    loop_rate = _rate(steps * batch_size, time.perf_counter() - started)

    slower = min(data_rate, step_rate)
    serial = 1 / (1 / data_rate + 1 / step_rate)
    return {"data_images_per_s": data_rate, "step_images_per_s": step_rate, "loop_images_per_s": loop_rate,
            "loop_vs_slower": loop_rate / slower, "serial_bound_images_per_s": serial,
            "loop_vs_serial_bound": loop_rate / serial, "device": str(device),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def machine() -> str:
    """A one-line description of the hardware the figures come from.

    >>> "CPU cores" in machine()
    True
    """
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU"


def benchmark_training(config_path: str | Path, overrides: list[str] | tuple[str, ...] = (), steps: int = 20,
                       warmup: int = 3, out: str | Path = "runs/bench") -> tuple[dict, str, Path]:
    """Measures a config file's training throughput and saves it as JSON and a markdown table.

    Args:
        config_path: The YAML config.
        overrides: Dotted ``key=value`` overrides.
        steps: Timed batches per measurement.
        warmup: Untimed batches before each.
        out: Folder that receives ``train_throughput_<config stem>.json`` and ``.md``.

    Returns:
        The row (config, settings, machine and :func:`measure_throughput`'s figures), the
        markdown table, and the saved files' path without suffix.

    Raises:
        ConfigError: If the config cannot be read.

    >>> row, table, saved = benchmark_training("configs/demo.yaml", steps=5)  # doctest: +SKIP
    """
    config = load_config(config_path, overrides)
    result = measure_throughput(config, steps, warmup)
    row = {"config": str(config_path), "overrides": " ".join(overrides), "backbone": config.model.backbone,
           "image_size": config.data.image_size, "batch_size": config.data.batch_size,
           "workers": config.data.workers, "machine": machine(), "torch": torch.__version__, **result}
    table = (TABLE_HEADER +
             f"| {Path(config_path).name} {row['overrides']} | {row['backbone']} | {row['image_size']} | "
             f"{row['batch_size']} | {row['workers']} | {result['data_images_per_s']:.1f} | "
             f"{result['step_images_per_s']:.1f} | {result['loop_images_per_s']:.1f} | "
             f"{result['loop_vs_slower']:.2f} | {result['loop_vs_serial_bound']:.2f} |\n\n"
             f"Machine: {row['machine']}; torch {row['torch']}.\n")
    markdown, _ = save_table(out, f"train_throughput_{Path(config_path).stem}", table, row)
    return row, table, markdown.with_suffix("")
