"""Starting the chat page: options, exposure (share, auth, upload limit, served paths), launch.

Gradio keeps uploads and streamed frames in ``GRADIO_TEMP_DIR``; it is set to the app's own
``<data dir>/tmp`` before the page is built, and the only other folder served is the app's
images, so no file outside the app's data and temp directories is ever served. Nothing here
imports gradio at module level (``chatedit --help`` stays fast).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatedit.llms import LLMSettings

logger = logging.getLogger(__name__)

SHARE_WITHOUT_AUTH = ("WARNING: --share makes this page public on the internet with no password. Anyone with the "
                      "link can use it. Add --auth USER:PASS (or --auth-file) to protect it.")


@dataclass
class ServeOptions:
    backend: str = "builtin"
    weights: Path | None = None
    backend_options: dict = field(default_factory=dict)  # diffusion: model, clip, ...; stylegan2: half, pti_steps
    face_models: Path | None = None  # insightface's ONNX files: face detection and identity for photo backends
    llm: "str | LLMSettings" = "rules"
    data_dir: Path = Path("chatedit_data")
    host: str = "127.0.0.1"
    port: int | None = None
    share: bool = False
    auth: list[tuple[str, str]] = field(default_factory=list)
    max_upload_mb: float = 10.0
    concurrency: int = 2
    max_age_days: float = 30.0
    max_sessions: int = 1000


def parse_auth(pairs: list[str], auth_file: Path | None = None) -> list[tuple[str, str]]:
    """``USER:PASS`` strings (and lines of ``auth_file``; blank lines and ``#`` comments skipped)."""
    lines = list(pairs)
    if auth_file is not None:
        lines += [ln.strip() for ln in Path(auth_file).read_text().splitlines()
                  if ln.strip() and not ln.strip().startswith("#")]
    auth = []
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"auth must be USER:PASS, got {line!r}")
        auth.append((user, password))
    return auth


def prepare(options: ServeOptions):
    """Loads the models once and builds the page; returns ``(page, app)`` ready to launch."""
    data_dir = Path(options.data_dir).resolve()
    (data_dir / "tmp").mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(data_dir / "tmp")  # uploads and streamed frames: ours, not /tmp

    from chatedit.agent import build_agent
    from chatedit.sessions import SessionService
    from chatedit.store import SessionStore
    from chatedit.tools import registry

    from .app import ServeConfig, build_page

    store = SessionStore(data_dir, max_age_days=options.max_age_days, max_sessions=options.max_sessions)
    pruned = store.prune()
    if pruned:
        logger.info("pruned %d old sessions", len(pruned))
    backend_options = dict(options.backend_options)
    if registry.get(options.backend).capabilities().photos:  # photos kept to redo inversions and tunes after a restart
        backend_options.setdefault("photo_dir", data_dir / "photos")
    agent = build_agent(options.backend, options.llm, weights=options.weights, face_models=options.face_models,
                        **backend_options)
    llm_name = options.llm if isinstance(options.llm, str) else options.llm.name
    sessions = SessionService(agent, store, options.backend)
    return build_page(sessions, ServeConfig(options.backend, llm_name, options.concurrency, options.max_upload_mb))


def launch_kwargs(options: ServeOptions, app) -> dict:
    """What ``Blocks.launch`` gets: only the app's images folder is served beside Gradio's own temp files."""
    from .app import CSS

    return dict(
        server_name=options.host, server_port=options.port, share=options.share,
        auth=options.auth or None, max_file_size=f"{int(options.max_upload_mb * 1024)}kb",
        allowed_paths=[str(app.sessions.store.images_dir)], show_error=False, quiet=False,
        css=CSS, theme="default",
    )


def share_warning(options: ServeOptions) -> str | None:
    return SHARE_WITHOUT_AUTH if options.share and not options.auth else None


def serve(options: ServeOptions, block: bool = True):
    warning = share_warning(options)
    if warning:
        print(warning, file=sys.stderr)
    page, app = prepare(options)
    page.queue(default_concurrency_limit=options.concurrency, max_size=256)
    page.launch(prevent_thread_lock=not block, **launch_kwargs(options, app))
    return page, app
