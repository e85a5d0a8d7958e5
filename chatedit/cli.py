"""The ``chatedit`` command line.

Only argparse is imported at the top: torch and the models load inside each subcommand, so
``chatedit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def _add_backend(parser: argparse.ArgumentParser, default: str | None = "builtin",
                 backends: tuple[str, ...] | None = None) -> None:
    """``--backend`` and every registered backend's options (their flags come from the registry)."""
    from chatedit.tools import registry

    choices = backends or registry.names()
    parser.add_argument("--backend", default=default, choices=choices,
                        help=f"editing backend: {', '.join(choices)} (`chatedit backends` says what each needs)")
    registry.add_arguments(parser, choices)


def _backend_options(args: argparse.Namespace) -> dict:
    """The backend options typed on the command line; flags left out are not passed at all."""
    from chatedit.tools import registry

    return registry.given_options(args)


def _add_llm(parser: argparse.ArgumentParser, default: str | None = "rules") -> None:
    parser.add_argument("--llm", default=default,
                        help="chat model: rules (built in, the default), openai:MODEL (any OpenAI-compatible "
                             "server; key from OPENAI_API_KEY) or ollama:MODEL")
    parser.add_argument("--llm-base-url", default=None,
                        help="the server's address, e.g. http://127.0.0.1:8000/v1 (default: OPENAI_BASE_URL / "
                             "OLLAMA_HOST, else the provider's own)")
    parser.add_argument("--llm-timeout", type=float, default=60.0, help="seconds one request to the model may take")
    parser.add_argument("--llm-fallback", default=None, metavar="MODEL",
                        help="answer with this chat model when --llm fails (e.g. rules)")


def _add_workers(parser: argparse.ArgumentParser, deploy: bool = False) -> None:
    """Where the backend runs: ``--workers ray`` and the Ray Serve deployment's size and resources."""
    if not deploy:
        parser.add_argument("--workers", choices=("ray",), default=None,
                            help="run the backend as a Ray Serve deployment (pip install -e .[ray]); the page "
                                 "stays a thin front end (default: everything in this process)")
        parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                            help="join this Ray cluster (e.g. 10.0.0.5:6379 or auto) instead of starting one here; "
                                 "a chatedit application already deployed there is used as it is")
    parser.add_argument("--replicas", type=int, default=None, help="replicas of the backend (default 1)")
    parser.add_argument("--min-replicas", type=int, default=None, help="autoscale from this many replicas ...")
    parser.add_argument("--max-replicas", type=int, default=None,
                        help="... to this many, adding one when each has more than one request under way")
    parser.add_argument("--gpus-per-replica", type=float, default=None, metavar="N",
                        help="GPUs each replica holds; fractions share a GPU (0.5: two replicas per GPU)")


def _worker_settings(args: argparse.Namespace):
    from chatedit.workers.deploy import WorkerSettings

    return WorkerSettings.from_flags(getattr(args, "ray_address", None), args.replicas, args.min_replicas,
                                     args.max_replicas, args.gpus_per_replica)


def _add_quiet(parser: argparse.ArgumentParser, shows: str = "progress bars") -> None:
    """``--quiet``: the long commands show progress on stderr (stdout carries only their results)."""
    parser.add_argument("-q", "--quiet", action="store_true", help=f"hide the {shows} on stderr")


def _llm(args: argparse.Namespace):
    """The chat model settings from ``--llm`` and its options (None when ``--llm`` was not given)."""
    from chatedit.llms import LLMSettings

    if args.llm is None:
        return None
    return LLMSettings(args.llm, base_url=args.llm_base_url, timeout_s=args.llm_timeout, fallback=args.llm_fallback)


# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    from chatedit.tools.builtin.loading import WEIGHTS_DIR
    from chatedit.tools.builtin.train import TrainConfig, train_builtin, train_fields_only, train_second_predictor_only

    cfg = (TrainConfig.quick if args.quick else TrainConfig)(seed=args.seed, progress=not args.quiet)
    out = args.out or WEIGHTS_DIR
    if args.what == "field":
        times = train_fields_only(args.weights or WEIGHTS_DIR, out, cfg)
    elif args.what == "second-predictor":
        times = train_second_predictor_only(args.weights or WEIGHTS_DIR, out, cfg)
    else:
        times = train_builtin(out, cfg)
    print(json.dumps({"out": str(out), "seconds": times, "total_seconds": round(sum(times.values()), 1)}))
    return 0


# --------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "parse":
        from chatedit import bench_parse

        path = args.file or bench_parse.find_benchmark()
        if path is None:
            raise FileNotFoundError("benchmark file shared/benchmarks/talk_to_edit_requests.jsonl not found; pass --set FILE")
        result = bench_parse.run(bench_parse.chat_model_parse_calls(_llm(args)), path, progress=not args.quiet)
        print(json.dumps(result) if args.json else bench_parse.markdown(result))
        return 0
    if args.what == "speed":
        from chatedit import bench_speed

        result = bench_speed.run(args.backend, resolution=args.resolution, steps=args.steps,
                                 inversion_steps=args.inversion_steps, repeats=args.repeats, device=args.device,
                                 progress=not args.quiet)
        print(json.dumps(result) if args.json else bench_speed.markdown(result))
        return 0
    if args.what == "serve":
        from chatedit import bench_serve

        result = bench_serve.run(users=args.users, turns=args.turns, faults=args.faults, backend=args.backend,
                                 time_limit_s=args.time_limit, progress=not args.quiet, store=args.store,
                                 pages=args.pages, workers=args.workers, replicas=args.replicas)
        print(json.dumps(result) if args.json else bench_serve.markdown(result))
        return 0

    from chatedit.tools import registry

    options = _backend_options(args)
    if args.what == "builtin":
        from chatedit import bench_builtin as bench

        result = bench.run(registry.load("builtin", **options), people=args.people, progress=not args.quiet)
    elif args.backend == "stylegan2":
        from chatedit import bench_edit as bench

        # --pti-steps or --inversion: edit the faces drawn, inverted (and tuned) as uploads are, not the sampled
        # codes; by each inversion, W and W+, unless --inversion names one
        photos = "pti_steps" in options or "inversion" in options
        if photos:
            options["pti_cache"] = max(args.faces, 1)  # every face's tune is drawn again and again
        backend = registry.load("stylegan2", **options)
        if backend.eval_predictor is None:  # fail now, not after the edits
            raise FileNotFoundError(f"grading edits needs Talk-to-Edit's eval_predictor.pth.tar in {args.weights}")
        if not photos:
            faces = bench.sampled_faces(backend, args.faces, backend.eval_read)
            result = bench.run(backend, faces=args.faces, bench=faces, progress=not args.quiet)
        else:
            result = {}
            for inversion in [options["inversion"]] if "inversion" in options else ["w", "wplus"]:
                faces = bench.inverted_faces(backend, args.faces, backend.eval_read, inversion=inversion,
                                             progress=not args.quiet)
                result[inversion] = bench.run(backend, faces=args.faces, bench=faces, progress=not args.quiet)
            print(json.dumps(result) if args.json else bench.by_inversion_markdown(result))
            return 0
    elif args.backend in ("diffusion", "wplus"):
        from chatedit import bench_photos as bench

        photos = bench.photo_files(args.photos)
        bench.require_graders()  # fail now, not after loading the pipeline
        if args.backend == "wplus":  # CLIP grades eyeglasses, beard and bangs, even where Talk-to-Edit's predictor steers
            from chatedit.tools.diffusion.plugin import DEFAULT_CLIP

            options.setdefault("clip", DEFAULT_CLIP)
        result = bench.run(registry.load(args.backend, **options), photos, edits=args.edits, progress=not args.quiet)
    else:
        from chatedit import bench_edit as bench

        result = bench.run(registry.load("builtin", **options), faces=args.faces, progress=not args.quiet)
    print(json.dumps(result) if args.json else bench.markdown(result))
    return 0


# --------------------------------------------------------------------------- parse


def cmd_parse(args: argparse.Namespace) -> int:
    from chatedit.agent import first_response
    from chatedit.llms import make_chat_model

    llm = make_chat_model(_llm(args))
    if args.jsonl is None:
        if args.text is None:
            raise ValueError("give a request to parse, or --jsonl FILE")
        print(json.dumps(first_response(llm, args.text)))
        return 0
    lines = sys.stdin if str(args.jsonl) == "-" else args.jsonl.open()
    with lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{args.jsonl}:{number}: expected a JSON object with a \"text\" field ({err})")
            print(json.dumps(first_response(llm, str(text))), flush=False)
    return 0


# --------------------------------------------------------------------------- chat


def cmd_chat(args: argparse.Namespace) -> int:
    """Talk to a face in the terminal (or run ``--say`` messages in order); the face is saved after every turn."""
    from chatedit.agent import Reply, ToolEvent, build_agent
    from chatedit.editor import EditError
    from chatedit.images import to_pil
    from chatedit.intake import read_photo

    agent = build_agent(args.backend, llm=_llm(args), **_backend_options(args))
    image = None
    if args.image is not None:
        try:
            image = read_photo(agent.editor.backend, args.image)
        except EditError as refusal:
            raise ValueError(f"{args.image}: {refusal}") from None
    session, opened = agent.open(seed=args.face, image=image)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    to_pil(opened.image).save(args.out)
    print(f"chatedit> {opened.text}  [{args.out}]")
    messages = iter(args.say) if args.say else _prompt_lines()
    for text in messages:
        if args.say:
            print(f"you> {text}")
        for event in agent.chat(session.id, text):
            if isinstance(event, ToolEvent) and args.verbose:
                print(f"  [{event.name} {json.dumps(event.args)}: {'ok' if event.ok else 'refused'}]")
            elif isinstance(event, Reply):
                if event.image is not None:
                    to_pil(event.image).save(args.out)
                print(f"chatedit> {event.text}")
    return 0


def _prompt_lines():
    while True:
        try:
            line = input("you> ")
        except EOFError:
            return
        if line.strip().lower() in {"quit", "exit", "bye"}:
            return
        yield line


# --------------------------------------------------------------------------- replay


def cmd_replay(args: argparse.Namespace) -> int:
    from chatedit.progress import echo
    from chatedit.replay import replay

    passed, failed, broken = replay(args.scripts, args.out, backend=args.backend, llm=_llm(args), echo=echo,
                                    progress=not args.quiet)
    return 1 if args.check and (failed or broken) else 0


# --------------------------------------------------------------------------- sheet


def cmd_sheet(args: argparse.Namespace) -> int:
    from chatedit.sheet import degree_sheet, edit_sheet

    if args.edits:
        from chatedit.tools import registry

        image = edit_sheet(registry.load("builtin", **_backend_options(args)), seed=args.seed)
    else:
        image = degree_sheet(faces=args.faces, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}×{image.height})")
    return 0


# --------------------------------------------------------------------------- backends


def cmd_backends(args: argparse.Namespace) -> int:
    """Every registered backend: what it does, what it needs, its options, and whether it runs here now."""
    from chatedit.tools import registry

    rows = [registry.describe(name, **_backend_options(args)) for name in registry.names()]
    print(json.dumps(rows) if args.json else registry.markdown(rows))
    return 0


# --------------------------------------------------------------------------- faces


def cmd_faces(args: argparse.Namespace) -> int:
    """The faces in each photo (boxes, landmarks, aligned crops, identity), or the intake benchmark."""
    from PIL import Image, ImageOps

    from chatedit import faces

    if not faces.available():
        print(f"chatedit faces: dlib's face models are not installed; install them with {faces.INSTALL_HINT}",
              file=sys.stderr)
        return 1
    if args.bench:
        from chatedit import bench_faces

        picture = Image.open(args.photos[0]) if args.photos else bench_faces.default_photo()
        result = bench_faces.run(ImageOps.exif_transpose(picture), detector=args.detector)
        print(json.dumps(result) if args.json else bench_faces.markdown(result))
        return 0
    if not args.photos:
        raise ValueError("give at least one photo (or --bench)")
    rows = []
    for path in args.photos:
        picture = ImageOps.exif_transpose(Image.open(path))
        rows.append({"photo": str(path), "faces": faces.describe(picture, args.out / path.stem, args.detector,
                                                                 args.size)})
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        print(f"{row['photo']}: {len(row['faces'])} face(s)")
        for i, face in enumerate(row["faces"]):
            print(f"  {i}: box {face['box']} ({face['detector']}, score {face['detector_score']}); "
                  f"landmarks {face['landmarks']}; identity norm {face['embedding_norm']} "
                  f"({face['identity_model']}); crop {face['crop']}")
    return 0


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from chatedit.ui.server import ServeOptions, parse_auth, serve

    if args.concurrency < 1 or args.max_upload_mb <= 0:
        raise ValueError("--concurrency must be at least 1 and --max-upload-mb positive")
    worker_flags = [f"--{name.replace('_', '-')}" for name in ("ray_address", "replicas", "min_replicas",
                                                               "max_replicas", "gpus_per_replica")
                    if getattr(args, name) is not None]
    if worker_flags and args.workers is None:
        raise ValueError(f"{', '.join(worker_flags)} need --workers ray")
    options = ServeOptions(
        backend=args.backend, backend_options=_backend_options(args), llm=_llm(args),
        data_dir=args.data_dir, host=args.host, port=args.port,
        share=args.share, auth=parse_auth(args.auth, args.auth_file), max_upload_mb=args.max_upload_mb,
        concurrency=args.concurrency, max_age_days=args.max_age_days, max_sessions=args.max_sessions, mcp=args.mcp,
        workers=_worker_settings(args) if args.workers == "ray" else None,
        store=args.store, shared_dir=args.shared_dir,
    )
    serve(options)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from chatedit.workers.deploy import write_serve_config

    path = write_serve_config(args.out, args.backend, _backend_options(args), _worker_settings(args), args.method)
    print(f"wrote {path}; start it with `serve deploy {path}`, then `chatedit serve --workers ray --ray-address "
          f"auto` on the cluster's head (docs/scaling.md)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from chatedit.tools import registry

    parser = argparse.ArgumentParser(
        prog="chatedit", description="Chat-driven face editing: talk to a portrait, watch the edit happen."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train models from scratch on this machine")
    tsub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = tsub.add_parser("builtin", help="all built-in models: autoencoder, predictors, identity encoder")
    t.add_argument("--quick", action="store_true", help="a few minutes, for smoke tests (weights are not good)")
    t.add_argument("--out", type=Path, default=None, help="output folder (default: the package's weights folder)")
    t.add_argument("--seed", type=int, default=0)
    _add_quiet(t, "bars of each training stage")
    t.set_defaults(func=cmd_train)
    t = tsub.add_parser("field", help="semantic fields, the linear baseline and the degree offsets, over existing "
                                      "built-in models")
    t.add_argument("--quick", action="store_true", help="a few steps, for smoke tests")
    t.add_argument("--out", type=Path, default=None, help="output folder (default: the package's weights folder)")
    t.add_argument("--seed", type=int, default=0)
    _add_quiet(t, "bars of each training stage")
    t.add_argument("--weights", type=Path, default=None, metavar="DIR",
                   help="the built-in models to start from (default: the shipped ones)")
    t.set_defaults(func=cmd_train)
    t = tsub.add_parser("second-predictor", help="the second steering predictor, over an existing autoencoder")
    t.add_argument("--quick", action="store_true", help="a few steps, for smoke tests")
    t.add_argument("--out", type=Path, default=None, help="output folder (default: the package's weights folder)")
    t.add_argument("--seed", type=int, default=0)
    _add_quiet(t, "bars of each training stage")
    t.add_argument("--weights", type=Path, default=None, metavar="DIR",
                   help="the built-in models to start from (default: the shipped ones)")
    t.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="benchmarks that print numbers (markdown, or JSON with --json)")
    bsub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    b = bsub.add_parser("builtin", help="reconstruction, predictors and identity of the built-in backend")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    b.add_argument("--people", type=int, default=300, help="held-out people (4 renders each)")
    _add_quiet(b, "bar over the benchmark's stages")
    registry.add_arguments(b, ("builtin",))
    b.set_defaults(func=cmd_bench)
    b = bsub.add_parser("edit", help="field walks against the linear baseline, graded by the evaluation predictor")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    b.add_argument("--faces", type=int, default=200, help="edits per attribute, each of another held-out face (an attribute some "
                   "faces cannot change, as beard on women, takes further faces)")
    # the backends with an evaluation predictor to grade by (stylegan2: with --weights, eval_predictor.pth.tar
    # included; --pti-steps N or --inversion edits the sampled faces drawn, inverted and tuned as uploads are, by
    # both inversions, W and W+, unless --inversion names one)
    # diffusion and wplus: real photos (--photos), graded by the real readers, CLIP and dlib (pip install -e .[faces])
    b.add_argument("--photos", type=Path, default=None, metavar="DIR",
                   help="diffusion, wplus: a folder of photos to edit (default: scikit-image's astronaut and "
                        "matplotlib's grace_hopper.jpg)")
    b.add_argument("--edits", type=int, default=None, metavar="N",
                   help="diffusion, wplus: edits per photo, attributes in turn (default: one per attribute)")
    _add_backend(b, backends=("builtin", "stylegan2", "diffusion", "wplus"))
    _add_quiet(b, "bars over the edits")
    b.set_defaults(func=cmd_bench)

    b = bsub.add_parser("parse", help="the built-in language understanding on labelled single-turn requests")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    b.add_argument("--set", "--file", dest="file", type=Path, default=None, metavar="FILE",
                   help="requests JSONL to grade, e.g. benchmarks/heldout_requests.jsonl or benchmarks/dev_requests.jsonl "
                        "(default: shared/benchmarks/talk_to_edit_requests.jsonl, searched upwards)")
    _add_llm(b)
    _add_quiet(b, "bar over the requests")
    b.set_defaults(func=cmd_bench)

    b = bsub.add_parser("speed", help="what one replica costs: a backend at its full published size (random "
                                      "weights; timing does not depend on their values), timed on this device")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    b.add_argument("--backend", required=True, choices=("stylegan2", "diffusion", "wplus"))
    b.add_argument("--resolution", type=int, default=None,
                   help="stylegan2: Talk-to-Edit's 128 or 1024 px generator (default 1024); diffusion and wplus: "
                        "SD 1.5's 512")
    b.add_argument("--steps", type=int, default=30, metavar="N",
                   help="diffusion: denoising steps of the inversion and of each pass; wplus: of each pass "
                        "(default 30, the backends')")
    b.add_argument("--inversion-steps", type=int, default=200, metavar="N",
                   help="stylegan2: optimisation steps of the timed inversion (default 200, the backend's)")
    b.add_argument("--repeats", type=int, default=3, help="timed calls per stage, after one warm-up call")
    b.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    _add_quiet(b, "the stage being timed, on stderr")
    b.set_defaults(func=cmd_bench)

    b = bsub.add_parser("serve", help="the chat page under load and faults: simulated users over HTTP on a loopback "
                                      "server, then disconnects and kill -9 mid-turn")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    b.add_argument("--users", type=int, default=8, help="simulated users at once, each in a session of its own")
    b.add_argument("--turns", type=int, default=40, help="turns per user: an upload, then text edits, sliders, "
                                                         "undo and redo")
    b.add_argument("--faults", type=int, default=5, help="client disconnects mid-turn, and as many kill -9 of the "
                                                         "server mid-turn (0: none)")
    b.add_argument("--backend", default="builtin", choices=registry.names(), help="the server's editing backend")
    b.add_argument("--time-limit", type=float, default=3600.0, help="seconds the whole benchmark may take")
    b.add_argument("--store", default=None, metavar="URL",
                   help="the servers' store: a postgresql://USER@HOST/DB database (default: SQLite in a temp folder); "
                        "its sessions tables are written to")
    b.add_argument("--pages", type=int, default=1,
                   help="page processes on the one store (more than 1 needs --store), each user's turns going to "
                        "each in turn")
    b.add_argument("--workers", choices=("ray",), default=None,
                   help="run the backend on a Ray cluster started for the benchmark, as a Serve deployment "
                        "(pip install -e .[ray]); default: in each page process")
    b.add_argument("--replicas", type=int, default=1, help="with --workers ray: the deployment's replicas")
    _add_quiet(b, "bar over the simulated turns")
    b.set_defaults(func=cmd_bench)

    p = sub.add_parser("parse", help="show the tool calls the chat model makes for a request, in a fresh session")
    p.add_argument("text", nargs="?", default=None, help="the request, e.g. \"make her smile a bit more\"")
    p.add_argument("--jsonl", type=Path, default=None,
                   help="read lines with a \"text\" field from FILE (- for stdin); print one JSON object per line")
    _add_llm(p)
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("chat", help="talk to a face in the terminal; the face is saved as a PNG after every turn")
    p.add_argument("--say", action="append", default=[], metavar="TEXT",
                   help="a message to send instead of reading the terminal (repeat for several turns)")
    p.add_argument("--face", type=int, default=None,
                   help="seed of the generated face to start from (new faces asked for later derive from it)")
    p.add_argument("--image", type=Path, default=None, help="start from this photo instead of a generated face")
    p.add_argument("--out", type=Path, default=Path("chatedit_face.png"), help="where the current face is saved")
    _add_backend(p)
    _add_llm(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("sheet", help="render a contact sheet: faces × the six degrees of each attribute")
    p.add_argument("--out", type=Path, default=Path("degree_sheet.png"))
    p.add_argument("--faces", type=int, default=3, help="faces per attribute")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--edits", action="store_true",
                   help="instead: field and linear walks of the built-in models across each attribute's degrees")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="accepted like every long command's --quiet; the sheet shows no progress bar yet")
    registry.add_arguments(p, ("builtin",))
    p.set_defaults(func=cmd_sheet)

    p = sub.add_parser("replay", help="replay scripted conversations and check what happened to the face")
    p.add_argument("scripts", nargs="+", metavar="FILE_OR_DIR", help="YAML scripts, or folders of them")
    p.add_argument("--out", type=Path, required=True, help="folder for transcripts, images, GIFs and sheets")
    p.add_argument("--check", action="store_true", help="exit non-zero when any expectation failed")
    p.add_argument("--backend", default=None, choices=registry.names(), help="override every script's backend")
    _add_llm(p, default=None)  # None: each script's own chat model
    _add_quiet(p, "bars over the scripts and the turns of each")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("backends", help="the editing backends: what each needs, its options, whether it runs here")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    registry.add_arguments(p)  # e.g. --weights DIR: would stylegan2 run with these files?
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("faces", help="what ChatEdit sees in photos: faces, landmarks, aligned crops, identity "
                                     "(dlib; pip install -e \".[faces]\")")
    p.add_argument("photos", nargs="*", type=Path, metavar="PHOTO", help="photos to read")
    p.add_argument("--json", action="store_true", help="print one JSON list, one object per photo, in order")
    p.add_argument("--out", type=Path, default=Path("faces_out"),
                   help="folder for the aligned crops, PHOTO_face0.png … (default: ./faces_out)")
    p.add_argument("--detector", choices=["hog", "cnn"], default="hog",
                   help="dlib's HOG detector (default, ~0.1 s a photo) or its CNN (~7 s a photo on a CPU)")
    p.add_argument("--size", type=int, default=256, help="side of the aligned crops in pixels")
    p.add_argument("--bench", action="store_true",
                   help="time detect + align of a 1-Mpx photo and one identity (the first PHOTO, else "
                        "scikit-image's astronaut)")
    p.set_defaults(func=cmd_faces)

    p = sub.add_parser("serve", help="the chat page: talk to a face in the browser (Gradio)")
    _add_backend(p)
    _add_llm(p)
    p.add_argument("--data-dir", type=Path, default=Path("chatedit_data"),
                   help="sessions database, their images and upload temp files (default: ./chatedit_data)")
    p.add_argument("--store", default=os.environ.get("CHATEDIT_STORE") or None, metavar="URL",
                   help="where sessions are kept: SQLite in --data-dir (default), or postgresql://USER@HOST/DB "
                        "for several page processes on one database (pip install -e .[postgresql]); "
                        "default: CHATEDIT_STORE")
    p.add_argument("--shared-dir", type=Path, default=None, metavar="DIR",
                   help="with --store postgresql://: a folder every page process shares, for the chat's images "
                        "and the page's browser secret (default: --data-dir, which stays each process's own)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860, or the next free one)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (use with --auth)")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="require this login (repeat for several users)")
    p.add_argument("--auth-file", type=Path, default=None, help="logins, one USER:PASS per line")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest photo accepted, in MB")
    p.add_argument("--concurrency", type=int, default=2,
                   help="edits running at once (others queue); page loads never wait for edits")
    p.add_argument("--max-age-days", type=float, default=30.0, help="sessions unused this long are deleted at start")
    p.add_argument("--max-sessions", type=int, default=1000, help="at most this many sessions are kept")
    p.add_argument("--mcp", action="store_true",
                   help="also serve the session's tools to other agents over MCP at /gradio_api/mcp/ "
                        "(with --auth, MCP clients send the same login as HTTP Basic credentials)")
    _add_workers(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("deploy", help="write a Ray Serve config running a backend as a deployment (`serve deploy`)")
    _add_backend(p)
    p.add_argument("--method", default="field", choices=("field", "linear"), help="how the replicas walk")
    p.add_argument("--out", type=Path, default=Path("serve.yaml"), help="the config file to write (default: serve.yaml)")
    _add_workers(p, deploy=True)
    p.set_defaults(func=cmd_deploy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"chatedit {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
