"""Plugin settings kept in QgsSettings, and where the backend's token lives.

The token file rule mirrors the backend's (``RSCOVLM_TOKEN_FILE``, else
``$XDG_CONFIG_HOME/rscovlm/token``, else ``~/.config/rscovlm/token``) so that a backend
started with defaults and the plugin with defaults find the same file without set-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import QgsSettings

DEFAULT_BACKEND_URL = "http://127.0.0.1:8765"
# The backend's tiling defaults and limits (rscovlm.defaults; a test keeps the two equal:
# the plugin imports nothing from the backend).
TILE_SIZE = 512
OVERLAP = 100
TILE_SIZE_MIN = 64
TILE_SIZE_MAX = 2048
LARGE_RUN_TILES = 2000  # the plugin asks before a run over more tiles than this
_PREFIX = "rscovlm/"


def default_token_file() -> Path:
    """The token file the backend writes when started with its defaults."""
    explicit = os.environ.get("RSCOVLM_TOKEN_FILE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME", "").strip()
    # As in the backend: the XDG spec says a relative value must be ignored.
    base = Path(config_home) if config_home and os.path.isabs(config_home) else Path.home() / ".config"
    return base / "rscovlm" / "token"


def read_token(path: Path) -> str | None:
    """The token in ``path`` without surrounding whitespace; None when absent or empty."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


@dataclass
class PluginSettings:
    """What the user configured; an empty ``token_file`` means the backend's default rule.

    ``max_new_tokens`` caps the model's answer per tile (0: the backend's default); dense
    scenes with many objects may need more than the default, quick trials less.
    """

    backend_url: str = DEFAULT_BACKEND_URL
    token_file: str = ""
    max_new_tokens: int = 0
    backend_program: str = ""   # a python with rscovlm installed, or the rscovlm script; empty: "rscovlm" on PATH
    model_path: str = ""        # model folder or Hugging Face id for a backend started from the dock

    @property
    def token_path(self) -> Path:
        return Path(self.token_file).expanduser() if self.token_file else default_token_file()

    @classmethod
    def load(cls) -> PluginSettings:
        store = QgsSettings()
        url = store.value(_PREFIX + "backend_url", DEFAULT_BACKEND_URL, type=str)
        token_file = store.value(_PREFIX + "token_file", "", type=str)
        max_new_tokens = store.value(_PREFIX + "max_new_tokens", 0, type=int)
        return cls(
            backend_url=(url or DEFAULT_BACKEND_URL).rstrip("/"),
            token_file=token_file or "",
            max_new_tokens=max(0, max_new_tokens or 0),
            backend_program=store.value(_PREFIX + "backend_program", "", type=str) or "",
            model_path=store.value(_PREFIX + "model_path", "", type=str) or "",
        )

    def save(self) -> None:
        store = QgsSettings()
        store.setValue(_PREFIX + "backend_url", self.backend_url.rstrip("/"))
        store.setValue(_PREFIX + "token_file", self.token_file)
        store.setValue(_PREFIX + "max_new_tokens", self.max_new_tokens)
        store.setValue(_PREFIX + "backend_program", self.backend_program)
        store.setValue(_PREFIX + "model_path", self.model_path)


_DETECT = _PREFIX + "detect/"


@dataclass
class DetectChoices:
    """The Detect tab's last options, so a user's usual set-up survives a QGIS restart."""

    unticked: list[str] = field(default_factory=list)  # DOTA classes switched off
    own_classes: str = ""
    tile_size: int = TILE_SIZE
    overlap: int = OVERLAP
    max_mode: bool = False

    @classmethod
    def load(cls) -> DetectChoices:
        store = QgsSettings()
        unticked = store.value(_DETECT + "unticked", "", type=str) or ""
        return cls(
            unticked=[name for name in unticked.split(",") if name],
            own_classes=store.value(_DETECT + "own_classes", "", type=str) or "",
            tile_size=store.value(_DETECT + "tile_size", TILE_SIZE, type=int) or TILE_SIZE,
            overlap=store.value(_DETECT + "overlap", OVERLAP, type=int),
            max_mode=store.value(_DETECT + "max_mode", False, type=bool),
        )

    def save(self) -> None:
        store = QgsSettings()
        store.setValue(_DETECT + "unticked", ",".join(self.unticked))
        store.setValue(_DETECT + "own_classes", self.own_classes)
        store.setValue(_DETECT + "tile_size", self.tile_size)
        store.setValue(_DETECT + "overlap", self.overlap)
        store.setValue(_DETECT + "max_mode", self.max_mode)
