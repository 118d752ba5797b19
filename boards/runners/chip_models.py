"""Register models of the peripherals a hardware build's board set-up touches, so that the
Unicorn runner can run the `--hardware` ELF of a real board (test fixtures, not emulators).

Each model knows exactly the registers its BSP (boards/bsp/board_<bsp>.c, the console driver,
the Cortex-M system registers of startup.S, runtime.c and cortex_m7_cache.h) reads or writes,
with their reset values. Everything else in the peripheral and system windows is unmodelled:
an access to it raises `RunnerError` naming the address, rather than reading zero, so a BSP
change that touches a new register fails here until the model learns it.

What the models do, per chip, is only what the BSP waits for or what a real chip would refuse:
ready bits follow their enable bits (HSE, PLL, over-drive, regulator), the clock switch status
follows the switch request, a peripheral whose bus clock is off refuses access (as its
registers do on the chip: writes ignored, reads zero), the core clock cannot switch to the
PLL with too few flash wait states, and the D-cache cannot be enabled before every set and way
was invalidated. Timing, interrupts and receive paths are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgekit.boards.runners.uart_models import WINDOW_BYTES, UartModel
from edgekit.errors import RunnerError

#: Cortex-M system control space registers the BSP uses (address -> reset value)
SCS_REGISTERS = {
    0xE000ED14: 0x0000_0200,  # SCB_CCR (STKALIGN)
    0xE000ED28: 0,            # CFSR (the fault handler reads it)
    0xE000ED2C: 0,            # HFSR
    0xE000ED34: 0,            # MMFAR
    0xE000ED38: 0,            # BFAR
    0xE000ED88: 0,            # CPACR
    0xE000EDFC: 0,            # DEMCR
    0xE000_1000: 0x4000_0000, # DWT_CTRL (NUMCOMP=4)
    0xE000_1004: 0,           # DWT_CYCCNT: not counted (the runner counts instructions)
}
#: Cortex-M7 cache identification and maintenance (32 KB 4-way D-cache, 32-byte lines)
M7_CACHE_REGISTERS = {0xE000ED80: (255 << 13) | (3 << 3) | 1, 0xE000ED84: 0}
M7_D_CACHE_SETS, M7_D_CACHE_WAYS = 256, 4
WRITE_ONLY = {0xE000_1FB0: "DWT_LAR", 0xE000EF50: "ICIALLU", 0xE000EF60: "DCISW"}


@dataclass
class Gate:
    """Registers [start, end) that answer only while `bit` of the register at `enable` is set."""

    start: int
    end: int
    enable: int
    bit: int
    name: str
    #: the bit holds the block in reset (RP2040 RESETS): it must be clear, not set
    active_low: bool = False

    def closed(self, registers: dict[int, int]) -> bool:
        return bool(registers[self.enable] >> self.bit & 1) == self.active_low


@dataclass
class ChipModel:
    """A register file over the modelled addresses, strict about everything else."""

    name: str
    registers: dict[int, int]
    console: UartModel | None = None
    console_base: int | None = None
    gates: list[Gate] = field(default_factory=list)
    #: address -> function(model, stored value) -> value read (ready and status bits)
    readers: dict[int, Callable[["ChipModel", int], int]] = field(default_factory=dict)
    #: address -> function(model, value) called after a write (checks, task registers)
    writers: dict[int, Callable[["ChipModel", int], None]] = field(default_factory=dict)
    m7_caches: bool = False
    invalidated: set = field(default_factory=set)
    #: extra address windows (start, end) outside the usual peripheral and system ones
    windows: tuple[tuple[int, int], ...] = ()
    #: the boot ROM's part, for a chip whose ROM runs a boot stage: (read) -> (sp, pc, copies)
    boot: Callable | None = None

    def __post_init__(self) -> None:
        self.registers = {**SCS_REGISTERS, **(M7_CACHE_REGISTERS if self.m7_caches else {}),
                          **self.registers}

    # --- the access path of the Unicorn runner ----------------------------------------------------

    def read(self, memory, address: int, size: int) -> int:
        if self._is_console(address):
            self._check_gate(address, "read")
            return self.console.read(memory, address - self.console_base, size)
        word, shift = self._word(address, size, "read")
        value = self.registers[word]
        if word in self.readers:
            value = self.readers[word](self, value)
        return (value >> shift) & ((1 << (8 * size)) - 1)

    def write(self, memory, address: int, size: int, value: int) -> None:
        if self._is_console(address):
            self._check_gate(address, "write")
            self.console.write(memory, address - self.console_base, size, value)
            return
        if address in WRITE_ONLY:
            self._system_write(address, value)
            return
        word, shift = self._word(address, size, "write")
        mask = ((1 << (8 * size)) - 1) << shift
        self.registers[word] = (self.registers[word] & ~mask) | ((value << shift) & mask)
        if word == 0xE000ED14:
            self._check_cache_enable(self.registers[word])
        if word in self.writers:
            self.writers[word](self, self.registers[word])

    # --- helpers --------------------------------------------------------------------------------

    def _is_console(self, address: int) -> bool:
        return self.console is not None and 0 <= address - self.console_base < WINDOW_BYTES

    def _word(self, address: int, size: int, access: str) -> tuple[int, int]:
        word = address & ~3
        if word not in self.registers:
            what = f" (write-only {WRITE_ONLY[address]})" if address in WRITE_ONLY else ""
            raise RunnerError(f"{self.name} model: {access} of unmodelled register "
                              f"{address:#010x}{what} ({size} bytes): the BSP touches a register "
                              "this test fixture does not know (boards/runners/chip_models.py)")
        self._check_gate(address, access)
        return word, 8 * (address & 3)

    def _check_gate(self, address: int, access: str) -> None:
        for gate in self.gates:
            if gate.start <= address < gate.end and gate.closed(self.registers):
                state = "held in reset" if gate.active_low else "bus clock is off"
                raise RunnerError(f"{self.name} model: {access} of {gate.name} register "
                                  f"{address:#010x} while its {state} (bit {gate.bit} of "
                                  f"{gate.enable:#010x}): the chip would ignore it")

    def _system_write(self, address: int, value: int) -> None:
        if WRITE_ONLY[address] == "DCISW" and self.m7_caches:
            self.invalidated.add(value)
        elif WRITE_ONLY[address] == "ICIALLU":
            self.invalidated.add("icache")
        elif WRITE_ONLY[address] != "DWT_LAR" and not self.m7_caches:
            raise RunnerError(f"{self.name} model: write to {WRITE_ONLY[address]} "
                              f"({address:#010x}), which this core does not have")

    def _check_cache_enable(self, ccr: int) -> None:
        if ccr >> 17 & 1 and "icache" not in self.invalidated:
            raise RunnerError(f"{self.name} model: I-cache enabled (SCB_CCR.IC) before ICIALLU")
        if ccr >> 16 & 1:
            wanted = {(way << 30) | (s << 5) for way in range(M7_D_CACHE_WAYS)
                      for s in range(M7_D_CACHE_SETS)}
            missing = wanted - self.invalidated
            if missing:
                raise RunnerError(f"{self.name} model: D-cache enabled (SCB_CCR.DC) with "
                                  f"{len(missing)} of {len(wanted)} set/way lines not invalidated")


def _follow(bits: tuple[tuple[int, int], ...]) -> Callable[[ChipModel, int], int]:
    """A reader whose ready bit `dst` reads as the value of enable bit `src` (the chip sets a
    ready flag once what it enabled is stable; the model at once)."""
    def read(model: ChipModel, value: int) -> int:
        for src, dst in bits:
            value = (value & ~(1 << dst)) | (((value >> src) & 1) << dst)
        return value
    return read


def _switch_status(sw_mask: int, sws_shift: int) -> Callable[[ChipModel, int], int]:
    """RCC_CFGR: SWS (the clock in use) reads as SW (the clock asked for)."""
    def read(model: ChipModel, value: int) -> int:
        return (value & ~(sw_mask << sws_shift)) | ((value & sw_mask) << sws_shift)
    return read


def _gpio(base: int, moder: int, ospeedr: int = 0) -> dict[int, int]:
    return {base + 0x00: moder, base + 0x08: ospeedr, base + 0x20: 0, base + 0x24: 0}


def stm32f746(console: UartModel, console_base: int) -> ChipModel:
    """STM32F746 (RM0385): RCC, PWR, FLASH_ACR, GPIOA/B, USART1."""
    rcc, pwr, flash_acr = 0x4002_3800, 0x4000_7000, 0x4002_3C00

    def check_switch(model: ChipModel, cfgr: int) -> None:
        if cfgr & 3 == 2 and model.registers[flash_acr] & 0xF < 7:
            raise RunnerError(f"{model.name} model: SYSCLK switched to the 216 MHz PLL with "
                              f"{model.registers[flash_acr] & 0xF} flash wait states (7 needed)")
        if cfgr & 3 == 2 and not model.registers[rcc] >> 24 & 1:
            raise RunnerError(f"{model.name} model: SYSCLK switched to the PLL while it is off")

    registers = {rcc + 0x00: 0x0000_0083, rcc + 0x04: 0x2400_3010, rcc + 0x08: 0,
                 rcc + 0x30: 0x0010_0000, rcc + 0x40: 0, rcc + 0x44: 0,
                 pwr + 0x00: 0x0000_C000, pwr + 0x04: 0, flash_acr: 0,
                 **_gpio(0x4002_0000, 0xA800_0000, 0x0C00_0000), **_gpio(0x4002_0400, 0x280, 0xC0)}
    gates = [Gate(pwr, pwr + 0x400, rcc + 0x40, 28, "PWR"),
             Gate(0x4002_0000, 0x4002_0400, rcc + 0x30, 0, "GPIOA"),
             Gate(0x4002_0400, 0x4002_0800, rcc + 0x30, 1, "GPIOB"),
             Gate(0x4001_1000, 0x4001_1400, rcc + 0x44, 4, "USART1")]
    readers = {rcc: _follow(((0, 1), (16, 17), (24, 25))), rcc + 0x08: _switch_status(3, 2),
               pwr + 0x04: lambda m, v: v | (m.registers[pwr] & (3 << 16))}
    return ChipModel("STM32F746", registers, console, console_base, gates, readers,
                     {rcc + 0x08: check_switch}, m7_caches=True)


def stm32h743(console: UartModel, console_base: int) -> ChipModel:
    """STM32H743 revision V (RM0433): RCC, PWR, SYSCFG_PWRCR, FLASH_ACR, DBGMCU_IDCODE, GPIOD,
    USART3."""
    rcc, pwr, flash_acr = 0x5802_4400, 0x5802_4800, 0x5200_2000

    def check_switch(model: ChipModel, cfgr: int) -> None:
        if cfgr & 7 == 3 and model.registers[flash_acr] & 0xF < 4:
            raise RunnerError(f"{model.name} model: SYSCLK switched to PLL1 (480 MHz, AXI 240 "
                              f"MHz) with {model.registers[flash_acr] & 0xF} flash wait states "
                              "(4 needed)")

    registers = {rcc + 0x000: 0x0000_0025, rcc + 0x010: 0, rcc + 0x018: 0, rcc + 0x01C: 0,
                 rcc + 0x020: 0, rcc + 0x028: 0x0202_0200, rcc + 0x02C: 0x01FF_0000,
                 rcc + 0x030: 0x0101_0280, rcc + 0x0E0: 0, rcc + 0x0E8: 0, rcc + 0x0F4: 0,
                 pwr + 0x04: 0, pwr + 0x0C: 0x0000_0046, pwr + 0x18: 0x0000_4000,
                 0x5800_042C: 0, flash_acr: 0x37, 0x5C00_1000: 0x2003_6450,
                 **_gpio(0x5802_0C00, 0xFFFF_FFFF)}
    gates = [Gate(0x5800_0400, 0x5800_0800, rcc + 0x0F4, 1, "SYSCFG"),
             Gate(0x5802_0C00, 0x5802_1000, rcc + 0x0E0, 3, "GPIOD"),
             Gate(0x4000_4800, 0x4000_4C00, rcc + 0x0E8, 18, "USART3")]
    readers = {rcc: _follow(((0, 2), (24, 25))), rcc + 0x010: _switch_status(7, 3),
               pwr + 0x04: lambda m, v: v | (1 << 13), pwr + 0x18: lambda m, v: v | (1 << 13)}
    return ChipModel("STM32H743", registers, console, console_base, gates, readers,
                     {rcc + 0x010: check_switch}, m7_caches=True)


def stm32l4r5(console: UartModel, console_base: int) -> ChipModel:
    """STM32L4R5 (RM0432): RCC, PWR (range 1 boost, VDDIO2), FLASH_ACR, GPIOG, LPUART1."""
    rcc, pwr, flash_acr, gpiog = 0x4002_1000, 0x4000_7000, 0x4002_2000, 0x4800_1800

    def check_switch(model: ChipModel, cfgr: int) -> None:
        if cfgr & 3 != 3 or cfgr >> 2 & 3 == 3:
            return  # not a switch to the PLL
        if model.registers[flash_acr] & 0xF < 5:
            raise RunnerError(f"{model.name} model: SYSCLK switched to the 120 MHz PLL with "
                              f"{model.registers[flash_acr] & 0xF} flash wait states (5 needed)")
        if model.registers[pwr + 0x80] >> 8 & 1:
            raise RunnerError(f"{model.name} model: SYSCLK switched to 120 MHz outside range 1 "
                              "boost mode (PWR_CR5.R1MODE set)")
        if cfgr >> 4 & 0xF != 8:
            raise RunnerError(f"{model.name} model: switch above 80 MHz without the AHB /2 step")

    def switch_status(model: ChipModel, value: int) -> int:
        return (value & ~(3 << 2)) | ((value & 3) << 2)

    def check_vddio2(model: ChipModel, value: int) -> None:
        if not model.registers[pwr + 0x04] >> 9 & 1:
            raise RunnerError(f"{model.name} model: port G configured with VDDIO2 not declared "
                              "valid (PWR_CR2.IOSV clear): PG2..PG15 are unpowered")

    registers = {rcc + 0x00: 0x0000_0063, rcc + 0x08: 0, rcc + 0x0C: 0x0000_1000,
                 rcc + 0x4C: 0, rcc + 0x58: 0, rcc + 0x5C: 0,
                 pwr + 0x00: 0x0000_0200, pwr + 0x04: 0, pwr + 0x14: 0, pwr + 0x80: 0x0000_0100,
                 flash_acr: 0x0000_0600, **_gpio(gpiog, 0xFFFF_FFFF)}
    gates = [Gate(pwr, pwr + 0x400, rcc + 0x58, 28, "PWR"),
             Gate(gpiog, gpiog + 0x400, rcc + 0x4C, 6, "GPIOG"),
             Gate(0x4000_8000, 0x4000_8400, rcc + 0x5C, 0, "LPUART1")]
    readers = {rcc: _follow(((8, 10), (24, 25))), rcc + 0x08: lambda m, v: switch_status(m, v)}
    writers = {rcc + 0x08: check_switch, gpiog: check_vddio2, gpiog + 0x24: check_vddio2}
    return ChipModel("STM32L4R5", registers, console, console_base, gates, readers, writers)


def nrf52840(console: UartModel, console_base: int) -> ChipModel:
    """nRF52840 (PS v1.7): CLOCK HFCLKSTART and its event, GPIO P0 OUTSET and PIN_CNF, UARTE0."""
    start, started = 0x4000_0000, 0x4000_0100

    def hfclk_start(model: ChipModel, value: int) -> None:
        if value & 1:
            model.registers[started] = 1

    registers = {start: 0, started: 0, 0x5000_0508: 0,
                 **{0x5000_0700 + 4 * pin: 0x2 for pin in range(32)}}
    return ChipModel("nRF52840", registers, console, console_base, writers={start: hfclk_start})


class Rp2040Model(ChipModel):
    """RP2040 peripherals answer at four aliases: +0x1000 XOR, +0x2000 set, +0x3000 clear."""

    def write(self, memory, address: int, size: int, value: int) -> None:
        alias = (address >> 12) & 3 if 0x4000_0000 <= address < 0x5000_0000 else 0
        if alias == 0:
            super().write(memory, address, size, value)
            return
        base = address & ~0x3000
        current = self.read(memory, base, 4) if (base & ~3) in self.registers else 0
        combined = {1: current ^ value, 2: current | value, 3: current & ~value}[alias]
        super().write(memory, base, 4, combined)


def rp2040(console: UartModel, console_base: int) -> ChipModel:
    """RP2040 (datasheet): the boot ROM's check and copy of the boot stage, XIP SSI, VTOR,
    RESETS, XOSC, CLOCKS, PLL_SYS, IO_BANK0, UART0."""
    resets, xosc, clocks, pll, ssi = 0x4000_C000, 0x4002_4000, 0x4000_8000, 0x4002_8000, 0x1800_0000

    def boot(read) -> tuple[int, int, list[tuple[int, bytes]]]:
        from edgekit.firmware.boot2 import crc32_mpeg2

        stage = read(0x1000_0000, 256)
        declared = int.from_bytes(stage[252:], "little")
        if crc32_mpeg2(stage[:252]) != declared:
            raise RunnerError(f"RP2040 boot ROM model: the boot stage's CRC-32 {declared:#010x} "
                              f"does not match its 252 bytes ({crc32_mpeg2(stage[:252]):#010x}): "
                              "the chip would not boot from flash")
        return 0x2004_2000, 0x2004_1F00 | 1, [(0x2004_1F00, stage)]

    def ssi_config(model: ChipModel, value: int) -> None:
        if model.registers[ssi + 0x08] & 1:
            raise RunnerError(f"{model.name} model: XIP SSI configured while enabled (SSIENR=1)")

    def vtor(model: ChipModel, value: int) -> None:
        r = model.registers
        if not (r[ssi + 0x08] & 1 and r[ssi] >> 8 & 3 == 3 and r[ssi + 0xF4] >> 24 == 0x03):
            raise RunnerError(f"{model.name} model: the boot stage entered the firmware "
                              "(VTOR) before setting up XIP reads (SSI on, EEPROM mode, 03h)")

    def sys_switch(model: ChipModel, value: int) -> None:
        r = model.registers
        if value & 1 and not (r[pll] >> 31 & 1 or pll_locked(model, r[pll]) >> 31 & 1):
            raise RunnerError(f"{model.name} model: clk_sys switched to the PLL before it locked")
        if value & 1 and r[pll + 0x4] >> 3 & 1:
            raise RunnerError(f"{model.name} model: clk_sys switched to the PLL with its post "
                              "dividers powered down")

    def pll_locked(model: ChipModel, value: int) -> int:
        power = model.registers[pll + 0x4]
        locked = not power & 0x21 and 16 <= model.registers[pll + 0x8] <= 320
        return value | (1 << 31) if locked else value & ~(1 << 31)

    registers = {
        0xE000ED08: 0, 0xE000E010: 0, 0xE000E014: 0, 0xE000E018: 0,  # VTOR, SysTick
        ssi + 0x00: 0x0007_0000, ssi + 0x04: 0, ssi + 0x08: 1, ssi + 0x14: 0, ssi + 0xF4: 0x0300_0000,
        resets + 0x0: 0x01FF_FFFF, resets + 0x8: 0,
        xosc + 0x0: 0, xosc + 0x4: 0, xosc + 0xC: 0,
        clocks + 0x30: 0, clocks + 0x38: 0, clocks + 0x3C: 0, clocks + 0x44: 0, clocks + 0x48: 0,
        pll + 0x0: 0, pll + 0x4: 0x2D, pll + 0x8: 0, pll + 0xC: 0x0007_7000,
        0x4001_4004: 0x1F, 0x4001_400C: 0x1F,
    }
    gates = [Gate(pll, pll + 0x4000, resets, 12, "PLL_SYS", active_low=True),
             Gate(0x4001_4000, 0x4001_8000, resets, 5, "IO_BANK0", active_low=True),
             Gate(0x4003_4000, 0x4003_8000, resets, 22, "UART0", active_low=True)]
    readers = {resets + 0x8: lambda m, v: ~m.registers[resets] & 0x01FF_FFFF,
               xosc + 0x4: lambda m, v: (1 << 31) if m.registers[xosc] >> 12 == 0xFAB else 0,
               clocks + 0x38: lambda m, v: 1 << (m.registers[clocks + 0x30] & 3),
               clocks + 0x44: lambda m, v: 1 << (m.registers[clocks + 0x3C] & 1),
               pll: pll_locked,
               # SysTick does not count here (the runner counts instructions): CVR = reload
               0xE000E018: lambda m, v: m.registers[0xE000E014]}
    writers = {**{ssi + off: ssi_config for off in (0x00, 0x04, 0x14, 0xF4)}, 0xE000ED08: vtor,
               clocks + 0x3C: sys_switch}
    return Rp2040Model("RP2040", registers, console, console_base, gates, readers, writers,
                       windows=((ssi, ssi + 0x1000),), boot=boot)


#: board `bsp` value -> model factory
CHIP_MODELS = {"stm32f746": stm32f746, "stm32h743": stm32h743, "stm32l4r5": stm32l4r5,
               "nrf52840": nrf52840, "rp2040": rp2040}


def chip_model(bsp: str, console: UartModel, console_base: int) -> ChipModel:
    """The model of the chip of BSP `bsp`, with its console UART at `console_base`."""
    try:
        return CHIP_MODELS[bsp](console, console_base)
    except KeyError:
        raise RunnerError(f"the Unicorn runner has no register model of BSP {bsp!r} (models: "
                          f"{', '.join(sorted(CHIP_MODELS))})") from None
