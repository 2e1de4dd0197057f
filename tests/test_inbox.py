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
    container_incomplete,
    is_candidate,
    open_for_writing,
    sweep_inbox,
)
from samples.realvideo import realvideo_dir
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
    def __init__(self, inbox: Path, settle: float = 0.3, open_wait: float = 30.0) -> None:
        self.ledger = Ledger.for_inbox(inbox)
        self.watcher = InboxWatcher(inbox, self.ledger, settle=settle, open_wait=open_wait, poll=0.05)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)

    def __enter__(self) -> RunningWatcher:
        self.thread.start()
        time.sleep(0.5)  # the observer is up
        return self

    def __exit__(self, *exc) -> None:
        self.watcher.stopped.set()
        self.thread.join(timeout=10)
        self.ledger.close()

    def wait_for(self, count: int, timeout: float = 20.0, claimed: bool = False) -> list[dict[str, object]]:
        """The first `count` files announced (the API took their events), or only `claimed`: the watcher
        decided they were complete (its ledger row; the event may still be on its way to a loaded API)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [e for e in self.ledger.entries() if claimed or e["status"] != "pending"]
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


def test_links_never_lead_out_of_the_inbox(tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x" * 10)
    (inbox / "passwd.mp4").symlink_to("/etc/passwd")
    (inbox / "elsewhere").symlink_to(outside, target_is_directory=True)
    (inbox / "real.mp4").write_bytes(b"y" * 10)
    (inbox / "loop.mp4").symlink_to(inbox / "real.mp4")  # even a link within the inbox is not a file of it
    found = [p for p in inbox.rglob("*") if is_candidate(p, inbox)]
    assert found == [inbox / "real.mp4"]
    assert not is_candidate(inbox / "elsewhere" / "secret.mp4", inbox), "a path through a linked folder"


def test_a_claim_left_pending_by_a_killed_watcher_is_taken_over_at_once(tmp_path):
    """kill -9 between claiming and recording: the restarted watcher announces the file, not 300 s later."""
    import os

    f = tmp_path / "a.mp4"
    f.write_bytes(b"x" * 10)
    state = tmp_path / "state" / "ledger.sqlite"
    _claim_and_die(state, f)
    ledger = Ledger(state)
    assert [e["status"] for e in ledger.entries()] == ["pending"]
    assert ledger.pending() == [f.resolve()]
    assert ledger.claim(FileKey.of(f)), "its owner is dead: take it over now"
    assert not ledger.claim(FileKey.of(f)), "and only once"
    assert ledger.pending() == [], f"now owned by the living ({os.getpid()})"
    ledger.close()


@pytest.mark.slow
def test_moved_in_files_settle_fast_and_odd_names_log_one_line(prefect_server, media, tmp_path, caplog):
    """`mv` from outside is announced after `settle`, not `open_wait`; a text file named .png is skipped
    by content; a newline in a name stays inside its one log line."""
    import logging

    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    shutil.copy(media["video"], outside / "moved.mp4")
    (outside / "fake.png").write_text("not an image\n", encoding="utf-8")
    shutil.copy(media["image"], outside / "two\nlines.png")
    caplog.set_level(logging.INFO, logger="yivideo.inbox")
    with RunningWatcher(inbox, open_wait=60.0) as running:  # settle 0.3 s
        started = time.monotonic()
        for name in ("moved.mp4", "fake.png", "two\nlines.png"):
            shutil.move(outside / name, inbox / name)
        running.wait_for(3, timeout=40, claimed=True)  # when the watcher took them as complete
        took = time.monotonic() - started
        entries = running.wait_for(3, timeout=60)
    # the decision only, not the events' trip to the API: at load 15-23 the three sends took ~10 s more
    assert took < 30, f"moved-in files waited {took:.1f} s (open_wait is 60 s)"
    kinds = {Path(str(e["path"])).name: e["kind"] for e in entries}
    assert kinds == {"moved.mp4": "video", "fake.png": "other", "two\nlines.png": "image"}, kinds
    lines = [r.getMessage() for r in caplog.records if r.name == "yivideo.inbox"]
    assert any("two\\nlines.png" in m for m in lines) and not any("\n" in m for m in lines), lines


def _claim_and_die(state: Path, path: Path) -> None:
    """A watcher killed with -9 right after claiming `path` (before it could record the announcement)."""
    import signal
    import sys

    snippet = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from deployments.inbox import FileKey, Ledger\n"
        "assert Ledger(Path(sys.argv[1])).claim(FileKey.of(Path(sys.argv[2])))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", snippet, str(state), str(path)], timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL


def test_a_restart_announces_the_dead_watchers_claims_first_and_once(prefect_server, media, tmp_path):
    """The file a killed watcher had claimed was due already: on restart it goes before the sorted scan of
    the files that arrived meanwhile (bench/faults.py, inbox row: it came last, 13 s late, before)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claimed = inbox / "z-claimed.wav"
    shutil.copy(media["audio"], claimed)
    for name, kind in (("a-new.png", "image"), ("b-new.mp4", "video")):
        shutil.copy(media[kind], inbox / name)
    _claim_and_die(Ledger.for_inbox(inbox).path, claimed)
    ledger = Ledger.for_inbox(inbox)
    try:
        outcomes = InboxWatcher(inbox, ledger, settle=0.0).catch_up()
        again = InboxWatcher(inbox, ledger, settle=0.0).catch_up()
    finally:
        ledger.close()
    assert [(o.path.name, o.status) for o in outcomes if o.status != "seen"] == [
        ("z-claimed.wav", "emitted"),
        ("a-new.png", "emitted"),
        ("b-new.mp4", "emitted"),
    ]  # fmt: skip (the scan after it finds the claimed file again: "seen")
    assert {o.status for o in again} == {"seen"} and len(again) == 3
    keys = [FileKey.of(inbox / n) for n in ("z-claimed.wav", "a-new.png", "b-new.mp4")]
    assert len(read_events(keys)) == 3


REAL_VIDEO = realvideo_dir() / "douyin_7625253704698556297_zh.mp4"


def _real_video() -> bytes:
    if not REAL_VIDEO.is_file():
        pytest.skip(f"real footage not here: {REAL_VIDEO.parent} (see its README)")
    return REAL_VIDEO.read_bytes()


def _append_in_bursts(path: Path, data: bytes, bursts: int, pause: float) -> None:
    """A recorder or a resumable upload: each burst reopens the file, appends and closes it."""
    for i in range(bursts):
        with open(path, "ab") as f:
            f.write(data[i * len(data) // bursts : (i + 1) * len(data) // bursts])
        time.sleep(pause)


def _announced(running: RunningWatcher, name: str, whole: int = 0, timeout: float = 15.0) -> list[int]:
    """The sizes `name` was announced at, once one is `whole` bytes (waiting up to `timeout` for it)."""
    deadline = time.monotonic() + timeout
    while True:
        sizes = [int(e["size"]) for e in running.ledger.entries() if Path(str(e["path"])).name == name]
        if whole in sizes or not whole or time.monotonic() > deadline:
            return sizes
        time.sleep(0.1)


def test_a_writer_that_reopens_the_file_for_each_burst_is_announced_once_complete(prefect_server, tmp_path):
    """Pauses shorter than the quiet time: one announcement, of the whole file. Pauses longer than it, the
    first one too: an MP4 says itself that it is not whole yet (its boxes run past its end), so it waits;
    the watcher also learns the pause, so a file no container tells about waits twice as long.
    (Margins are wide: on a loaded host a writer's 0.8 s sleep can last well over a second.)"""
    data = _real_video()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with RunningWatcher(inbox, settle=0.5) as running:
        _append_in_bursts(inbox / "short-pauses.mp4", data, bursts=5, pause=0.2)
        assert _announced(running, "short-pauses.mp4", len(data)) == [len(data)]
        running.wait_for(1, timeout=60)  # its event sent: a watcher still in that call sees no pause

        _append_in_bursts(inbox / "long-pauses.mp4", data, bursts=4, pause=1.6)
        assert _announced(running, "long-pauses.mp4", len(data)) == [len(data)], "once, whole"
        assert running.watcher.quiet_needed() >= 3.0
        running.wait_for(2, timeout=60)

        _append_in_bursts(inbox / "next-recording.mp4", data, bursts=4, pause=0.8)
        assert _announced(running, "next-recording.mp4", len(data)) == [len(data)]


def test_the_container_tells_a_partial_file(tmp_path):
    """Cut anywhere, a real MP4 (moov first or last) and a WAV say they are partial; whole ones do not."""
    data = _real_video()
    moov_last = tmp_path / "moov-last.mp4"  # how a recorder writes: the index after the media
    _ffmpeg("-i", str(REAL_VIDEO), "-c", "copy", "-t", "3", str(moov_last))
    wav = tmp_path / "tone.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000", "-t", "1", str(wav))
    for name, whole in (("moov-first.mp4", data), ("moov-last.mp4", moov_last.read_bytes()),
                        ("tone.wav", wav.read_bytes())):  # fmt: skip
        part = tmp_path / f"part-{name}"
        for cut in (len(whole) // 7, len(whole) // 2, len(whole) - 1):
            part.write_bytes(whole[:cut])
            assert container_incomplete(part), (name, cut)
        part.write_bytes(whole)
        assert not container_incomplete(part), name
    (tmp_path / "notes.txt").write_text("no container\n", encoding="utf-8")
    assert not container_incomplete(tmp_path / "notes.txt")


def test_a_partial_file_whose_writer_never_returns_is_announced_after_open_wait(prefect_server, tmp_path):
    """The container's word holds for `open_wait` at most: an upload cut off for good is still announced
    (its run then reports the damage)."""
    data = _real_video()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with RunningWatcher(inbox, settle=0.3, open_wait=2.5) as running:
        started = time.monotonic()
        (inbox / "cut.mp4").write_bytes(data[: len(data) // 2])
        sizes = _announced(running, "cut.mp4", len(data) // 2, timeout=15)
        took = time.monotonic() - started
    assert sizes == [len(data) // 2] and took >= 2.5, (sizes, took)


def test_a_file_its_writer_holds_open_waits_past_open_wait(prefect_server, tmp_path):
    """/proc shows the writer still holding the file: not announced after `open_wait` (meant for writers
    whose close cannot be seen), only after the close."""
    data = _real_video()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with RunningWatcher(inbox, settle=0.3, open_wait=1.0) as running:
        with open(inbox / "held.mp4", "wb") as held:
            held.write(data)
            held.flush()
            assert open_for_writing(inbox / "held.mp4")
            time.sleep(2.5)
            assert _announced(running, "held.mp4") == [], "still open for writing"
        running.wait_for(1)
        assert _announced(running, "held.mp4") == [len(data)]
    with open(inbox / "held.mp4", "rb"):
        assert not open_for_writing(inbox / "held.mp4"), "a reader is not a writer"
