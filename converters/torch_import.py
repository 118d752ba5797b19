"""PyTorch -> float Graph IR, through ONNX (one importer, one set of semantics).

`import_torch(module, example)` exports an ``nn.Module`` with TorchScript-based
``torch.onnx.export`` (the torch.export-based exporter needs onnxscript, which the core install
does not carry) and imports the ONNX graph. `load_pt2(path)` reads a ``.pt2`` archive with
`edgekit.converters.pt2_reader` (raw tensors, no unpickling; never ``torch.export.load``),
checks and deserializes its program with `edgekit.converters.pt2_program` (aten ops only) and
imports it with the input shapes recorded in the program's graph.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from edgekit.converters.onnx_import import import_onnx
from edgekit.converters.pt2_program import deserialize, program_inputs
from edgekit.converters.pt2_reader import MAX_MEMBER_BYTES, read_pt2
from edgekit.errors import ModelFormatError, UnsupportedError
from edgekit.ir import Graph

#: ONNX opset the exporter targets (HardSwish needs >= 14)
OPSET = 17


def _torch():
    from edgekit.extras import require

    return require("torch", extra="convert", purpose="importing a PyTorch model")


def export_onnx_bytes(module, example) -> bytes:
    """Export ``module`` (eval mode) called on ``example`` to ONNX bytes with static shapes."""
    torch = _torch()
    args = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    args = tuple(torch.as_tensor(np.asarray(a, dtype=np.float32)) if not isinstance(a, torch.Tensor)
                 else a for a in args)
    if isinstance(module, torch.nn.Module) and not isinstance(module, torch.fx.GraphModule):
        module = module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET,
                              do_constant_folding=True)
        except Exception as err:  # the exporter's own errors name the unsupported op
            raise UnsupportedError(f"torch.onnx.export failed for {type(module).__name__}:"
                                   f" {type(err).__name__}: {str(err).splitlines()[0]}") from None
    return buffer.getvalue()


def import_torch(module, example, name: str | None = None) -> Graph:
    """A float Graph IR of ``module`` for inputs shaped like ``example`` (NCHW for images)."""
    import onnx

    data = export_onnx_bytes(module, example)
    return import_onnx(onnx.load_model_from_string(data), source=type(module).__name__,
                       name=name or type(module).__name__)


def _frozen_class():
    torch = _torch()

    class Frozen(torch.nn.Module):
        """Holds an exported program's module outside the module tree: the TorchScript exporter
        switches modules to eval/train mode, which exported programs refuse; its weights are
        traced as constants instead."""

        def __init__(self, inner):
            super().__init__()
            for param in inner.parameters():
                param.requires_grad_(False)
            object.__setattr__(self, "_inner", inner)

        def forward(self, *args):
            return self._inner(*args)

    return Frozen


def _Frozen(inner):
    return _frozen_class()(inner)


def load_pt2(path: str | os.PathLike, verbose: bool = False) -> Graph:
    """Import a ``torch.export`` archive (``.pt2``) saved with ``torch.export.save``; torch's own
    log messages and warnings are shown only with ``verbose``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such file")
    archive = read_pt2(path)  # most hostile archives are refused before torch is imported
    with _quiet_torch(verbose):
        program = deserialize(archive)
        torch = _torch()
        example = []
        for name, shape, dtype in program_inputs(archive.program):
            count = int(np.prod(shape, dtype=np.float64)) * np.dtype(
                "<i2" if dtype == "bfloat16" else dtype).itemsize
            if count > MAX_MEMBER_BYTES:
                raise UnsupportedError(f"{path}: input {name!r} of shape {shape} is larger than"
                                       " edgekit converts")
            example.append(torch.zeros(shape, dtype=torch.bfloat16) if dtype == "bfloat16"
                           else torch.from_numpy(np.zeros(shape, dtype)))
        if not example:
            raise UnsupportedError(f"{path}: the exported program takes no tensor inputs")
        try:
            module = program.module()
        except Exception as err:
            raise ModelFormatError(f"{path}: the exported program does not build a module"
                                   f" ({type(err).__name__}: {str(err)[:200]})") from None
        data = export_onnx_bytes(_Frozen(module), tuple(example))
    import onnx

    return import_onnx(onnx.load_model_from_string(data), source=str(path), name=path.stem)


@contextlib.contextmanager
def _quiet_torch(verbose: bool):
    """torch's loggers and warnings silenced (they print tracebacks for errors edgekit reports
    itself), unless ``verbose``."""
    if verbose:
        yield
        return
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
