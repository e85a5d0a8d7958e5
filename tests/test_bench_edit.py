"""``chatedit bench edit`` on the built-in backend: field, baseline and the world's own answer."""

from __future__ import annotations

from chatedit import bench_edit
from chatedit.attributes import attribute_names
from chatedit.tools.builtin.backend import BuiltinBackend


def test_the_oracle_grades_the_same_jobs_with_the_world_re_rendered_at_the_target():
    backend = BuiltinBackend.load()
    bench = bench_edit.builtin_faces(backend, 4)
    result = bench_edit.run(backend, faces=4, timing_edits=2, bench=bench)
    names = attribute_names()
    for name in names:  # every attribute gets as many edits as faces asked for, beard from spare faces
        assert result["oracle"][name]["edits"] == result["field"][name]["edits"] == 4
        assert result["field_unpolished"][name]["edits"] == 4
    assert result["faces_drawn"] > 4
    # the oracle is the same person at the target: the steering predictor reads the target there,
    # and identity is kept better than any walk keeps it on average
    hits = total = 0
    for i in range(4):
        for a, name in enumerate(names):
            target = 5 if a != names.index("beard") else 0
            if not bench.reachable(i, a, target):
                continue
            image = bench.oracle(i, a, target)
            hits += int(backend.predict(image[None]).degrees[0, a]) == target
            total += 1
    assert total >= 14 and hits >= 0.8 * total
    assert all(result["oracle"][n]["identity"] > 0.9 for n in names)
    table = bench_edit.markdown(result)
    assert "| age | oracle |" in table and "perfect edit" in table and "| age | field_unpolished |" in table


def test_sampled_faces_have_no_oracle():
    backend = BuiltinBackend.load()
    bench = bench_edit.sampled_faces(backend, 2, lambda image: backend.predict(image).degrees)
    assert bench.oracle is None
    result = bench_edit.run(backend, faces=2, timing_edits=1, bench=bench)
    assert "oracle" not in result and "oracle" not in bench_edit.markdown(result)


def test_the_diffusion_bench_edits_real_photos_end_to_end_and_names_its_graders(tmp_path, capsys):
    """On tiny random pipelines: the numbers are all there, and the table says their quality is unmeasured."""
    import json
    import shutil

    import pytest

    from chatedit import bench_photos, cli, readers

    if not (readers.age_available() and readers.smile_available()):
        pytest.skip('grading photo edits needs the faces extra: pip install -e ".[faces]"')
    from diffusion_fixtures import build_open_clip, build_pipeline

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in bench_photos.default_photos():  # the astronaut and Grace Hopper
        shutil.copy(path, photos / path.name)
    model, clip = build_pipeline(tmp_path / "sd", resolution=64), build_open_clip(tmp_path / "clip")
    args = ["bench", "edit", "--backend", "diffusion", "--model", str(model), "--clip", str(clip), "--device", "cpu",
            "--steps", "2", "--photos", str(photos), "--edits", "1", "--quiet"]
    assert cli.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["edits"] == 2 and len(result["photos"]) == 2
    assert sum(r["edits"] for r in result["field"].values()) == 2
    for r in result["field"].values():
        assert {"exact", "within1", "preserved", "identity", "outcomes"} <= set(r)
        assert 0.0 <= r["identity"] <= 1.0
    assert result["seconds_per_edit"] > 0 and "gpu_peak_memory_gib" in result
    assert result["graders"]["age"] == readers.AGE_MODEL and result["graders"]["smiling"] == readers.SMILE_MODEL
    assert "dlib" in result["graders"]["identity"] and "CLIP" in result["graders"]["others"]
    assert result["steering"] == {"age": "clip", "smiling": "clip", "others": "clip"}
    assert result["quality_measured"] is False
    table = bench_photos.markdown(result)
    assert "random weights: quality unmeasured" in table and "also steers" in table
    assert readers.AGE_MODEL in table and "s per pass" in table


def test_the_diffusion_bench_without_the_faces_extra_says_how_to_install_it_before_loading(monkeypatch, capsys):
    from chatedit import cli, readers

    monkeypatch.setattr(readers, "smile_available", lambda weights=None: False)
    assert cli.main(["bench", "edit", "--backend", "diffusion", "--model", "/nowhere", "--quiet"]) == 1
    assert 'pip install -e ".[faces]"' in capsys.readouterr().err
