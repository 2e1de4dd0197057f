"""The inbox watcher: one event per complete file, by kind, once across restarts; read back from the API."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deployments.inbox import (
    KIND_LABEL,
    SKIPPED,
    UPLOADED,
    FileKey,
    InboxWatcher,
    Ledger,
    is_candidate,
    sweep_inbox,
)
from samples.video import make_subtitled_video


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-y", "-v", "error", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def media(media_dir) -> dict[str, Path]:
    audio, image = media_dir / "inbox-tone.wav", media_dir / "inbox-still.png"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000", "-t", "1.5", str(audio))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120", "-frames:v", "1", str(image))
    video = make_subtitled_video(media_dir / "inbox-clip.mp4", [], duration=1.5, size=(320, 180))
    return {"video": video, "audio": audio, "image": image}


def read_events(keys: list[FileKey], timeout: float = 30.0) -> dict[str, object]:
    """The events the API stored for these files (by their derived ids), waiting for the persister."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter

    wanted = {str(k.event_id): k.path for k in keys}
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(EventFilter(id=EventIDFilter(id=list(wanted))), limit=50)
            if len(page.events) >= len(wanted) or time.monotonic() > deadline:
                return {wanted[str(e.id)]: e for e in page.events}
            time.sleep(0.5)


class RunningWatcher:
    def __init__(self, inbox: Path) -> None:
        self.ledger = Ledger.for_inbox(inbox)
        self.watcher = InboxWatcher(inbox, self.ledger, settle=0.3, open_wait=30.0, poll=0.05)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)

    def __enter__(self) -> RunningWatcher:
        self.thread.start()
        time.sleep(0.5)  # the observer is up
        return self

    def __exit__(self, *exc) -> None:
        self.watcher.stopped.set()
        self.thread.join(timeout=10)
        self.ledger.close()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [e for e in self.ledger.entries() if e["status"] != "pending"]
            if len(done) >= count:
                return done
            time.sleep(0.1)
        raise AssertionError(f"only {self.ledger.entries()} after {timeout} s")


@pytest.mark.slow
def test_each_complete_file_emits_once_by_kind_across_restarts(prefect_server, media, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with RunningWatcher(inbox) as running:
        shutil.copy(media["video"], inbox / "clip.mp4")
        (inbox / "notes.txt").write_text("not a video\n", encoding="utf-8")
        staged = inbox / ".upload-photo.png"  # written under a hidden name, then renamed into place
        shutil.copy(media["image"], staged)
        staged.rename(inbox / "photo.png")
        data = media["audio"].read_bytes()
        with open(inbox / "tone.wav", "wb") as slow:  # a slow writer: pauses longer than `settle` while open
            slow.write(data[: len(data) // 2])
            slow.flush()
            time.sleep(1.2)
            assert not any(e["path"].endswith("tone.wav") for e in running.ledger.entries())
            slow.write(data[len(data) // 2 :])
        entries = running.wait_for(4)
    by_name = {Path(str(e["path"])).name: e for e in entries}
    assert {n: e["kind"] for n, e in by_name.items()} == {
        "clip.mp4": "video", "photo.png": "image", "tone.wav": "audio", "notes.txt": "other",
    }  # fmt: skip
    assert by_name["tone.wav"]["size"] == len(data), "announced only once complete"

    keys = [FileKey.of(inbox / name) for name in by_name]
    events = read_events(keys)
    assert len(events) == 4, events
    for path, event in events.items():
        name = Path(path).name
        assert event.payload["path"] == path and event.payload["size"] == Path(path).stat().st_size
        assert event.resource.id.startswith("yivideo.media.") and event.resource.get(KIND_LABEL)
        assert event.event == (SKIPPED if name == "notes.txt" else UPLOADED), name
        assert event.payload["kind"] == by_name[name]["kind"]

    # A restart catches up with the directory and announces nothing twice; a new file is announced.
    shutil.copy(media["audio"], inbox / "later.wav")
    with RunningWatcher(inbox) as running:
        entries = running.wait_for(5)
        time.sleep(0.6)
        assert len(running.ledger.entries()) == 5
    assert Path(str(entries[-1]["path"])).name == "later.wav"

    # The nightly sweep shares the ledger: only what nobody announced yet.
    shutil.copy(media["video"], inbox / "overnight.mp4")
    assert sweep_inbox(str(inbox), settle_seconds=0.0) == {"emitted": 1, "skipped": 0, "seen": 5}
    assert sweep_inbox(str(inbox), settle_seconds=0.0) == {"emitted": 0, "skipped": 0, "seen": 6}


def test_ledger_claims_once_and_releases_failed_sends(tmp_path):
    f = tmp_path / "a.mp4"
    f.write_bytes(b"x" * 10)
    key = FileKey.of(f)
    assert key.event_id == FileKey.of(f).event_id, "a resend carries the same event id"
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    assert ledger.claim(key) and not ledger.claim(key)
    ledger.release(key)
    assert ledger.claim(key)
    ledger.finish(key, "emitted", "video")
    ledger.close()
    reopened = Ledger(tmp_path / "state" / "ledger.sqlite")
    assert not reopened.claim(key), "the ledger survives a restart"
    f.write_bytes(b"y" * 11)
    assert reopened.claim(FileKey.of(f)), "a rewritten file is a new upload"


def test_hidden_partial_and_state_files_are_not_candidates(tmp_path):
    for name in ("clip.mp4.part", ".hidden.mp4", "dl.crdownload", ".yivideo-inbox/ledger.sqlite", "ok.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"1")
    assert [p.name for p in sorted(tmp_path.rglob("*")) if is_candidate(p, tmp_path)] == ["ok.mp4"]


def test_an_unreachable_api_keeps_the_file_for_a_later_retry(media, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(media["audio"], inbox / "a.wav")
    ledger = Ledger.for_inbox(inbox)
    watcher = InboxWatcher(inbox, ledger, settle=0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here once the socket closes
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{dead}/api"}):
        watcher.changes.put((inbox / "a.wav", True))
        assert watcher.step() == []
    assert ledger.entries() == [], "the claim is released, so the file is announced later"
    assert (inbox / "a.wav").resolve() in watcher.pending and not list(watcher._ready()), "and not at once"
    ledger.close()
