"""Issue 43, item 4: a read-only or full place (the cache, the results folder, ``--out``, the data root) is one line
naming the path, the cause and what to do, on the command line and under pytest, and nothing written before is
lost. The places are real mounts where the tests may mount (root), a faked file system otherwise (tests/places.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from medft_bench.__main__ import main
from medft_bench.leaderboard.__main__ import main as leaderboard_main
from medft_bench.pytest_plugin import skip_or_fail
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, attempt
from tests.helpers import SMOKE_CELL, make_record, offline, tiny_cell, write

if TYPE_CHECKING:
    from tests.places import MakePlace

pytest_plugins = ["tests.places"]  # the make_place fixture

KINDS = ["read-only", "full"]
CELL = SMOKE_CELL


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("kind", KINDS)
def test_cache_that_cannot_be_written_is_one_line_on_the_command_line(kind: str, make_place: MakePlace,
                                                                      tmp_path: Path, monkeypatch, capsys) -> None:
    place = make_place(kind)
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(place.path))
    results = tmp_path / "results"
    rc = main(["run", *CELL, "--results-dir", str(results)])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    line = _one_line(err)
    assert line.startswith(f"error: cannot write the synthetic data file {place.path / 'synthetic'}/"), line
    assert f"({place.cause}): " in line and line.endswith(f"set MEDFT_CACHE_DIR to a writable folder with free "
                                                           f"space (now {place.path})")
    assert ("free space there, or" in line) == (kind == "full")
    assert place.untouched()
    assert not list(results.rglob("*.json"))


@pytest.mark.parametrize("kind", KINDS)
def test_cache_that_cannot_be_written_fails_the_pytest_case_with_that_line(kind: str, make_place: MakePlace,
                                                                          tmp_path: Path, monkeypatch) -> None:
    place = make_place(kind)
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(place.path))
    out = attempt(tiny_cell(strategy="lp"), RunEnv.at(tmp_path / "results"))
    assert out.kind is Kind.ERROR and out.record is None
    with pytest.raises(pytest.fail.Exception) as failed:
        skip_or_fail(out, config=None)
    assert failed.value.pytrace is False and failed.value.msg == out.message  # FAILED with the line, no traceback
    assert _one_line(out.message) and str(place.path) in out.message and f"({place.cause})" in out.message
    assert place.untouched()


@pytest.mark.parametrize("kind", KINDS)
def test_results_folder_that_cannot_be_written_names_the_cause(kind: str, make_place: MakePlace) -> None:
    """Under --save-model the first file written is a network (torch.save): a full disk was "enforce fail at
    inline_container.cc"; it is now "No space left on device", and the computed record is kept to be shown."""
    place = make_place(kind)
    out = attempt(tiny_cell(strategy="lp"), RunEnv.at(place.path / "results", save_model=True))
    assert out.kind is Kind.ERROR, out
    assert _one_line(out.message) and f"{place.cause}" in out.message and "enforce fail" not in out.message
    if kind == "full":  # found when the record is written: the result is computed, kept, shown
        assert out.message.startswith(f"cannot write the record {place.path / 'results'}/")
        assert out.record is not None and out.record["status"] == "ok"
    else:  # found before anything is computed
        assert out.message.startswith(f"cannot write to the results directory {place.path / 'results'} ")
    assert place.untouched()


@pytest.mark.parametrize("kind", KINDS)
def test_out_folder_that_cannot_be_written_is_one_line_and_keeps_the_earlier_leaderboard(
        kind: str, make_place: MakePlace, tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    write(results, make_record(strategy="ft"))
    write(results, make_record(strategy="lp", primary=0.7))

    def earlier_leaderboard(folder: Path) -> None:
        assert leaderboard_main([str(results), "--out", str(folder / "board"), "--quiet"]) == 0

    place = make_place(kind, earlier_leaderboard)
    write(results, make_record(strategy="lp_ft", primary=0.75))  # a new record: the pages would change
    capsys.readouterr()
    out = place.path / "board"
    assert leaderboard_main([str(results), "--out", str(out), "--quiet"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"python -m medft_bench.leaderboard: error: cannot write the leaderboard into {out} "
                           f"({place.cause}): "), line
    assert line.endswith("choose another --out (a writable folder with free space); its earlier files are unchanged")
    assert place.untouched()  # the earlier leaderboard, byte for byte, and no staged file left


@pytest.mark.parametrize("kind", KINDS)
def test_data_root_that_cannot_take_a_download_skips_with_the_cause(kind: str, make_place: MakePlace,
                                                                    monkeypatch, tmp_path: Path) -> None:
    """A download into a read-only or full data root: the cell skips (data missing) naming the root, the cause and
    what to do; no .part is left; and the file is not fetched again for the next cell."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from medft_bench.data import medmnist as mm
    from medft_bench.errors import DatasetNotFoundError

    body = b"x" * 300_000  # more than a nearly full tmpfs holds
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        monkeypatch.delenv("MEDFT_OFFLINE")
        monkeypatch.setattr(mm, "_FAILED", {})
        monkeypatch.setenv(mm.URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}")
        place = make_place(kind)
        for _ in range(2):
            with pytest.raises(DatasetNotFoundError) as err:
                mm.ensure_file("pneumoniamnist", 64, place.path)
            assert f"cannot write into the data root {place.path} ({place.cause}): point --data-root" in str(err.value)
        assert len(requests) <= 1  # read-only: refused before asking; full: asked once
        assert place.untouched()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_memory_mapped_arrays_that_cannot_be_written_blame_the_place_not_the_file(make_place: MakePlace,
                                                                                   monkeypatch) -> None:
    """A large file's images are converted once into memory-mappable arrays: next to it, or in the cache when its
    folder is read-only. A full cache said the data file was "truncated or corrupt"; it is now the cache's line."""
    from medft_bench.data import mapped
    from medft_bench.data import medmnist as mm
    from medft_bench.data.synthetic import write_synthetic_medmnist
    from medft_bench.errors import WriteError

    data = make_place("read-only", lambda d: write_synthetic_medmnist(
        "pneumoniamnist", 28, d, {"train": 24, "val": 12, "test": 12}, 0) and None)
    cache = make_place("full")
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(cache.path))
    monkeypatch.setattr(mapped, "MIN_BYTES", 0)  # convert even this small file
    with pytest.raises(WriteError) as err:
        mm.load_medmnist("pneumoniamnist", 28, data.path, download_missing=False)
    msg = str(err.value)
    assert msg.startswith("cannot write the memory-mappable arrays of pneumoniamnist.npz into "), msg
    if data.real:  # a read-only folder sends the arrays to the cache, which is full
        assert f"{cache.path / 'arrays'}/" in msg
        assert f"({cache.cause}): free space there, or set MEDFT_CACHE_DIR" in msg
    else:  # the fake cannot make os.access say read-only: the arrays go next to the file, refused there
        assert f"({data.cause}): move the data root" in msg
    assert "corrupt" not in msg and data.untouched() and cache.untouched()
