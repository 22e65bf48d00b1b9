"""Tests of faceattr.data.loader: the mixing sampler, build_data's splits and checks, the loaders."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import faceattr.data.loader as loader_module
import faceattr.data.preload as preload_module
from faceattr.attributes import ATTRIBUTE_INDEX, NUM_ATTRIBUTES
from faceattr.config import Config, DataConfig, SourceConfig, validate
from faceattr.data.loader import MixingSampler, build_data, build_loaders
from faceattr.data.preload import PreloadedLoader
from faceattr.data.preload import preload as real_preload
from faceattr.data.records import FaceRecord, ReadResult
from faceattr.errors import ConfigError, DatasetError, ImageError

SIZE = 8


# --- MixingSampler ------------------------------------------------------------------------

def source_of(indices: list[int], sizes: list[int]) -> np.ndarray:
    return np.searchsorted(np.cumsum(sizes), indices, side="right")


def test_sampler_gives_each_source_its_weighted_share() -> None:
    sizes, weights = [50, 200, 1000], [1.0, 2.0, 5.0]
    sampler = MixingSampler(sizes, weights, num_samples=3001, seed=1)
    counts = np.bincount(source_of(list(sampler), sizes), minlength=3)
    assert counts.sum() == 3001
    assert np.abs(counts - 3001 * np.array(weights) / sum(weights)).max() < 1


def test_sampler_indices_stay_inside_the_concatenation() -> None:
    sampler = MixingSampler([5, 9], [1.0, 1.0], num_samples=200)
    assert min(sampler) >= 0 and max(sampler) < 14


def test_sampler_never_draws_a_zero_weight_source() -> None:
    sampler = MixingSampler([10, 10, 10], [1.0, 0.0, 1.0], num_samples=300)
    assert 1 not in set(source_of(list(sampler), [10, 10, 10]).tolist())


def test_small_source_is_cycled_whole_before_repeats() -> None:
    sampler = MixingSampler([7, 1000], [1.0, 1.0], num_samples=100, seed=2)
    small = Counter(index for index in sampler if index < 7)
    assert sum(small.values()) == 50 and sorted(small) == list(range(7))
    assert max(small.values()) - min(small.values()) <= 1  # 50 = 7 full cycles + 1


def test_large_source_gives_distinct_images_within_an_epoch() -> None:
    sampler = MixingSampler([7, 1000], [1.0, 1.0], num_samples=100, seed=2)
    large = [index for index in sampler if index >= 7]
    assert len(large) == len(set(large)) == 50


def test_large_source_is_walked_through_across_epochs() -> None:
    sampler = MixingSampler([100], [1.0], num_samples=30, seed=4)
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen += list(sampler)
    assert len(set(seen)) == 90


def test_same_seed_and_epoch_give_the_same_order() -> None:
    first = MixingSampler([30, 40], [1.0, 3.0], num_samples=64, seed=7)
    second = MixingSampler([30, 40], [1.0, 3.0], num_samples=64, seed=7)
    first.set_epoch(5)
    second.set_epoch(5)
    assert list(first) == list(second)


def test_another_epoch_or_seed_gives_another_order() -> None:
    sampler = MixingSampler([30, 40], [1.0, 3.0], num_samples=64, seed=7)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert list(MixingSampler([30, 40], [1.0, 3.0], num_samples=64, seed=8)) != epoch0


def test_ranks_split_the_single_process_list() -> None:
    single = list(MixingSampler([500, 500], [1.0, 2.0], num_samples=99, seed=3))
    ranks = [MixingSampler([500, 500], [1.0, 2.0], num_samples=99, seed=3, rank=r, world_size=3) for r in range(3)]
    lists = [list(sampler) for sampler in ranks]
    assert [len(part) for part in lists] == [len(sampler) for sampler in ranks] == [33, 33, 33]
    assert not set(lists[0]) & set(lists[1]) and not set(lists[1]) & set(lists[2]) and not set(lists[0]) & set(lists[2])
    assert [index for group in zip(*lists) for index in group] == single


def test_sample_count_is_rounded_up_to_a_multiple_of_the_world_size() -> None:
    assert len(MixingSampler([50], [1.0], num_samples=10, rank=1, world_size=4)) == 3


@pytest.mark.parametrize("sizes, weights", [([10, 0], [1.0, 1.0]), ([10, 10], [0.0, 0.0]), ([10], [-1.0])])
def test_sampler_rejects_undrawable_mixes(sizes: list[int], weights: list[float]) -> None:
    with pytest.raises(ConfigError, match="data.sources"):
        MixingSampler(sizes, weights, num_samples=10)


# --- build_data with a stand-in reader ----------------------------------------------------

def make_image(path: Path, left: int = 128, right: int = 128) -> Path:
    """A small image whose left and right halves have the given grey levels."""
    if not path.exists():
        image = Image.new("RGB", (SIZE * 2, SIZE), (left,) * 3)
        image.paste((right,) * 3, (SIZE, 0, SIZE * 2, SIZE))
        image.save(path)
    return path


def attributes_of(male: float, smiling: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Attributes where only Male and (when not None) Smiling are known."""
    attributes = np.zeros(NUM_ATTRIBUTES, np.float32)
    mask = np.zeros(NUM_ATTRIBUTES, bool)
    attributes[ATTRIBUTE_INDEX["Male"]], mask[ATTRIBUTE_INDEX["Male"]] = male, True
    if smiling is not None:
        attributes[ATTRIBUTE_INDEX["Smiling"]], mask[ATTRIBUTE_INDEX["Smiling"]] = smiling, True
    return attributes, mask


def make_result(folder: Path, name: str, splits: dict[str, int], beauty: bool = False,
                male_every: int = 2, grey: tuple[int, int] = (128, 128)) -> ReadResult:
    """A reader's result: ``splits[split]`` records per split, each its own group and image.

    Attribute records are Male for every ``male_every``-th image and never Smiling; beauty
    records carry a beauty of 1 + position / 100 so their order can be checked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for split, count in splits.items():
        for i in range(count):
            path = make_image(folder / f"{name}_{split}_{i}.png", *grey)
            group = f"{name}:{split}:{i}"
            if beauty:
                records.append(FaceRecord(path, split, group, name, beauty=1 + i / 100))
            else:
                attributes, mask = attributes_of(float(i % male_every == 0), 0.0)
                records.append(FaceRecord(path, split, group, name, attributes, mask))
    return ReadResult(name, records, missing_images=3)


@pytest.fixture
def fake_reader(monkeypatch: pytest.MonkeyPatch) -> dict[str, ReadResult]:
    """Makes ``read_source`` return ``results[source.root]`` and record each call's bad-row policy."""
    results: dict[str, ReadResult] = {}

    def read_source(source: SourceConfig, on_bad_row: str = "error") -> ReadResult:
        results.setdefault("policies", []).append(on_bad_row)
        return results[source.root]

    monkeypatch.setattr(loader_module, "read_source", read_source)
    return results


def data_config(*roots: str, weights: tuple[float, ...] = (), **overrides) -> DataConfig:
    sources = [SourceConfig(kind="csv", root=root, weight=weights[i] if weights else 1.0)
               for i, root in enumerate(roots)]
    return DataConfig(sources=sources, **{"image_size": SIZE, "batch_size": 4, "workers": 0, **overrides})


def test_build_data_uses_train_and_val_splits_and_never_test(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 6, "val": 3, "test": 4})
    bundle = build_data(data_config("a"))
    assert len(bundle.train) == 6 and len(bundle.val) == 3 and bundle.train_sizes == [6]
    paths = [record.path.name for dataset in bundle.train.datasets + bundle.val.datasets for record in dataset.records]
    assert not [name for name in paths if "_test_" in name]


def test_build_data_reports_sources(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 4})
    fake_reader["b"] = make_result(tmp_path, "b", {"train": 2, "val": 1}, beauty=True)
    bundle = build_data(data_config("a", "b", weights=(1.0, 3.0), on_bad_sample="skip"))
    assert bundle.source_names == ["a", "b"] and bundle.source_weights == [1.0, 3.0] and bundle.train_sizes == [4, 2]
    assert bundle.summaries == [fake_reader["a"].summary(), fake_reader["b"].summary()]
    assert fake_reader["policies"] == ["skip", "skip"]


def test_group_in_train_and_val_of_one_source_is_a_leak(tmp_path: Path, fake_reader: dict) -> None:
    result = make_result(tmp_path, "a", {"train": 3, "val": 2})
    result.records[-1] = FaceRecord(result.records[-1].path, "val", "a:train:1", "a", beauty=2.0)
    fake_reader["a"] = result
    with pytest.raises(DatasetError, match="'a:train:1'.*leak"):
        build_data(data_config("a"))


def test_group_shared_across_sources_is_a_leak(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 3})
    other = make_result(tmp_path, "b", {"train": 2, "val": 1}, beauty=True)
    other.records[-1] = FaceRecord(other.records[-1].path, "val", "a:train:2", "b", beauty=2.0)
    fake_reader["b"] = other
    with pytest.raises(DatasetError, match=r"data.sources\[0\] \(a\).*data.sources\[1\] \(b\)"):
        build_data(data_config("a", "b"))


def test_held_out_groups_leave_every_training_split_and_are_a_holdout_sources_val(tmp_path: Path,
                                                                                  fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 4, "val": 2})
    wild = make_result(tmp_path, "w", {"train": 3, "test": 1})
    # The in-the-wild photos of person a:train:0 and the official crops of that person share a group.
    wild.records[0] = replace(wild.records[0], group="a:train:0")
    fake_reader["w"] = wild
    listed = tmp_path / "holdout.txt"
    listed.write_text("# held-out people\na:train:0\n\nw:train:2  # and this one\n")
    config = data_config("a", "w", holdout_groups=str(listed))
    config.sources[1].split = "holdout"
    bundle = build_data(config)
    groups = lambda datasets: [[r.group for r in d.records] for d in datasets]
    assert groups(bundle.train.datasets) == [["a:train:1", "a:train:2", "a:train:3"], ["w:train:1"]]
    assert groups(bundle.val.datasets) == [["a:val:0", "a:val:1"], ["a:train:0", "w:train:2"]]


def test_holdout_split_without_a_groups_file_is_a_config_error() -> None:
    config = Config()
    config.data.sources = [SourceConfig(kind="celeba", root="x", split="holdout")]
    with pytest.raises(ConfigError, match=r"data.sources\[0\].split.*data.holdout_groups"):
        validate(config)


def test_missing_groups_file_is_named(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 2, "val": 1})
    with pytest.raises(DatasetError, match="nowhere.txt"):
        build_data(data_config("a", holdout_groups=str(tmp_path / "nowhere.txt")))


def test_positive_rates_come_from_training_labels(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 8, "val": 8}, male_every=4)  # 2 of 8 Male
    fake_reader["b"] = make_result(tmp_path, "b", {"train": 5}, beauty=True)  # no attributes
    rate = build_data(data_config("a", "b")).positive_rate
    assert rate.shape == (NUM_ATTRIBUTES,)
    assert rate[ATTRIBUTE_INDEX["Male"]] == pytest.approx(0.25)
    assert rate[ATTRIBUTE_INDEX["Smiling"]] == 0.0
    assert rate[ATTRIBUTE_INDEX["Young"]] == 0.5  # never labelled


def test_positive_rates_follow_the_mixing_weights(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 4}, male_every=1)  # all Male
    fake_reader["b"] = make_result(tmp_path, "b", {"train": 8}, male_every=10 ** 6 + 1)  # only image 0 Male
    rate = build_data(data_config("a", "b", weights=(1.0, 3.0))).positive_rate
    assert rate[ATTRIBUTE_INDEX["Male"]] == pytest.approx(0.25 * 1.0 + 0.75 * 1 / 8)


def test_max_val_samples_keeps_an_even_spread(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 2, "val": 10})
    fake_reader["b"] = make_result(tmp_path, "b", {"train": 2, "val": 10})
    bundle = build_data(data_config("a", "b", max_val_samples=5))
    assert len(bundle.val) == 5 and list(bundle.val.indices) == [0, 4, 8, 12, 16]


def test_each_source_is_cut_with_its_own_crop(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path / "a", "a", {"train": 1, "val": 1}, grey=(255, 0))
    fake_reader["b"] = make_result(tmp_path / "b", "b", {"train": 1, "val": 1}, grey=(255, 0))
    config = data_config("a", "b")
    config.sources[0].crop = [0.0, 0.0, 0.5, 1.0]  # the white half
    config.sources[1].crop = [0.5, 0.0, 1.0, 1.0]  # the black half
    bundle = build_data(config)
    assert bundle.val[0]["image"].float().mean() > 250 and bundle.val[1]["image"].float().mean() < 5


def test_no_sources_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="data.sources"):
        build_data(DataConfig(sources=[]))


def test_source_without_training_images_is_a_config_error(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 3})
    fake_reader["b"] = make_result(tmp_path, "b", {"val": 2, "test": 2})
    with pytest.raises(ConfigError, match=r"data.sources\[1\]"):
        build_data(data_config("a", "b"))


def test_validation_only_source_with_zero_weight_is_accepted(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 3})
    fake_reader["b"] = make_result(tmp_path, "b", {"val": 2})
    assert len(build_data(data_config("a", "b", weights=(1.0, 0.0))).val) == 2


def test_no_training_images_at_all_is_a_config_error(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"val": 2})
    with pytest.raises(ConfigError, match="data.sources"):
        build_data(data_config("a", weights=(0.0,)))


# --- build_loaders ------------------------------------------------------------------------

@pytest.fixture
def bundle(tmp_path: Path, fake_reader: dict):
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 6, "val": 5}, beauty=True)
    fake_reader["b"] = make_result(tmp_path, "b", {"train": 10, "val": 4})
    return build_data(data_config("a", "b"))


def epoch_batches(loader, epoch: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    torch.manual_seed(100 + epoch)  # as the engine does; the batches must not depend on it
    return list(loader)


def test_train_loader_yields_full_mixed_batches(bundle) -> None:
    config = data_config("a", "b", epoch_size=18)
    train_loader, _ = build_loaders(bundle, config, seed=0)
    batches = epoch_batches(train_loader, 0)
    assert len(batches) == len(train_loader) == 4  # 18 // 4, the last partial batch dropped
    assert all(batch["image"].shape == (4, 3, SIZE, SIZE) for batch in batches)
    beauty_share = torch.cat([batch["beauty_mask"] for batch in batches]).float().mean()
    assert beauty_share == 0.5  # equal weights: 8 of the 16 samples from the beauty source


def test_train_batches_depend_only_on_seed_and_epoch(bundle) -> None:
    config = data_config("a", "b", epoch_size=16)
    first, _ = build_loaders(bundle, config, seed=3)
    again, _ = build_loaders(bundle, config, seed=3)
    epoch1 = epoch_batches(first, 1)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(epoch1, epoch_batches(again, 1)))
    assert not torch.equal(epoch1[0]["image"], epoch_batches(first, 2)[0]["image"])


def test_augmentation_ignores_workers_and_history(bundle) -> None:
    """Persistent workers that already ran epoch 0 give epoch 1 as a fresh single-process loader does."""
    config = data_config("a", "b", epoch_size=8)
    resumed, _ = build_loaders(bundle, config, seed=5)
    with_workers, _ = build_loaders(bundle, data_config("a", "b", epoch_size=8, workers=2), seed=5)
    epoch_batches(with_workers, 0)
    expected = epoch_batches(resumed, 1)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(epoch_batches(with_workers, 1), expected))


def test_validation_shards_are_contiguous_and_complete(bundle) -> None:
    config = data_config("a", "b", batch_size=2)
    shards = [build_loaders(bundle, config, seed=0, rank=rank, world_size=2)[1] for rank in range(2)]
    assert [list(loader.dataset.indices) for loader in shards] == [list(range(0, 4)), list(range(4, 9))]
    beauty = [value for loader in shards for batch in loader for value in batch["beauty"].tolist()]
    assert beauty == pytest.approx([1.0, 1.01, 1.02, 1.03, 1.04, 0.0, 0.0, 0.0, 0.0])


def test_batch_larger_than_the_epoch_is_a_config_error(bundle) -> None:
    with pytest.raises(ConfigError, match="data.batch_size"):
        build_loaders(bundle, data_config("a", "b", batch_size=64), seed=0)


# --- preloaded loaders (data.preload) ------------------------------------------------------

def test_preloaded_loaders_without_augmentation_give_the_dataloaders_batches(tmp_path: Path, fake_reader: dict):
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 6, "val": 5}, beauty=True, grey=(40, 200))
    fake_reader["b"] = make_result(tmp_path, "b", {"train": 10, "val": 4}, grey=(90, 10))
    streamed = build_loaders(build_data(data_config("a", "b", epoch_size=16, augment=False)),
                             data_config("a", "b", epoch_size=16, augment=False), seed=2)
    config = data_config("a", "b", epoch_size=16, augment=False, preload=True)
    preloaded = build_loaders(build_data(config), config, seed=2)
    assert isinstance(preloaded[0], PreloadedLoader) and len(preloaded[0]) == len(streamed[0]) == 4
    for epoch in (0, 1):
        for ours, theirs in zip(epoch_batches(preloaded[0], epoch), epoch_batches(streamed[0], epoch), strict=True):
            assert ours.keys() == theirs.keys()
            assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    val_ours, val_theirs = list(preloaded[1]), list(streamed[1])
    assert len(val_ours) == len(val_theirs) == len(preloaded[1]) == 3  # 9 images in batches of 4
    assert all(torch.equal(a[key], b[key]) for a, b in zip(val_ours, val_theirs) for key in a)


def test_preloaded_augmented_batches_depend_only_on_seed_and_epoch(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 6, "val": 2}, grey=(40, 200))
    config = data_config("a", epoch_size=8, preload=True)
    first, again = (build_loaders(build_data(config), config, seed=4)[0] for _ in range(2))
    epoch1 = epoch_batches(first, 1)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(epoch1, epoch_batches(again, 1), strict=True))
    assert not torch.equal(epoch1[0]["image"], epoch_batches(first, 2)[0]["image"])
    plain = build_loaders(build_data(data_config("a", epoch_size=8, preload=True, augment=False)),
                          data_config("a", epoch_size=8, preload=True, augment=False), seed=4)[0]
    assert not torch.equal(epoch1[0]["image"], epoch_batches(plain, 1)[0]["image"])


def test_preloading_waits_for_the_first_batch(tmp_path: Path, fake_reader: dict, monkeypatch) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 6, "val": 2})
    config = data_config("a", epoch_size=4, preload=True)
    decoded = []
    monkeypatch.setattr(preload_module, "preload", lambda dataset, *args: decoded.append(len(dataset)) or
                        real_preload(dataset, *args))
    train_loader, val_loader = build_loaders(build_data(config), config, seed=0)
    assert decoded == []  # an evaluation that builds both loaders decodes no training image
    list(val_loader)
    assert decoded == [2]


def test_preload_leaves_out_unreadable_images_in_skip_mode(tmp_path: Path, fake_reader: dict) -> None:
    fake_reader["a"] = make_result(tmp_path, "a", {"train": 6, "val": 2})
    broken = fake_reader["a"].records[0].path
    broken.write_bytes(b"not an image")
    config = data_config("a", epoch_size=8, preload=True, on_bad_sample="skip")
    train_loader, _ = build_loaders(build_data(config), config, seed=0)
    batches = epoch_batches(train_loader, 0)
    assert len(batches) == 2 and all(len(batch["image"]) == 4 for batch in batches)
    assert train_loader.sampler.sizes == [5]
    with pytest.raises(ImageError, match=broken.name):
        config = data_config("a", epoch_size=8, preload=True)
        list(build_loaders(build_data(config), config, seed=0)[0])


# --- through the real readers -------------------------------------------------------------

def test_build_data_through_the_real_csv_reader(tmp_path: Path) -> None:
    lines = ["image,group,split,beauty,Male,Smiling"]
    for i in range(6):
        make_image(tmp_path / f"p{i}.png")
        lines.append(f"p{i}.png,person{i},{'val' if i >= 4 else 'train'},{2 + i / 10},{i % 2},")
    csv = tmp_path / "faces.csv"
    csv.write_text("\n".join(lines) + "\n")
    bundle = build_data(DataConfig(sources=[SourceConfig(kind="csv", root=str(csv))], image_size=SIZE))
    assert bundle.train_sizes == [4] and len(bundle.val) == 2
    assert bundle.positive_rate[ATTRIBUTE_INDEX["Male"]] == pytest.approx(0.5)
    assert bundle.positive_rate[ATTRIBUTE_INDEX["Smiling"]] == 0.5
    assert bundle.train[1]["beauty"].item() == pytest.approx(2.1)


@pytest.mark.real_data
def test_real_scut_gives_a_training_batch(shared_data: Path) -> None:
    config = DataConfig(sources=[SourceConfig(kind="scut", root=str(shared_data / "scut_fbp5500"))],
                        image_size=32, batch_size=4, workers=0, epoch_size=4, max_val_samples=8)
    bundle = build_data(config)
    assert bundle.train_sizes[0] > 1000 and len(bundle.val) == 8
    train_loader, _ = build_loaders(bundle, config, seed=0)
    batch = next(iter(train_loader))
    assert batch["image"].shape == (4, 3, 32, 32) and bool(batch["beauty_mask"].all())
    assert ((batch["beauty"] >= 1) & (batch["beauty"] <= 5)).all()
