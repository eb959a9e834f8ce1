"""Files on an object store: two gateways on one database and one S3 bucket behave as one repository.

The bucket is real S3 on loopback: moto's server mode speaks the S3 wire protocol, so boto3 in the gateways
does exactly what it does against AWS, MinIO or R2 (multipart uploads included).
"""
from __future__ import annotations

import hashlib
import os
import threading
from types import SimpleNamespace

import boto3
import openai
import pytest
import requests
from conftest import drop_database, free_port, start_server
from loopback_tcp import LoopbackListener
from moto.server import ThreadedMotoServer
from test_files import PDF, b64, last_user_content, memory_kb, put, reset_peak_memory

BUCKET = "onekeyllm-files"
PREFIX = "replicas"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAOBJSTORETEST0001", "AWS_SECRET_ACCESS_KEY": "s3-secret-never-logged-0123456789",
               "AWS_DEFAULT_REGION": "us-east-1"}


def s3_env(endpoint: str, bucket: str = BUCKET) -> dict:
    return {"ONEKEYLLM_FILES_URL": f"s3://{bucket}/{PREFIX}", "ONEKEYLLM_S3_ENDPOINT_URL": endpoint, **CREDENTIALS}


@pytest.fixture(scope="module")
def s3():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    client.create_bucket(Bucket=BUCKET)
    yield SimpleNamespace(url=url, client=client)
    server.stop()


def objects(s3, key_id: str) -> dict:
    """The bucket's objects of one key's space: {path in the space: size}."""
    listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{key_id}/").get("Contents", [])
    return {item["Key"].split("/", 2)[2]: item["Size"] for item in listed}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, s3):
    """Gateways A and B: one database, one bucket, each its own (unused) local files folder."""
    tmp = tmp_path_factory.mktemp("s3-replicas")
    a = start_server(tmp / "a", name="s3-a", extra_env=s3_env(s3.url))
    b = start_server(tmp / "b", name="s3-b", extra_env=s3_env(s3.url), database_url=a.database_url,
                     admin_token=a.admin_token)
    key = a.create_key(budget="10", name="replicas")
    b.handed_out.add(key["key"])
    yield SimpleNamespace(a=a, b=b, key=key, tmp=tmp)
    b.stop()
    a.stop()
    drop_database(a.database_url)
    for server in (a, b):
        server.handed_out.add(CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        assert not server.leaked_secrets(), f"secrets in the server log: {server.leaked_secrets()}"


def sdk(server, key: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=key["key"], max_retries=0, timeout=60)


def test_a_file_uploaded_on_one_replica_is_served_by_the_other(replicas, s3):
    a, b = sdk(replicas.a, replicas.key), sdk(replicas.b, replicas.key)
    uploaded = a.files.create(file=("notes.txt", b"written through A"), purpose="user_data")
    assert b.files.retrieve(uploaded.id).bytes == len(b"written through A")
    assert b.files.content(uploaded.id).content == b"written through A"
    assert uploaded.id in [f.id for f in b.files.list()]
    assert objects(s3, replicas.key["id"]) == {f".uploads/{uploaded.id}": len(b"written through A")}
    assert not list(replicas.tmp.rglob("files/*")), "nothing is kept on a replica's own disk"
    for server in (replicas.a, replicas.b):
        health = requests.get(server.v1 + "/health", timeout=30)
        assert (health.status_code, health.json()) == (200, {"status": "ok", "database": "ok", "files": "ok"})


def test_a_file_deleted_on_one_replica_is_gone_for_the_other(replicas, s3):
    a, b = sdk(replicas.a, replicas.key), sdk(replicas.b, replicas.key)
    uploaded = a.files.create(file=("gone.txt", b"soon deleted"), purpose="user_data")
    assert f".uploads/{uploaded.id}" in objects(s3, replicas.key["id"])
    assert b.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        a.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        a.files.content(uploaded.id)
    assert f".uploads/{uploaded.id}" not in objects(s3, replicas.key["id"])


def test_put_of_one_path_on_both_replicas_keeps_one_version(replicas, s3):
    key = replicas.key
    first = put(replicas.a, key["key"], "shared/plan.md", b"version one, from A")
    second = put(replicas.b, key["key"], "shared/plan.md", b"version two, from B")
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["id"] == second.json()["id"]
    for client in (sdk(replicas.a, key), sdk(replicas.b, key)):
        assert client.files.content(first.json()["id"]).content == b"version two, from B"
        assert [f.filename for f in client.files.list()].count("shared/plan.md") == 1
    assert objects(s3, key["id"])["shared/plan.md"] == len(b"version two, from B")


def test_an_input_file_uploaded_on_one_replica_reaches_the_upstream_from_the_other(replicas, upstream):
    replicas.a.create_model("s3-gpt", max_output_tokens=64)
    replicas.a.create_account(provider="openai", base_url=upstream.base_url("openai", "s3-files"), api="chat",
                              api_key="sk-upstream-s3-files-0001", models=["s3-gpt"], model_map={"s3-gpt": "gpt-fake-1"})
    pdf = sdk(replicas.a, replicas.key).files.create(file=("report.pdf", PDF, "application/pdf"), purpose="user_data")
    sdk(replicas.b, replicas.key).responses.create(model="s3-gpt", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Summarize"}, {"type": "input_file", "file_id": pdf.id}]}])
    parts = last_user_content(upstream, "/v1/chat/completions", "s3-files")
    assert {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{b64(PDF)}",
                                     "filename": "report.pdf"}} in parts


def test_a_large_put_goes_up_in_parts_and_never_whole_in_memory(replicas, s3):
    key, pid = replicas.key, replicas.a.process.pid
    put(replicas.a, key["key"], "warmup.bin", os.urandom(9 * 1024 * 1024))  # first-use allocations, first part
    payload = os.urandom(48 * 1024 * 1024)
    reset_peak_memory(pid)
    before = memory_kb(pid, "VmRSS")
    answer = put(replicas.a, key["key"], "big/forty-eight.bin", payload)
    grown = memory_kb(pid, "VmHWM") - before
    assert answer.status_code == 200, answer.text
    assert grown < 24 * 1024, f"the server's peak memory grew by {grown} KiB for a 48 MiB upload"
    head = s3.client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{key['id']}/big/forty-eight.bin")
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].strip('"').endswith("-6"), "a multipart upload of six 8 MiB parts"
    served = requests.get(f"{replicas.b.v1}/files/{answer.json()['id']}/content", timeout=60,
                          headers={"Authorization": f"Bearer {key['key']}"})
    assert int(served.headers["Content-Length"]) == len(payload)
    assert hashlib.sha256(served.content).digest() == hashlib.sha256(payload).digest()


def test_a_put_over_the_limit_leaves_no_object_and_no_upload(tmp_path, s3):
    server = start_server(tmp_path, name="s3-limit", extra_env={**s3_env(s3.url),
                                                               "ONEKEYLLM_MAX_FILE_BYTES": str(9 * 1024 * 1024)})
    try:
        key = server.create_key(budget="1", name="limit")
        assert put(server, key["key"], "fits.txt", b"small").status_code == 200
        answer = put(server, key["key"], "too/big.bin", iter([os.urandom(1024 * 1024)] * 12))  # chunked, no length
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "file_too_large"
        assert objects(s3, key["id"]) == {"fits.txt": 5}
        assert not s3.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"), "the multipart upload is aborted"
    finally:
        server.stop()


def assert_store_unavailable(server) -> None:
    key = server.create_key(budget="1", name="unavailable")
    answer = put(server, key["key"], "notes.txt", b"hello")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["type"] == "service_unavailable"
    with pytest.raises(openai.InternalServerError) as error:
        sdk(server, key).files.create(file=("a.txt", b"x"), purpose="user_data")
    assert error.value.status_code == 503
    assert sdk(server, key).files.list().data == []
    health = requests.get(server.v1 + "/health", timeout=60)
    assert (health.status_code, health.json()) == (503, {"status": "unavailable", "database": "ok",
                                                         "files": "unavailable"})


def test_a_missing_bucket_is_503_in_our_envelope(tmp_path, s3):
    server = start_server(tmp_path, name="s3-nobucket", extra_env=s3_env(s3.url, bucket="no-such-bucket"))
    try:
        assert_store_unavailable(server)
    finally:
        server.stop()


def test_a_store_that_is_down_is_503_in_our_envelope(tmp_path):
    server = start_server(tmp_path, name="s3-down", extra_env=s3_env(f"http://127.0.0.1:{free_port()}"))
    try:
        assert_store_unavailable(server)
    finally:
        server.stop()


class SilentStore(LoopbackListener):
    """A TCP endpoint that takes connections and never answers: an object store that hangs."""

    def __init__(self) -> None:
        self.accepted = threading.Event()
        super().__init__()

    def take(self, connection) -> None:
        super().take(connection)
        self.accepted.set()


def test_a_hanging_store_stalls_only_its_own_requests(tmp_path):
    store = SilentStore()
    server = start_server(tmp_path, name="s3-hang", extra_env=s3_env(store.url))
    try:
        key = server.create_key(budget="1", name="hang")
        answers: list = []
        upload = threading.Thread(target=lambda: answers.append(put(server, key["key"], "slow.txt", b"x" * 1000)))
        upload.start()
        assert store.accepted.wait(30), "the gateway never reached the store"
        ping = requests.get(server.v1 + "/ping", timeout=10)
        models = requests.get(server.v1 + "/models", timeout=10)
        assert ping.status_code == models.status_code == 200
        assert upload.is_alive() and not answers, "the upload is still waiting on the store"
    finally:
        store.close()
    upload.join(120)
    server.stop()
    assert answers and answers[0].status_code == 503, answers and answers[0].text
