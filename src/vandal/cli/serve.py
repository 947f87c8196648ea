"""``vandal serve``: the inspection service and page over a folder of model bundles."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import click

from .common import UserError, device_option, echo, user_errors
from .keys import open_database, station_options

WILDCARDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def served_names(host: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Host names the server answers to: loopback, the address it listens on (every name and address of
    this machine when it listens on all), and ``--allowed-host``."""
    from ..serve.settings import LOOPBACK_HOSTS

    names = [*LOOPBACK_HOSTS, *extra]
    if host in WILDCARDS:
        machine = {socket.gethostname(), socket.getfqdn()}
        for name in list(machine):
            try:
                machine.update(socket.gethostbyname_ex(name)[2])
            except OSError:
                continue
        names += sorted(machine)
    else:
        names.append(f"[{host}]" if ":" in host else host)
    return tuple(dict.fromkeys(n.lower() for n in names if n))


def auth_mode(host: str, no_auth: bool, models: Path | None, database: str | None) -> str:
    """off with --no-auth; auto on loopback; beyond loopback required, and refused while no key exists."""
    if no_auth:
        echo(f"warning: --no-auth: anyone who reaches {host} can create, change, delete and poison models and read "
             "every inspection; use API keys (vandal keys add NAME --role admin) on anything but a closed bench")
        return "off"
    if is_loopback(host):
        return "auto"
    from ..serve.db.keys import any_active

    with open_database(models, database).connect() as conn:
        if not any_active(conn):
            raise UserError(f"refusing to listen on {host} (beyond loopback) while no API key exists: make one with "
                            "`vandal keys add NAME --role admin` (same --models/--database), or pass --no-auth")
    return "required"


@click.command(help="Serve models over HTTP (JSON API, Prometheus /metrics) with an inspection page at /. "
                    "Models are the bundles `vandal fit` writes, one folder per name in --models. Every scored "
                    "image is recorded in the station database; beyond loopback, API keys are required.")
@station_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--keep-images", default=7.0, show_default=True, type=click.FloatRange(min=0), metavar="DAYS",
              help="Days inspected images and overlays are kept on disk (by content hash; 0: none).")
@click.option("--no-auth", is_flag=True, help="No API keys at all, even beyond loopback (warns at start-up).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Another Host name clients use (DNS rebinding guard; repeat; '*': any) [default: loopback and "
                   "the listening address, or this machine's names with 0.0.0.0].")
@click.option("--max-upload-mb", default=50.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest uploaded file.")
@click.option("--max-request-mb", default=512.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest request body.")
@click.option("--body-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a request body may take to arrive (slow uploads are answered 408).")
@click.option("--max-files", default=64, show_default=True, type=click.IntRange(min=1), help="Files per request.")
@click.option("--max-pixels", default=None, type=click.IntRange(min=1),
              help="Largest image in pixels (decompression bombs) [default: 100 megapixels].")
@click.option("--max-request-pixels", default=400_000_000, show_default=True, type=click.IntRange(min=1),
              help="Pixels per request, all files together (read from the headers before decoding).")
@click.option("--cache-size", default=4, show_default=True, type=click.IntRange(min=1),
              help="Detectors kept loaded in memory (least recently used dropped first).")
@click.option("--queue-size", default=16, show_default=True, type=click.IntRange(min=1),
              help="Fit/predict requests in progress at once; beyond it the answer is 503 with Retry-After.")
@click.option("--allow-download", is_flag=True,
              help="Let a model's Hugging Face backbone be downloaded when not cached (default: cache only).")
@click.option("--mqtt", default=None, metavar="URL",
              help="Publish each inspection to an MQTT broker, mqtt://[user:password@]host[:port], on the topic "
                   "vandal/<model>/inspections (QoS 1; reconnects by itself, never delays a prediction).")
@click.option("--watch", multiple=True, metavar="NAME=DIR",
              help="Score new image files in DIR with model NAME as they arrive (once complete), each file once, "
                   "across restarts. Repeatable.")
@click.option("--watch-interval", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between looks at the watched folders; a file is taken once unchanged that long.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@device_option
@user_errors
def serve(models: Path | None, database: str | None, host: str, port: int, keep_images: float, no_auth: bool,
          allowed_hosts: tuple[str, ...], max_upload_mb: float, max_request_mb: float, body_timeout: float,
          max_files: int, max_pixels: int | None, max_request_pixels: int, cache_size: int, queue_size: int,
          allow_download: bool, mqtt: str | None, watch: tuple[str, ...], watch_interval: float,
          log_level: str, device: str) -> None:
    from ..serve import ServeSettings, create_app, default_models_dir, require_extra
    from ..serve.errors import ServiceError
    from ..serve.mqtt import parse_mqtt_url
    from ..serve.store import check_name
    from ..serve.watch import parse_watch

    require_extra()
    import uvicorn

    try:
        watched = tuple(parse_watch(text) for text in watch)
        for name, folder in watched:
            check_name(name)
            if not folder.is_dir():
                raise click.BadParameter(f"{name}={folder}: no such folder; create it first", param_hint="--watch")
        if mqtt:
            parse_mqtt_url(mqtt)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    except ServiceError as error:
        raise click.BadParameter(error.detail, param_hint="--watch") from error
    models = models or default_models_dir()
    auth = auth_mode(host, no_auth, models, database)
    options: dict[str, Any] = {} if max_pixels is None else {"max_pixels": max_pixels}
    settings = ServeSettings(models=models, device=device, max_upload_mb=max_upload_mb,
                             max_request_mb=max_request_mb, max_files=max_files, cache_size=cache_size,
                             queue_size=queue_size, allow_download=allow_download, database=database,
                             keep_images=keep_images, auth=auth, allowed_hosts=served_names(host, allowed_hosts),
                             body_timeout=body_timeout, max_request_pixels=max_request_pixels, mqtt=mqtt,
                             watch=watched, watch_interval=watch_interval, **options)
    app = create_app(settings)
    shown = app.state.station.db.shown
    echo(f"models in {settings.models}; records in {shown}; page at http://{host}:{port}/ (API docs at /docs)")
    for name, folder in watched:
        echo(f"watching {folder} for model {name!r}")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
