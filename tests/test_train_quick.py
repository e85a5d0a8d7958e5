"""`chatedit train builtin --quick` runs the whole recipe and writes weights the product can load."""

import json

import pytest
import torch

from chatedit import bench_builtin, cli
from chatedit.tools.builtin.backend import BuiltinBackend
from chatedit.tools.builtin.loading import FIELD_FILE, LINEAR_FILE, MODEL_FILES, OFFSETS_FILE, load_builtin, load_model
from chatedit.tools.walk import FaceState, edit


@pytest.mark.slow
def test_quick_training_end_to_end(tmp_path, capsys):
    assert cli.main(["train", "builtin", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["seconds"]) >= {"render", "autoencoder", "predictor", "second_predictor", "identity", "fields"}
    expected = list(MODEL_FILES.values()) + [LINEAR_FILE, OFFSETS_FILE, FIELD_FILE.format(name="smiling")]
    assert all((tmp_path / name).is_file() for name in expected)

    backend = BuiltinBackend(load_builtin(tmp_path, "cpu"))
    result = bench_builtin.run(backend, people=6, variants=2, refine=2, refine_steps=2)
    assert 5 < result["psnr_db"] < 60 and 0 <= result["identity_auc"] <= 1
    w = backend.sample(1)
    out = edit(backend, FaceState(w, backend.identity(backend.generate(w))), "smiling", target=5, max_steps=6)
    assert out.steps <= 6  # poor weights still give a bounded, well-formed edit


@pytest.mark.slow
def test_second_predictor_alone_over_the_shipped_autoencoder(tmp_path, capsys):
    assert cli.main(["train", "second-predictor", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["seconds"]) == {"second_predictor"}
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_FILES["second_predictor"]]
    model = load_model(tmp_path / MODEL_FILES["second_predictor"])
    assert model.config["channels"] == [32, 64, 128] and model(torch.rand(2, 3, 128, 128)).shape == (2, 5, 6)
