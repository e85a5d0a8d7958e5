"""prompts/attributes.yaml is the one source of the attribute list and order.

The renderer's columns, the built-in models' heads and field files follow it; weights trained with
another list or order are refused at load with both lists named, never read under wrong names.
"""

import json

import pytest
import torch

from chatedit import attributes
from chatedit.tools.builtin import loading
from chatedit.tools.builtin.loading import (ATTRIBUTES_FILE, FIELD_FILE, WEIGHTS_DIR, check_trained_attributes,
                                            load_builtin, load_model, read_trained_attributes,
                                            write_trained_attributes)
from chatedit.tools.builtin.models import DegreeOffsets, LatentField, LinearDirections
from chatedit.tools.builtin.renderer import Portraits, attribute_columns, render, sample_portraits
from chatedit.tools.builtin.train import TrainConfig, save_fields, train_fields_only
from chatedit.tools.stylegan2 import talk_to_edit as tte

SHIPPED = ("bangs", "eyeglasses", "beard", "smiling", "age")  # the order the shipped weights were trained in
REORDERED = ("age", "smiling", "beard", "eyeglasses", "bangs")


def _clear_caches():
    attributes.load_attributes.cache_clear()
    attributes.load_limits.cache_clear()


@pytest.fixture
def vocabulary(monkeypatch):
    """``vocabulary(names)`` makes prompts/attributes.yaml list ``names`` for one test (an attribute
    it lacks gets placeholder degrees); the real file is read again afterwards."""
    original = attributes._data()
    entries = {entry["name"]: entry for entry in original["attributes"]}

    def use(names):
        listed = [entries.get(n, {"name": n, "label": n.title(), "degrees": [f"{n} {d}" for d in range(6)]})
                  for n in names]
        data = {**original, "attributes": listed}
        monkeypatch.setattr(attributes, "_data", lambda: data)
        _clear_caches()

    monkeypatch.setattr(loading, "_CACHE", {})  # loads here never reach the process's shared models
    yield use
    monkeypatch.undo()
    _clear_caches()


def _weights_copy(tmp_path, trained=None):
    """A weights folder of links to the shipped files, recording ``trained`` (default: the shipped record)."""
    for path in WEIGHTS_DIR.iterdir():
        if path.name != ATTRIBUTES_FILE:
            (tmp_path / path.name).symlink_to(path)
    write_trained_attributes(tmp_path, trained or read_trained_attributes(WEIGHTS_DIR))
    return tmp_path


def test_the_yaml_renderer_and_shipped_weights_agree_today():
    assert attributes.attribute_names() == SHIPPED
    assert attribute_columns() == SHIPPED
    assert read_trained_attributes(WEIGHTS_DIR) == SHIPPED
    assert check_trained_attributes(WEIGHTS_DIR) == SHIPPED


@pytest.mark.parametrize("names", [REORDERED, (*SHIPPED, "freckles"), SHIPPED[:-1]],
                         ids=["reordered", "extended", "shortened"])
def test_the_builtin_loader_refuses_a_yaml_the_weights_were_not_trained_with(vocabulary, tmp_path, names):
    vocabulary(names)
    with pytest.raises(ValueError) as err:
        load_builtin(_weights_copy(tmp_path), "cpu")
    message = str(err.value)
    assert f"({', '.join(SHIPPED)})" in message  # what the weights were trained with
    assert f"({', '.join(names)})" in message  # what the yaml lists
    assert "chatedit train builtin" in message


def test_weights_without_a_record_of_their_attributes_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="attributes.json.*chatedit train builtin"):
        load_builtin(tmp_path, "cpu")


def test_the_renderers_columns_follow_the_yaml(vocabulary):
    people = sample_portraits(6, 123)
    images = render(people)
    vocabulary(REORDERED)
    assert attribute_columns() == REORDERED
    order = [SHIPPED.index(name) for name in REORDERED]
    # the same values, moved to the yaml's columns, draw the same pixels: every column is read by name
    assert torch.equal(render(Portraits(people.identity, people.scene, people.attributes[:, order])), images)
    # a seed draws the same people (degrees) whatever the order; only the columns move
    again = sample_portraits(6, 123)
    assert torch.equal(again.identity, people.identity)
    assert torch.equal(again.degrees(), people.degrees()[:, order])
    with pytest.raises(ValueError, match=r"must be \(B, 5\)"):
        render(Portraits(people.identity, people.scene, people.attributes[:, :4]))


def test_the_renderer_refuses_attributes_it_cannot_draw_and_a_yaml_that_lacks_its_drawings(vocabulary):
    vocabulary((*SHIPPED, "freckles"))
    with pytest.raises(ValueError, match="no drawing for freckles") as err:
        render(sample_portraits(1, 0))
    assert f"({', '.join(SHIPPED)}, freckles)" in str(err.value)
    vocabulary(SHIPPED[1:])
    with pytest.raises(ValueError, match="the yaml lacks bangs"):
        sample_portraits(1, 0)


def test_fields_load_by_name_not_position(vocabulary, tmp_path):
    # weights recorded (and a yaml listing them) in another order: each field is still its own attribute's file
    vocabulary(REORDERED)
    models = load_builtin(_weights_copy(tmp_path, trained=REORDERED), "cpu")
    w = torch.randn(3, models.generator.w_dim, generator=torch.Generator().manual_seed(0))
    for name, field in zip(REORDERED, models.fields):
        assert torch.equal(field(w, 1), load_model(WEIGHTS_DIR / FIELD_FILE.format(name=name))(w, 1)), name


def test_a_field_for_an_attribute_the_yaml_lacks_is_refused(tmp_path):
    weights = _weights_copy(tmp_path)
    (weights / FIELD_FILE.format(name="freckles")).symlink_to(WEIGHTS_DIR / FIELD_FILE.format(name="age"))
    with pytest.raises(ValueError, match="fields for freckles"):
        load_builtin(weights, "cpu")


def test_training_writes_fields_by_name_and_records_the_order(tmp_path):
    fields = {}
    for i, name in enumerate(SHIPPED):
        fields[name] = LatentField(w_dim=4, hidden=8)
        fields[name].base.fill_(float(i))
    linear, offsets = LinearDirections(w_dim=4, num_attributes=5), DegreeOffsets(w_dim=4, num_attributes=5)
    with pytest.raises(ValueError, match=r"fields for \(bangs, eyeglasses, beard, smiling\), but .* lists"):
        save_fields(tmp_path, linear, {n: f for n, f in fields.items() if n != "age"}, offsets)
    save_fields(tmp_path, linear, dict(reversed(fields.items())), offsets)  # by name: their order is no matter
    assert json.loads((tmp_path / ATTRIBUTES_FILE).read_text())["attributes"] == list(SHIPPED)
    for i, name in enumerate(SHIPPED):
        assert load_model(tmp_path / FIELD_FILE.format(name=name)).base[0, 0] == i


def test_a_folder_recording_another_order_is_not_mixed_into(vocabulary, tmp_path):
    write_trained_attributes(tmp_path, SHIPPED)
    with pytest.raises(ValueError, match=r"records models trained with the attributes \(bangs.*cannot join"):
        write_trained_attributes(tmp_path, REORDERED)
    write_trained_attributes(tmp_path, REORDERED, replace=True)  # a full run rewrites every ordered model
    assert read_trained_attributes(tmp_path) == REORDERED
    # training fields over the shipped predictor needs its heads in the yaml's order: refused before any work
    vocabulary(REORDERED)
    with pytest.raises(ValueError, match=f"lists \\({', '.join(REORDERED)}\\)"):
        train_fields_only(WEIGHTS_DIR, tmp_path / "out", TrainConfig.quick(progress=False))
    assert not (tmp_path / "out").exists()


def test_talk_to_edit_heads_map_onto_the_yaml_by_name(vocabulary):
    vocabulary(REORDERED)
    logits = torch.zeros(1, 5, 6)
    for head, spec in enumerate(tte.ATTRIBUTES):  # their head order; degree = our name's place in SHIPPED
        logits[0, head, SHIPPED.index(spec.ours)] = 10.0
    assert tte.read_degrees(logits)[0].tolist() == [SHIPPED.index(name) for name in REORDERED]


def test_weights_sized_for_other_attributes_than_they_record_are_refused(vocabulary, tmp_path):
    vocabulary(SHIPPED[:-1])
    weights = _weights_copy(tmp_path, trained=SHIPPED[:-1])
    (weights / FIELD_FILE.format(name="age")).unlink()
    with pytest.raises(ValueError, match=r"predictor .* is sized for 5 attributes, but attributes.json records 4"):
        load_builtin(weights, "cpu")
