"""``chatedit bench edit`` on the built-in backend: field, baseline and the world's own answer."""

from __future__ import annotations

from chatedit import bench_edit
from chatedit.attributes import attribute_names
from chatedit.tools.builtin.backend import BuiltinBackend


def test_the_oracle_grades_the_same_jobs_with_the_world_re_rendered_at_the_target():
    backend = BuiltinBackend.load()
    bench = bench_edit.builtin_faces(backend, 6)
    result = bench_edit.run(backend, faces=6, timing_edits=2, bench=bench)
    names = attribute_names()
    for name in names:  # every attribute gets as many edits as faces asked for, beard from spare faces
        assert result["oracle"][name]["edits"] == result["field"][name]["edits"] == 6
        assert result["field_unpolished"][name]["edits"] == 6
    assert result["faces_drawn"] > 6
    # the oracle is the same person at the target: the steering predictor reads the target there,
    # and identity is kept better than any walk keeps it on average
    hits = total = 0
    for i in range(6):
        for a, name in enumerate(names):
            target = 5 if a != names.index("beard") else 0
            if not bench.reachable(i, a, target):
                continue
            image = bench.oracle(i, a, target)
            hits += int(backend.predict(image[None]).degrees[0, a]) == target
            total += 1
    assert total >= 20 and hits >= 0.8 * total
    assert all(result["oracle"][n]["identity"] > 0.9 for n in names)
    table = bench_edit.markdown(result)
    assert "| age | oracle |" in table and "perfect edit" in table and "| age | field_unpolished |" in table


def test_sampled_faces_have_no_oracle():
    backend = BuiltinBackend.load()
    bench = bench_edit.sampled_faces(backend, 2, lambda image: backend.predict(image).degrees)
    assert bench.oracle is None
    result = bench_edit.run(backend, faces=2, timing_edits=1, bench=bench)
    assert "oracle" not in result and "oracle" not in bench_edit.markdown(result)
