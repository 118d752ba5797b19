"""Untrusted model and data files: loading never runs code from the file.

Each booby-trapped file carries a pickle whose ``__reduce__`` would create a marker file; the
tests check that edgekit refuses the file with a `ModelFormatError` naming it and that the marker
never appears (so nothing was executed), and that no output file is left behind.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgekit.cli import main  # noqa: E402
from edgekit.converters.pt2_guard import check_pt2  # noqa: E402
from edgekit.errors import ModelFormatError  # noqa: E402


class _Trap:
    """Unpickling this calls ``open(marker, "w")``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tiny_pt2(path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()).eval()
    torch.export.save(torch.export.export(model, (torch.randn(1, 1, 6, 6),)), str(path))


def _replace_member(src, dst, suffix: str, payload: bytes):
    """Copy the zip ``src`` to ``dst`` with the member ending in ``suffix`` replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        hit = False
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(suffix):
                data, hit = payload, True
            zout.writestr(info, data)
    assert hit, f"test setup: no member ending in {suffix}"


def _convert(tmp_path, model_path, capsys):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((2, 1, 6, 6), np.float32))
    out = tmp_path / "out.tflite"
    code = main(["convert", str(model_path), "--calib", str(calib), "-o", str(out)])
    return code, out, capsys.readouterr().err


def test_plain_pickle_pt_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    model = tmp_path / "model.pt"
    model.write_bytes(pickle.dumps({"weight": _Trap(marker)}))
    code, out, err = _convert(tmp_path, model, capsys)
    assert code != 0 and "refused" in err and "model.pt" in err
    assert not marker.exists() and not out.exists()


def test_torch_save_zip_with_trap_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    model = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2), "evil": _Trap(marker)}, model)
    code, out, err = _convert(tmp_path, model, capsys)
    assert code != 0 and "refused" in err
    assert not marker.exists() and not out.exists()


def test_state_dict_is_not_a_graph(tmp_path, capsys):
    model = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, model)
    code, out, err = _convert(tmp_path, model, capsys)
    assert code != 0 and "state dict" in err and not out.exists()


def test_clean_pt2_passes_the_guard(tmp_path):
    path = tmp_path / "ok.pt2"
    _tiny_pt2(path)
    check_pt2(path)  # no error


def test_pt2_with_trapped_sample_inputs_is_refused(tmp_path, capsys):
    # torch.export.load would retry these with weights_only=False and run the trap
    marker = tmp_path / "pwned"
    clean, bad = tmp_path / "clean.pt2", tmp_path / "model.pt2"
    _tiny_pt2(clean)
    buf = io.BytesIO()
    torch.save(((_Trap(marker),), {}), buf)
    _replace_member(clean, bad, "sample_inputs/model.pt", buf.getvalue())
    with pytest.raises(ModelFormatError, match="sample_inputs/model.pt.*refused"):
        check_pt2(bad)
    code, out, err = _convert(tmp_path, bad, capsys)
    assert code != 0 and "refused" in err
    assert not marker.exists() and not out.exists()


def test_pt2_with_pickled_weight_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    clean, bad = tmp_path / "clean.pt2", tmp_path / "model.pt2"
    _tiny_pt2(clean)
    with zipfile.ZipFile(clean) as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("_weights_config.json"))
        import json
        cfg = json.loads(z.read(cfg_name))
        first = next(iter(cfg["config"].values()))
        first["use_pickle"] = True
        weight_member = cfg_name.rsplit("/", 1)[0] + "/" + first["path_name"]
    buf = io.BytesIO()
    torch.save(_Trap(marker), buf)
    mid = tmp_path / "mid.pt2"
    _replace_member(clean, mid, cfg_name, json.dumps(cfg).encode())
    _replace_member(mid, bad, weight_member, buf.getvalue())
    with pytest.raises(ModelFormatError, match="refused"):
        check_pt2(bad)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x00" * 64])
def test_corrupt_pt2_is_a_format_error(tmp_path, capsys, content):
    bad = tmp_path / "model.pt2"
    bad.write_bytes(content)
    with pytest.raises(ModelFormatError, match="model.pt2"):
        check_pt2(bad)


def test_pickled_calibration_array_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    calib = tmp_path / "calib.npy"
    np.save(calib, np.array([_Trap(marker)], dtype=object), allow_pickle=True)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")  # never reached: any model file; calibration is read after the model
    out = tmp_path / "out.tflite"
    from edgekit.cli.convert import load_calibration
    with pytest.raises(ModelFormatError, match="pickled"):
        load_calibration(calib)
    assert not marker.exists() and not out.exists()


def test_torch_export_load_alone_would_run_the_trap(tmp_path):
    """Why `check_pt2` exists: torch.export.load retries a failed safe load of the sample inputs
    with weights_only=False and so runs the trap (torch 2.13). If a later torch stops doing that,
    this test fails and the guard can be reconsidered."""
    marker = tmp_path / "pwned"
    clean, bad = tmp_path / "clean.pt2", tmp_path / "model.pt2"
    _tiny_pt2(clean)
    buf = io.BytesIO()
    torch.save(((_Trap(marker),), {}), buf)
    _replace_member(clean, bad, "sample_inputs/model.pt", buf.getvalue())
    try:
        torch.export.load(str(bad))
    except Exception:
        pass
    assert marker.exists()
