"""``vandal serve``: the inspection service and page over a folder of model bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import device_option, echo, user_errors


@click.command(help="Serve models over HTTP (JSON API, Prometheus /metrics) with an inspection page at /. "
                    "Models are the bundles `vandal fit` writes, one folder per name in --models.")
@click.option("--models", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of named model bundles [default: $VANDAL_MODELS or the per-user data folder].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-upload-mb", default=50.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest uploaded file.")
@click.option("--max-request-mb", default=512.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest request body.")
@click.option("--max-files", default=64, show_default=True, type=click.IntRange(min=1), help="Files per request.")
@click.option("--max-pixels", default=None, type=click.IntRange(min=1),
              help="Largest image in pixels (decompression bombs) [default: 100 megapixels].")
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
def serve(models: Path | None, host: str, port: int, max_upload_mb: float, max_request_mb: float, max_files: int,
          max_pixels: int | None, cache_size: int, queue_size: int, allow_download: bool, mqtt: str | None,
          watch: tuple[str, ...], watch_interval: float, log_level: str, device: str) -> None:
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
    options: dict[str, Any] = {} if max_pixels is None else {"max_pixels": max_pixels}
    settings = ServeSettings(models=models or default_models_dir(), device=device, max_upload_mb=max_upload_mb,
                             max_request_mb=max_request_mb, max_files=max_files, cache_size=cache_size,
                             queue_size=queue_size, allow_download=allow_download, mqtt=mqtt, watch=watched,
                             watch_interval=watch_interval, **options)
    app = create_app(settings)
    echo(f"models in {settings.models}; page at http://{host}:{port}/ (API docs at /docs)")
    for name, folder in watched:
        echo(f"watching {folder} for model {name!r}")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
