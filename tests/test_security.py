"""Who can make the pipeline do what: Redis auth and TLS, serialisation, blob keys."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from pipeline.embedded.processes import find_redis_server, free_port
from pipeline.settings import Settings
from pipeline.store.blobs import FileBlobStore, blob_key, clean_prefix
from tests.helpers import ROOT, StaticSite, crawl_to_completion, run_cli, service_env

PASSWORD = "s3cret-Pa55word"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certificates(folder: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.cnf", "-out", "server.pem", cwd=folder)  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A redis-server that speaks TLS only and wants a password: (url, CA file)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    _make_certificates(folder)
    port = free_port()
    # Prefer the system's Redis: the wheel-bundled one may be built without TLS.
    binary = "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else find_redis_server()
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem",
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"
    client = Redis.from_url(url, ssl_ca_certs=str(folder / "ca.pem"), socket_connect_timeout=1)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet, or built without TLS
                if process.poll() is not None:
                    pytest.skip("this redis-server was built without TLS support")
                subprocess.run(["sleep", "0.05"], check=True)
        else:
            pytest.fail("TLS redis-server did not come up")
        yield url, folder / "ca.pem"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


async def test_crawl_over_tls_with_a_password(settings: Settings, tls_redis: tuple[str, Path]) -> None:
    url, ca = tls_redis
    settings = settings.replace(redis={"url": url, "tls_ca_file": str(ca)})
    async with StaticSite({"/list": "<a href='/a'>a</a><a href='/b'>b</a>", "/a": "a", "/b": "b"}) as site:
        status = await crawl_to_completion(settings, site.base_url + "/list")
    assert status.done and status.stored == 2


def test_credentials_stay_out_of_output(settings: Settings, tls_redis: tuple[str, Path], tmp_path: Path) -> None:
    url, ca = tls_redis
    env = service_env(settings)
    env.update(PIPELINE_REDIS_URL=url, PIPELINE_REDIS_TLS_CA_FILE=str(ca))
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "arq", "pipeline.WorkerSettings"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            crawl = run_cli("crawl", "http://127.0.0.1:9/list", "--json", env=env)
            status = run_cli("status", "--json", env=env)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    wrong = dict(env, PIPELINE_REDIS_URL=url.replace(PASSWORD, "not-the-password"))
    refused = run_cli("status", env=wrong)
    assert crawl.returncode == 0 and status.returncode == 0, crawl.stderr + status.stderr
    assert json.loads(status.stdout)["crawl_id"] == json.loads(crawl.stdout)["crawl_id"]
    assert refused.returncode != 0
    for text in (crawl.stdout, crawl.stderr, status.stdout, status.stderr, (tmp_path / "worker.log").read_text()):
        assert PASSWORD not in text
    assert "not-the-password" not in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr


def test_pickled_jobs_are_never_unpickled(settings: Settings, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, (f"code ran; would have written {marker}",))

    payload = pickle.dumps({"t": None, "f": "fetch_page", "a": [Exploit()], "k": {}, "et": 0})
    client = Redis.from_url(settings.redis.url)
    try:
        client.set("arq:job:evil", payload)
        client.zadd(settings.redis.queue, {"evil": 1})  # arq skips a score of 0
    finally:
        client.close()
    env = service_env(settings)
    worker = subprocess.run(
        [sys.executable, "-m", "arq", "pipeline.WorkerSettings", "--burst"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert worker.returncode == 0
    assert "code ran" not in worker.stdout + worker.stderr
    assert "deserializing job evil failed" in worker.stderr


async def test_blob_keys_come_from_the_digest_only(tmp_path: Path) -> None:
    digest = "ab" * 32
    assert blob_key("bodies/", digest) == f"bodies/ab/{digest}"
    for bad in ("../../etc/passwd", "AB" * 32, digest + "/x", ""):
        with pytest.raises(ValueError, match="sha256"):
            blob_key("bodies/", bad)
    assert clean_prefix("/a//b/") == "a/b/"
    with pytest.raises(ValueError, match=r"'\.\.'"):
        clean_prefix("a/../../b")
    store = FileBlobStore(tmp_path / "blobs")
    (tmp_path / "secrets").write_text("keep out")
    with pytest.raises(ValueError, match="outside the store"):
        await store.get("../secrets")
