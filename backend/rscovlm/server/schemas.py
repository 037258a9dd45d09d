"""The HTTP API's bodies as pydantic models: what a request may say, what an answer holds.

Validation here is the first line of the "errors are sentences" rule: each constraint
carries a message a GIS user can act on, and unknown fields are refused (a typo such as
``tilesize`` must not be silently ignored).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..defaults import (
    ASK_MAX_NEW_TOKENS,
    DETECT_MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_LIMIT,
    MIN_NEW_TOKENS,
    OVERLAP,
    TILE_SIZE,
    TILE_SIZE_MAX,
    TILE_SIZE_MIN,
)

MAX_BODY_BYTES = 64 * 1024
MAX_CLASSES = 100
MAX_CLASS_NAME_CHARS = 64
MAX_QUESTION_CHARS = 2000
MAX_PATH_CHARS = 4096

JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKindName = Literal["detect", "ask"]

Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _check_raster_path(value: str) -> str:
    """The backend reads rasters by path on its own disk, so the file must be there."""
    if not value:
        raise ValueError("give the full path of a raster file on the backend's machine")
    if "\x00" in value:
        raise ValueError("a file path cannot contain a NUL character")
    path = Path(value)
    if not path.is_absolute():
        raise ValueError(f"{value!r} is not an absolute path; give the full path of the raster file")
    try:
        if not path.exists():
            raise ValueError(f"there is no file at {value}; check the path")
        if not path.is_file():
            raise ValueError(f"{value} is not a regular file; give the path of a raster file")
        if not os.access(path, os.R_OK):
            raise ValueError(f"the backend may not read {value}; check the file's permissions")
    except OSError as exc:
        raise ValueError(f"{value} cannot be checked: {exc.strerror or exc}") from None
    return value


class Region(BaseModel):
    """A rectangle in map coordinates (the raster's CRS unless ``crs`` names another)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    bounds: list[Coordinate] = Field(
        min_length=4,
        max_length=4,
        description="[minx, miny, maxx, maxy] in the region's CRS",
    )
    crs: str | None = Field(
        default=None,
        max_length=32_768,  # WKT2 of a projected CRS runs to a few thousand characters
        description="CRS of the bounds, e.g. 'EPSG:4326' or WKT; defaults to the raster's CRS",
    )

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, bounds: list[float]) -> list[float]:
        minx, miny, maxx, maxy = bounds
        if not (minx < maxx and miny < maxy):
            raise ValueError(
                "bounds must be [minx, miny, maxx, maxy] with minx < maxx and miny < maxy"
            )
        return bounds

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, crs: str | None) -> str | None:
        if crs is None:
            return None
        if not crs:
            raise ValueError("leave crs out, or name a CRS such as 'EPSG:4326'")
        from pyproj import CRS

        try:
            CRS.from_user_input(crs)
        except Exception:  # noqa: BLE001 - pyproj raises several types for bad input
            raise ValueError(f"{crs[:80]!r} is not a CRS that PROJ knows; use a code such as 'EPSG:4326'") from None
        return crs

    def as_tuple(self) -> tuple[float, float, float, float]:
        minx, miny, maxx, maxy = self.bounds
        return (minx, miny, maxx, maxy)


class DetectRequest(_Request):
    """Oriented object detection over a raster, or over a region of it."""

    raster_path: str = Field(
        min_length=1, max_length=MAX_PATH_CHARS, description="absolute path on the backend's machine"
    )
    classes: list[Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME_CHARS)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CLASSES,
        description="class names to look for; the 15 DOTA classes when left out",
    )
    tile_size: StrictInt = Field(
        default=TILE_SIZE, ge=TILE_SIZE_MIN, le=TILE_SIZE_MAX, description="window size in image pixels"
    )
    overlap: StrictInt = Field(default=OVERLAP, ge=0, description="overlap between windows in pixels")
    max_mode: StrictBool = Field(default=False, description="feed tiles at the largest model input size")
    region: Region | None = None
    max_new_tokens: StrictInt = Field(
        default=DETECT_MAX_NEW_TOKENS,
        ge=MIN_NEW_TOKENS,
        le=MAX_NEW_TOKENS_LIMIT,
        description="answer budget per tile, in tokens (engines lower it to what the model's context leaves)",
    )

    @field_validator("raster_path")
    @classmethod
    def _raster_exists(cls, value: str) -> str:
        return _check_raster_path(value)

    @field_validator("classes")
    @classmethod
    def _clean_classes(cls, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        for name in classes:  # empty lists and names are refused by min_length, in the schema too
            if any(ch in name for ch in "\r\n\t") or not name.isprintable():
                raise ValueError(f"class name {name[:40]!r} must be printable text on one line")
        return classes

    @field_validator("overlap")
    @classmethod
    def _overlap_below_tile(cls, overlap: int, info: ValidationInfo) -> int:
        tile_size = info.data.get("tile_size")  # absent when tile_size itself was invalid
        if tile_size is not None and overlap >= tile_size:
            raise ValueError(f"overlap ({overlap}) must be smaller than tile_size ({tile_size})")
        return overlap


AskTask = Literal["ask", "caption", "classify", "ground"]


class AskRequest(_Request):
    """A question about a raster region, or one of the single-turn tasks on it.

    ``ask`` runs the Zoom-in Chain (with ``zoom``) and may continue a conversation;
    ``caption`` describes the region; ``classify`` picks one of ``classes``; ``ground``
    finds the object that ``question`` describes and returns its box.
    """

    raster_path: str = Field(
        min_length=1, max_length=MAX_PATH_CHARS, description="absolute path on the backend's machine"
    )
    task: AskTask = Field(default="ask", description="ask (zoom-in Q&A), caption, classify or ground")
    question: str = Field(
        default="",
        max_length=MAX_QUESTION_CHARS,
        description="the question (ask) or the description of the object to find (ground)",
    )
    classes: list[Annotated[str, Field(min_length=1, max_length=MAX_CLASS_NAME_CHARS)]] | None = Field(
        default=None, min_length=1, max_length=MAX_CLASSES, description="scene classes to choose from (classify)"
    )
    region: Region | None = None
    zoom: StrictBool = Field(default=True, description="let the model zoom into a region first")
    conversation_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="continue a conversation: the conversation_id an earlier ask result returned",
    )
    max_new_tokens: StrictInt = Field(
        default=ASK_MAX_NEW_TOKENS, ge=MIN_NEW_TOKENS, le=MAX_NEW_TOKENS_LIMIT, description="answer budget per turn, in tokens"
    )

    @field_validator("raster_path")
    @classmethod
    def _raster_exists(cls, value: str) -> str:
        return _check_raster_path(value)

    @model_validator(mode="after")
    def _task_inputs(self) -> "AskRequest":
        if self.task in ("ask", "ground") and not self.question.strip():
            what = "a question" if self.task == "ask" else "a description of the object to find"
            raise ValueError(f"question: give {what} (task {self.task!r} needs one)")
        if self.task == "classify" and not self.classes:
            raise ValueError("classes: give the scene classes to choose from (task 'classify' needs them)")
        if self.conversation_id is not None and self.task != "ask":
            raise ValueError("conversation_id: only 'ask' continues a conversation")
        return self


class JobAccepted(BaseModel):
    job_id: str
    state: JobStateName


class Progress(BaseModel):
    done: int
    total: int


class JobStatus(BaseModel):
    job_id: str
    kind: str
    state: JobStateName
    progress: Progress
    eta_s: float | None = Field(description="seconds left at the rate measured so far")
    message: str
    error: str | None
    created_at: float = Field(description="Unix time")
    started_at: float | None = None
    finished_at: float | None = None
    queue_position: int | None = Field(default=None, description="1 = next to run")


class FieldProblem(BaseModel):
    field: str
    problem: str


class ErrorBody(BaseModel):
    detail: str
    errors: list[FieldProblem] | None = None


class Health(BaseModel):
    status: Literal["ok"]


class GpuMemory(BaseModel):
    used_gb: float | None = None
    total_gb: float | None = None


class ServerStatus(BaseModel):
    """What the dock shows: which model runs where, and how busy the queue is."""

    model_config = ConfigDict(extra="allow")

    version: str
    model: str | None = None
    adapter: str | None = None
    device: str | None = None
    gpu: str | None = None
    memory: GpuMemory | None = None
    dtype: str | None = None
    quantization: str | None = None
    attention: str | None = None
    queue_length: int
    running: int
    max_queue: int

