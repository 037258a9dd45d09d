"""A local backend started from the dock: the command line, and the QProcess that runs it.

The plugin never imports the backend; it starts ``rscovlm serve`` in the backend's own
Python environment (a python with rscovlm installed, or the rscovlm script) and reads its
output, so QGIS's Python stays free of torch and friends.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, pyqtSignal

from .params import ParamsError
from .settings import PluginSettings
from .translation import tr

STOP_GRACE_MS = 8000


def serve_command(settings: PluginSettings) -> tuple[str, list[str]]:
    """(program, arguments) for ``rscovlm serve`` on the port of the configured URL.

    A configured program named python* runs ``-m rscovlm``; any other is the rscovlm
    script itself; none means ``rscovlm`` found on PATH.
    """
    if not settings.model_path.strip():
        raise ParamsError(
            tr("Set the model (a folder or a Hugging Face id) in the Backend tab before starting a local backend.")
        )
    url = urlparse(settings.backend_url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ParamsError(
            tr("The backend URL {url} is not on this computer: a local backend listens on 127.0.0.1.").format(
                url=settings.backend_url
            )
        )
    program = settings.backend_program.strip() or "rscovlm"
    arguments = ["serve", "--model", settings.model_path.strip(), "--port", str(url.port or 8765)]
    if Path(program).name.lower().startswith("python"):
        arguments = ["-m", "rscovlm", *arguments]
    return program, arguments


class BackendProcess(QObject):
    """One ``rscovlm serve`` child process; its output arrives line by line."""

    output = pyqtSignal(str)
    stateChanged = pyqtSignal(bool)  # running or not

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None

    def is_running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.NotRunning

    def start(self, settings: PluginSettings) -> None:
        """Start the backend (raises ParamsError with a sentence when it cannot be)."""
        if self.is_running():
            return
        program, arguments = serve_command(settings)
        process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        if settings.token_file:  # the backend writes its token where the plugin will look
            environment.insert("RSCOVLM_TOKEN_FILE", str(Path(settings.token_file).expanduser()))
        environment.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(environment)
        process.setProcessChannelMode(QProcess.MergedChannels)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self.process = process
        self.output.emit("$ " + " ".join([program, *arguments]))
        process.start(program, arguments)
        if not process.waitForStarted(5000):
            self.process = None
            raise ParamsError(
                tr("“{program}” could not be started: set the backend's Python or rscovlm program in the Backend tab.").format(
                    program=program
                )
            )
        self.stateChanged.emit(True)

    def stop(self) -> None:
        """Ask the backend to shut down cleanly, and kill it if it does not in a few seconds."""
        process = self.process
        if process is None or process.state() == QProcess.NotRunning:
            return
        process.terminate()
        if not process.waitForFinished(STOP_GRACE_MS):
            process.kill()
            process.waitForFinished(2000)

    def _read(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardOutput()).decode("utf-8", errors="replace")
        for line in text.splitlines():
            if line.strip():
                self.output.emit(line)

    def _on_finished(self, code: int, _status) -> None:
        self._read()
        self.output.emit(tr("The backend stopped (exit code {code}).").format(code=code))
        self.process = None
        self.stateChanged.emit(False)

    def _on_error(self, error) -> None:
        if error == QProcess.FailedToStart:
            self.output.emit(tr("The backend program could not be started."))
