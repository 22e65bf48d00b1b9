"""Training throughput of a config: the data pipeline alone, the train step alone, the full loop.

The full loop should reach at least 90% of the slower of the other two when the loader and
the step run on different hardware (CPU workers feeding a GPU); if it does not, something in
the loop (logging, synchronisation, a starved loader) costs more than it should. On a CPU-only
machine the workers and the step share the same cores, so the loop is bounded instead by
doing both in turn: the table also gives that serial bound, 1 / (1/data + 1/step).
The measuring is :func:`faceattr.training.benchmark.benchmark_training`.

Examples:
    python tools/benchmark_train.py configs/resnet18_cpu.yaml --steps 30
    python tools/benchmark_train.py configs/demo.yaml data.workers=2 --out runs/bench
"""

from __future__ import annotations

import argparse
import sys


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure training throughput.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    parser.add_argument("--steps", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--out", default="runs/bench", help="folder for the JSON and markdown tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from faceattr.runtime import configure_logging
    from faceattr.training.benchmark import benchmark_training

    configure_logging()
    _, table, saved = benchmark_training(args.config, args.overrides, args.steps, args.warmup, args.out)
    print(table)
    print(f"saved {saved}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
