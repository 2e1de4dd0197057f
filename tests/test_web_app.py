"""The upload app's guard rails over HTTP (no browser, no Prefect server): names, streaming, limits, token.

Real requests through Starlette's test client, real files on disk, real ffprobe; the runs themselves are
covered in a browser by tests/test_web_browser.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployments.web.__main__ import main as web_main
from deployments.web.app import PrefectLink, WebSettings, create_app
from deployments.web.choices import JobChoice
from deployments.web.jobs import plan_runs
from deployments.web.uploads import UploadRejected, sanitize_name
from deployments.web.views import display_name, job_outputs, plain_error
from samples.images import make_corrupt_image, make_face_image

BATCH = "0123456789abcdef"


@pytest.fixture
def photo(tmp_path) -> bytes:
    return make_face_image(tmp_path / "face.jpg", (96, 96), seed=1).read_bytes()


def _client(tmp_path: Path, **kw) -> TestClient:
    return TestClient(create_app(WebSettings(data_dir=tmp_path / "data", **kw)), base_url="http://127.0.0.1")


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
    assert answer.json()["detail"] == (
        "broken.jpg: not a readable image: the file is damaged, or is not an image"
    )
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
    fresh = TestClient(client.app, base_url="http://127.0.0.1")
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


def test_jobs_are_planned_row_by_row_several_per_file_and_batched_for_enhance(tmp_path):
    out = tmp_path / "outputs"
    video, a, b, c, speech = (tmp_path / n for n in ("clip.mp4", "a.jpg", "b.png", "c.jpg", "talk.wav"))
    runs, refused = plan_runs(
        [
            [(JobChoice(upload="1"), video, "video")],
            [(JobChoice(upload="2", job="enhance", engine="opencv-classic", scale=2), a, "image"),
             (JobChoice(upload="2", job="enhance", scale=3), a, "image")],
            [(JobChoice(upload="3", job="enhance", engine="opencv-classic", scale=2), b, "image")],
            [(JobChoice(upload="4", job="transcode"), c, "image")],  # a photo for transcode: refused alone
            [(JobChoice(upload="5", job="transcribe", speakers=2, language="zh"), speech, "audio"),
             (JobChoice(upload="5", job="transcribe", speakers=2, language="zh"), speech, "audio")],
            [(JobChoice(upload="6", job="subtitles"), video, "video"),
             (JobChoice(upload="6", job="transcode", presets=["mp4_smooth"]), video, "video"),
             (JobChoice(upload="6", job="transcribe"), video, "video")],
        ],
        out,
        {"mp4_standard", "mp4_smooth", "thumbnail"},
    )  # fmt: skip
    assert [(r.job, r.name) for r in runs] == [
        ("subtitles", "subtitles · clip.mp4"),
        ("transcode", "transcode · clip.mp4"),
        ("transcribe", "transcribe · talk.wav"),  # the same job twice on one file runs once
        ("subtitles", "subtitles · clip.mp4"),
        ("transcode", "transcode · clip.mp4"),
        ("transcribe", "transcribe · clip.mp4"),
        ("enhance", "enhance · a.jpg +1"),
        ("enhance", "enhance · a.jpg"),
    ]
    assert refused and refused[0].index == 3
    assert refused[0].reason == "c.jpg is a photo: renditions needs a video"
    assert runs[2].parameters == {"media": str(speech), "language": "zh", "diarize": True, "speakers": 2,
                                  "output_dir": runs[2].parameters["output_dir"]}  # fmt: skip
    assert runs[4].parameters["presets"] == ["mp4_smooth"]
    assert runs[6].parameters["images"] == [str(a), str(b)]
    assert runs[6].parameters["engine"] == "opencv-classic" and "engine" not in runs[7].parameters
    assert len({r.parameters["output_dir"] for r in runs}) == len(runs), "each run writes into its own folder"


def _check(client: TestClient, rows: list[list[dict]]) -> dict[int, str]:
    answer = client.post("/api/check", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    return {r["index"]: r["reason"] for r in answer.json()["refused"]}


def test_choices_are_checked_before_the_upload_row_by_row_in_plain_words(tmp_path):
    client = _client(tmp_path, max_upload_bytes=10_000)
    refused = _check(client, [
        [{"name": "clip.mp4", "job": "subtitles"}, {"name": "clip.mp4", "job": "transcode",
                                                     "presets": ["mp4_smooth"]}],
        [{"name": "speech.wav", "job": "subtitles"}],
        [{"name": "coffee.png", "job": "enhance", "scale": 9}],
        [{"name": "coffee2.png", "job": "enhance", "engine": "gfpgan"}],
        [{"name": "talk.wav", "job": "transcribe", "speakers": 0}],
        [{"name": "big.mp4", "job": "transcode", "size": 20_000}],
        [{"name": "ok.png", "job": "enhance", "engine": "opencv-classic", "scale": 3.5}],
        [{"name": "talk.wav", "job": "transcribe", "language": "xx"}],
        [{"name": "clip.mp4", "job": "transcode", "presets": ["mp4_smoth"]}],
    ])  # fmt: skip
    assert refused == {
        1: "speech.wav is an audio file: burned-in subtitles needs a video",
        2: "coffee.png: scale 9 is out of range: choose 1 to 4",
        3: "coffee2.png: the gfpgan engine cannot run here: the gfpgan package is not installed here; "
        "choose realesrgan-ncnn or opencv-classic",
        4: "talk.wav: 0 speakers is out of range: give 1 to 20, or leave it empty to have them counted",
        5: "big.mp4 is 19.5 kB, above the upload limit of 9.8 kB",
        7: "talk.wav: language 'xx' is not offered; leave it on detect",
        8: "clip.mp4: no rendition called mp4_smoth",
    }
    bad = client.post("/api/check", json={"rows": [[{"name": "a.png", "job": "enhance", "scale": "big"}]]})
    assert (
        bad.status_code == 422
        and bad.json()["detail"] == "not accepted: rows, row 1, row 1, scale: a number is needed"
    ), bad.text


def test_options_offer_only_what_runs_here(tmp_path):
    options = _client(tmp_path).get("/api/options").json()
    assert [e["name"] for e in options["engines"]] == ["realesrgan-ncnn", "opencv-classic"]
    assert "gfpgan" in options["engines_missing"]
    assert options["scale"]["min"] == 1 and options["scale"]["max"] == 4
    takes = {j["name"]: j["takes"] for j in options["jobs"]}
    assert takes == {"subtitles": ["video"], "transcode": ["video"], "transcribe": ["audio", "video"],
                     "fuse": ["video"], "enhance": ["image"]}  # fmt: skip
    assert options["user"].startswith("guest-") and options["page"]


def test_the_host_header_must_name_this_page(tmp_path):
    local = create_app(WebSettings(data_dir=tmp_path / "data"))  # loopback, no token
    for host, code in [
        ("127.0.0.1:8080", 200),
        ("localhost:8080", 200),
        ("[::1]:8080", 200),
        ("evil.example", 421),
        ("evil.example:8080", 421),
        ("127.0.0.1.evil.example", 421),
    ]:
        answer = TestClient(local, base_url=f"http://{host}").get("/health")
        assert answer.status_code == code, (host, answer.status_code)  # fmt: skip
    listed = create_app(WebSettings(data_dir=tmp_path / "d2", bind_host="0.0.0.0", token="t",
                                    allowed_hosts=frozenset({"media.example"})))  # fmt: skip
    assert TestClient(listed, base_url="http://media.example").get("/health").status_code == 200
    assert TestClient(listed, base_url="http://evil.example").get("/health").status_code == 421


def test_the_prefect_link_is_left_out_where_a_browser_cannot_reach_it(tmp_path):
    from pg_server import free_port
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        _prefect_links(tmp_path, free_port())


def _prefect_links(tmp_path: Path, closed_port: int) -> None:
    remote = WebSettings(data_dir=tmp_path, bind_host="0.0.0.0", token="t")
    assert PrefectLink(remote).candidate() is None, "a remote browser's 127.0.0.1 is not the server"
    assert PrefectLink(WebSettings(data_dir=tmp_path)).candidate() == "http://127.0.0.1:4200"
    given = WebSettings(data_dir=tmp_path, bind_host="0.0.0.0", token="t", ui_url="http://prefect.example/")
    assert PrefectLink(given).candidate() == "http://prefect.example"
    closed = WebSettings(data_dir=tmp_path, ui_url=f"http://127.0.0.1:{closed_port}")
    assert asyncio.run(PrefectLink(closed).url()) is None, "nothing listens there"


def test_downloads_are_named_after_their_result(tmp_path):
    assert display_name("astronaut.png", "enhance", {"scale": 2.0}) == "astronaut.x2.png"
    assert display_name("astronaut.png", "enhance", {"scale": 1.5}) == "astronaut.x1.5.png"
    assert display_name("enhanced.zip", "enhance", {}) == "enhanced.zip"
    assert display_name("bigbuckbunny.mp4_standard.mp4", "transcode", {}) == "bigbuckbunny.standard.mp4"
    assert display_name("bigbuckbunny.thumbnail.jpg", "transcode", {}) == "bigbuckbunny.thumbnail.jpg"
    assert display_name("bigbuckbunny.hdlbr_h265.mp4", "transcode", {}) == "bigbuckbunny.hdlbr_h265.mp4"
    run = tmp_path / "data" / "outputs" / "k" / "subtitles" / "clip-1"
    run.mkdir(parents=True)
    (run / "clip.srt").write_bytes(b"")
    (run / "clip.txt").write_bytes(b"")
    (run / "clip.json").write_text("[]")
    listed = job_outputs(run, tmp_path / "data" / "outputs", "/files/outputs", "subtitles", {})
    assert [o["name"] for o in listed] == ["clip.json"], "empty files are not offered"
    photo = tmp_path / "data" / "outputs" / "k" / "astronaut.png"
    photo.write_bytes(b"\x89PNG")
    client = _client(tmp_path)
    answer = client.get("/files/outputs/k/astronaut.png", params={"as": "astronaut.x2.png"})
    assert (
        answer.status_code == 200 and 'filename="astronaut.x2.png"' in answer.headers["content-disposition"]
    )
    sneaky = client.get("/files/outputs/k/astronaut.png", params={"as": "../run.sh"})
    assert sneaky.status_code == 200 and "run.sh" not in sneaky.headers.get("content-disposition", "")


def test_errors_are_told_in_plain_words():
    message = "Flow run encountered an exception: MediaInputError: '/srv/up/clip.mp4': file does not exist"
    assert plain_error(message) == "clip.mp4: file does not exist"
    partial = "partially completed: 2 of 3 images enhanced"
    assert plain_error(partial) == partial


def test_a_video_row_may_ask_for_subtitles_and_speech_fused_with_the_text_language(tmp_path):
    """The fused job runs the fuse deployment; the subtitle language (auto or a code of the subtitles flow's
    own list) goes to the subtitles and fuse runs as `lang`, the speech's as `language`."""
    from stages.subtitles.languages import LANGUAGE_CHOICES

    client = _client(tmp_path)
    options = client.get("/api/options").json()
    assert [x["code"] for x in options["subtitle_languages"]] == LANGUAGE_CHOICES, "auto, then every code"
    assert {j["name"]: j["takes"] for j in options["jobs"]}["fuse"] == ["video"]
    video = tmp_path / "clip.mp4"
    runs, refused = plan_runs(
        [[(JobChoice(upload="1", job="subtitles", subtitle_lang="ja"), video, "video"),
          (JobChoice(upload="1", job="fuse", subtitle_lang="auto", language="en", diarize=True), video,
           "video")]],
        tmp_path / "outputs",
        set(),
    )  # fmt: skip
    assert not refused and [(r.job, r.deployment) for r in runs] == [
        ("subtitles", "extract-subtitles/subtitles"), ("fuse", "fuse-subtitles/fuse")
    ]  # fmt: skip
    out = [r.parameters["output_dir"] for r in runs]
    assert runs[0].parameters == {"video": str(video), "lang": "ja", "output_dir": out[0]}
    assert runs[1].parameters == {"video": str(video), "lang": "auto", "language": "en", "diarize": True,
                                  "output_dir": out[1]}  # fmt: skip
    refused = _check(client, [
        [{"name": "a.mp4", "job": "subtitles", "subtitle_lang": "xx"}],
        [{"name": "b.mp4", "job": "fuse", "subtitle_lang": "ko", "language": "ko"}],
        [{"name": "c.wav", "job": "fuse"}],
        [{"name": "d.mp4", "job": "fuse", "speakers": 2}],
        [{"name": "e.mp4", "job": "fuse", "language": "xx"}],
    ])  # fmt: skip
    assert refused == {
        0: "a.mp4: subtitle language 'xx' is not offered; leave it on auto",
        2: "c.wav is an audio file: subtitles + speech fused needs a video",
        3: "d.mp4: the fused job takes no number of speakers; tick speaker labels to have them counted",
        4: "e.mp4: language 'xx' is not offered; leave it on detect",
    }


def test_a_fused_run_offers_its_two_sources_apart_and_shows_the_fused_srt(tmp_path):
    from deployments.web.views import _settings, _srt_text

    root = tmp_path / "outputs"
    run = root / "k"
    for folder, names in {"fuse/clip-1": ["clip.fused.srt", "clip.fused.vtt", "clip.fused.json"],
                          "subtitles/clip-1": ["clip.srt", "clip.json"],
                          "transcribe/clip-1": ["clip.srt", "clip.vtt"]}.items():  # fmt: skip
        (run / folder).mkdir(parents=True)
        for name in names:
            (run / folder / name).write_text(f"{folder} {name}", encoding="utf-8")
    listed = job_outputs(run, root, "/files/outputs", "fuse", {})
    assert sorted(o["name"] for o in listed) == [
        "clip.fused.json", "clip.fused.srt", "clip.fused.vtt", "clip.speech.srt", "clip.speech.vtt",
        "clip.subtitles.json", "clip.subtitles.srt",
    ]  # fmt: skip
    assert _srt_text(listed) == "fuse/clip-1 clip.fused.srt"
    assert _settings("fuse", {"lang": "ch", "diarize": True}) == "text ch, speech detected, speaker labels"
    assert _settings("subtitles", {"lang": "ja"}) == "text ja"


def test_a_finished_run_s_progress_is_read_once_a_busy_one_s_on_every_poll(prefect_server, tmp_path):
    """The page polls /api/jobs every second while one of its runs is busy. A final run's progress is read
    from Prefect once per state and kept (it cannot change: the probe below adds a line no real run would);
    a running run's is read on every poll; a final run that runs again (a crash re-run) is read again."""
    from prefect import flow, get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.states import Completed, Running

    from deployments.web.jobs import WEB_TAG

    @flow(name="web-progress-probe")
    def probe() -> None: ...

    with get_client(sync_client=True) as client:
        done = client.create_flow_run(probe, tags=[WEB_TAG], state=Completed())
        busy = client.create_flow_run(probe, tags=[WEB_TAG], state=Running())

        def progress(line: str, value: float) -> None:
            for run in (done, busy):
                client.create_artifact(ArtifactCreate(type="progress", data=value, description=line,
                                                      flow_run_id=run.id))  # fmt: skip

        web = _client(tmp_path)

        def lines() -> dict[str, list[str]]:
            answer = web.get("/api/jobs", params={"ids": f"{done.id},{busy.id}"})
            assert answer.status_code == 200, answer.text
            return {job["id"]: job["progress_lines"] for job in answer.json()["jobs"]}

        progress("first", 40.0)
        assert lines() == {str(done.id): ["first"], str(busy.id): ["first"]}
        progress("second", 60.0)
        assert lines() == {str(done.id): ["first"], str(busy.id): ["first", "second"]}
        client.set_flow_run_state(done.id, Running(), force=True)
        client.set_flow_run_state(done.id, Completed(), force=True)
        assert lines()[str(done.id)] == ["first", "second"], "a new final state is read again"
