"""moto's S3 as a local server for the tests and the benchmark.

moto accepts any non-empty credentials and region (`S3_ACCESS_KEY`, `S3_SECRET_KEY` and
`S3_REGION` make the intent obvious); its state lives in memory and is gone when it stops.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pipeline.embedded.processes import HOST, ServiceProcess, spawn, start_service
from pipeline.errors import ServiceError

S3_START_TIMEOUT = 20.0
S3_ACCESS_KEY = "test"
S3_SECRET_KEY = "test"
S3_REGION = "us-east-1"


def _http_answers(port: int, timeout: float = 1.0) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True  # any HTTP reply, even an S3 error document, means the server is up
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _moto_command() -> list[str]:
    beside = Path(sys.executable).parent / "moto_server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    if importlib.util.find_spec("moto") is not None:
        return [sys.executable, "-m", "moto.server"]
    raise ServiceError("moto is not installed: `pip install 'moto[server]'`")


def start_s3(
    *,
    port: int | None = None,
    log_dir: Path | None = None,
    timeout: float = S3_START_TIMEOUT,
) -> ServiceProcess:
    """Run moto's S3 (and every other AWS API it mocks) on 127.0.0.1; its URL is the endpoint_url.

    moto accepts any non-empty credentials and region, e.g. `S3_ACCESS_KEY`, `S3_SECRET_KEY`
    and `S3_REGION` here. State lives in memory and is gone when the process stops. The log
    goes to `log_dir/s3.log`, or to a temporary file that is removed when the service stops.
    """
    command = _moto_command()

    def launch(chosen: int) -> ServiceProcess:
        if log_dir is not None:
            log_path, remove_log = log_dir.resolve() / "s3.log", False
        else:
            fd, name = tempfile.mkstemp(prefix="moto-", suffix=".log")
            os.close(fd)
            log_path, remove_log = Path(name), True
        return spawn(
            "moto_server",
            [*command, "--host", HOST, "--port", str(chosen)],
            url=f"http://{HOST}:{chosen}",
            port=chosen,
            log_path=log_path,
            cwd=None,
            detached=False,
            remove_log=remove_log,
        )

    return start_service("moto_server", port, launch, lambda service: _http_answers(service.port, 0.5), timeout)
