"""How the backend runs on Ray Serve: replicas, autoscaling bounds, resources, and the Serve config.

``WorkerSettings`` is built once at the entry point (``chatedit serve --workers ray``, ``chatedit
deploy``) from the CLI's flags. ``deployment_options`` is what ``serve.deployment(...).options``
takes; ``serve_config`` writes the same as a Ray Serve config file for ``serve deploy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP = "chatedit"  # the Serve application's name (and its deployment's, ``Backend``)
DEPLOYMENT = "Backend"
IMPORT_PATH = "chatedit.workers.replica:app"  # what ``serve deploy`` builds the application from


@dataclass(frozen=True)
class WorkerSettings:
    """Where the backend's replicas run and how many there are."""

    address: str | None = None  # a running Ray cluster to join (``--ray-address``); None: start one here
    replicas: int | None = 1  # a fixed number of replicas; None: autoscale between the bounds below
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 1.0  # autoscaling adds replicas when each has more requests than this
    max_ongoing_requests: int = 2  # requests one replica runs at once (as ``--concurrency`` in-process)
    gpus_per_replica: float = 0.0  # fractions share a GPU between replicas (0.5: two per GPU)
    cpus_per_replica: float = 1.0

    def __post_init__(self):
        if self.replicas is not None and self.replicas < 1:
            raise ValueError(f"--replicas must be at least 1, got {self.replicas}")
        bounds = 0 <= self.min_replicas <= self.max_replicas and self.max_replicas >= 1
        if self.replicas is None and not bounds:
            raise ValueError(f"autoscaling needs 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, "
                             f"got {self.min_replicas} and {self.max_replicas}")
        if self.gpus_per_replica < 0 or self.cpus_per_replica < 0:
            raise ValueError(f"resources per replica cannot be negative, got {self.gpus_per_replica} GPUs and "
                             f"{self.cpus_per_replica} CPUs")
        if self.target_ongoing_requests <= 0 or self.max_ongoing_requests < 1:
            raise ValueError(f"ongoing requests must be positive, got target {self.target_ongoing_requests} "
                             f"and max {self.max_ongoing_requests}")

    @classmethod
    def from_flags(cls, address: str | None = None, replicas: int | None = None, min_replicas: int | None = None,
                   max_replicas: int | None = None, gpus_per_replica: float | None = None) -> WorkerSettings:
        """From the CLI's flags: ``--min-replicas``/``--max-replicas`` autoscale, else ``--replicas`` (default 1)."""
        autoscale = min_replicas is not None or max_replicas is not None
        if autoscale and replicas is not None:
            raise ValueError(f"give --replicas ({replicas}) or --min-replicas/--max-replicas, not both")
        low = 1 if min_replicas is None else min_replicas
        fixed = None if autoscale else 1 if replicas is None else replicas
        return cls(address=address, replicas=fixed, min_replicas=low,
                   max_replicas=max(low, 1) if max_replicas is None else max_replicas,
                   gpus_per_replica=0.0 if gpus_per_replica is None else gpus_per_replica)

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Deployment.options``."""
        scaling: dict[str, Any] = {"num_replicas": self.replicas} if self.replicas is not None else {
            "autoscaling_config": {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                                   "target_ongoing_requests": self.target_ongoing_requests}}
        actor: dict[str, Any] = {"num_cpus": self.cpus_per_replica}
        if self.gpus_per_replica:
            actor["num_gpus"] = self.gpus_per_replica
        return {**scaling, "ray_actor_options": actor, "max_ongoing_requests": self.max_ongoing_requests}


def plain_options(options: dict) -> dict:
    """Backend options as YAML/JSON values (paths as text); ``None`` values left out."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None}


def serve_config(backend: str, backend_options: dict, settings: WorkerSettings, method: str = "field") -> dict:
    """A Ray Serve config (``serve deploy serve.yaml``) running ``backend`` as ``settings`` say."""
    deployment = {"name": DEPLOYMENT, **settings.deployment_options()}
    return {
        "proxy_location": "Disabled",  # the page calls the deployment through a handle, never over HTTP
        "applications": [{
            "name": APP,
            "route_prefix": None,
            "import_path": IMPORT_PATH,
            "args": {"backend": backend, "options": plain_options(backend_options), "method": method},
            "deployments": [deployment],
        }],
    }


def write_serve_config(path: str | Path, backend: str, backend_options: dict, settings: WorkerSettings,
                       method: str = "field") -> Path:
    import yaml

    path = Path(path)
    text = yaml.safe_dump(serve_config(backend, backend_options, settings, method), sort_keys=False)
    path.write_text("# Ray Serve config written by `chatedit deploy`; run it with `serve deploy " + path.name + "`\n"
                    + text)
    return path


__all__ = ["APP", "DEPLOYMENT", "WorkerSettings", "plain_options", "serve_config", "write_serve_config"]
