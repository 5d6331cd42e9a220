"""A fake Kaggle on loopback for the REAL kaggle client (the `fake_kaggle` fixture in conftest).

KaggleApi honours KAGGLE_API_ENVIRONMENT=LOCALHOST (http://localhost); with HTTP_PROXY
pointing at our server (NO_PROXY cleared), every request reaches it in proxy form
(`POST http://localhost/api/v1/<service>/<method>`), so only the path is parsed.
Nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

SERVICE = "/api/v1/competitions.CompetitionApiService/"


class FakeKaggle:
    """Answers the competition RPCs the client uses; each can be made to fail, stall, garble or throttle."""

    def __init__(self) -> None:
        self.fail: dict[str, int] = {}  # method name -> HTTP status to answer with
        self.stall: set[str] = set()  # methods that are accepted and never answered
        self.garble: set[str] = set()  # methods that act, then answer with a body that is not JSON
        self.throttle: dict[str, int] = {}  # method -> how many times to answer 429 with Retry-After: 1
        self.upload_status = 201
        self.act_then_fail: dict[
            str, int
        ] = {}  # method -> HTTP status answered *after* acting (a create stored, then a 500)
        self.stall_upload = False  # the upload PUT is accepted and never answered
        self.drip: set[str] = set()  # methods answered with headers, then one byte every half second
        self.limits = {"numToday": 1, "numTotal": 3, "numAllowedNow": 4, "limitedByTotal": False}
        self.uploads: list[bytes] = []
        self.created: list[dict] = []
        self.calls: list[str] = []
        self.next_ref = 1000
        self.submissions = [  # Kaggle's list, newest first, served one per page
            {
                "ref": 1001,
                "fileName": "blend.csv",
                "description": "first",
                "status": "COMPLETE",
                "publicScore": "0.93120",
                "date": "2026-11-21T10:00:00Z",
            },
            {
                "ref": 7,
                "fileName": "old.csv",
                "description": "from the website",
                "status": "ERROR",
                "date": "2026-11-20T10:00:00Z",
            },
        ]
        self.files: dict[str, bytes] = {}  # storage: what downloads are redirected to
        self.leaderboard = [
            {"teamId": i, "teamName": f"team{i}", "score": f"0.9{9 - i}000", "submissionDate": "2026-11-21T00:00:00Z"}
            for i in range(3)
        ]
        self.release = threading.Event()  # set at shutdown: stalled handlers return

    def handle(
        self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]] | None:
        name = path[len(SERVICE) :] if path.startswith(SERVICE) else path
        self.calls.append(f"{method} {name}")
        if method == "GET" and path.startswith("/storage/"):  # where downloads are redirected
            return self.storage(path[len("/storage/") :], (headers or {}).get("Range"))
        if method == "PUT" and path.startswith("/upload/"):
            if self.stall_upload:
                return None
            self.uploads.append(body)
            return self.upload_status, b"", {}
        if name in self.stall:
            return None
        if self.throttle.get(name):
            self.throttle[name] -= 1
            return 429, json.dumps({"code": 429, "message": "Too many requests"}).encode(), {"Retry-After": "1"}
        if name in self.fail:
            code = self.fail[name]
            msg = {
                401: "Unauthenticated",
                403: "Permission 'competitions.participate' was denied",
                404: "Competition not found",
            }.get(code, "error")
            return code, json.dumps({"code": code, "message": msg}).encode(), {}
        status, payload = self.answer(name, json.loads(body or b"{}"))
        if name in self.act_then_fail:
            code = self.act_then_fail[name]
            return code, json.dumps({"code": code, "message": "internal error"}).encode(), {}
        if name in self.drip:
            return status, json.dumps(payload).encode(), {"X-Drip": "1"}
        if status == 302:
            return 302, b"", payload
        return status, (b"{'ref': " if name in self.garble else json.dumps(payload).encode()), {}

    def storage(self, name: str, byte_range: str | None) -> tuple[int, bytes, dict[str, str]]:
        data = self.files.get(name)
        if data is None:
            return 404, b"", {}
        start = int(byte_range.split("=")[1].split("-")[0]) if byte_range else 0
        headers = {
            "Content-Type": "application/zip",
            "Accept-Ranges": "bytes",
            "Last-Modified": "Sat, 21 Nov 2026 10:00:00 GMT",
        }
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return (206 if start else 200), data[start:], headers

    def answer(self, name: str, req: dict) -> tuple[int, dict]:
        if name in ("DownloadDataFiles", "DownloadDataFile"):
            slug = req.get("competitionName")
            if f"{slug}.zip" not in self.files:
                return 404, {"code": 404, "message": "Competition not found"}
            return 302, {"Location": f"http://localhost/storage/{slug}.zip"}
        if name == "ListDataFiles":
            return 200, {"files": [{"name": n, "totalBytes": len(b)} for n, b in self.files.items()]}
        if name == "StartSubmissionUpload":
            token = f"tok{len(self.uploads)}"
            return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}
        if name == "CreateSubmission":
            self.next_ref += 1
            self.created.append(req)
            if all(s["ref"] != self.next_ref for s in self.submissions):
                now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
                self.submissions.insert(
                    0,
                    {
                        "ref": self.next_ref,
                        "fileName": "mine.csv",
                        "description": req.get("submissionDescription"),
                        "status": "PENDING",
                        "date": now,
                    },
                )
            return 200, {"message": "Successfully submitted to Fashion MNIST", "ref": self.next_ref}
        if name == "GetSubmissionLimits":
            return 200, self.limits
        if name == "ListSubmissions":
            page = int(req.get("pageToken") or 0)
            more = page + 1 < len(self.submissions)
            return 200, {
                "submissions": self.submissions[page : page + 1],
                **({"nextPageToken": str(page + 1)} if more else {}),
            }
        if name == "GetLeaderboard":
            return 200, {"submissions": self.leaderboard}  # all of it, whatever page size was asked
        return 404, {"code": 404, "message": f"no such method {name}"}


@contextlib.contextmanager
def serve(home: Path) -> Iterator[FakeKaggle]:
    """The fake Kaggle on a free loopback port, with credentials in `home`; `.env` says how to reach it."""
    state = FakeKaggle()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = state.handle(self.command, urlsplit(self.path).path, body, dict(self.headers))
            if answer is None:  # accept, read, never answer
                state.release.wait(60)
                return
            status, data, headers = answer
            drip = headers.pop("X-Drip", None)
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            if drip:  # a byte at a time: every read meets its timeout, the whole never ends in time
                for i in range(len(data)):
                    if state.release.wait(0.5):
                        return
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                return
            self.wfile.write(data)

        do_POST = do_PUT = do_GET = _serve

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # shutdown() waits out one poll of serve_forever: 0.5 s by default, once per test
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    port = server.server_address[1]
    home.mkdir()
    (home / "kaggle.json").write_text(json.dumps({"username": "tester", "key": "0123456789abcdef"}))
    env = {
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": f"http://127.0.0.1:{port}",
        "http_proxy": f"http://127.0.0.1:{port}",
        "NO_PROXY": "",
        "no_proxy": "",
        "KAGGLE_CONFIG_DIR": str(home),
        "FKAGGLE_KAGGLE_TIMEOUT": "2,2",  # a stall ends in seconds
        "FKAGGLE_KAGGLE_BACKOFF": "0.2",
    }
    state.env = env
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def competition_zip(tmp_path: Path) -> bytes:
    """What Kaggle serves for a 5-class competition labelled 1..5: train.csv.zip (a zipped CSV
    inside the zip), test.csv with an id column, sample_submission.csv."""
    import pandas as pd
    from conftest import synthetic_images, write_csv

    x, y = synthetic_images(24, k=5)
    xt, _ = synthetic_images(6, k=5, seed=1)
    train = write_csv(tmp_path / "train.csv", x, y + 1)
    test = write_csv(tmp_path / "test.csv", xt, ids=np.arange(1, len(xt) + 1), id_col="Id")
    pd.DataFrame({"Id": np.arange(1, len(xt) + 1), "Category": 1}).to_csv(
        tmp_path / "sample_submission.csv", index=False
    )
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(train, "train.csv")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train.csv.zip", inner.getvalue())
        z.write(test, "test.csv")
        z.write(tmp_path / "sample_submission.csv", "sample_submission.csv")
    for p in (train, test, tmp_path / "sample_submission.csv"):
        p.unlink()
    return out.getvalue()
