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
    """A loopback HTTP server: ``routes[path] = (mode, body)``; mode ok | short | 404. Counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                mode, body = server.routes.get(self.path, ("404", b""))
                if mode == "404":
                    self.send_error(404)
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
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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


@pytest.mark.parametrize("problem", ["interrupted", "md5", "404"])
def test_failed_download_leaves_nothing(monkeypatch, tmp_path, server, payload, problem) -> None:
    body, md5 = payload
    mode = {"interrupted": "short", "md5": "ok", "404": "404"}[problem]
    want_md5 = "0" * 32 if problem == "md5" else md5
    url = _serve_as_official(monkeypatch, server, body, want_md5, mode)
    root = tmp_path / "root"
    root.mkdir()
    t0 = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as err:
        mm.ensure_file("pneumoniamnist", 28, root, timeout=5)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert {"interrupted": "interrupted", "md5": "MD5 mismatch", "404": "404"}[problem] in msg
    assert url in msg and want_md5 in msg and str(root / "pneumoniamnist.npz") in msg
    assert os.listdir(root) == []  # neither the real name nor a temporary file
    with pytest.raises(DatasetNotFoundError):
        mm.load_medmnist("pneumoniamnist", 28, root)
    assert os.listdir(root) == []


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
