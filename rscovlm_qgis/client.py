"""HTTP client for the backend's v1 API, over QGIS's own network stack.

QgsBlockingNetworkRequest honours the user's QGIS proxy and SSL settings, needs no
package beyond QGIS and may be called from a QgsTask's worker thread. Every failure
becomes a BackendError whose message is a sentence the dock can show as it is: the
server's own ``detail`` when it answered, or how to start it when it did not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import QgsBlockingNetworkRequest
from qgis.PyQt.QtCore import QByteArray, QUrl
from qgis.PyQt.QtNetwork import QNetworkRequest

from .params import DetectParams
from .settings import PluginSettings, read_token
from .translation import tr


class BackendError(Exception):
    """A failed call to the backend; ``str(error)`` is a sentence for the user."""

    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


class BackendClient:
    """One backend at ``base_url``; the token is read from ``token_path`` at each call,
    so a backend started after the dock opened (which writes the token) just works."""

    def __init__(self, base_url: str, token_path: Path):
        self.base_url = base_url.rstrip("/")
        self.token_path = token_path

    @classmethod
    def from_settings(cls, settings: PluginSettings) -> BackendClient:
        return cls(settings.backend_url, settings.token_path)

    # -- API ---------------------------------------------------------------------------

    def health(self) -> bool:
        """True when the backend answers its liveness check; raises BackendError if not."""
        answer = self._call("GET", "/health", auth=False)
        return answer.get("status") == "ok"

    def status(self) -> dict[str, Any]:
        """Model, device, memory and queue as the backend reports them."""
        return self._call("GET", "/v1/status")

    def submit_detect(self, params: DetectParams) -> str:
        """Queue a detection job; returns its id."""
        answer = self._call("POST", "/v1/jobs/detect", body=params.to_request())
        job_id = answer.get("job_id")
        if not job_id:
            raise BackendError(tr("The backend accepted the job but did not say its id."))
        return str(job_id)

    def submit_ask(self, body: dict[str, Any]) -> str:
        """Queue a question about a raster (the body of ``POST /v1/jobs/ask``); returns the job id."""
        answer = self._call("POST", "/v1/jobs/ask", body=body)
        job_id = answer.get("job_id")
        if not job_id:
            raise BackendError(tr("The backend accepted the job but did not say its id."))
        return str(job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        """The job's state, progress ({"done", "total"}), message and error."""
        return self._call("GET", f"/v1/jobs/{job_id}")

    def result(self, job_id: str) -> dict[str, Any]:
        """A finished detection job's GeoJSON FeatureCollection (with its CRS)."""
        return self._call("GET", f"/v1/jobs/{job_id}/result")

    def cancel(self, job_id: str) -> None:
        """Ask the backend to stop the job (it stops within one batch)."""
        self._call("DELETE", f"/v1/jobs/{job_id}")

    # -- transport ---------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        request = QNetworkRequest(QUrl(self.base_url + path))
        request.setRawHeader(b"Accept", b"application/json")
        if auth:
            request.setRawHeader(b"Authorization", b"Bearer " + self._token().encode("ascii"))
        blocking = QgsBlockingNetworkRequest()
        if method == "GET":
            code = blocking.get(request, True)  # forceRefresh: job states must never come from a cache
        elif method == "POST":
            request.setHeader(QNetworkRequest.ContentTypeHeader, "application/json")
            code = blocking.post(request, QByteArray(json.dumps(body or {}).encode("utf-8")), True)
        elif method == "DELETE":
            code = blocking.deleteResource(request)
        else:  # pragma: no cover - programming error
            raise ValueError(method)
        reply = blocking.reply()
        status = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
        if status is None:
            raise BackendError(self._not_answering(code, blocking.errorMessage()))
        payload = _json_or_none(bytes(reply.content()))
        if 200 <= int(status) < 300:
            if payload is None and method != "DELETE":
                raise BackendError(self._not_json(int(status)), int(status))
            return payload if isinstance(payload, dict) else {}
        raise BackendError(self._refusal(int(status), payload), int(status))

    def _token(self) -> str:
        token = read_token(self.token_path)
        if token is None:
            raise BackendError(
                tr(
                    "No backend token was found in {path}: start the backend once with "
                    "`rscovlm serve` so that it writes one, or choose the token file in the "
                    "plugin settings."
                ).format(path=self.token_path)
            )
        return token

    def _not_answering(self, code: int, detail: str) -> str:
        if code == QgsBlockingNetworkRequest.TimeoutError:
            lead = tr("The backend at {url} did not answer in time").format(url=self.base_url)
        else:
            lead = tr("The backend at {url} does not answer").format(url=self.base_url)
        hint = tr("start it with `rscovlm serve --model MODEL_FOLDER_OR_ID`, or check the URL in the plugin settings")
        reason = f" ({detail})" if detail else ""
        return f"{lead}{reason}: {hint}."

    def _not_json(self, status: int) -> str:
        return tr(
            "The program at {url} answered (HTTP {status}) but not like the RSCoVLM backend: "
            "is another program using that port?"
        ).format(url=self.base_url, status=status)

    def _refusal(self, status: int, payload: Any) -> str:
        detail = _detail_sentence(payload)
        if detail:
            return detail
        if status == 401:
            return tr(
                "The backend refused the token in {path}: it may belong to another backend; "
                "restart the backend or choose its token file in the plugin settings."
            ).format(path=self.token_path)
        return tr("The backend at {url} answered HTTP {status} without an explanation.").format(
            url=self.base_url, status=status
        )


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None


def _detail_sentence(payload: Any) -> str:
    """The server's ``detail``: a sentence, or FastAPI-style field errors joined into one."""
    if not isinstance(payload, dict):
        return ""
    detail = payload.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                field = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                message = str(item.get("msg", ""))
                parts.append(f"{field}: {message}" if field else message)
            else:
                parts.append(str(item))
        return "; ".join(p for p in parts if p)
    return ""
