"""`fkaggle submit / submissions / leaderboard` with the REAL kaggle client against a fake Kaggle on loopback.

KaggleApi honours KAGGLE_API_ENVIRONMENT=LOCALHOST (http://localhost); with HTTP_PROXY
pointing at our server (NO_PROXY cleared), every request reaches it in proxy form
(`POST http://localhost/api/v1/<service>/<method>`), so only the path is parsed.
Nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
import pytest

from conftest import run_cli
from fmnist_kaggle.competition import Competition
from fmnist_kaggle.errors import FkaggleError
from fmnist_kaggle.submission_file import submission_csv

SERVICE = "/api/v1/competitions.CompetitionApiService/"


class FakeKaggle:
    """Answers the competition RPCs the client uses; each can be made to fail."""

    def __init__(self) -> None:
        self.fail: dict[str, int] = {}  # method name -> HTTP status to answer with
        self.upload_status = 201
        self.limits = {"numToday": 1, "numTotal": 3, "numAllowedNow": 4, "limitedByTotal": False}
        self.uploads: list[bytes] = []
        self.created: list[dict] = []
        self.calls: list[str] = []
        self.next_ref = 1000

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict | None]:
        name = path[len(SERVICE) :] if path.startswith(SERVICE) else path
        self.calls.append(f"{method} {name}")
        if method == "PUT" and path.startswith("/upload/"):
            self.uploads.append(body)
            return self.upload_status, None
        if name in self.fail:
            code = self.fail[name]
            msg = {401: "Unauthenticated", 403: "Permission 'competitions.participate' was denied", 404: "Competition not found"}.get(code, "error")
            return code, {"code": code, "message": msg}
        req = json.loads(body or b"{}")
        if name == "StartSubmissionUpload":
            token = f"tok{len(self.uploads)}"
            return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}
        if name == "CreateSubmission":
            self.next_ref += 1
            self.created.append(req)
            return 200, {"message": "Successfully submitted to Fashion MNIST", "ref": self.next_ref}
        if name == "GetSubmissionLimits":
            return 200, self.limits
        if name == "ListSubmissions":
            subs = [{"ref": 1001, "fileName": "blend.csv", "description": "first", "status": "COMPLETE", "publicScore": "0.93120", "date": "2026-11-21T10:00:00Z"},
                    {"ref": 7, "fileName": "old.csv", "description": "from the website", "status": "ERROR", "date": "2026-11-20T10:00:00Z"}]  # fmt: skip
            return 200, {"submissions": subs}
        if name == "GetLeaderboard":
            return 200, {"submissions": [{"teamId": i, "teamName": f"team{i}", "score": f"0.9{9 - i}000", "submissionDate": "2026-11-21T00:00:00Z"} for i in range(3)]}
        return 404, {"code": 404, "message": f"no such method {name}"}


@pytest.fixture()
def fake_kaggle(tmp_path, monkeypatch):
    state = FakeKaggle()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = state.handle(self.command, urlsplit(self.path).path, body)
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_GET = _serve

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    home = tmp_path / "kaggle_home"
    home.mkdir()
    (home / "kaggle.json").write_text(json.dumps({"username": "tester", "key": "0123456789abcdef"}))
    env = {
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": f"http://127.0.0.1:{port}",
        "http_proxy": f"http://127.0.0.1:{port}",
        "NO_PROXY": "",
        "no_proxy": "",
        "KAGGLE_CONFIG_DIR": str(home),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    state.env = env
    yield state
    server.shutdown()


@pytest.fixture()
def comp_and_file(tmp_path, five_class_npy):
    f = five_class_npy
    comp = Competition(name="five", slug="five-class", train=f["train"], test=f["test"], sample_submission=f["sample"])
    sub = tmp_path / "submissions" / "mine.csv"
    sub.parent.mkdir()
    sub.write_text(submission_csv(comp, np.arange(len(comp.test_set)) % 5))
    digest = hashlib.sha256(sub.read_bytes()).hexdigest()
    (sub.with_suffix(".json")).write_text(json.dumps({"file": "mine.csv", "sha256": digest, "cv": {"acc": 0.9, "logloss": 0.3}}))
    return comp, sub


def _cli_args(comp: Competition) -> list[str]:
    return ["--train", str(comp.train), "--test", str(comp.test), "--sample-submission", str(comp.sample_submission)]


def test_submit_in_process_records_upload(tmp_path, fake_kaggle, comp_and_file):
    from fmnist_kaggle.submissions import submit_file

    comp, sub = comp_and_file
    res = submit_file(comp, sub, "first try", workdir=tmp_path)
    assert res["ref"] == 1001 and "Successfully" in res["reply"]
    assert fake_kaggle.uploads == [sub.read_bytes()]  # the exact file reached the upload URL
    assert fake_kaggle.created[0]["competitionName"] == "five-class" and fake_kaggle.created[0]["submissionDescription"] == "first try"
    assert fake_kaggle.calls[0] == "POST GetSubmissionLimits"  # limits are checked before uploading
    meta = json.loads(sub.with_suffix(".json").read_text())
    assert meta["submissions"][0]["ref"] == 1001 and meta["cv"]["acc"] == 0.9
    hist = (tmp_path / "submissions/history.csv").read_text().splitlines()
    assert hist[0].startswith("time,slug,file,sha256,message,ref,reply") and ",1001," in hist[1]


def test_submit_cli_then_submissions_and_leaderboard(tmp_path, fake_kaggle, comp_and_file):
    comp, sub = comp_and_file
    res = run_cli("submit", str(sub), "-m", "cli try", "--slug", "five-class", "--workdir", str(tmp_path), *_cli_args(comp), env=fake_kaggle.env)
    assert res.returncode == 0, res.stderr
    assert "submitted mine.csv to five-class (ref 1001)" in res.stdout
    lst = run_cli("submissions", "--slug", "five-class", "--workdir", str(tmp_path), "--json", *_cli_args(comp), env=fake_kaggle.env)
    assert lst.returncode == 0, lst.stderr
    rows = json.loads(lst.stdout)
    mine = next(r for r in rows if str(r["ref"]) == "1001")
    assert mine["status"] == "complete" and mine["public_score"] == "0.93120" and float(mine["cv_acc"]) == 0.9  # CV next to LB
    assert any(r["ref"] == 7 and r["status"] == "error" for r in rows)  # made elsewhere, still listed
    lb = run_cli("leaderboard", "--slug", "five-class", *_cli_args(comp), env=fake_kaggle.env)
    assert lb.returncode == 0, lb.stderr
    assert "team0" in lb.stdout and "0.99000" in lb.stdout


@pytest.mark.parametrize(
    "setup,fragment",
    [
        (lambda k: k.fail.update(StartSubmissionUpload=404), "no competition 'five-class' (HTTP 404)"),
        (lambda k: k.fail.update(GetSubmissionLimits=403), "HTTP 403 competitions.participate"),
        (lambda k: k.fail.update(GetSubmissionLimits=401), "HTTP 401"),
        (lambda k: setattr(k, "upload_status", 500), "upload failed: Kaggle replied 'Could not submit to competition'"),
        (lambda k: k.limits.update(numAllowedNow=0, numToday=5), "no submissions left today"),
    ],
)
def test_submit_failures_are_one_line_exit_2_records_intact(tmp_path, fake_kaggle, comp_and_file, setup, fragment):
    comp, sub = comp_and_file
    setup(fake_kaggle)
    before = sub.with_suffix(".json").read_text()
    res = run_cli("submit", str(sub), "-m", "x", "--slug", "five-class", "--workdir", str(tmp_path), *_cli_args(comp), env=fake_kaggle.env)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert sub.with_suffix(".json").read_text() == before
    assert not (tmp_path / "submissions/history.csv").exists()
    if "no submissions left" in fragment:
        assert not fake_kaggle.uploads


def test_missing_credentials_and_no_network(tmp_path, fake_kaggle, comp_and_file, monkeypatch):
    comp, sub = comp_and_file
    env = {**fake_kaggle.env, "KAGGLE_CONFIG_DIR": str(tmp_path / "empty")}
    res = run_cli("submit", str(sub), "-m", "x", "--slug", "five-class", *_cli_args(comp), env=env)
    assert res.returncode == 2 and "no Kaggle credentials" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    env = {**fake_kaggle.env, "HTTP_PROXY": f"http://127.0.0.1:{dead}", "http_proxy": f"http://127.0.0.1:{dead}"}
    res = run_cli("leaderboard", "--slug", "five-class", *_cli_args(comp), env=env, timeout=120)
    assert res.returncode == 2 and "cannot reach Kaggle" in res.stderr, res.stderr


def test_invalid_file_is_never_uploaded(tmp_path, fake_kaggle, comp_and_file):
    comp, sub = comp_and_file
    sub.write_text(sub.read_text().replace("Id,Category", "id,label"))
    with pytest.raises(FkaggleError, match="invalid submission, not uploaded"):
        from fmnist_kaggle.submissions import submit_file

        submit_file(comp, sub, "x", workdir=tmp_path)
    assert fake_kaggle.calls == []


def test_dry_run_validates_without_network(tmp_path, comp_and_file):
    comp, sub = comp_and_file
    res = run_cli("submit", str(sub), "-m", "x", "--slug", "s", "--dry-run", *_cli_args(comp), env={"HTTP_PROXY": "http://127.0.0.1:9"})
    assert res.returncode == 0 and "dry run" in res.stdout


def test_fkaggle_help_does_not_import_kaggle_torch_ray_or_sklearn():
    code = "import sys; from fmnist_kaggle.cli import build_parser; build_parser(); import fmnist_kaggle.data, fmnist_kaggle.competition; print(sorted(m for m in ('torch', 'kaggle', 'ray', 'sklearn') if m in sys.modules))"
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}).stdout.strip()
    assert out == "[]"
