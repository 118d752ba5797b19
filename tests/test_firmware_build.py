"""Self-test firmware builds: every board, ELF sizes, the standalone Makefile, the known answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib

import numpy as np
import pytest

from edgekit.boards import list_boards, target_for
from edgekit.cli import main
from edgekit.errors import BuildError, ToolchainMissingError
from edgekit.firmware import selftest
from edgekit.firmware.elf import sizes

needs_toolchain = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None,
                                     reason="arm-none-eabi-gcc or make not installed")
BOARD_IDS = [b.id for b in list_boards()]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """One self-test build per board, shared by the tests below (about 1 s each)."""
    from edgekit.firmware.build import build_selftest

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("make") is None:
        pytest.skip("arm-none-eabi-gcc or make not installed")
    root = tmp_path_factory.mktemp("selftest")
    return {board_id: build_selftest(board_id, root / board_id) for board_id in BOARD_IDS}


@pytest.mark.parametrize("board_id", BOARD_IDS)
def test_selftest_builds_for_every_board(builds, board_id):
    result = builds[board_id]
    target = target_for(board_id)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest == result.manifest
    assert manifest["board"] == board_id and manifest["host_board"] == target.host.id
    assert (result.directory / manifest["elf"]) == result.elf_path and result.elf_path.is_file()
    case = selftest.make_case(manifest["workload"]["seed"])
    expected = selftest.expected_output(case)
    assert manifest["expected_outputs"] == [expected.hex()]
    assert manifest["expected_output_crc32s"] == [f"{zlib.crc32(expected):08x}"]
    assert manifest["arena_bytes"] == case.arena_bytes
    assert (result.directory / "Makefile").is_file() and (result.directory / "board.ld").is_file()


@pytest.mark.parametrize("board_id", BOARD_IDS)
def test_sizes_are_consistent_and_inside_the_board(builds, board_id):
    figures = sizes(builds[board_id].elf_path)
    target = target_for(board_id)
    by_name = {s.name: s for s in figures.sections}
    assert figures["flash_bytes"] == figures.flash_bytes
    assert figures.text_bytes == by_name[".text"].size > 1000
    assert figures.flash_bytes == figures.text_bytes + figures.rodata_bytes + figures.data_bytes
    assert figures.static_ram_bytes == figures.data_bytes + figures.bss_bytes
    assert figures.bss_bytes >= figures.arena_bytes == selftest.make_case().arena_bytes
    assert figures.stack_reserved_bytes == 8192
    # the self-test's filter and input are const: they are in flash, not RAM
    assert figures.rodata_bytes >= 8 * 3 * 3 * 3 + 8 * 8 * 3
    for section in figures.sections:
        regions = [target.flash] if section.kind == "flash" and not section.writable else list(target.sram)
        assert any(r.origin <= section.address and section.address + section.size <= r.end for r in regions), section


@needs_toolchain
def test_makefile_builds_standalone(builds, tmp_path):
    source = builds["nrf52840dk"].directory
    copy = tmp_path / "moved"
    shutil.copytree(source, copy)
    subprocess.run(["make", "-C", str(copy), "clean"], check=True, capture_output=True)
    assert not (copy / "firmware.elf").exists()
    subprocess.run(["make", "-C", str(copy)], check=True, capture_output=True)
    assert sizes(copy / "firmware.elf") == sizes(source / "firmware.elf")


def test_c_kernel_matches_python_reference_on_the_host(tmp_path):
    """Compile the payload with the host gcc and compare its output bytes with the Python answer."""
    if shutil.which("gcc") is None:
        pytest.skip("host gcc not installed")
    from importlib import resources

    c_root = resources.files("edgekit.firmware") / "c"
    for sub, name in (("harness", "edgekit_payload.h"), ("selftest", "selftest_payload.c")):
        (tmp_path / name).write_bytes((c_root / sub / name).read_bytes())
    case = selftest.make_case(7)  # a different seed from the firmware's
    (tmp_path / "selftest_data.h").write_text(selftest.c_header(case))
    (tmp_path / "host_main.c").write_text(
        '#include <stdio.h>\n#include "edgekit_payload.h"\n'
        "int main(void) { uint32_t n; edgekit_payload_setup(); edgekit_payload_run();\n"
        "  const uint8_t *out = edgekit_payload_output(0, &n);\n"
        '  for (uint32_t i = 0; i < n; ++i) printf("%02x", out[i]);\n  return 0;\n}\n')
    exe = tmp_path / "selftest_host"
    subprocess.run(["gcc", "-O2", "-std=c99", "-Wall", "-Werror", "-o", str(exe),
                    str(tmp_path / "host_main.c"), str(tmp_path / "selftest_payload.c")], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    assert out == selftest.expected_output(case).hex()


def test_requantisation_matches_exact_rational_rounding():
    rng = np.random.default_rng(0)
    assert selftest.quantize_multiplier(0.5) == (1 << 30, 0)
    assert selftest.quantize_multiplier(0.25) == (1 << 30, -1)
    for _ in range(500):
        real = float(rng.uniform(1e-4, 0.99))
        multiplier, shift = selftest.quantize_multiplier(real)
        x = int(rng.integers(-(1 << 20), 1 << 20))
        exact = x * multiplier / 2 ** (31 - shift)
        got = selftest.multiply_by_quantized_multiplier(x, multiplier, shift)
        # TFLite rounds twice (high multiply, then the right shift): off by less than one
        assert abs(got - exact) < 1, (x, multiplier, shift)
        if shift == 0:  # one rounding only: the nearest integer
            assert abs(got - exact) <= 0.5 + 1e-9
    # the double rounding, by hand: 150008 * 1368885578 / 2^31 = 95620.65 -> 95621, then /2 -> 47811
    assert selftest.multiply_by_quantized_multiplier(150008, 1368885578, -1) == 47811
    # RoundingDivideByPOT rounds halves away from zero; SRDHM saturates its one overflow case
    assert selftest._rounding_divide_by_pot(-3, 1) == -2 and selftest._rounding_divide_by_pot(3, 1) == 2
    assert selftest._rounding_divide_by_pot(-5, 2) == -1
    assert selftest._saturating_rounding_doubling_high_mul(-(2**31), -(2**31)) == 2**31 - 1
    # C-style truncation of negative products: -1 * 2^30 / 2^31 rounds to -1, not 0 or -0.5
    assert selftest._saturating_rounding_doubling_high_mul(-1, 1 << 30) == 0
    assert selftest._saturating_rounding_doubling_high_mul(-3, 1 << 30) == -1


@needs_toolchain
def test_selftest_runs_on_qemu_mps2_an386(builds):
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    result = builds["mps2-an386"]
    proc = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic",
                           "-semihosting-config", "enable=on,target=native", "-kernel", str(result.elf_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line and not line.startswith("@@"))
    assert records["output"] == result.manifest["expected_outputs"][0]
    assert records["arena_bytes"] == str(result.manifest["arena_bytes"])
    assert 0 < int(records["stack_peak_bytes"]) < 8192


def test_missing_toolchain_says_how_to_install(monkeypatch, tmp_path):
    from edgekit.firmware import build

    monkeypatch.setattr(build.shutil, "which", lambda tool: None)
    with pytest.raises(ToolchainMissingError, match="arm-none-eabi-gcc not found.*apt-get install"):
        build.build_selftest("mps2-an386", tmp_path)


def test_unsupported_console_and_bad_elf(tmp_path):
    from edgekit.firmware.build import build_selftest

    from dataclasses import replace

    from edgekit.boards import load_board, resolve_target
    from edgekit.firmware.build import bsp_files

    unsupported = resolve_target(replace(load_board("nrf52840dk"), bsp=None), emulated=False)
    with pytest.raises(BuildError, match="nrf52840dk: no board support.*'bsp'"):
        bsp_files(unsupported)
    missing = resolve_target(replace(load_board("nrf52840dk"), bsp="nosuchchip"), emulated=False)
    with pytest.raises(BuildError, match="board_nosuchchip.c, which does not exist"):
        bsp_files(missing)
    bogus = tmp_path / "not.elf"
    bogus.write_bytes(b"hello")
    with pytest.raises(BuildError, match="not.elf: not a readable ELF"):
        sizes(bogus)
    with pytest.raises(BuildError, match="no such ELF"):
        sizes(tmp_path / "missing.elf")


@needs_toolchain
def test_cli_build_json(tmp_path, capsys):
    assert main(["build", "--selftest", "--board", "rpi-pico", "-o", str(tmp_path / "pico"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "build" and payload["board"] == "rpi-pico"
    assert payload["unicorn"] == "cortex-m0" and payload["qemu_machine"] is None
    assert payload["flash_bytes"] == sizes(payload["elf_path"]).flash_bytes
    assert main(["build", "--board", "rpi-pico", "-o", str(tmp_path / "x")]) == 2  # no --selftest


@needs_toolchain
def test_fault_handler_reports_registers_on_qemu(builds, tmp_path):
    """A payload that writes to unmapped memory: the HardFault report names the bad address."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    faulty = tmp_path / "fault"
    shutil.copytree(builds["mps2-an386"].directory, faulty)
    payload = faulty / "src" / "selftest_payload.c"
    payload.write_text(payload.read_text().replace(
        "int edgekit_payload_run(void) {",
        "int edgekit_payload_run(void) {\n    *(volatile uint32_t *)0x70000000u = 1u;\n"
        "    (void)*(volatile uint32_t *)0x70000000u;"))
    subprocess.run(["make", "-C", str(faulty)], check=True, capture_output=True)
    proc = subprocess.run(["qemu-system-arm", "-M", "mps2-an386", "-nographic",
                           "-semihosting-config", "enable=on,target=native", "-kernel", str(faulty / "firmware.elf")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout
    lines = proc.stdout.splitlines()
    start = lines.index("@@EDGEKIT-FAULT kind=hardfault")
    registers = dict(item.split("=") for item in lines[start + 1].split())
    assert list(registers) == ["r0", "r1", "r2", "r3", "r12", "lr", "pc", "xpsr", "cfsr", "hfsr", "mmfar", "bfar"]
    assert registers["bfar"] == "0x70000000" and int(registers["cfsr"], 16) & 0x8200 == 0x8200
    assert lines[start + 2] == "@@EDGEKIT-END status=fault"
