"""The upload app's guard rails over HTTP (no browser, no Prefect server): names, streaming, limits, token.

Real requests through Starlette's test client, real files on disk, real ffprobe; the runs themselves are
covered in a browser by tests/test_web_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployments.web.__main__ import main as web_main
from deployments.web.app import WebSettings, create_app
from deployments.web.jobs import JobChoice, JobError, plain_error, plan_runs
from deployments.web.uploads import UploadRejected, sanitize_name
from samples.images import make_corrupt_image, make_face_image

BATCH = "0123456789abcdef"


@pytest.fixture
def photo(tmp_path) -> bytes:
    return make_face_image(tmp_path / "face.jpg", (96, 96), seed=1).read_bytes()


def _client(tmp_path: Path, **kw) -> TestClient:
    return TestClient(create_app(WebSettings(data_dir=tmp_path / "data", **kw)))


def _leftovers(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data" / "uploads").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\clip.mp4", "clip.mp4"),
        (".bashrc.jpg", "bashrc.jpg"),
        ("字幕 demo (1).mp4", "字幕 demo (1).mp4"),
        ("a;rm -rf $HOME`.png", "a_rm -rf _HOME_.png"),
        ("-rf.mp4", "rf.mp4"),
    ],
)
def test_names_are_sanitised(given, safe):
    assert sanitize_name(given) == safe


@pytest.mark.parametrize("bad", ["..", "/", "...", "."])
def test_unusable_names_are_refused(bad):
    with pytest.raises(UploadRejected, match="not a usable file name"):
        sanitize_name(bad)


def test_an_upload_is_streamed_probed_and_kept(tmp_path, photo):
    client = _client(tmp_path)
    answer = client.put(f"/api/uploads/{BATCH}", params={"name": "../me.jpg"}, content=photo)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "image" and body["name"] == "me.jpg" and body["summary"].startswith("image, 96x96")
    assert _leftovers(tmp_path) == [tmp_path / "data" / "uploads" / BATCH / "me.jpg"]
    again = client.put(f"/api/uploads/{BATCH}", params={"name": "me.jpg"}, content=photo).json()
    assert again["name"] == "me (2).jpg", "a second file of the same name does not replace the first"


def test_a_corrupt_upload_is_refused_with_its_reason_and_removed(tmp_path):
    garbage = make_corrupt_image(tmp_path / "broken.jpg").read_bytes()
    answer = _client(tmp_path).put(f"/api/uploads/{BATCH}", params={"name": "broken.jpg"}, content=garbage)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("broken.jpg: not a readable")
    assert _leftovers(tmp_path) == []


def test_the_size_limit_says_so_and_keeps_nothing(tmp_path, photo):
    client = _client(tmp_path, max_upload_bytes=1000)
    declared = client.put(f"/api/uploads/{BATCH}", params={"name": "big.jpg"}, content=photo)
    assert declared.status_code == 413
    size = f"{len(photo) / 1024:.1f} kB"
    assert declared.json()["detail"] == f"big.jpg is {size}, above the upload limit of 1000 bytes"

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for i in range(0, len(photo), 256):
            yield photo[i : i + 256]

    streamed = client.put(f"/api/uploads/{BATCH}", params={"name": "big.jpg"}, content=chunks())
    assert streamed.status_code == 413 and "larger than the upload limit" in streamed.json()["detail"]
    assert _leftovers(tmp_path) == []


def test_uploads_are_rate_limited_per_client(tmp_path, photo):
    client = _client(tmp_path, uploads_per_minute=2)
    url = f"/api/uploads/{BATCH}"
    codes = [client.put(url, params={"name": f"{i}.jpg"}, content=photo) for i in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert "at most 2 per 60 s" in codes[2].json()["detail"]


def test_a_token_guards_every_route_when_set(tmp_path):
    client = _client(tmp_path, token="s3cret")
    assert client.get("/").status_code == 401
    assert client.get("/api/options").status_code == 401
    assert client.get("/health").status_code == 200
    opened = client.get("/", params={"token": "s3cret"})
    assert opened.status_code == 200 and "yivideo_token" in opened.headers["set-cookie"]
    assert client.get("/api/options").status_code == 200, "the cookie now carries the token"
    fresh = TestClient(client.app)
    assert fresh.get("/api/options", headers={"x-yivideo-token": "s3cret"}).status_code == 200


def test_binding_beyond_loopback_needs_a_token(monkeypatch, capsys):
    monkeypatch.delenv("YIVIDEO_WEB_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        web_main(["--host", "0.0.0.0"])
    assert "give --token" in capsys.readouterr().err


def test_files_are_served_only_from_uploads_and_outputs(tmp_path, photo):
    client = _client(tmp_path)
    client.put(f"/api/uploads/{BATCH}", params={"name": "me.jpg"}, content=photo)
    assert client.get(f"/files/uploads/{BATCH}/me.jpg").content == photo
    (tmp_path / "secret.txt").write_text("no")
    escapes = ("/files/uploads/../../secret.txt", "/files/uploads/%2e%2e/%2e%2e/secret.txt", "/files/other/x")
    for escape in escapes:
        assert client.get(escape).status_code == 404, escape


def test_options_list_the_presets_of_the_block(tmp_path):
    options = _client(tmp_path).get("/api/options").json()
    names = [p["name"] for p in options["presets"]]
    assert {"mp4_standard", "mp4_smooth", "thumbnail"} <= set(names)
    assert options["default_presets"] == ["mp4_standard", "thumbnail"]


def test_jobs_are_planned_by_kind_and_batched_for_enhance(tmp_path):
    out = tmp_path / "outputs"
    video, a, b, c = (tmp_path / n for n in ("clip.mp4", "a.jpg", "b.png", "c.jpg"))
    runs = plan_runs(
        [
            (JobChoice(upload="1"), video, "video"),
            (JobChoice(upload="2", job="enhance", engine="opencv-classic", scale=2), a, "image"),
            (JobChoice(upload="3", job="enhance", engine="opencv-classic", scale=2), b, "image"),
            (JobChoice(upload="4", job="enhance", scale=3), c, "image"),
        ],
        out,
        {"mp4_standard", "thumbnail"},
    )
    assert [(r.job, r.name) for r in runs] == [
        ("subtitles", "subtitles · clip.mp4"),
        ("transcode", "transcode · clip.mp4"),
        ("enhance", "enhance · a.jpg +1"),
        ("enhance", "enhance · c.jpg"),
    ]
    assert runs[2].parameters["images"] == [str(a), str(b)]
    assert runs[2].parameters["engine"] == "opencv-classic" and "engine" not in runs[3].parameters
    assert len({r.parameters["output_dir"] for r in runs}) == 4, "each run writes into its own folder"
    with pytest.raises(JobError, match="a.jpg is an image: transcode takes video"):
        plan_runs([(JobChoice(upload="2", job="transcode"), a, "image")], out, set())
    with pytest.raises(JobError, match="unknown preset.*mp4_smoth"):
        typo = JobChoice(upload="1", job="transcode", presets=["mp4_smoth"])
        plan_runs([(typo, video, "video")], out, {"mp4_smooth"})


def test_errors_are_told_in_plain_words():
    message = "Flow run encountered an exception: MediaInputError: '/srv/up/clip.mp4': file does not exist"
    assert plain_error(message) == "clip.mp4: file does not exist"
    partial = "partially completed: 2 of 3 images enhanced"
    assert plain_error(partial) == partial
