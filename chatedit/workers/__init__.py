"""Backends as Ray Serve deployments: the page stays a thin front end (``chatedit serve --workers ray``).

- ``deploy``: the settings (replicas, autoscaling bounds, GPUs per replica) and the Serve config they
  make, for ``serve.run`` here or ``serve deploy`` on a cluster (``chatedit deploy``);
- ``replica``: the deployment, one backend loaded once per replica; an edit's walk and an upload's
  inversion run there and stream back one compressed image and its readings per frame;
- ``wire``: what crosses between a replica and the page;
- ``client``: the page's side, ``RayWorkers`` (the ``Editor``'s ``Workers``) and ``RemoteBackend``
  (the backend contract over the same handle, for everything else the page asks of a backend).

Nothing here imports ray until a cluster is used; the page runs everything in-process without it.
The design and its measurements: ``docs/scaling.md``.
"""
