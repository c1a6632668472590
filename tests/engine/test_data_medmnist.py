"""MedMNIST files: loading (on synthetic files), root resolution, atomic download, MD5 memo, and bad inputs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from medft_bench.data import medmnist as mm
from medft_bench.data import synthetic
from medft_bench.data.arrays import MULTI_LABEL, NPZ_KEYS
from medft_bench.data.sources import load_dataset
from medft_bench.errors import DataError, DatasetNotFoundError, UnknownNameError

SMALL = {"train": 24, "val": 12, "test": 12}

# flag, channels, task, number of classes / labels
LAYOUTS = [
    ("pneumoniamnist", 1, "binary-class", 2),
    ("bloodmnist", 3, "multi-class", 8),
    ("chestmnist", 1, MULTI_LABEL, 14),
]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the user's data root, go online by accident, or write to ~/.cache."""
    monkeypatch.delenv(mm.ROOT_ENV, raising=False)
    monkeypatch.delenv("MEDFT_OFFLINE", raising=False)
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(tmp_path / "_cache"))
    for name in (mm.URL_ENV, mm.DEADLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mm, "_FAILED", {})  # one attempt per file and process: each test starts afresh


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize(("flag", "channels", "task", "n_classes"), LAYOUTS)
def test_load_synthetic_file(tmp_path: Path, flag: str, channels: int, task: str, n_classes: int, size: int) -> None:
    path = synthetic.write_synthetic_medmnist(flag, size, tmp_path, splits=SMALL, seed=3)
    assert path == tmp_path / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    raw = dict(np.load(path))

    for bundle in (
        mm.load_medmnist(flag, size, root=tmp_path, download_missing=False),
        load_dataset(flag, size, root=tmp_path, download=False),
    ):
        assert bundle.name == flag
        assert bundle.task == task
        assert bundle.n_classes == n_classes
        assert bundle.n_channels == channels
        assert bundle.image_size == size
        assert bundle.multi_label == (task == MULTI_LABEL)
        assert len(bundle.label_names) == n_classes
        for split, n in SMALL.items():
            s = bundle.split(split)
            assert len(s) == n
            assert s.images.dtype == torch.uint8
            assert tuple(s.images.shape) == (n, channels, size, size)
            want = raw[f"{split}_images"]
            want = want[:, None] if channels == 1 else want.transpose(0, 3, 1, 2)
            assert np.array_equal(s.images.numpy(), want)
            if task == MULTI_LABEL:
                assert s.labels.dtype == torch.float32
                assert tuple(s.labels.shape) == (n, n_classes)
                assert np.array_equal(s.labels.numpy(), raw[f"{split}_labels"].astype(np.float32))
            else:
                assert s.labels.dtype == torch.int64
                assert tuple(s.labels.shape) == (n,)
                assert np.array_equal(s.labels.numpy(), raw[f"{split}_labels"][:, 0])
        ident = bundle.identity
        assert ident["source"] == "medmnist"
        assert ident["file"] == str(path)
        assert ident["md5"] == mm.md5sum(path)
        assert ident["md5_verified"] is False  # a synthetic file never matches the official MD5
        assert ident["synthetic"] is False
        assert ident["source_size"] == size


def test_load_dataset_synthetic_flag_marks_records(tmp_path: Path) -> None:
    bundle = load_dataset("pneumoniamnist", 28, synthetic_data=True, synthetic_splits=SMALL)
    assert bundle.identity["synthetic"] is True
    assert bundle.identity["source"] == "synthetic"
    assert Path(bundle.identity["file"]).is_relative_to(tmp_path / "_cache")
    assert [len(bundle.split(s)) for s in SMALL] == list(SMALL.values())


def test_load_dataset_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DataError) as err:
        load_dataset("pneumonia", 28, download=False)
    assert isinstance(err.value, UnknownNameError)
    msg = str(err.value)
    assert "'pneumonia'" in msg and "pneumoniamnist" in msg and "pathmnist" in msg


def test_file_names() -> None:
    assert mm.file_name("pathmnist", 28) == "pathmnist.npz"
    assert mm.file_name("pathmnist", 224) == "pathmnist_224.npz"
    assert mm.file_name("pathmnist", 32, official=False) == "pathmnist_32.npz"
    with pytest.raises(DataError, match="28, 64, 128, 224"):
        mm.file_name("pathmnist", 32)
    url, md5 = mm.url_and_md5("pathmnist", 64)
    assert "/pathmnist_64.npz" in url and len(md5) == 32


# ------------------------------------------------------------------------------------------ root resolution


def test_root_explicit_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from medmnist.info import DEFAULT_ROOT

    assert mm.resolve_root() == Path(DEFAULT_ROOT).expanduser()
    monkeypatch.setenv(mm.ROOT_ENV, "")  # empty counts as unset
    assert mm.resolve_root() == Path(DEFAULT_ROOT).expanduser()
    monkeypatch.setenv(mm.ROOT_ENV, str(tmp_path / "env"))
    assert mm.resolve_root() == tmp_path / "env"
    assert mm.resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert mm.resolve_root(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mm.resolve_root("~/data") == tmp_path / "data"


def test_loader_uses_env_root_unless_given_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_root, arg_root = tmp_path / "env", tmp_path / "arg"
    synthetic.write_synthetic_medmnist("pneumoniamnist", 28, env_root, splits=SMALL, seed=1)
    synthetic.write_synthetic_medmnist("pneumoniamnist", 28, arg_root, splits=SMALL, seed=2)
    monkeypatch.setenv(mm.ROOT_ENV, str(env_root))
    from_env = mm.load_medmnist("pneumoniamnist", 28, download_missing=False)
    from_arg = mm.load_medmnist("pneumoniamnist", 28, root=arg_root, download_missing=False)
    assert from_env.identity["file"] == str(env_root / "pneumoniamnist.npz")
    assert from_arg.identity["file"] == str(arg_root / "pneumoniamnist.npz")
    with pytest.raises(DatasetNotFoundError, match=str(env_root / "bloodmnist.npz")):
        mm.load_medmnist("bloodmnist", 28, download_missing=False)


# ------------------------------------------------------------------------------------------ downloading


class _Server:
    """A loopback HTTP server (127.0.0.1 only): ``routes[path] = (mode, body)``; mode ok | short (hangs up half-way) |
    404 | 500 | stall (the headers and a few bytes, then silence) | trickle (a byte every ``TRICKLE_S``, never
    idle for long). Counts requests. A stalled or trickling answer ends when the test does (``stop``) or after
    ``SLOW_FOR_S``."""

    TRICKLE_S = 0.1
    SLOW_FOR_S = 20.0

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                mode, body = server.routes.get(self.path, ("404", b""))
                if mode in ("404", "500"):
                    self.send_error(int(mode))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if mode == "short":  # promise more than is sent, then hang up
                    self.send_header("Content-Length", str(len(body) + 4096))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode in ("stall", "trickle"):
                    self._slowly(body, mode)
                    return
                self.wfile.write(body)

            def _slowly(self, body: bytes, mode: str) -> None:
                self.close_connection = True
                self.wfile.write(body[:16])
                self.wfile.flush()
                until = time.monotonic() + server.SLOW_FOR_S
                for i in range(16, len(body)):
                    if server.stop.wait(server.TRICKLE_S) or time.monotonic() > until:
                        return
                    if mode == "trickle":
                        try:
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            return

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True  # a slow answer still running does not hold the test's end
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(5)


@pytest.fixture
def payload(tmp_path: Path) -> tuple[bytes, str]:
    """A synthetic PneumoniaMNIST file's bytes and MD5, built outside the download root."""
    path = synthetic.write_synthetic_medmnist("pneumoniamnist", 28, tmp_path / "src", splits=SMALL, seed=5)
    return path.read_bytes(), mm.md5sum(path)


def _serve_as_official(monkeypatch: pytest.MonkeyPatch, server: _Server, body: bytes, md5: str,
                       mode: str = "ok") -> str:
    server.routes["/pneumoniamnist.npz"] = (mode, body)
    url = server.url("/pneumoniamnist.npz")
    monkeypatch.setattr(mm, "url_and_md5", lambda flag, size: (url, md5))
    return url


def test_download_lands_under_real_name(monkeypatch, tmp_path, server, payload) -> None:
    body, md5 = payload
    _serve_as_official(monkeypatch, server, body, md5)
    # The download hashes while streaming: neither it nor later loads hash the file again.
    monkeypatch.setattr(mm, "md5sum", lambda *a, **k: pytest.fail("re-hashed a file hashed while downloading"))
    root = tmp_path / "root"
    path, verified = mm.ensure_file("pneumoniamnist", 28, root)
    assert path == root / "pneumoniamnist.npz"
    assert verified is True
    assert path.read_bytes() == body
    assert sorted(os.listdir(root)) == [mm.VERIFIED_CACHE, "pneumoniamnist.npz"]  # no temporary file left
    bundle = mm.load_medmnist("pneumoniamnist", 28, root)
    assert bundle.identity["md5_verified"] is True
    assert bundle.identity["md5"] == md5
    assert len(server.requests) == 1  # the second call found the file


def test_download_function_directly(tmp_path, server, payload) -> None:
    body, md5 = payload
    server.routes["/f"] = ("ok", body)
    dest = tmp_path / "deep" / "er" / "pneumoniamnist_64.npz"
    mm.download(server.url("/f"), dest, md5, timeout=5)
    assert dest.read_bytes() == body
    assert sorted(os.listdir(dest.parent)) == [mm.VERIFIED_CACHE, dest.name]


def test_ensure_file_with_explicit_url(monkeypatch, tmp_path, server, payload) -> None:
    body, md5 = payload
    server.routes["/mirror/p.npz"] = ("ok", body)
    monkeypatch.setattr(mm, "url_and_md5", lambda flag, size: ("http://127.0.0.1:1/never-used", md5))
    path, verified = mm.ensure_file("pneumoniamnist", 28, tmp_path, url=server.url("/mirror/p.npz"))
    assert verified and path.read_bytes() == body
    assert server.requests == ["/mirror/p.npz"]


# problem -> (the server's mode, what the reason says)
PROBLEMS = {
    "interrupted": ("short", "download failed: transfer interrupted: "),
    "md5": ("ok", "download failed: MD5 mismatch: the server sent a file with MD5 "),
    "404": ("404", "download failed: the server answered HTTP 404 Not Found"),
    "500": ("500", "download failed: the server answered HTTP 500 Internal Server Error"),
    "stalled": ("stall", "download failed: no data for 1 s"),  # the idle timeout
    "trickling": ("trickle", "download failed: not complete after 1.5 s ("),  # never idle: the deadline
}


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_failed_download_leaves_nothing_and_is_tried_once(monkeypatch, tmp_path, server, payload, problem) -> None:
    body, md5 = payload
    mode, reason = PROBLEMS[problem]
    want_md5 = "0" * 32 if problem == "md5" else md5
    url = _serve_as_official(monkeypatch, server, body, want_md5, mode)
    monkeypatch.setenv(mm.DEADLINE_ENV, "1.5")
    root = tmp_path / "root"
    root.mkdir()
    t0 = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as err:
        mm.ensure_file("pneumoniamnist", 28, root, timeout=1)
    assert time.monotonic() - t0 < 4  # the trickle ran on for 20 s (forever, with a longer file)
    msg = str(err.value)
    assert f"({reason}" in msg, msg
    assert url in msg and want_md5 in msg and str(root / "pneumoniamnist.npz") in msg
    assert os.listdir(root) == []  # neither the real name nor a temporary (.part) file
    # Every later cell that needs the file skips at once with the first attempt's reason: one request a run.
    for _ in range(2):
        with pytest.raises(DatasetNotFoundError) as again:
            mm.load_medmnist("pneumoniamnist", 28, root)
        assert "download failed earlier in this run, not tried again: " + reason.removeprefix("download failed: ") \
            in str(again.value)
    assert server.requests == ["/pneumoniamnist.npz"]
    assert os.listdir(root) == []


def test_a_slow_download_that_finishes_inside_the_deadline_is_kept(monkeypatch, tmp_path, server, payload) -> None:
    """Neither limit cuts a download that is slow but alive and finishes in time (a trickle of a short file)."""
    body, md5 = payload
    monkeypatch.setattr(_Server, "TRICKLE_S", 0.001)
    short = body[:64]
    import hashlib

    _serve_as_official(monkeypatch, server, short, hashlib.md5(short).hexdigest(), "trickle")
    monkeypatch.setenv(mm.DEADLINE_ENV, "10")
    assert mm.download_deadline(None) == 10.0  # read per download
    mm.download(server.url("/pneumoniamnist.npz"), tmp_path / "f.npz", hashlib.md5(short).hexdigest(), timeout=1)
    assert (tmp_path / "f.npz").read_bytes() == short


def test_the_default_deadline_grows_with_the_announced_size(monkeypatch) -> None:
    assert mm.download_deadline(None) == mm.DEADLINE_BASE_S
    assert mm.download_deadline(8 << 30) == mm.DEADLINE_BASE_S + 8 * 1024  # 8 GiB at the 1 MiB/s floor
    monkeypatch.setenv(mm.DEADLINE_ENV, "nope")
    with pytest.raises(DataError, match="MEDFT_DOWNLOAD_DEADLINE"):
        mm.download_deadline(None)


def test_mirror_from_the_environment_or_the_run(monkeypatch, tmp_path, server, payload) -> None:
    """$MEDFT_MEDMNIST_URL (or --medmnist-url, RunEnv.medmnist_url) is a folder holding the official names."""
    from dataclasses import replace

    from medft_bench.run_env import RunEnv
    from medft_bench.runner import with_data_id
    from tests.helpers import tiny_cell

    body, md5 = payload
    server.routes["/mirror/pneumoniamnist.npz"] = ("ok", body)
    monkeypatch.setattr(mm, "url_and_md5", lambda flag, size: ("http://127.0.0.1:1/never-used", md5))
    monkeypatch.setenv(mm.URL_ENV, server.url("/mirror/"))
    path, verified = mm.ensure_file("pneumoniamnist", 28, tmp_path / "a")
    assert verified and path.read_bytes() == body
    monkeypatch.delenv(mm.URL_ENV)
    cfg = replace(tiny_cell(), synthetic=False, img_size=28)
    env = RunEnv(data_root=tmp_path / "b", medmnist_url=server.url("/mirror"))
    assert with_data_id(cfg, env).data_id == f"md5:{md5}"
    assert (tmp_path / "b" / "pneumoniamnist.npz").read_bytes() == body
    assert server.requests == ["/mirror/pneumoniamnist.npz"] * 2
    # The option, on the command line (pytest gets the same one from the option table).
    from medft_bench.__main__ import main

    assert main(["download", "--tier", "quick", "--datasets", "pneumoniamnist", "--img-size", "28", "--backbones",
                 "resnet18", "--weights", "random", "--data-root", str(tmp_path / "c"),
                 "--medmnist-url", server.url("/mirror")]) == 0
    assert (tmp_path / "c" / "pneumoniamnist.npz").read_bytes() == body
    assert server.requests == ["/mirror/pneumoniamnist.npz"] * 3


def _assert_not_found_message(msg: str, flag: str, size: int, url: str, md5: str, path: Path) -> None:
    assert flag in msg
    assert f"{size} px" in msg
    assert url in msg
    assert md5 in msg
    assert str(path) in msg


def test_unreachable_url_fails_fast_with_instructions(monkeypatch, tmp_path) -> None:
    url, md5 = "http://127.0.0.1:1/x", "d41d8cd98f00b204e9800998ecf8427e"
    monkeypatch.setattr(mm, "url_and_md5", lambda flag, size: (url, md5))
    t0 = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as err:
        mm.load_medmnist("pneumoniamnist", 64, tmp_path)
    assert time.monotonic() - t0 < 10
    _assert_not_found_message(str(err.value), "pneumoniamnist", 64, url, md5, tmp_path / "pneumoniamnist_64.npz")
    assert "download failed" in str(err.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("how", ["MEDFT_OFFLINE", "download_missing"])
def test_offline_never_touches_the_network(monkeypatch, tmp_path, server, payload, how) -> None:
    body, md5 = payload
    url = _serve_as_official(monkeypatch, server, body, md5)
    kwargs = {}
    if how == "MEDFT_OFFLINE":
        monkeypatch.setenv("MEDFT_OFFLINE", "1")
    else:
        kwargs["download_missing"] = False
    with pytest.raises(DatasetNotFoundError) as err:
        mm.load_medmnist("pneumoniamnist", 28, tmp_path, **kwargs)
    _assert_not_found_message(str(err.value), "pneumoniamnist", 28, url, md5, tmp_path / "pneumoniamnist.npz")
    with pytest.raises(DatasetNotFoundError):
        load_dataset("pneumoniamnist", 28, root=tmp_path, download=how != "download_missing")
    assert server.requests == []
    assert os.listdir(tmp_path) == ["src"]


def test_real_offline_message_names_zenodo(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        mm.load_medmnist("dermamnist", 128, tmp_path, download_missing=False)
    url, md5 = mm.url_and_md5("dermamnist", 128)
    assert "zenodo.org" in url
    _assert_not_found_message(str(err.value), "dermamnist", 128, url, md5, tmp_path / "dermamnist_128.npz")


# ------------------------------------------------------------------------------------------ MD5 memo


def test_md5_hashed_once_and_again_after_a_change(monkeypatch, tmp_path) -> None:
    path = synthetic.write_synthetic_medmnist("pneumoniamnist", 28, tmp_path, splits=SMALL, seed=0)
    calls: list[Path] = []
    real_md5sum = mm.md5sum

    def counting(p: Path, *args, **kwargs) -> str:
        calls.append(Path(p))
        return real_md5sum(p, *args, **kwargs)

    monkeypatch.setattr(mm, "md5sum", counting)
    first = mm.file_md5(path)
    assert first == real_md5sum(path) and len(calls) == 1
    assert (tmp_path / mm.VERIFIED_CACHE).is_file()
    assert mm.ensure_file("pneumoniamnist", 28, tmp_path, download_missing=False) == (path, False)
    assert mm.file_md5(path) == first
    mm.load_medmnist("pneumoniamnist", 28, tmp_path, download_missing=False)
    assert len(calls) == 1

    # New content (and so a new size or mtime): hashed again.
    synthetic.write_synthetic_medmnist("pneumoniamnist", 28, tmp_path, splits=SMALL, seed=1)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    second = mm.file_md5(path)
    assert len(calls) == 2 and second != first and second == real_md5sum(path)
    assert mm.file_md5(path) == second and len(calls) == 2

    # Same bytes, touched: the stamp changed, so it is hashed again (and gives the same MD5).
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert mm.file_md5(path) == second and len(calls) == 3


def test_corrupt_md5_memo_is_ignored(tmp_path) -> None:
    path = synthetic.write_synthetic_medmnist("pneumoniamnist", 28, tmp_path, splits=SMALL)
    (tmp_path / mm.VERIFIED_CACHE).write_text("{not json")
    assert mm.file_md5(path) == mm.md5sum(path)


# ------------------------------------------------------------------------------------------ bad inputs


def _arrays(flag: str = "pneumoniamnist", size: int = 28) -> dict[str, np.ndarray]:
    meta = mm.info(flag)
    return synthetic.make_arrays(meta["task"], mm.n_labels(flag), meta["n_channels"], size, SMALL, seed=0)


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **arrays)


def _truncated(path: Path) -> None:
    _save(path, _arrays())
    path.write_bytes(path.read_bytes()[:-200])


def _corrupted(path: Path) -> None:
    _save(path, _arrays())
    data = bytearray(path.read_bytes())
    for pos in range(200, len(data) - 400, 97):  # damage the compressed streams, keep the zip directory
        data[pos] ^= 0xFF
    path.write_bytes(bytes(data))


def _not_zip(path: Path) -> None:
    path.write_text("<html>404 not found</html>\n")


def _bare_npy(path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, _arrays()["train_images"])


def _missing_key(path: Path) -> None:
    arrays = _arrays()
    del arrays["test_labels"]
    _save(path, arrays)


def _float_images(path: Path) -> None:
    arrays = _arrays()
    arrays["val_images"] = arrays["val_images"].astype(np.float32)
    _save(path, arrays)


def _float_labels(path: Path) -> None:
    arrays = _arrays()
    arrays["train_labels"] = arrays["train_labels"].astype(np.float64)
    _save(path, arrays)


def _length_mismatch(path: Path) -> None:
    arrays = _arrays()
    arrays["train_labels"] = arrays["train_labels"][:-3]
    _save(path, arrays)


def _label_out_of_range(path: Path) -> None:
    arrays = _arrays()
    arrays["test_labels"][0, 0] = 2  # PneumoniaMNIST has classes 0 and 1
    _save(path, arrays)


def _negative_label(path: Path) -> None:
    arrays = _arrays()
    arrays["val_labels"][1, 0] = -1
    _save(path, arrays)


def _rgb_for_grey(path: Path) -> None:
    _save(path, _arrays("bloodmnist"))


def _not_square(path: Path) -> None:
    arrays = _arrays()
    arrays["train_images"] = arrays["train_images"][:, :, :20]
    _save(path, arrays)


def _empty_split(path: Path) -> None:
    arrays = _arrays()
    arrays["val_images"], arrays["val_labels"] = arrays["val_images"][:0], arrays["val_labels"][:0]
    _save(path, arrays)


def _mixed_sizes(path: Path) -> None:
    arrays = _arrays()
    arrays["test_images"] = _arrays(size=32)["test_images"]
    _save(path, arrays)


BAD_FILES = {
    "truncated": (_truncated, "truncated or corrupt"),
    "corrupted": (_corrupted, "truncated or corrupt"),
    "not-zip": (_not_zip, "not a readable MedMNIST .npz"),
    "bare-npy": (_bare_npy, "not an .npz archive"),
    "missing-key": (_missing_key, "missing arrays ['test_labels']"),
    "float-images": (_float_images, "val_images has dtype float32"),
    "float-labels": (_float_labels, "train_labels has dtype float64"),
    "length-mismatch": (_length_mismatch, "24 images but labels of shape (21, 1)"),
    "label-out-of-range": (_label_out_of_range, "test_labels range 0..2 is outside 0..1"),
    "negative-label": (_negative_label, "val_labels range -1..1 is outside 0..1"),
    "rgb-for-grey": (_rgb_for_grey, "expected (N, H, W) for 1-channel images"),
    "not-square": (_not_square, "not square: 28x20"),
    "empty-split": (_empty_split, "val: the split is empty"),
    "mixed-sizes": (_mixed_sizes, "different image sizes [28, 32]"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gives_clear_error_and_touches_nothing(tmp_path: Path, case: str) -> None:
    make, problem = BAD_FILES[case]
    path = tmp_path / "pneumoniamnist.npz"
    make(path)
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        mm.load_medmnist("pneumoniamnist", 28, tmp_path, download_missing=False)
    msg = str(err.value)
    assert str(path) in msg
    assert problem in msg
    assert not isinstance(err.value, DatasetNotFoundError)
    assert snapshot(tmp_path) == before  # nothing written (not even the MD5 memo), nothing deleted


def test_multi_label_values_outside_0_1(tmp_path: Path) -> None:
    arrays = _arrays("chestmnist")
    arrays["train_labels"][0, 3] = 2
    path = tmp_path / "chestmnist.npz"
    _save(path, arrays)
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match="values outside 0/1") as err:
        mm.load_medmnist("chestmnist", 28, tmp_path, download_missing=False)
    assert str(path) in str(err.value)
    assert snapshot(tmp_path) == before


def test_multi_label_wrong_label_count(tmp_path: Path) -> None:
    arrays = _arrays("chestmnist")
    arrays["val_labels"] = arrays["val_labels"][:, :13]
    _save(tmp_path / "chestmnist.npz", arrays)
    with pytest.raises(DataError, match="13 columns; this dataset has 14 labels"):
        mm.load_medmnist("chestmnist", 28, tmp_path, download_missing=False)


def test_file_of_the_wrong_size(tmp_path: Path) -> None:
    src = synthetic.write_synthetic_medmnist("pneumoniamnist", 28, tmp_path, splits=SMALL)
    path = tmp_path / "pneumoniamnist_64.npz"
    path.write_bytes(src.read_bytes())
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match="images are 28 px but 64 px were asked for") as err:
        mm.load_medmnist("pneumoniamnist", 64, tmp_path, download_missing=False)
    assert str(path) in str(err.value)
    assert snapshot(tmp_path) == before


def test_missing_file_offline(tmp_path: Path) -> None:
    synthetic.write_synthetic_medmnist("bloodmnist", 28, tmp_path, splits=SMALL)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        mm.load_medmnist("pneumoniamnist", 28, tmp_path, download_missing=False)
    assert str(tmp_path / "pneumoniamnist.npz") in str(err.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("size", [100, 32, 0])
def test_size_that_does_not_exist(tmp_path: Path, size: int) -> None:
    with pytest.raises(DataError) as err:
        mm.load_medmnist("pneumoniamnist", size, tmp_path)
    assert f"no {size} px files" in str(err.value)
    assert "28, 64, 128, 224" in str(err.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flag", ["pneumonia", "organmnist3d", "PathMNIST", ""])
def test_unknown_flag_lists_valid_flags(tmp_path: Path, flag: str) -> None:
    with pytest.raises(DataError) as err:
        mm.load_medmnist(flag, 28, tmp_path)
    assert isinstance(err.value, UnknownNameError)  # also catchable as an unknown name, like backbones
    msg = str(err.value)
    assert repr(flag) in msg
    valid = mm.flags()
    assert len(valid) == 12 and all(f in msg for f in valid)
    assert "3d" not in msg.split("valid", 1)[1]
    assert os.listdir(tmp_path) == []


def test_npz_keys_are_medmnist_keys() -> None:
    assert sorted(NPZ_KEYS) == sorted(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))
