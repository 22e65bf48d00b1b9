"""Training throughput of a config: the data pipeline alone, the train step alone, the full loop.

The full loop should reach at least 90% of the slower of the other two when the loader and
the step run on different hardware (CPU workers feeding a GPU); if it does not, something in
the loop (logging, synchronisation, a starved loader) costs more than it should. On a CPU-only
machine the workers and the step share the same cores, so the loop is bounded instead by
doing both in turn: the table also gives that serial bound, 1 / (1/data + 1/step).

Examples:
    python tools/benchmark_train.py configs/resnet18_cpu.yaml --steps 30
    python tools/benchmark_train.py configs/demo.yaml data.workers=2 --out runs/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure training throughput.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    parser.add_argument("--steps", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--out", default="runs/bench", help="folder for the JSON and markdown tables")
    return parser


def _rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config, steps: int, warmup: int) -> dict:
    """Images per second of the loader, of the train step on one resident batch, and of the loop."""
    from faceattr.data.loader import build_data, build_loaders
    from faceattr.training.engine import NullWriter, build_training, seed_everything, train_one_epoch, train_step
    from faceattr.runtime import World, select_device

    seed_everything(config.train.seed)
    device = select_device(config.train.device)
    bundle = build_data(config.data)
    train_loader, _ = build_loaders(bundle, config.data, config.train.seed, device=device)
    model, loss_fn, optimizer, scheduler, scaler = build_training(config, bundle.positive_rate, device,
                                                                  len(train_loader))
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
    model.train()
    for _ in range(warmup):
        train_step(model, loss_fn, batch, optimizer, scaler, device, config)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(model, loss_fn, batch, optimizer, scaler, device, config)
    _synchronize(device)
    step_rate = _rate(steps * batch_size, time.perf_counter() - started)

    config.train.max_steps_per_epoch = warmup
    train_one_epoch(model, loss_fn, train_loader, optimizer, scheduler, scaler, None, device, config, 0, 0,
                    World(), NullWriter())
    config.train.max_steps_per_epoch = steps
    _synchronize(device)
    started = time.perf_counter()
    train_one_epoch(model, loss_fn, train_loader, optimizer, scheduler, scaler, None, device, config, 1, 0,
                    World(), NullWriter())
    _synchronize(device)
    loop_rate = _rate(steps * batch_size, time.perf_counter() - started)

    slower = min(data_rate, step_rate)
    serial = 1 / (1 / data_rate + 1 / step_rate)
    return {"data_images_per_s": data_rate, "step_images_per_s": step_rate, "loop_images_per_s": loop_rate,
            "loop_vs_slower": loop_rate / slower, "serial_bound_images_per_s": serial,
            "loop_vs_serial_bound": loop_rate / serial, "device": str(device),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def machine() -> str:
    """A one-line description of the hardware the figures come from."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU"


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from faceattr.config import load_config
    from faceattr.runtime import configure_logging

    configure_logging()
    config = load_config(args.config, args.overrides)
    result = measure(config, args.steps, args.warmup)
    row = {"config": args.config, "overrides": " ".join(args.overrides), "backbone": config.model.backbone,
           "image_size": config.data.image_size, "batch_size": config.data.batch_size,
           "workers": config.data.workers, "machine": machine(), "torch": torch.__version__, **result}
    table = ("| config | backbone | px | batch | workers | data img/s | step img/s | loop img/s | loop / slower "
             "| loop / serial bound |\n|---|---|---|---|---|---|---|---|---|---|\n"
             f"| {Path(args.config).name} {row['overrides']} | {row['backbone']} | {row['image_size']} | "
             f"{row['batch_size']} | {row['workers']} | {result['data_images_per_s']:.1f} | "
             f"{result['step_images_per_s']:.1f} | {result['loop_images_per_s']:.1f} | "
             f"{result['loop_vs_slower']:.2f} | {result['loop_vs_serial_bound']:.2f} |\n\nMachine: {row['machine']}; torch {row['torch']}.\n")
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"train_throughput_{Path(args.config).stem}"
    (out / f"{name}.json").write_text(json.dumps(row, indent=2))
    (out / f"{name}.md").write_text(table)
    print(f"saved {out / name}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
