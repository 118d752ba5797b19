"""Bad input at scale: mutated MLPerf Tiny models through the importer and the CLI.

Every mutated file must end in a valid `Graph` (which must also survive export and re-import)
or an `EdgekitError` with a message; any other exception, or a hang, fails the test with the
mutation that caused it so it can be replayed (the generator is seeded).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections import Counter
from typing import Callable, Iterator

import numpy as np
import pytest

from edgekit.cli import main as cli_main
from edgekit.converters.tflite_reader import load_tflite_bytes
from edgekit.converters.tflite_writer import to_bytes
from edgekit.errors import EdgekitError
from edgekit.ir import Graph

from conftest import mlperf_path  # noqa: E402
SEEDS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite",
         "vww_96_int8.tflite"]
CASES_PER_MUTATOR = 150
TIME_BUDGET_S = 90

Mutator = Callable[[np.random.Generator, bytes], bytes]


def _flip_bytes(rng, data: bytes) -> bytes:
    out = bytearray(data)
    for pos in rng.integers(0, len(out), size=int(rng.integers(1, 9))):
        out[pos] ^= int(rng.integers(1, 256))
    return bytes(out)


def _flip_header_bytes(rng, data: bytes) -> bytes:
    """Flips in the first 2 KB, where the tables, vtables and offsets of the model live."""
    out = bytearray(data)
    for pos in rng.integers(0, min(len(out), 2048), size=int(rng.integers(1, 4))):
        out[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _truncate(rng, data: bytes) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


_WORDS = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000]


def _bad_offset(rng, data: bytes) -> bytes:
    """Overwrite one aligned 32-bit word (an offset, a length, an index...) with an extreme or
    random value, or with the file length (an offset just past the end)."""
    out = bytearray(data)
    pos = int(rng.integers(0, len(out) // 4)) * 4
    if rng.random() < 0.5:
        value = _WORDS[int(rng.integers(0, len(_WORDS)))]
    else:
        value = int(rng.choice([len(data), len(data) - 4, int(rng.integers(0, 1 << 32))]))
    out[pos:pos + 4] = struct.pack("<I", value & 0xFFFFFFFF)
    return bytes(out)


def _vtable_damage(rng, data: bytes) -> bytes:
    """Damage the vtable of the root table, of subgraph 0 or of one of its tensors/ops."""
    out = bytearray(data)
    root = struct.unpack_from("<I", out, 0)[0]
    tables = [root]
    try:  # find a few nested tables by following the (undamaged) offsets
        vt = root - struct.unpack_from("<i", out, root)[0]
        n_fields = (struct.unpack_from("<H", out, vt)[0] - 4) // 2
        for field in range(n_fields):
            off = struct.unpack_from("<H", out, vt + 4 + 2 * field)[0]
            if off and field in (1, 2, 4):  # operator_codes, subgraphs, buffers vectors
                vec = root + off + struct.unpack_from("<I", out, root + off)[0]
                count = struct.unpack_from("<I", out, vec)[0]
                for k in rng.integers(0, max(count, 1), size=2):
                    elem = vec + 4 + 4 * int(k)
                    tables.append(elem + struct.unpack_from("<I", out, elem)[0])
    except struct.error:
        pass
    table = tables[int(rng.integers(0, len(tables)))]
    vt = table - struct.unpack_from("<i", out, table)[0]
    if not 0 <= vt < len(out) - 8:
        return _bad_offset(rng, data)
    choice = rng.integers(0, 3)
    if choice == 0:  # vtable size / table size
        struct.pack_into("<H", out, vt + 2 * int(rng.integers(0, 2)), int(rng.integers(0, 1 << 16)))
    elif choice == 1:  # one field offset
        vt_size = struct.unpack_from("<H", out, vt)[0]
        slot = vt + 4 + 2 * int(rng.integers(0, max((vt_size - 4) // 2, 1)))
        if slot + 2 <= len(out):
            struct.pack_into("<H", out, slot, int(rng.integers(0, 1 << 16)))
    else:  # the table's soffset to its vtable
        struct.pack_into("<i", out, table, int(rng.integers(-(1 << 31), 1 << 31)))
    return bytes(out)


def _garbage(rng, data: bytes) -> bytes:
    size = int(rng.integers(0, 4096))
    junk = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
    if rng.random() < 0.5 and size >= 8:  # right identifier, nonsense body
        junk = junk[:4] + b"TFL3" + junk[8:]
    return junk


def _splice(rng, data: bytes) -> bytes:
    """Move a block of the file elsewhere (shifted offsets everywhere after it)."""
    a, b = sorted(int(v) for v in rng.integers(8, len(data), size=2))
    block = data[a:b]
    rest = data[:a] + data[b:]
    at = int(rng.integers(8, len(rest) + 1))
    return rest[:at] + block + rest[at:]


MUTATORS: dict[str, Mutator] = {
    "flip_bytes": _flip_bytes, "flip_header_bits": _flip_header_bytes, "truncate": _truncate,
    "bad_offset": _bad_offset, "vtable_damage": _vtable_damage, "garbage": _garbage,
    "splice": _splice,
}


def seed_models() -> dict[str, bytes]:
    return {n: mlperf_path(n).read_bytes() for n in SEEDS}


def mutated_cases(models: dict[str, bytes], per_mutator: int, seed: int
                  ) -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    names = sorted(models)
    yield "empty", b""
    for mutator_name, mutate in MUTATORS.items():
        for i in range(per_mutator):
            model = names[i % len(names)]
            yield f"{mutator_name}#{i} of {model}", mutate(rng, models[model])


def check_one(label: str, data: bytes, outcomes: Counter) -> None:
    try:
        graph = load_tflite_bytes(data, source=label)
    except EdgekitError as err:
        assert str(err).strip(), f"{label}: {type(err).__name__} with an empty message"
        outcomes[type(err).__name__] += 1
        return
    except Exception as err:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{label}: importer raised {type(err).__name__}: {err}")
    assert isinstance(graph, Graph)
    # a file the importer accepts is one we can write back and read again
    again = load_tflite_bytes(to_bytes(graph), source=f"{label} (re-exported)")
    assert [op.kind for op in again.ops] == [op.kind for op in graph.ops]
    outcomes["valid"] += 1


def test_fuzz_importer_with_mutated_mlperf_models():
    models = seed_models()
    outcomes: Counter = Counter()
    start = time.monotonic()
    for label, data in mutated_cases(models, CASES_PER_MUTATOR, seed=20261122):
        check_one(label, data, outcomes)
    elapsed = time.monotonic() - start
    total = sum(outcomes.values())
    print(f"\nfuzz: {total} mutated models in {elapsed:.1f} s: {dict(outcomes)}")
    assert total >= 1000
    assert outcomes["valid"] > 0, "no mutation kept the model valid: the mutators are too crude"
    rejected = total - outcomes["valid"]
    assert rejected > total // 4, f"only {rejected} of {total} rejected"
    assert outcomes["ModelFormatError"] > 0
    assert elapsed < TIME_BUDGET_S


def test_fuzz_cli_inspect(tmp_path, capsys):
    """A sample of mutated files through `edgekit inspect --json`: JSON or a one-line error."""
    models = seed_models()
    results: Counter = Counter()
    for i, (label, data) in enumerate(mutated_cases(models, 3, seed=7)):
        if i >= 20:
            break
        path = tmp_path / f"case{i}.tflite"
        path.write_bytes(data)
        rc = cli_main(["inspect", str(path), "--json"])
        out, err = capsys.readouterr()
        if rc == 0:
            payload = json.loads(out)
            assert payload["command"] == "inspect" and payload["ops"] is not None
            results["valid"] += 1
        else:
            assert rc == 1, f"{label}: exit status {rc}"
            assert err.startswith("edgekit inspect: error: ") and str(path) in err, (label, err)
            assert "Traceback" not in err
            results["rejected"] += 1
    assert sum(results.values()) == 20 and results["rejected"] > 0


def test_cli_inspect_subprocess_reports_corrupt_file(tmp_path):
    """A separate process, end to end: exit status 1 and one clear line on stderr."""
    path = tmp_path / "cut.tflite"
    path.write_bytes(seed_models()[sorted(seed_models())[0]][:5000])
    launcher = "import sys; from edgekit.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", launcher, "inspect", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "corrupt or truncated" in proc.stderr and "Traceback" not in proc.stderr
