"""A full disk: each command ends in one line naming what it was writing, and leaves no partial
output and no temporary file. A small tmpfs is mounted for each test, so these run as root (as
they do in CI) and are skipped otherwise."""

import json
import os
import subprocess

import numpy as np
import pytest

from neuralworld import export
from neuralworld.capture import open_capture
from neuralworld.cli import main
from neuralworld.fileio import atomic_write_bytes
from neuralworld.record.server import RecordServer

from player_worlds import save_world
from test_import import make_video

FULL = "no space left on device (free some space, or write elsewhere)"


@pytest.fixture
def disk(tmp_path):
    """(mount point, resize(kib)) of a tmpfs of 64 KiB."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def resize(kib):
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(mnt)], check=True)
    yield mnt, resize
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_import_on_a_full_disk_says_so_and_leaves_nothing(disk, tmp_path, capsys):
    mnt, resize = disk
    video = make_video(tmp_path / "clip.mp4", n=20)  # 20 frames of 64x48: 184 KiB decoded, as much stored
    outcomes = set()
    # from no room at all, through each stage (decoding, frames, table, capture.json), to enough
    for kib in [4, 100, 200, 300, 356, 360, 364, 368, 372, 376, 1024]:
        resize(kib)
        rc = main(["import", str(video), "-o", str(mnt / "cap"), "--motion-format", "none"])
        err = [line for line in capsys.readouterr().err.splitlines() if "warning" not in line]
        if rc == 0:
            assert len(open_capture(mnt / "cap")) == 20
            subprocess.run(["rm", "-rf", str(mnt / "cap")], check=True)
        else:
            assert rc == 2 and one_line("\n".join(err)) == f"neuralworld import: error: {mnt / 'cap'}: {FULL}", kib
        assert list(mnt.iterdir()) == [], kib  # no capture, no temporary folder, no decoded frames
        outcomes.add(rc)
    assert outcomes == {0, 2}


def test_a_file_written_whole_or_not_at_all(disk, capsys):
    mnt, resize = disk
    atomic_write_bytes(mnt / "a.bin", b"old")
    with pytest.raises(OSError) as e:
        atomic_write_bytes(mnt / "a.bin", bytes(200_000))
    assert e.value.filename == str(mnt / "a.bin")  # named as the user knows it, not its temporary file
    assert os.listdir(mnt) == ["a.bin"] and (mnt / "a.bin").read_bytes() == b"old"


def test_info_on_a_full_disk_is_one_line(disk, tmp_path, capsys):
    mnt, resize = disk
    assert main(["synth", "-o", str(tmp_path / "cap"), "--frames", "4", "--size", "64x48"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "cap"), "-o", str(mnt / "sheet.png")]) == 2
    assert one_line(capsys.readouterr().err) == f"neuralworld info: error: {mnt / 'sheet.png'}: {FULL}"
    assert list(mnt.iterdir()) == []


@pytest.mark.skipif(not (export.RUNTIME_DIR / "ort.wasm.min.mjs").is_file(), reason="ONNX Runtime Web not fetched")
def test_export_on_a_full_disk_is_one_line(disk, tmp_path, capsys):
    mnt, resize = disk
    resize(1024)  # room for the model, not for the browser runtime
    world = save_world(tmp_path / "world")
    assert main(["export", str(world), "-o", str(mnt / "web")]) == 2
    assert one_line(capsys.readouterr().err) == f"neuralworld export: error: {mnt / 'web'}: {FULL}"
    assert list(mnt.iterdir()) == []


def test_train_on_a_full_disk_is_one_line_and_leaves_no_half_world(disk, tmp_path, capsys):
    from worldgen import moving_pattern

    mnt, resize = disk
    cap = moving_pattern(tmp_path / "cap", frames=30, seed=0)
    micro = ["--preset", "tiny", "--size", "32x32", "--batch", "2", "--threads", "1", "--set", "memory_frames=[2,4]",
             "--set", "channels=[8,16]", "--set", "decoder_blocks=[1,1]", "--set", "encoder_blocks=[0,0]"]
    assert main(["train", str(cap), "-o", str(mnt / "world"), "--steps", "2", *micro]) == 2
    line = one_line("\n".join(x for x in capsys.readouterr().err.splitlines() if "%|" not in x))  # not the bar
    assert line.startswith(f"neuralworld train: error: {mnt / 'world'}: cannot write the checkpoint") and \
        "no space left" in line.lower()
    assert list(mnt.iterdir()) == []  # neither a world without its files nor a partial folder


def test_recorder_on_a_full_disk_answers_507_and_resumes(disk):
    import http.client

    mnt, resize = disk
    srv = RecordServer(mnt / "rec", token="t", port=0, import_fn=None, log=lambda m: None).start()
    try:
        def call(method, path, body=None):
            conn = http.client.HTTPConnection(*srv.httpd.server_address[:2], timeout=10)
            conn.request(method, path, body=body, headers={"X-Token": "t"})
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        rec_id = call("POST", "/api/recordings", json.dumps({"mime": "video/webm"}))[1]["id"]
        video = bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8))
        status, answer = call("PUT", f"/api/recordings/{rec_id}/video?offset=0", video)
        assert status == 507 and "disk is full" in answer["error"]
        stored = call("GET", f"/api/recordings/{rec_id}")[1]["received"]
        assert stored < len(video)
        resize(1024)  # space freed: the upload goes on from what was stored
        assert call("PUT", f"/api/recordings/{rec_id}/video?offset={stored}", video[stored:])[1] == {"received": 200_000}
        assert (mnt / "rec" / ".partial" / rec_id / "video.part").read_bytes() == video
    finally:
        srv.stop()
