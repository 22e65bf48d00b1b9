"""Measures linear probes of the face embeddings on real data: CelebA validation attributes, SCUT-FBP5500 beauty.

Embeds CelebA's validation images (partition 1 of img_align_celeba, aligned as ``faceattr predict --aligned``
reads them) and SCUT-FBP5500 (all of it with the CelebA crop ``--aligned`` applies and whole, as the model's
SCUT source was read in training; then its held-out fold whole), writes each collection raw (.npy) in --out
and, per normalisation (none, L1, L2), measures ridge R² for beauty and logistic-regression ROC AUC for the 40
attributes (faceattr.explain.embeddings.probe). Saves probes.md and probes.json in --out.

Example:
    python tools/probe_embeddings.py ../shared/data --out runs/probe_embeddings
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from sklearn.metrics import r2_score

from faceattr.data.readers.celeba import read_celeba
from faceattr.data.readers.scut import read_scut
from faceattr.data.transforms import eval_transform
from faceattr.explain.embeddings import ProbeResult, dataset_labels, probe, probe_table, read_embeddings
from faceattr.explain.embeddings import write_embeddings
from faceattr.explain.rated_images import scut_source
from faceattr.files import save_table
from faceattr.inference.detect import FaceDetector
from faceattr.inference.predictor import Predictor
from faceattr.models.deployed import DeployedModel

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="?", default=DEFAULT_DATA, help=f"default: {DEFAULT_DATA}")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the collections and the table")
    parser.add_argument("--model", type=Path, default=None, help="default: the installed model")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    parser.add_argument("--repeats", type=int, default=2, help="cross-validation repeats (default: 2)")
    parser.add_argument("--limit", type=int, default=None, help="at most N images of each set (a quick run)")
    return parser


def measure(predictor: Predictor, name: str, records: list, labels: dict, args: argparse.Namespace) -> dict:
    """Embeds ``records`` into OUT/NAME.npy, probes them, and returns the timings and results."""
    paths = [str(record.path) for record in records[:args.limit]]
    started = time.perf_counter()
    faces = write_embeddings(args.out / f"{name}.npy", predictor.iter_embed(paths, aligned=True), "none",
                             str(args.model or "default"))
    embedded = time.perf_counter()
    collection = read_embeddings(args.out / f"{name}.npy")
    results = probe(collection, labels, args.folds, args.repeats)
    seconds = {"embed": round(embedded - started, 1), "probe": round(time.perf_counter() - embedded, 1)}
    # The beauty head is itself linear on these features: its own R² is the bar a probe is read against.
    ratings = [labels[source].get("beauty") for source in collection.columns["source"]]
    head = None if None in ratings else round(float(r2_score(ratings, collection.columns["beauty"])), 3)
    print(f"{name}: {faces} faces, {seconds}, beauty head R² {head}\n{probe_table(results)}", flush=True)
    return {"faces": faces, "seconds": seconds, "head_r2": head, "results": [vars(result) for result in results]}


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=False)
    predictor = Predictor(args.model, device="cpu", batch_size=64, detector=FaceDetector("haar"))  # aligned only
    # The model's SCUT source has its own crop (none: the whole 224x224 image), not CelebA's, and its own folds.
    source = scut_source(DeployedModel.load(args.model).config)
    celeba = [r for r in read_celeba(args.data / "celeba").records if r.split == "val"]
    scut = read_scut(args.data / "scut_fbp5500", source.get("folds") or 5, source.get("fold") or 0).records
    attributes, beauty = (dataset_labels(kind, args.data / folder) for kind, folder in
                          (("celeba", "celeba"), ("scut", "scut_fbp5500")))
    sets = {"celeba_val": measure(predictor, "celeba_val", celeba, attributes, args),
            "scut_celeba_crop": measure(predictor, "scut_celeba_crop", scut, beauty, args)}
    predictor.aligned_transform = eval_transform(predictor.image_size, source.get("crop"))
    sets["scut_training_crop"] = measure(predictor, "scut_training_crop", scut, beauty, args)
    held_out = [r for r in scut if r.split == "val"]  # the fold the model was not trained on
    sets["scut_held_out_training_crop"] = measure(predictor, "scut_held_out_training_crop", held_out, beauty, args)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}"
    table = "\n\n".join(f"### {name} ({found['faces']} faces; embed {found['seconds']['embed']} s, probes "
                        f"{found['seconds']['probe']} s; beauty head's own R² {found['head_r2']})\n\n"
                        + probe_table([ProbeResult(**result) for result in found["results"]])
                        for name, found in sets.items())
    command = "python tools/probe_embeddings.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record = {"command": command, "machine": machine, "folds": args.folds, "repeats": args.repeats, "sets": sets}
    for path in save_table(args.out, "probes", f"Machine: {machine}\n\n{table}\n", record):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
