"""The W+ adapter backend end to end on tiny random files in the published layouts (``wplus_fixtures``).

Everything loads through the same path as ``--backend wplus`` with the hub off: the W+ adapter and
e4e files as their authors save them, Talk-to-Edit's folder, InterFaceGAN directions and a tiny SD
pipeline folder. Random weights prove the plumbing (upload → e4e → walk → SD draw → identity, the
scene, the readers, the refusals), not the quality of an edit.
"""

from __future__ import annotations

import json

import pytest
import torch

from chatedit.attributes import attribute_names
from chatedit.editor import Editor
from chatedit.state import DialogState
from chatedit.tools import registry
from chatedit.tools.stylegan2.talk_to_edit import CheckpointError
from chatedit.tools.wplus import loading
from chatedit.tools.wplus.adapter import PUBLISHED_ROWS, WPlusAttnProcessor, WProjection
from chatedit.tools.wplus.backend import WPlusBackend
from chatedit.tools.wplus.e4e import E4EEncoder
from chatedit.scenes import MAX_SCENE_CHARS, SceneRequest, check_scene
from chatedit.tools.wplus.scene import decode_scene, encode_scene

from diffusion_fixtures import build_faceid, build_open_clip, build_pipeline
from test_stylegan2_backend import portrait  # noqa: F401  (a fixture)
from wplus_fixtures import (PUBLISHED_E4E, ROWS, STYLE, build_wplus_files, e4e_checkpoint, e4e_layout,
                            wplus_adapter_state)

SIZE = 64
SMILING = 3  # attribute order of prompts/attributes.yaml


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: on a machine shared with other jobs two threads fight over two cores and a tiny pass
    takes seconds instead of milliseconds (the sums are the same)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def wplus_parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("wplus")
    model = build_pipeline(root / "sd", resolution=SIZE)
    return {"model": model, "clip": build_open_clip(root / "clip"), "root": root, **build_wplus_files(root, model)}


def wplus_backend(parts, **options) -> WPlusBackend:
    options = {"steps": 2, "preview_every": 1, "device": "cpu", "directions": parts["directions"], **options}
    return WPlusBackend.load(parts["adapter"], parts["e4e"], parts["weights"], model=str(parts["model"]), **options)


@pytest.fixture(scope="module")
def backend(wplus_parts):
    return wplus_backend(wplus_parts)


# --------------------------------------------------------------------------- end to end


def test_an_upload_is_inverted_walked_drawn_and_compared(backend, portrait):
    picture, _ = portrait
    face = backend.intake(picture)  # found and aligned the FFHQ way, at SD's size
    assert face.shape == (3, SIZE, SIZE)
    editor, state = Editor(backend, max_steps=4), DialogState()
    editor.upload(state, face)
    latent = state.current.latent
    assert latent.shape == (1, ROWS + backend.scene_rows, STYLE) and backend.scene(latent) == backend.prompt
    assert torch.allclose(latent[0, :ROWS], backend.e4e.encode(face[None])[0].cpu(), atol=1e-5)  # e4e's code
    frames = []
    change = -1 if state.current.degrees["smiling"] >= 3 else 1
    editor.edit(state, "smiling", change=change, on_frame=frames.append)
    assert frames and all(f.image.shape == (3, SIZE, SIZE) for f in frames)
    # the walk moved the face's code and never the scene (random weights: no degree is promised)
    assert any(f.latent[0, :ROWS].ne(latent[0, :ROWS]).any() for f in frames)
    assert all(torch.equal(f.latent[0, ROWS:].cpu(), latent[0, ROWS:]) for f in frames)
    similarity = editor.identity_similarity(state)
    assert similarity is None or 0.0 <= similarity <= 1.0


def test_degrees_are_read_on_the_stylegan2_rendering_of_the_code_a_picture_was_drawn_from(backend):
    from chatedit.tools.stylegan2 import talk_to_edit as tte

    w = backend.sample(5)
    picture = backend.generate(w)
    rendering = backend.render(w[:, :ROWS])
    expected = tte.our_logits(backend.predictor(tte.predictor_input(rendering))).softmax(-1)
    assert torch.allclose(backend.predict(picture).probs, expected, atol=1e-6)
    assert backend.degree_reader == "stylegan2"


def test_without_talk_to_edits_predictor_clip_reads_the_sd_picture(wplus_parts):
    files = build_wplus_files(wplus_parts["root"] / "fields_only", wplus_parts["model"], predictor=False)
    backend = wplus_backend({**wplus_parts, **files}, clip=str(wplus_parts["clip"]))
    assert backend.predictor is None and backend.degree_reader == "clip"
    picture = backend.generate(backend.sample(1))
    assert torch.equal(backend.predict(picture).probs, backend.clip_reader.read(picture).probs)


def test_the_same_code_draws_the_same_picture_and_the_adapter_steers_it(backend):
    w = backend.sample(2)
    first = backend.generate(w)
    backend.drawn.clear()  # drawn again, not from the cache
    assert torch.allclose(backend.generate(w), first, atol=1e-6)
    other = backend.generate(backend.sample(8))
    assert float((other - first).abs().mean()) > 1e-3  # another W+ code, another picture, same noise and prompt
    backend.scale = 0.0  # the prompt alone: every code draws the same picture
    try:
        backend.drawn.clear()
        assert torch.allclose(backend.generate(w), backend.generate(backend.sample(8)), atol=1e-6)
    finally:
        backend.scale = 1.0
        backend.drawn.clear()


def test_the_adapters_processor_is_the_published_attention(backend):
    """Our processor against the published formula written out: prompt attention, then W+ attention
    queried from its output, scaled, before the output projection."""
    name, processor = next(iter(backend.adapter.processors.items()))
    attention = backend.pipe.unet.get_submodule(name.removesuffix(".processor"))
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 16, attention.to_q.in_features, generator=g)
    states = torch.randn(2, 77 + 4, attention.to_k.in_features, generator=g)
    processor.scale = 0.7
    got = processor(attention, hidden, states)
    heads = attention.heads

    def split(x):
        return x.view(2, -1, heads, x.shape[-1] // heads).transpose(1, 2)

    def attend(q, k, v):
        weights = (split(q) @ split(k).transpose(-1, -2) / (q.shape[-1] // heads) ** 0.5).softmax(-1)
        return (weights @ split(v)).transpose(1, 2).reshape(2, -1, q.shape[-1])

    text, wplus = states[:, :77], states[:, 77:]
    out = attend(attention.to_q(hidden), attention.to_k(text), attention.to_v(text))
    out = out + 0.7 * attend(processor.to_q_wplus(out), processor.to_k_wplus(wplus), processor.to_v_wplus(wplus))
    assert torch.allclose(got, attention.to_out[0](out), atol=1e-5)
    processor.scale = backend.scale


def test_previews_and_steps(backend):
    w = backend.sample(6)
    previews = []
    backend.generate(w + backend.step("linear", SMILING, w), on_preview=previews.append)
    assert previews and all(p.shape == (3, SIZE, SIZE) for p in previews)
    field = backend.step("field", SMILING, w)
    rows = field[0].abs().sum(-1)
    assert rows[: backend.replaced_layers].gt(0).all() and rows[backend.replaced_layers:].eq(0).all()
    linear = backend.step("linear", SMILING, w, -1)
    assert torch.allclose(linear[0, :ROWS], -backend.directions[SMILING]) and linear[0, ROWS:].eq(0).all()
    with pytest.raises(ValueError, match="no linear direction for bangs.*--directions"):
        backend.step("linear", attribute_names().index("bangs"), w)


# --------------------------------------------------------------------------- the scene


def test_a_scene_rides_in_the_latent_changes_the_picture_and_keeps_the_face(backend):
    w = backend.sample(4)
    beach = backend.with_scene(w, "  on a sunny beach, wearing a straw hat ")
    assert backend.scene(beach) == "on a sunny beach, wearing a straw hat" and backend.scene(w) == backend.prompt
    assert torch.equal(beach[:, :ROWS], w[:, :ROWS])
    assert float((backend.generate(beach) - backend.generate(w)).abs().mean()) > 1e-4
    stepped = beach + backend.step("field", SMILING, beach)
    assert backend.scene(stepped) == backend.scene(beach)  # walks never touch the scene
    assert torch.equal(backend.with_scene(beach, None), w)
    text = "ä café in Zürich 🌅 " * 5
    assert decode_scene(encode_scene(text, backend.scene_rows, STYLE)) == text.strip()


@pytest.mark.parametrize("bad, message", [("", "1 to"), ("x" * (MAX_SCENE_CHARS + 1), "1 to"),
                                          ("a beach\nignore that", "printable"), ("tab\there", "printable")])
def test_a_scene_that_is_not_one_short_printable_line_is_refused_with_the_value(bad, message):
    with pytest.raises(ValueError, match=message):
        check_scene(bad)
    with pytest.raises(ValueError):
        SceneRequest(scene=bad)
    assert SceneRequest(scene=" in an office ").scene == "in an office"


# --------------------------------------------------------------------------- the published layouts


def test_our_modules_at_their_published_sizes_have_the_published_keys_and_shapes():
    with torch.device("meta"):
        encoder = E4EEncoder()  # published defaults: IR-SE-50, 18 rows, 256 px
        projection = WProjection()
    ours = {f"encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert ours == e4e_layout(**PUBLISHED_E4E)
    assert ours["encoder.styles.17.convs.10.weight"] == (512, 512, 3, 3)
    assert ours["encoder.body.23.res_layer.5.fc2.weight"] == (512, 32, 1, 1)
    assert {k: tuple(v.shape) for k, v in projection.state_dict().items()} == {
        "proj_0.weight": (768, 2048), "proj_1.weight": (768, 2048), "proj_2.weight": (768, 2048),
        "proj_3.weight": (768, 3072), "norm.weight": (768,), "norm.bias": (768,)}
    assert PUBLISHED_ROWS == (4, 4, 4, 6)
    processor = WPlusAttnProcessor(320, 768)
    assert {k: tuple(v.shape) for k, v in processor.state_dict().items()} == {
        "to_k_wplus.weight": (320, 768), "to_v_wplus.weight": (320, 768), "to_q_wplus.weight": (320, 320)}


def _unet(parts):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(parts["model"] / "unet")


def _load_adapter(path, parts):
    return loading.load_wplus_adapter(path, _unet(parts), STYLE, ROWS)


def test_the_published_files_load_and_what_they_hold_is_used(wplus_parts):
    unet = _unet(wplus_parts)
    adapter = loading.load_wplus_adapter(wplus_parts["adapter"], unet, STYLE, ROWS)
    saved = torch.load(wplus_parts["adapter"])
    number = next(int(k.split(".")[0]) for k in saved["wplus_adapter"])
    name = list(unet.attn_processors)[number]
    assert unet.attn_processors[name] is adapter.processors[name]  # installed on the UNet
    weight = saved["wplus_adapter"][f"{number}.to_q_wplus.weight"]
    assert torch.equal(adapter.processors[name].to_q_wplus.weight, weight)
    assert adapter.projection.rows == (2, 2, 2, 2)
    e4e = loading.load_e4e(wplus_parts["e4e"])
    assert e4e.encoder.rows == ROWS and e4e.decoder is not None and e4e.decoder.n_latent == ROWS
    assert torch.equal(e4e.latent_avg, torch.load(wplus_parts["e4e"])["latent_avg"])
    directions = loading.load_directions(wplus_parts["directions"], ROWS, STYLE)
    assert set(directions) == {"smiling", "age"} and directions["smiling"].shape == (ROWS, STYLE)


def _broken(tmp_path, checkpoint: dict, name: str):
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


def test_a_wrong_file_is_refused_by_name(wplus_parts, tmp_path):
    text = tmp_path / "wplus_adapter.bin"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="wplus_adapter.bin is not a W\\+ adapter checkpoint"):
        _load_adapter(text, wplus_parts)
    with pytest.raises(CheckpointError, match="no 'w_proj' state dict.*wplus_adapter.bin is"):
        _load_adapter(wplus_parts["e4e"], wplus_parts)  # e4e's file handed as the adapter
    faceid = build_faceid(wplus_parts["model"], tmp_path / "ip-adapter-faceid_sd15.bin", lora_rank=None)
    with pytest.raises(CheckpointError, match="no 'w_proj'"):
        _load_adapter(faceid, wplus_parts)  # IP-Adapter FaceID: the other adapter of this family
    with pytest.raises(CheckpointError, match="no 'state_dict' with 'encoder.' keys"):
        loading.load_e4e(wplus_parts["adapter"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loading.load_e4e(tmp_path / "nowhere.pt")


def test_a_missing_key_is_refused_by_name(wplus_parts, tmp_path):
    state = wplus_adapter_state(_unet(wplus_parts))
    dropped = sorted(state["wplus_adapter"])[1]
    del state["wplus_adapter"][dropped]
    with pytest.raises(CheckpointError, match=f"missing key 'wplus_adapter.{dropped}'"):
        _load_adapter(_broken(tmp_path, state, "a.bin"), wplus_parts)
    state = wplus_adapter_state(_unet(wplus_parts))
    del state["w_proj"]["norm.bias"]
    with pytest.raises(CheckpointError, match="missing key 'w_proj.norm.bias'"):
        _load_adapter(_broken(tmp_path, state, "b.bin"), wplus_parts)
    checkpoint = e4e_checkpoint()
    del checkpoint["state_dict"]["encoder.styles.5.linear.bias"]
    with pytest.raises(CheckpointError, match="missing key 'encoder.styles.5.linear.bias'"):
        loading.load_e4e(_broken(tmp_path, checkpoint, "c.pt"))
    checkpoint = e4e_checkpoint()
    del checkpoint["latent_avg"]
    with pytest.raises(CheckpointError, match="missing 'latent_avg'"):
        loading.load_e4e(_broken(tmp_path, checkpoint, "d.pt"))


def test_a_shape_mismatch_or_an_unexpected_key_is_refused_by_name(wplus_parts, tmp_path):
    state = wplus_adapter_state(_unet(wplus_parts))
    key = next(k for k in state["wplus_adapter"] if k.endswith("to_k_wplus.weight"))
    state["wplus_adapter"][key] = state["wplus_adapter"][key][:, :-1]
    with pytest.raises(CheckpointError, match=f"'wplus_adapter.{key}' has shape"):
        _load_adapter(_broken(tmp_path, state, "a.bin"), wplus_parts)
    state = wplus_adapter_state(_unet(wplus_parts))
    state["wplus_adapter"]["0.to_k_wplus.weight"] = torch.zeros(1)  # processor 0 is a self-attention one
    with pytest.raises(CheckpointError, match="unexpected key 'wplus_adapter.0.to_k_wplus.weight'"):
        _load_adapter(_broken(tmp_path, state, "b.bin"), wplus_parts)
    state = wplus_adapter_state(_unet(wplus_parts), groups=(2, 2, 2, 3))  # 9 rows for 8-row codes
    with pytest.raises(CheckpointError, match="reads 9 W\\+ rows"):
        _load_adapter(_broken(tmp_path, state, "c.bin"), wplus_parts)
    checkpoint = e4e_checkpoint()
    checkpoint["state_dict"]["encoder.latlayer1.weight"] = torch.zeros(STYLE, 7, 1, 1)
    with pytest.raises(CheckpointError, match="'encoder.latlayer1.weight' has shape \\(16, 7, 1, 1\\)"):
        loading.load_e4e(_broken(tmp_path, checkpoint, "d.pt"))
    checkpoint = e4e_checkpoint()
    checkpoint["state_dict"]["encoder.styles.2.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected key 'encoder.styles.2.extra'"):
        loading.load_e4e(_broken(tmp_path, checkpoint, "e.pt"))


def test_a_file_with_pickled_objects_is_not_loaded(wplus_parts, tmp_path):
    checkpoint = e4e_checkpoint()
    checkpoint["opts"] = {"dataset": torch.nn.Identity()}  # an object: unpickling it could run code
    with pytest.raises(CheckpointError, match="weights_only"):
        loading.load_e4e(_broken(tmp_path, checkpoint, "e4e.pt"))


# --------------------------------------------------------------------------- registry and command line


def test_the_registry_says_what_it_needs_and_the_backends_command_lists_it(wplus_parts, capsys):
    from chatedit import cli

    spec = registry.get("wplus")
    assert "wplus_adapter.bin" in spec.check(spec.make_options())
    assert spec.check(spec.make_options(wplus_adapter=wplus_parts["adapter"], e4e=wplus_parts["e4e"],
                                        weights=wplus_parts["weights"], model=str(wplus_parts["model"]))) is None
    assert "random weights" in spec.verified
    assert cli.main(["backends", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "wplus")
    assert "--wplus-adapter" in {o["flag"] for o in row["options"]} and not row["available"]


def test_the_edit_bench_runs_on_the_wplus_backend_with_the_diffusion_benchs_jobs_and_graders(wplus_parts, tmp_path,
                                                                                            capsys):
    import shutil

    from chatedit import bench_photos, cli, readers

    if not (readers.age_available() and readers.smile_available()):
        pytest.skip('grading photo edits needs the faces extra: pip install -e ".[faces]"')
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in bench_photos.default_photos():  # the astronaut and Grace Hopper
        shutil.copy(path, photos / path.name)
    args = ["bench", "edit", "--backend", "wplus", "--wplus-adapter", str(wplus_parts["adapter"]),
            "--e4e", str(wplus_parts["e4e"]), "--weights", str(wplus_parts["weights"]),
            "--model", str(wplus_parts["model"]), "--clip", str(wplus_parts["clip"]), "--device", "cpu",
            "--steps", "2", "--photos", str(photos), "--edits", "1", "--quiet", "--json"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "wplus" and result["edits"] == 2 and result["quality_measured"] is False
    assert sum(r["edits"] for r in result["field"].values()) == 2
    assert result["steering"] == {"age": "stylegan2", "smiling": "stylegan2", "others": "stylegan2"}
    assert result["graders"]["age"] == readers.AGE_MODEL and "dlib" in result["graders"]["identity"]
    table = bench_photos.markdown(result)
    assert "on the wplus backend" in table and "random weights: quality unmeasured" in table


def test_put_her_on_a_beach_is_a_scene_change_the_tool_validates_and_undo_takes_back(backend):
    from chatedit.scenes import scene_tool

    editor, state = Editor(backend, max_steps=4), DialogState()
    editor.new_face(state, seed=3)
    tool = scene_tool(editor, state)
    refused = tool.invoke({"type": "tool_call", "id": "1", "name": "set_scene",
                           "args": {"scene": "x" * (MAX_SCENE_CHARS + 1)}})
    assert "invalid arguments: scene" in refused.content and len(state.entries) == 1
    message = tool.invoke({"type": "tool_call", "id": "2", "name": "set_scene", "args": {"scene": "on a beach"}})
    assert "on a beach" in message.content and message.artifact["changed"]
    assert len(state.entries) == 2 and backend.scene(state.current.latent) == "on a beach"
    assert torch.equal(state.current.latent[:, :ROWS], state.entries[0].latent[:, :ROWS])
    editor.undo(state)
    assert backend.scene(state.current.latent) == backend.prompt


def test_the_agent_is_offered_set_scene_only_on_a_backend_that_draws_scenes(backend):
    from chatedit.toolkit import make_tools

    state = DialogState()
    names = [t.name for t in make_tools(Editor(backend), state)]
    assert names[-1] == "set_scene" and len(names) == 7
    builtin = registry.load("builtin")
    assert "set_scene" not in [t.name for t in make_tools(Editor(builtin), state)]
    with pytest.raises(NotImplementedError, match="builtin backend draws no scenes"):
        builtin.with_scene(builtin.sample(0), "on a beach")


def test_talk_to_edits_generator_in_weights_is_the_one_new_faces_come_from(wplus_parts, tmp_path):
    import shutil

    from test_stylegan2_generator import save_training_dict, tiny_state_dict
    from wplus_fixtures import DECODER

    weights = tmp_path / "pretrained_models"
    shutil.copytree(wplus_parts["weights"], weights)
    state = tiny_state_dict(seed=42, **DECODER)
    save_training_dict(weights / "stylegan2_1024.pth", state, latent_avg=torch.zeros(1, STYLE))
    backend = wplus_backend({**wplus_parts, "weights": weights})
    assert torch.equal(backend.generator.style[1].weight, state["style.1.weight"])
    assert not torch.equal(backend.generator.style[1].weight, backend.e4e.decoder.style[1].weight)


def test_the_built_in_chat_model_puts_her_on_a_beach_and_edits_the_rest_of_the_message(backend):
    from chatedit.agent import Agent, Reply
    from chatedit.rules_model import RulesChatModel

    agent = Agent(Editor(backend, max_steps=4), RulesChatModel())
    agent.open("s", seed=5)
    events = list(agent.chat("s", "Put her on a beach and make her smile a little"))
    reply = events[-1]
    assert isinstance(reply, Reply) and "on a beach" in reply.text
    assert [c["name"] for c in reply.calls] == ["set_scene", "edit_attribute"]
    state = agent.session("s").state
    assert backend.scene(state.current.latent) == "on a beach"
    events = list(agent.chat("s", "change the background to a snowy forest"))
    assert backend.scene(agent.session("s").state.current.latent) == "with a snowy forest in the background"
