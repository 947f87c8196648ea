"""What every command shares: one way to report a user error, image gathering, progress messages.

A user error ends in one ``error: ...`` line (naming the file and the fix) and exit code 2; a bug
still ends in a traceback, so it gets reported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

EXIT_USER_ERROR = 2

device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
skip_option = click.option("--skip-unreadable", is_flag=True,
                           help="Skip unreadable images (listed, with the reason) instead of stopping.")
recursive_option = click.option("--recursive", is_flag=True,
                                help="Look for images in subfolders too (the output folder is skipped).")
max_pixels_option = click.option("--max-pixels", type=click.IntRange(min=4), default=100_000_000, show_default=True,
                                 help="Refuse larger images as unreadable (decompression bombs); raise it for huge "
                                      "scans.")


def pixel_limit(max_pixels: int) -> int:
    """The command line owns its process: vandal's limit replaces Pillow's own bomb guard."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels
    return max_pixels


class UserError(click.ClickException):
    """A mistake the user can fix: printed as one ``error:`` line, exit code 2."""

    exit_code = EXIT_USER_ERROR

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=True)


def fail(message: str) -> NoReturn:
    raise UserError(message)


def echo(message: str) -> None:
    click.echo(message, err=True)


def user_errors(func: Callable) -> Callable:
    """Turn the errors a user causes (bad settings, files, bundles, images) into one ``error:`` line."""
    from ..config import ConfigError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # already a user-facing outcome (click's Exit is a RuntimeError: never report it twice)
        except (ConfigError, ValueError, TypeError, OSError, ImportError) as error:
            raise UserError(str(error) or type(error).__name__) from error

    return wrapper


def gather_images(paths: Sequence[Path], recursive: bool = False, exclude: Sequence[Path] = ()) -> list[Path]:
    """Image files among ``paths`` (folders are listed; non-images are counted and ignored)."""
    from ..data.datasets import list_images

    try:
        images, ignored = list_images(list(paths), recursive=recursive, exclude=exclude)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    if ignored:
        echo(f"ignored {ignored} non-image file(s)")
    return images


def load_readable(paths: list[Path], skip_unreadable: bool, max_pixels: int | None
                  ) -> tuple[list, list[tuple[str, str]]]:
    """Decode every path; unreadable ones stop the run, or are collected when skipping."""
    from ..data.images import UnreadableImageError, load_image

    images, skipped = [], []
    for path in paths:
        try:
            images.append(load_image(path, max_pixels))
        except UnreadableImageError as error:
            if not skip_unreadable:
                fail(str(error))
            skipped.append((str(path), str(error)))
    if skipped:
        echo(f"skipped {len(skipped)} unreadable image(s)")
    return images, skipped
