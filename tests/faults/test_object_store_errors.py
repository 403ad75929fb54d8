"""An S3 object store that answers 500, or does not answer in time: a tiny local HTTP
server stands in for it. The checkpoint save fails loudly, naming the object, and no
checkpoint row is stored (none points at an object that is not there)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from repositories.checkpoints import ModelCheckpointRepository
from repositories.object_store import ObjectStoreError, S3ObjectStore
from repositories.runs import TrainingRunRepository
from suho_models.db import Database

_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class _FaultyS3(BaseHTTPRequestHandler):
    mode = "500"
    requests = 0

    def _answer(self) -> None:
        type(self).requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.mode == "slow":
            time.sleep(3)  # past the client's read timeout
        try:
            self.send_response(500)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(_ERROR)))
            self.end_headers()
            self.wfile.write(_ERROR)
        except OSError:
            pass  # the client gave up waiting (the "slow" mode)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=["500", "slow"])
def faulty_s3(request: pytest.FixtureRequest) -> Iterator[S3ObjectStore]:
    import boto3
    from botocore.config import Config

    handler = type("Handler", (_FaultyS3,), {"mode": request.param, "requests": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=1, read_timeout=1
        ),
    )
    try:
        yield S3ObjectStore("bucket", endpoint, client=client)
    finally:
        server.shutdown()
        server.server_close()
    assert handler.requests >= 1  # the store really was asked


@pytest.mark.parametrize("backend", ["embedded"])
def test_an_object_store_failing_fails_the_save_and_stores_no_row(
    db: Database, faulty_s3: S3ObjectStore
) -> None:
    run = TrainingRunRepository(db).create(
        {"run_name": f"s3-{uuid.uuid4().hex[:6]}", "model_type": "xgboost", "target_variable": "t"}
    )
    repo = ModelCheckpointRepository(db, store=faulty_s3, inline_max_bytes=0)
    with pytest.raises(ObjectStoreError, match=r"cannot upload s3://bucket/"):
        repo.save_checkpoint(run.run_id, b"x" * 100_000, "raw")
    assert repo.list(run.run_id) == []
    # A small checkpoint, kept inline, still saves while the object store is down.
    inline = ModelCheckpointRepository(db, store=faulty_s3)
    saved = inline.save_checkpoint(run.run_id, b"small", "raw")
    assert inline.load_checkpoint(saved.checkpoint_id) == b"small"
