"""The command line: every failure ends in one line on stderr, whatever its cause."""

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from neuralworld.cli import main
from neuralworld.errors import UserError


def fails_with(monkeypatch, error):
    def run(args):
        raise error
    monkeypatch.setattr("neuralworld.capture.info.run", run)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_user_error_is_one_line_and_status_2(monkeypatch, capsys):
    fails_with(monkeypatch, UserError("cap: no such capture folder"))
    assert main(["info", "cap"]) == 2
    assert one_line(capsys.readouterr().err) == "neuralworld info: error: cap: no such capture folder"


def test_an_unexpected_error_is_one_line_that_asks_for_a_report(monkeypatch, capsys):
    fails_with(monkeypatch, ZeroDivisionError("division by zero\nsecond line"))
    assert main(["info", "cap"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("neuralworld info: error: ZeroDivisionError: division by zero second line (please report")
    assert "--debug" in line


def test_debug_shows_the_traceback(monkeypatch):
    fails_with(monkeypatch, ZeroDivisionError("division by zero"))
    for argv in (["--debug", "info", "cap"], ["info", "cap", "--debug"]):
        with pytest.raises(ZeroDivisionError):
            main(argv)
    fails_with(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError):
        main(["--debug", "info", "cap"])


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device"),
     "neuralworld info: error: no space left on device (free some space, or write elsewhere)"),
    (OSError(errno.ENOSPC, "No space left on device", "out/sheet.png"),
     "neuralworld info: error: out/sheet.png: no space left on device (free some space, or write elsewhere)"),
    (PermissionError(errno.EACCES, "Permission denied", "out"),
     "neuralworld info: error: out: permission denied (check its permissions)"),
])
def test_the_machines_trouble_is_one_line_and_status_2(monkeypatch, capsys, error, expected):
    fails_with(monkeypatch, error)
    assert main(["info", "cap"]) == 2
    assert one_line(capsys.readouterr().err) == expected


def test_an_os_error_without_a_file_is_a_bug_report(monkeypatch, capsys):
    fails_with(monkeypatch, ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    assert main(["info", "cap"]) == 1
    assert "please report" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [["play", "w", "--port", "99999"], ["play", "w", "--port", "-1"],
                                  ["record", "--port", "65536"], ["record", "--port", "-1"],
                                  ["demo", "--port", "99999"], ["demo", "--port", "http"]])
def test_a_port_out_of_range_is_one_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"neuralworld {argv[0]}: error: argument --port: ") and "0..65535" in line


@pytest.mark.parametrize("script", ["web_quality.py", "play_hold.py", "replay.py"])
def test_a_benchmark_given_a_folder_without_a_world_says_so_in_one_line(tmp_path, script):
    """The benchmarks that take a world end a user's error as the commands do."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / script
    done = subprocess.run([sys.executable, str(bench), str(tmp_path), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == f"{script}: error: {tmp_path}: no world here " \
        "(world.json is missing; make one with `neuralworld train`)"
