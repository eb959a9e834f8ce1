"""Files: the OpenAI Files API, the per-key repository written by `PUT /v1/files/{path}`, and files as model input.

Driven with the official openai SDK and with `requests` against live servers;
what reaches the upstream is read back from the fake upstream.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import openai
import pytest
import requests
from conftest import start_server

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(32))
SMALL_LIMIT = 64 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def put(server, key: str, raw_path: str, data, **headers) -> requests.Response:
    """PUT with the path sent exactly as written (a prepared request, so `..` is not normalized client-side)."""
    prepared = requests.Request("PUT", server.v1 + "/files/placeholder", data=data,
                                headers={"Authorization": f"Bearer {key}", **headers}).prepare()
    prepared.url = server.v1 + "/files/" + raw_path
    with requests.Session() as session:
        return session.send(prepared, timeout=60)


def memory_kb(pid: int, field: str) -> int:
    """A figure of /proc/<pid>/status: VmRSS (resident now) or VmHWM (peak resident since the last reset)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} line")


def reset_peak_memory(pid: int) -> None:
    """Make VmHWM start again from the current RSS (a freed 8 MB buffer would not show in VmRSS afterwards)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def tree(root: Path) -> set:
    """Every path under `root`, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def key(gateway) -> dict:
    return gateway.create_key(budget="100", name="files")


@pytest.fixture(scope="module")
def client(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key["key"], max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server of our own: a known repository root and a 64 KiB file limit."""
    tmp = tmp_path_factory.mktemp("files-small")
    server = start_server(tmp, name="files-small", extra_env={
        "ONEKEYLLM_FILES_DIR": str(tmp / "repo"), "ONEKEYLLM_MAX_FILE_BYTES": str(SMALL_LIMIT)})
    server.root = tmp / "repo"
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_key(small_server) -> dict:
    return small_server.create_key(budget="1", name="small")


# ---------------------------------------------------------------- the Files API
def test_sdk_uploads_lists_reads_and_deletes_files(client):
    created = client.files.create(file=("notes.txt", b"hello files\n", "text/plain"), purpose="user_data")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose, created.status) == (12, "notes.txt", "user_data",
                                                                                  "processed")
    batch = client.files.create(file=("jobs.jsonl", b'{"a":1}\n', "application/jsonl"), purpose="batch")

    assert client.files.retrieve(created.id).model_dump() == created.model_dump()
    listed = [f.id for f in client.files.list()]
    assert listed[:2] == [batch.id, created.id]  # newest first
    assert [f.id for f in client.files.list(purpose="batch")] == [batch.id]
    assert [f.id for f in client.files.list(order="asc", limit=1)][:2] == listed[::-1][:2]  # pages through
    assert client.files.content(created.id).content == b"hello files\n"

    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


def test_upload_with_unknown_purpose_is_400(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.files.create(file=("a.txt", b"x"), purpose="homework")  # type: ignore[arg-type]
    assert error.value.body["param"] == "purpose"


def test_another_keys_file_is_404(gateway, client):
    theirs = client.files.create(file=("private.txt", b"secret"), purpose="user_data")
    other = openai.OpenAI(base_url=gateway.v1, api_key=gateway.create_key(name="other")["key"], max_retries=0)
    for call in (lambda: other.files.retrieve(theirs.id), lambda: other.files.content(theirs.id),
                 lambda: other.files.delete(theirs.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert theirs.id not in [f.id for f in other.files.list()]


def test_put_stores_the_body_at_a_path_and_replaces_it(gateway, key, client):
    first = put(gateway, key["key"], "reports/2024/q1.txt", b"first version")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["object"], body["filename"], body["purpose"], body["bytes"]) == ("file", "reports/2024/q1.txt",
                                                                                  "user_data", 13)
    again = put(gateway, key["key"], "reports/2024/q1.txt", b"second")
    assert again.json()["id"] == body["id"] and again.json()["bytes"] == 6
    assert client.files.content(body["id"]).content == b"second"


def test_put_of_8_mb_streams_to_disk_without_holding_it_in_memory(gateway, key, client):
    pid = gateway.process.pid
    put(gateway, key["key"], "warmup.bin", os.urandom(256 * 1024))  # first-use allocations happen here
    payload = os.urandom(8 * 1024 * 1024)
    reset_peak_memory(pid)
    before = memory_kb(pid, "VmRSS")
    answer = put(gateway, key["key"], "big/eight.bin", payload)
    peak = memory_kb(pid, "VmHWM")
    assert answer.status_code == 200, answer.text
    assert answer.json()["bytes"] == len(payload)
    assert peak - before < 4 * 1024, f"the server's peak memory grew by {peak - before} KiB for an 8 MiB upload"
    assert hashlib.sha256(client.files.content(answer.json()["id"]).content).digest() == \
        hashlib.sha256(payload).digest()


def test_chunked_put_without_content_length_is_stored(gateway, key, client):
    pieces = [b"part-%d;" % i for i in range(50)]
    answer = put(gateway, key["key"], "chunked.txt", iter(pieces))
    assert answer.status_code == 200, answer.text
    assert client.files.content(answer.json()["id"]).content == b"".join(pieces)


# ---------------------------------------------------------------- the repository's walls
TRAVERSALS = [
    "../escape.txt",
    "../../escape.txt",
    "a/../../escape.txt",
    "a/../escape.txt",
    "./escape.txt",
    "%2e%2e/escape.txt",
    "%2e%2e%2fescape.txt",
    "%2E%2E%2F%2E%2E%2Fescape.txt",
    "a/%2e%2e/%2e%2e/escape.txt",
    "%252e%252e/escape.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "//tmp/escape.txt",
    "C:/escape.txt",
    "..\\escape.txt",
    "a%5c..%5c..%5cescape.txt",
    "a%00.txt",
    "a//b.txt",
    "a/",
    ".uploads/file-0000",
]


@pytest.mark.parametrize("raw_path", TRAVERSALS)
def test_traversal_attempts_are_refused_and_nothing_is_written(small_server, small_key, raw_path):
    outside = small_server.root.parent
    before = tree(outside)
    answer = put(small_server, small_key["key"], raw_path, b"pwned")
    assert answer.status_code == 400, (raw_path, answer.status_code, answer.text)
    assert answer.json()["error"]["param"] == "path"
    after = {p for p in tree(outside) if not p.endswith((".log", "-wal", "-shm", "-journal"))}
    assert after <= before | {"repo", f"repo/{small_key['id']}"}
    assert not any("escape" in p or "pwned" in p for p in tree(outside))
    assert not Path("/tmp/escape.txt").exists()


def test_symlink_inside_the_space_pointing_out_is_refused(small_server, small_key, tmp_path):
    space = small_server.root / small_key["id"]
    assert put(small_server, small_key["key"], "inside.txt", b"ok").status_code == 200
    target = tmp_path / "outside"
    target.mkdir()
    (space / "link").symlink_to(target, target_is_directory=True)
    (space / "filelink").symlink_to(tmp_path / "outside.txt")
    for raw_path in ("link/escape.txt", "link/deeper/escape.txt", "filelink"):
        answer = put(small_server, small_key["key"], raw_path, b"pwned")
        assert answer.status_code == 400, (raw_path, answer.text)
    assert list(target.iterdir()) == []
    assert not (tmp_path / "outside.txt").exists()
    assert (space / "link").is_symlink()


def test_body_over_the_limit_is_413_and_leaves_nothing(small_server, small_key):
    space = small_server.root / small_key["id"]
    too_big = os.urandom(SMALL_LIMIT + 1)
    declared = put(small_server, small_key["key"], "big/declared.bin", too_big)
    assert declared.status_code == 413, declared.text
    chunked = put(small_server, small_key["key"], "big/chunked.bin",
                  iter([too_big[i:i + 8192] for i in range(0, len(too_big), 8192)]))
    assert chunked.status_code == 413, chunked.text
    assert not [p for p in space.rglob("*") if p.is_file() and "big" in str(p)]
    upload = requests.post(small_server.v1 + "/files", headers={"Authorization": f"Bearer {small_key['key']}"},
                           files={"file": ("big.bin", too_big)}, data={"purpose": "user_data"}, timeout=30)
    assert upload.status_code == 413
    listed = requests.get(small_server.v1 + "/files", headers={"Authorization": f"Bearer {small_key['key']}"},
                          timeout=10).json()["data"]
    assert not [f for f in listed if f["filename"].startswith("big")]
    at_limit = put(small_server, small_key["key"], "exact.bin", too_big[:SMALL_LIMIT])
    assert at_limit.status_code == 200 and at_limit.json()["bytes"] == SMALL_LIMIT


def test_unusable_repository_root_is_503(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files-broken")
    (tmp / "plain-file").write_text("not a directory")
    server = start_server(tmp, name="files-broken", extra_env={"ONEKEYLLM_FILES_DIR": str(tmp / "plain-file" / "repo")})
    try:
        key = server.create_key(budget="1", name="broken")["key"]
        auth = {"Authorization": f"Bearer {key}"}
        answer = put(server, key, "notes.txt", b"hello")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["type"] == "service_unavailable"
        client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0)
        with pytest.raises(openai.InternalServerError) as error:
            client.files.create(file=("a.txt", b"x"), purpose="user_data")
        assert error.value.status_code == 503
        assert requests.get(server.v1 + "/files", headers=auth, timeout=10).json()["data"] == []
    finally:
        server.stop()


# ---------------------------------------------------------------- files as model input
@pytest.fixture(scope="module")
def file_models(gateway, upstream) -> dict:
    """A model on an openai (Chat API) account and one on an anthropic account, each with its own scenario label."""
    gateway.create_model("files-gpt", max_output_tokens=256)
    gateway.create_account(provider="openai", base_url=upstream.base_url("openai", "files-openai"), api="chat",
                           api_key="sk-upstream-files", models=["files-gpt"], model_map={"files-gpt": "gpt-fake-1"})
    gateway.create_model("files-claude", max_output_tokens=256)
    gateway.create_account(provider="anthropic", base_url=upstream.base_url("anthropic", "files-anthropic"),
                           api_key="sk-upstream-files", models=["files-claude"],
                           model_map={"files-claude": "claude-fake-1"})
    return {"openai": ("files-gpt", "/v1/chat/completions", "files-openai"),
            "anthropic": ("files-claude", "/v1/messages", "files-anthropic")}


def last_user_content(upstream, path: str, scenario: str) -> list:
    message = upstream.last(path, scenario=scenario).body["messages"][-1]
    assert message["role"] == "user"
    return message["content"]


def test_input_file_reaches_openai_chat_upstream_as_base64_file_data(client, upstream, file_models):
    model, path, scenario = file_models["openai"]
    pdf = client.files.create(file=("report.pdf", PDF, "application/pdf"), purpose="user_data")
    client.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Summarize the report"}, {"type": "input_file", "file_id": pdf.id}]}])
    parts = last_user_content(upstream, path, scenario)
    assert {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{b64(PDF)}",
                                     "filename": "report.pdf"}} in parts
    assert pdf.id not in str(parts)


def test_a_stored_thread_keeps_the_file_id_and_reads_the_file_again_for_the_next_turn(client, upstream, file_models,
                                                                                      gateway):
    from service.storage.db import database, init_database
    from service.storage.models import StoredResponse

    model, path, scenario = file_models["openai"]
    pdf = client.files.create(file=("kept.pdf", PDF, "application/pdf"), purpose="user_data")
    first = client.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Summarize the report"}, {"type": "input_file", "file_id": pdf.id}]}])
    init_database(gateway.database_url)
    try:
        with database.connection_context():
            stored = json.dumps(StoredResponse.get_by_id(first.id).thread)
    finally:
        database.obj.close_all()
    assert pdf.id in stored and b64(PDF) not in stored  # no copy of the file in the thread
    client.responses.create(model=model, previous_response_id=first.id, input="And in one word?")
    first_turn = upstream.last(path, scenario=scenario).body["messages"][0]["content"]
    assert {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{b64(PDF)}",
                                     "filename": "kept.pdf"}} in first_turn


def test_input_file_reaches_anthropic_upstream_as_document_block(client, upstream, file_models):
    model, path, scenario = file_models["anthropic"]
    pdf = client.files.create(file=("report.pdf", PDF, "application/pdf"), purpose="user_data")
    text = client.files.create(file=("notes.txt", b"Meeting at noon.", "text/plain"), purpose="user_data")
    client.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Read these"}, {"type": "input_file", "file_id": pdf.id},
        {"type": "input_file", "file_id": text.id}]}])
    blocks = last_user_content(upstream, path, scenario)
    assert {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
            "title": "report.pdf"} in blocks
    assert {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Meeting at noon."},
            "title": "notes.txt"} in blocks


def test_input_image_file_id_becomes_an_image_for_each_upstream(client, upstream, file_models):
    image = client.files.create(file=("dot.png", PNG, "image/png"), purpose="vision")
    for provider in ("openai", "anthropic"):
        model, path, scenario = file_models[provider]
        client.responses.create(model=model, input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "file_id": image.id}]}])
        parts = last_user_content(upstream, path, scenario)
        if provider == "openai":
            assert any(p.get("image_url", {}).get("url") == f"data:image/png;base64,{b64(PNG)}" for p in parts)
        else:
            assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)}} in parts


def test_put_file_used_from_chat_completions_reaches_the_upstream_inline(gateway, key, client, upstream, file_models):
    model, path, scenario = file_models["openai"]
    stored = put(gateway, key["key"], "docs/spec.pdf", PDF).json()
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Summarize"}, {"type": "file", "file": {"file_id": stored["id"]}}]}])
    parts = last_user_content(upstream, path, scenario)
    assert {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{b64(PDF)}",
                                     "filename": "spec.pdf"}} in parts


def test_unknown_or_another_keys_file_id_is_404(gateway, client, upstream, file_models):
    model, _, scenario = file_models["openai"]
    other = openai.OpenAI(base_url=gateway.v1, api_key=gateway.create_key(name="other-input")["key"], max_retries=0)
    theirs = other.files.create(file=("theirs.pdf", PDF), purpose="user_data")
    sent = upstream.count(scenario)
    for file_id in ("file-doesnotexist", theirs.id):
        with pytest.raises(openai.NotFoundError) as error:
            client.responses.create(model=model, input=[{"role": "user", "content": [
                {"type": "input_text", "text": "Read"}, {"type": "input_file", "file_id": file_id}]}])
        assert file_id in error.value.message
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
                {"type": "file", "file": {"file_id": file_id}}]}])
    assert upstream.count(scenario) == sent
