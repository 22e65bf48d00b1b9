"""faceattr.data.pack on generated data: the packed CSVs train and validate as the original config does."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from faceattr.config import DataConfig, SourceConfig, config_from_dict, load_config
from faceattr.data.loader import build_data
from faceattr.data.pack import encode_face, pack, summary_lines
from faceattr.data.readers.csvfile import hashed_split
from faceattr.data.records import FaceRecord
from faceattr.data.sources import read_source
from faceattr.data.transforms import CropResize
from faceattr.errors import ConfigError, DatasetError, ImageError
from faceattr.image import load_image
from faceattr.synthetic.fixtures import make_celeba, make_celebahq, make_csv, make_scut

SIZE = 32
NAMES = ["s0_celeba_celeba", "s1_celebahq_hq", "s2_scut_scut", "s3_csv_team", "s4_csv_wild"]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    """A config of every kind: CelebA (cropped, a test split), CelebA-HQ, SCUT (4 folds, fold 1 val),
    a team CSV with one trained person held out, and a CSV whose held-out person is its validation split."""
    root = tmp_path_factory.mktemp("pack")
    make_celeba(root / "celeba", identities=10, images_per_identity=3, seed=5, missing_fraction=0.1)
    make_celebahq(root / "hq", root / "celeba", count=8, size=SIZE)
    make_scut(root / "scut", count=20, size=SIZE)
    make_csv(root / "team.csv", root / "photos", count=18)
    make_csv(root / "wild.csv", root / "wild", count=9, seed=1)
    trained = [f"person{k}" for k in range(1, 7) if hashed_split(f"person{k}", 0.3) == "train"]
    assert len(trained) >= 2  # one held out, one left to train on
    (root / "held.txt").write_text(f"csv:wild:id:person1\ncsv:team:id:{trained[0]}\n")
    path = root / "tiny.yaml"
    path.write_text(f"""
data:
  sources:
    - {{kind: celeba, root: {root / 'celeba'}, crop: [0.051, 0.1665, 0.942, 0.894]}}
    - {{kind: celebahq, root: {root / 'hq'}, celeba_root: {root / 'celeba'}, weight: 0.5}}
    - {{kind: scut, root: {root / 'scut'}, folds: 4, fold: 1, weight: 2.0}}
    - {{kind: csv, root: {root / 'team.csv'}, val_fraction: 0.3}}
    - {{kind: csv, root: {root / 'wild.csv'}, split: holdout}}
  holdout_groups: {root / 'held.txt'}
  image_size: {SIZE}
  max_val_samples: 5
""")
    return path


@pytest.fixture(scope="module")
def webp(config_file) -> Path:
    """The config packed as WebP (quality 85) by two worker processes."""
    out = config_file.parent / "webp"
    pack(load_config(config_file).data, out, workers=2)
    return out


@pytest.fixture(scope="module")
def png(config_file) -> Path:
    """The config packed as lossless PNG in this process."""
    out = config_file.parent / "png"
    pack(load_config(config_file).data, out, "png", workers=1)
    return out


def packed_config(config_file: Path, out: Path) -> DataConfig:
    """The original data section with the packed sources of ``out/sources.yaml`` and no held-out groups."""
    sources = yaml.safe_load((out / "sources.yaml").read_text())["sources"]
    return config_from_dict({"data": {"sources": sources, "image_size": SIZE, "max_val_samples": 5}}).data


def splits(config: DataConfig) -> list[tuple[list[FaceRecord], list[FaceRecord]]]:
    """Each source's training and validation records, as training reads them (validation uncapped)."""
    bundle = build_data(dataclasses.replace(config, max_val_samples=0))
    return [(train.records, val.records) for train, val in zip(bundle.train.datasets, bundle.val.datasets)]


def test_packed_sources_train_and_validate_on_the_same_records_and_labels(config_file, webp):
    original, packed = splits(load_config(config_file).data), splits(packed_config(config_file, webp))
    for name, source_sides, packed_sides in zip(NAMES, original, packed):
        for side, packed_side in zip(source_sides, packed_sides):
            # Same records in the same order, so the sampler draws the same faces for the same seed.
            assert [r.path.stem for r in packed_side] == [r.path.stem for r in side]
            for record, copy in zip(side, packed_side):
                assert copy.group == f"csv:{name}:id:{record.group}" and copy.beauty == record.beauty
                if record.attributes is None:
                    assert copy.attributes is None
                else:
                    assert np.array_equal(copy.attributes, record.attributes)
                    assert np.array_equal(copy.attribute_mask, record.attribute_mask)
    assert [len(val) for _, val in original] == [len(val) for _, val in packed] and sum(map(len, original[0])) > 5


def test_test_split_and_held_out_training_images_are_not_packed(config_file, webp):
    celeba, team = (read_source(load_config(config_file).data.sources[i]).records for i in (0, 3))
    held = (config_file.parent / "held.txt").read_text().split()[1]
    tests = {r.path.stem for r in celeba if r.split == "test"}
    held_training = {r.path.stem for r in team if r.group == held and r.split == "train"}
    assert tests and held_training
    assert {path.stem for path in (webp / NAMES[0]).iterdir()}.isdisjoint(tests)
    assert {path.stem for path in (webp / NAMES[3]).iterdir()}.isdisjoint(held_training)
    assert len(list(webp.rglob("*.webp"))) == sum(len(read_source(SourceConfig(kind="csv", root=str(webp / f"{name}.csv"))).records)
                              for name in NAMES)


def test_scut_folds_of_the_pack_are_the_original_folds(config_file, webp):
    scut = load_config(config_file).data.sources[2]
    for fold in (0, 1, 3):
        original = read_source(dataclasses.replace(scut, fold=fold)).records
        copy = read_source(SourceConfig(kind="csv", root=str(webp / f"{NAMES[2]}.csv"), folds=4, fold=fold)).records
        assert ({r.path.stem: r.split for r in copy} == {r.path.stem: r.split for r in original})
        assert sum(r.split == "val" for r in copy) == 5


def test_sources_yaml_lists_csv_sources_with_the_weights_and_scut_folds(webp):
    sources = yaml.safe_load((webp / "sources.yaml").read_text())["sources"]
    assert [s["root"] for s in sources] == [(webp / f"{name}.csv").as_posix() for name in NAMES]
    assert [(s["kind"], s["weight"], s["crop"]) for s in sources] == [
        ("csv", weight, None) for weight in (1.0, 0.5, 2.0, 1.0, 1.0)]
    assert [(s.get("folds"), s.get("fold")) for s in sources] == [(None, None)] * 2 + [(4, 1)] + [(None, None)] * 2


def pixel_differences(config_file: Path, out: Path) -> list[float]:
    """Mean absolute difference of each packed image from the evaluation crop of its original."""
    config = load_config(config_file).data
    differences = []
    for source, sides, packed_sides in zip(config.sources, splits(config), splits(packed_config(config_file, out))):
        for record, copy in zip([*sides[0], *sides[1]], [*packed_sides[0], *packed_sides[1]]):
            image = load_image(copy.path)
            assert image.size == (SIZE, SIZE)
            expected = CropResize(SIZE, source.crop)(load_image(record.path))
            differences.append(float(np.abs(np.asarray(image, float) - np.asarray(expected, float)).mean()))
    return differences


def test_webp_images_are_close_to_the_evaluation_crops(config_file, webp):
    differences = pixel_differences(config_file, webp)
    assert np.mean(differences) < 6 and max(differences) < 8  # of 255, on drawn faces of sharp edges at 32 px


def test_png_images_are_the_evaluation_crops_exactly(config_file, png):
    assert set(pixel_differences(config_file, png)) == {0.0}


def test_a_rerun_writes_no_image_and_overwrite_writes_them_all(config_file, png):
    times = {path: path.stat().st_mtime_ns for path in png.rglob("*.png")}
    summaries = pack(load_config(config_file).data, png, "png", workers=1)
    assert sum(s.rows for s in summaries) == sum(s.kept for s in summaries) == len(times)
    assert sum(s.written for s in summaries) == 0
    assert {path: path.stat().st_mtime_ns for path in png.rglob("*.png")} == times
    summaries = pack(load_config(config_file).data, png, "png", workers=1, overwrite=True)
    assert sum(s.written for s in summaries) == len(times) and sum(s.kept for s in summaries) == 0


def test_a_pack_made_with_other_settings_or_a_foreign_folder_is_refused(config_file, webp, tmp_path):
    config = load_config(config_file).data
    with pytest.raises(DatasetError, match=r"packed with other settings \(quality\): pass --overwrite"):
        pack(config, webp, quality=75)
    with pytest.raises(DatasetError, match=r"\(image_size\)"):
        pack(load_config(config_file, [f"data.image_size={SIZE * 2}"]).data, webp)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="no pack.json, so it is no pack"):
        pack(config, tmp_path)
    for options, message in [({"image_format": "gif"}, "'gif' is not one of webp, jpeg, png"),
                             ({"quality": 0}, "outside 1-100"), ({"workers": 0}, "at least 1")]:
        with pytest.raises(ConfigError, match=message):
            pack(config, tmp_path / "new", **options)
    assert not (tmp_path / "new").exists()


def test_an_unreadable_image_stops_the_pack_or_is_left_out_with_skip(tmp_path):
    make_csv(tmp_path / "team.csv", tmp_path / "photos", count=6)
    (tmp_path / "photos" / "team_0003.jpg").write_bytes(b"not an image")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{sources: [{{kind: csv, root: {tmp_path / 'team.csv'}}}], image_size: 16}}\n")
    with pytest.raises(ImageError, match="team_0003.jpg"):
        pack(load_config(config).data, tmp_path / "out", workers=1)
    summaries = pack(load_config(config, ["data.on_bad_sample=skip"]).data, tmp_path / "out", workers=1)
    assert summary_lines(summaries, tmp_path / "out")[0].startswith(
        "s0_csv_team: 5 faces (3 written, 2 already there, 1 unreadable left out)")
    packed = read_source(SourceConfig(kind="csv", root=str(tmp_path / "out" / "s0_csv_team.csv"))).records
    assert [r.path.stem for r in packed] == [f"team_000{i}" for i in (1, 2, 4, 5, 6)]


def test_a_packed_image_is_never_written_through_a_planted_link(tmp_path):
    """Links planted at the image's name and at a fixed temporary name beside it leave their targets intact."""
    source = tmp_path / "face.png"
    Image.fromarray(np.full((109, 89, 3), 120, np.uint8)).save(source)
    victims = [tmp_path / "victim1.txt", tmp_path / "victim2.txt"]
    for victim in victims:
        victim.write_text("precious")
    target = tmp_path / "out" / "face.png"
    target.parent.mkdir()
    target.symlink_to(victims[0])
    target.with_name("face.png.part").symlink_to(victims[1])
    assert encode_face(source, target, None, SIZE, "png", 85) == target.stat().st_size
    assert [victim.read_text() for victim in victims] == ["precious", "precious"]
    assert not target.is_symlink() and Image.open(target).size == (SIZE, SIZE)
