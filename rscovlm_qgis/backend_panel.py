"""The Backend tab: which backend, whether it answers, what it runs on, start/stop a local one.

The device comes first and large because it decides everything else: on a GPU a scene
takes seconds to minutes, on the CPU it can take hours.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .backend_process import BackendProcess
from .client import BackendClient
from .params import ParamsError
from .settings import DEFAULT_BACKEND_URL, PluginSettings
from .tasks import BackendCheck, BackendCheckTask
from .translation import tr

TITLE = "RSCoVLM"
LOG_LINES = 2000


def device_html(status: dict[str, Any]) -> str:
    """The device line: GPU name and memory, or a bold warning that the CPU will be slow."""
    device = str(status.get("device") or "")
    if device.lower().startswith("cpu"):
        return "<b>" + html.escape(tr("CPU: will be slow")) + "</b>"
    if not status.get("gpu"):
        return "<b>" + html.escape(tr("Device: {device}").format(device=device or tr("unknown"))) + "</b>"
    text = html.escape(str(status.get("gpu") or device))
    memory = status.get("memory") or {}
    used, total = memory.get("used_gb"), memory.get("total_gb")
    if total:
        text += " — " + html.escape(
            tr("{used:.1f} of {total:.1f} GB in use").format(used=float(used or 0), total=float(total))
        )
    return "<b>" + tr("GPU") + ":</b> " + text


def details_html(status: dict[str, Any]) -> str:
    """Model, adapter, dtype, quantization, attention and queue, one per line."""
    none = tr("none")
    rows = [
        (tr("Model"), status.get("model") or none),
        (tr("Adapter"), status.get("adapter") or none),
        (tr("Data type"), status.get("dtype") or none),
        (tr("Quantization"), status.get("quantization") or none),
        (tr("Attention"), status.get("attention") or none),
        (tr("Queue"), tr("{queued} waiting, {running} running (at most {max})").format(
            queued=status.get("queue_length", 0), running=status.get("running", 0), max=status.get("max_queue", "?"))),
        (tr("Version"), status.get("version") or "?"),
    ]
    return "<br>".join(f"{html.escape(name)}: {html.escape(str(value))}" for name, value in rows)


class BackendPanel(QWidget):
    """Backend URL and token file, Connect, status, Start/Stop of a local backend with its log."""

    def __init__(self, iface, settings_provider: Callable[[], PluginSettings], parent: QWidget | None = None):
        super().__init__(parent)
        self.iface = iface
        self._settings_provider = settings_provider
        self.check_task: BackendCheckTask | None = None
        self.last_check: BackendCheck | None = None
        self.process = BackendProcess(self)
        self._build()
        self._load_fields()
        self._on_process_state(False)

    @property
    def settings(self) -> PluginSettings:
        return self._settings_provider()

    def _build(self) -> None:
        column = QVBoxLayout(self)
        self.device_label = QLabel(tr("Not checked yet."), self)
        self.device_label.setWordWrap(True)
        self.device_label.setTextFormat(Qt.RichText)
        font = self.device_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.device_label.setFont(font)
        column.addWidget(self.device_label)
        self.backend_label = QLabel("", self)
        self.backend_label.setWordWrap(True)
        column.addWidget(self.backend_label)
        self.details_label = QLabel("", self)
        self.details_label.setWordWrap(True)
        column.addWidget(self.details_label)

        form = QFormLayout()
        self.url_edit = QLineEdit(self)
        self.url_edit.setPlaceholderText(DEFAULT_BACKEND_URL)
        form.addRow(tr("Backend URL"), self.url_edit)
        self.token_edit = QLineEdit(self)
        self.token_edit.setPlaceholderText(tr("default: ~/.config/rscovlm/token"))
        form.addRow(tr("Token file"), self._with_browse(self.token_edit, self._browse_token))
        self.program_edit = QLineEdit(self)
        self.program_edit.setPlaceholderText(tr("rscovlm on PATH, or the backend environment's python"))
        form.addRow(tr("Backend program"), self._with_browse(self.program_edit, self._browse_program))
        self.model_edit = QLineEdit(self)
        self.model_edit.setPlaceholderText(tr("model folder or Hugging Face id"))
        form.addRow(tr("Model"), self._with_browse(self.model_edit, self._browse_model))
        column.addLayout(form)

        buttons = QHBoxLayout()
        self.check_button = QPushButton(tr("Connect"), self)
        self.check_button.setToolTip(tr("Ask the backend whether it answers and what it runs on"))
        self.start_button = QPushButton(tr("Start local backend"), self)
        self.stop_button = QPushButton(tr("Stop"), self)
        for button in (self.check_button, self.start_button, self.stop_button):
            buttons.addWidget(button)
        column.addLayout(buttons)
        self.log_box = QPlainTextEdit(self)
        self.log_box.setReadOnly(True)
        self.log_box.setMaximumBlockCount(LOG_LINES)
        self.log_box.setPlaceholderText(tr("Output of a backend started here appears here."))
        column.addWidget(self.log_box, 1)

        self.check_button.clicked.connect(self.connect_backend)
        self.start_button.clicked.connect(self.start_backend)
        self.stop_button.clicked.connect(self.stop_backend)
        self.process.output.connect(self.log_box.appendPlainText)
        self.process.stateChanged.connect(self._on_process_state)

    def _with_browse(self, edit: QLineEdit, handler) -> QWidget:
        holder = QWidget(self)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("…", holder)
        button.setToolTip(tr("Browse"))
        button.clicked.connect(handler)
        row.addWidget(button)
        return holder

    def _browse_token(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, tr("Backend token file"), self.token_edit.text())
        if path:
            self.token_edit.setText(path)

    def _browse_program(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, tr("Backend program"), self.program_edit.text())
        if path:
            self.program_edit.setText(path)

    def _browse_model(self) -> None:
        path = QFileDialog.getExistingDirectory(self, tr("Model folder"), self.model_edit.text())
        if path:
            self.model_edit.setText(path)

    # -- settings ----------------------------------------------------------------------

    def _load_fields(self) -> None:
        settings = self.settings
        self.url_edit.setText(settings.backend_url)
        self.token_edit.setText(settings.token_file)
        self.program_edit.setText(settings.backend_program)
        self.model_edit.setText(settings.model_path)

    def refresh_fields(self) -> None:
        """Show the settings object's values (after it was replaced from outside)."""
        self._load_fields()

    def apply_fields(self) -> None:
        """Copy the fields into the settings and keep them in QgsSettings."""
        settings = self.settings
        settings.backend_url = (self.url_edit.text().strip() or DEFAULT_BACKEND_URL).rstrip("/")
        settings.token_file = self.token_edit.text().strip()
        settings.backend_program = self.program_edit.text().strip()
        settings.model_path = self.model_edit.text().strip()
        settings.save()

    # -- status ------------------------------------------------------------------------

    def connect_backend(self) -> None:
        self.apply_fields()
        self.check_backend()

    def check_backend(self) -> None:
        if self.check_task is not None:
            return
        self.backend_label.setText(tr("Checking the backend at {url}…").format(url=self.settings.backend_url))
        self.check_task = BackendCheckTask(BackendClient.from_settings(self.settings))
        self.check_task.done.connect(self._on_checked)
        QgsApplication.taskManager().addTask(self.check_task)

    def _on_checked(self, check: BackendCheck) -> None:
        self.check_task = None
        self.last_check = check
        if not check.answers:
            self.device_label.setText(tr("Not connected."))
            self.details_label.setText("")
            self.backend_label.setText(tr("The backend does not answer. {reason}").format(reason=check.error or ""))
            return
        self.backend_label.setText(tr("The backend answers at {url}.").format(url=check.url) +
                                   (" " + check.error if check.error else ""))
        if check.status:
            self.device_label.setText(device_html(check.status))
            self.details_label.setText(details_html(check.status))
        else:
            self.device_label.setText(tr("Connected; the status is not readable (see above)."))
            self.details_label.setText("")

    # -- local backend -----------------------------------------------------------------

    def start_backend(self) -> None:
        self.apply_fields()
        try:
            self.process.start(self.settings)
        except ParamsError as error:
            self.log_box.appendPlainText(str(error))
            self.iface.messageBar().pushMessage(TITLE, str(error), Qgis.Critical, 0)

    def stop_backend(self) -> None:
        self.process.stop()

    def _on_process_state(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def shutdown(self) -> None:
        """Stop a backend started here and forget a pending check, before the plugin unloads."""
        if self.check_task is not None:
            self.check_task.done.disconnect(self._on_checked)
            self.check_task = None
        self.process.stop()
