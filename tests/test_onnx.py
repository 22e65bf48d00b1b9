"""ONNX: export with the description in the file's metadata, loading it back, and the ONNX Runtime backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from faceattr import cli  # noqa: E402
from faceattr.errors import CheckpointError, ConfigError  # noqa: E402
from faceattr.inference.backends import BACKEND_TOLERANCE  # noqa: E402
from faceattr.inference.predictor import Predictor  # noqa: E402
from faceattr.models.deployed import DeployedModel, description_path  # noqa: E402
from faceattr.models.onnx import DESCRIPTION_KEY, INPUT, OUTPUTS  # noqa: E402
from faceattr.synthetic.drawing import draw_face, random_labels  # noqa: E402
from faceattr.training.export import export_model  # noqa: E402


@pytest.fixture(scope="session")
def exports(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The untrained ResNet-10-T checkpoint exported float16 both ways: ``safetensors`` (+ .json) and ``onnx``."""
    folder = tmp_path_factory.mktemp("exports")
    paths = {suffix: folder / f"tiny.{suffix}" for suffix in ("safetensors", "onnx")}
    for path in paths.values():
        export_model(checkpoint, path, "float16")
    return paths


def faces(count: int) -> list[np.ndarray]:
    """Drawn faces in CelebA's aligned geometry."""
    rng = np.random.default_rng(5)
    return [np.asarray(draw_face(random_labels(rng), rng=rng)) for _ in range(count)]


def outputs(predictor: Predictor, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]:
    results = predictor.predict_aligned(images)
    return (np.array([list(r.probabilities.values()) for r in results]), np.array([r.beauty for r in results]),
            [r.attributes for r in results])


def test_an_onnx_export_gives_the_probabilities_of_its_safetensors_twin(exports: dict[str, Path]) -> None:
    images = faces(5)
    torch_predictor = Predictor(exports["safetensors"], device="cpu", batch_size=3)
    torch_p, torch_b, torch_listed = outputs(torch_predictor, images)
    onnx_predictor = Predictor(exports["onnx"], device="cpu", batch_size=3)
    onnx_p, onnx_b, onnx_listed = outputs(onnx_predictor, images)
    assert (torch_predictor.backend, onnx_predictor.backend) == ("torch", "onnx")  # onnx: the default for an .onnx
    assert onnx_predictor.model.model_args == torch_predictor.model.model_args  # what the service reports
    assert np.abs(onnx_p - torch_p).max() < BACKEND_TOLERANCE and np.abs(onnx_b - torch_b).max() < BACKEND_TOLERANCE
    assert onnx_listed == torch_listed


def test_the_default_model_on_onnx_runtime_matches_torch() -> None:
    images = faces(4)
    torch_p, torch_b, _ = outputs(Predictor(device="cpu", backend="torch"), images)
    onnx_p, onnx_b, _ = outputs(Predictor(device="cpu", backend="onnx"), images)  # exported in memory
    assert np.abs(onnx_p - torch_p).max() < BACKEND_TOLERANCE and np.abs(onnx_b - torch_b).max() < BACKEND_TOLERANCE


def test_the_onnx_file_holds_the_description_of_the_json_sidecar(exports: dict[str, Path]) -> None:
    sidecar = json.loads(description_path(exports["safetensors"]).read_text())
    model = onnx.load(exports["onnx"])
    inside = json.loads({p.key: p.value for p in model.metadata_props}[DESCRIPTION_KEY])
    differs = {"weights", "sha256", "bytes"}  # of the file each describes
    assert {k: v for k, v in inside.items() if k not in differs} == {k: v for k, v in sidecar.items() if k not in differs}
    assert inside["weights"] == "tiny.onnx"
    loaded, twin = DeployedModel.load(exports["onnx"]), DeployedModel.load(exports["safetensors"])
    assert loaded.decision_fields() == twin.decision_fields() and loaded.metrics == twin.metrics
    assert loaded.source == exports["onnx"] and loaded.state_dict == {}


def test_the_graph_takes_uint8_images_with_a_dynamic_batch_and_stores_float16_weights(exports: dict[str, Path]) -> None:
    graph = onnx.load(exports["onnx"]).graph
    [images] = graph.input
    assert images.name == INPUT and images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert images.type.tensor_type.shape.dim[0].dim_param and [d.dim_value for d in
                                                                images.type.tensor_type.shape.dim[1:]] == [3, 64, 64]
    assert tuple(output.name for output in graph.output) == OUTPUTS
    stored = {onnx.TensorProto.DataType.Name(i.data_type) for i in graph.initializer if len(i.dims) == 4}
    assert "FLOAT16" in stored and exports["onnx"].stat().st_size < 1.2 * exports["safetensors"].stat().st_size


@pytest.mark.parametrize("content", [b"not an onnx file at all", b""])
def test_a_file_that_is_not_an_onnx_export_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.onnx"):
        DeployedModel.load(path)


def test_a_foreign_onnx_model_without_the_description_is_refused_naming_it(exports: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    model = onnx.load(exports["onnx"])
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match=f"foreign.onnx.*{DESCRIPTION_KEY}"):
        DeployedModel.load(tmp_path / "foreign.onnx")


def edited(exports: dict[str, Path], path: Path, edit) -> Path:
    """A copy of the ONNX export with ``edit(model, description)`` applied."""
    model = onnx.load(exports["onnx"])
    [entry] = model.metadata_props
    description = json.loads(entry.value)
    edit(model, description)
    entry.value = json.dumps(description)
    onnx.save(model, path)
    return path


def test_an_edited_threshold_or_replaced_weights_are_caught(exports: dict[str, Path], tmp_path: Path) -> None:
    def threshold(model, description):
        description["thresholds"][0] = 0.9

    def weights(model, description):
        first = model.graph.initializer[0]
        array = onnx.numpy_helper.to_array(first).copy()
        array.flat[0] += 1
        first.CopyFrom(onnx.numpy_helper.from_array(array, first.name))

    with pytest.raises(CheckpointError, match="threshold.onnx.*'decision_sha256'"):
        DeployedModel.load(edited(exports, tmp_path / "threshold.onnx", threshold))
    with pytest.raises(CheckpointError, match="weights.onnx: checksum mismatch"):
        DeployedModel.load(edited(exports, tmp_path / "weights.onnx", weights))
    with pytest.raises(CheckpointError, match="impossible.onnx.*'offsets'"):
        DeployedModel.load(edited(exports, tmp_path / "impossible.onnx",
                                  lambda model, description: description["offsets"].__setitem__(3, 99.0)))


def test_an_onnx_export_has_no_torch_weights(exports: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match=r"tiny.onnx: an ONNX export has no PyTorch weights.*backend 'onnx'"):
        Predictor(exports["onnx"], device="cpu", backend="torch")


def test_without_the_onnx_packages_the_error_names_the_extra(exports: dict[str, Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an environment without it gives: ImportError
    with pytest.raises(ConfigError, match=r"tiny.onnx needs the onnx package: pip install \"faceattr\[onnx\]\""):
        DeployedModel.load(exports["onnx"])


def test_the_cli_runs_an_onnx_export_and_exports_in_memory_with_backend_onnx(
        exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    face = tmp_path / "face.png"
    Image.fromarray(faces(1)[0]).save(face)
    printed = []
    for model, backend in ((exports["onnx"], []), (exports["safetensors"], ["--backend", "onnx"]),
                           (exports["safetensors"], ["--backend", "torch"])):
        assert cli.main(["predict", str(face), "--aligned", "--json", "--model", str(model), *backend]) == 0
        printed.append(json.loads(capsys.readouterr().out)[0]["faces"][0])
    probabilities = np.array([list(found["probabilities"].values()) for found in printed])
    assert np.abs(probabilities - probabilities[2]).max() < BACKEND_TOLERANCE


def test_export_tool_writes_one_onnx_file(run_tool, checkpoint: Path, tmp_path: Path) -> None:
    run = run_tool("export_model", checkpoint, "--out", tmp_path, "--name", "team", "--format", "onnx",
                   "--dtype", "float32")
    assert run.status == 0, run.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["team.onnx"]
    assert f"wrote {tmp_path / 'team.onnx'} (float32" in run.out
    assert DeployedModel.load(tmp_path / "team.onnx").description["dtype"] == "float32"


def test_the_backend_benchmark_measures_load_network_and_prediction(exports: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    from faceattr.inference.backend_benchmark import backend_table, measure_backend

    photos = {}
    for which in ("large", "frame"):
        photos[which] = str(tmp_path / f"{which}.jpg")
        Image.fromarray(faces(1)[0]).save(photos[which])
    result = measure_backend(str(exports["onnx"]), "onnx", 1, photos, 1, [1, 2])
    assert sorted(result["network_s"]) == ["1", "2"] and sorted(result["predict_s"]) == ["frame", "large"]
    assert result["load_s"] > 0 and all(t["fastest"] <= t["median"] for t in result["network_s"].values())
    table = backend_table([{"case": "onnx, .onnx file", "threads": 1, **result}], [1, 2],
                          {"model": "tiny", "runs": 1, "machine": "m", "torch": "t", "onnxruntime": "o",
                           "load_before": "0", "load_after": "0"})
    assert table.startswith("| backend | threads | load s | network ms, batch 1 | network ms, batch 2 |")
    assert "| onnx, .onnx file | 1 |" in table
