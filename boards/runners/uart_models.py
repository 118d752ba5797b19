"""Console peripherals modelled for the Unicorn runner: just enough of each UART for a firmware
to print (transmit always ready, every written byte captured), nothing of receive or interrupts.

One class per register layout the BSP drives (`edgekit.boards.schema.CONSOLE_KINDS`). Each model
keeps a plain register file, so a firmware that writes a control register and reads it back sees
its value; the status registers the transmit loop polls always say "ready".
"""

from __future__ import annotations

from typing import Callable

from edgekit.errors import RunnerError

#: mapped size of a console peripheral window (one 4 KiB page covers every layout below)
WINDOW_BYTES = 0x1000


class UartModel:
    """Base: a register file; subclasses name the transmit register and the status overrides."""

    #: offset of the transmit data register
    tx_offset: int = 0
    #: offset -> value returned on read regardless of what was written (status registers)
    status: dict[int, int] = {}

    def __init__(self, emit: Callable[[bytes], None]):
        self.emit = emit
        self.registers: dict[int, int] = {}

    def read(self, mem, offset: int, size: int) -> int:
        if offset in self.status:
            return self.status[offset]
        return self.registers.get(offset, 0)

    def write(self, mem, offset: int, size: int, value: int) -> None:
        self.registers[offset] = value
        if offset == self.tx_offset:
            self.emit(bytes([value & 0xFF]))


class CmsdkUart(UartModel):
    """Arm CMSDK APB UART (MPS2/MPS3): DATA at 0x0, STATE at 0x4 (bit 0 TX full: never)."""

    tx_offset = 0x0
    status = {0x4: 0x0}


class Stm32Usart(UartModel):
    """STM32 F1/F2/F4 USART: SR at 0x0 (TXE bit 7, TC bit 6 always set), DR at 0x4."""

    tx_offset = 0x4
    status = {0x0: 0xC0}


class Stm32UsartV2(UartModel):
    """STM32 F7/L4/H7 USART: ISR at 0x1C (TXE bit 7, TC bit 6 always set), TDR at 0x28."""

    tx_offset = 0x28
    status = {0x1C: 0xC0}


class Pl011Uart(UartModel):
    """Arm PL011 (RP2040) and the Stellaris UART (same layout): DR at 0x0, FR at 0x18 reads
    TXFE|RXFE (transmit FIFO empty, never full or busy)."""

    tx_offset = 0x0
    status = {0x18: 0x90}


class NrfUarte(UartModel):
    """nRF52 UARTE (EasyDMA): STARTTX at 0x008 sends TXD.MAXCNT (0x548) bytes from TXD.PTR
    (0x544) at once; EVENTS_ENDTX (0x120) and EVENTS_TXSTARTED (0x150) always read 1, and
    TXD.AMOUNT (0x54C) reports the whole buffer sent."""

    tx_offset = -1
    status = {0x120: 1, 0x150: 1, 0x11C: 1}

    def read(self, mem, offset: int, size: int) -> int:
        if offset == 0x54C:
            return self.registers.get(0x548, 0)
        return super().read(mem, offset, size)

    def write(self, mem, offset: int, size: int, value: int) -> None:
        self.registers[offset] = value
        if offset == 0x008 and value:
            pointer, count = self.registers.get(0x544, 0), self.registers.get(0x548, 0)
            if not 0x2000_0000 <= pointer < 0x2004_0000:
                raise RunnerError(f"nRF UARTE: STARTTX with TXD.PTR={pointer:#010x}, outside data "
                                  "RAM: EasyDMA reads only RAM (the chip would send nothing)")
            self.emit(bytes(mem(pointer, count)))
        elif offset == 0x51C:  # legacy UART TXD register (nRF51-style driver)
            self.emit(bytes([value & 0xFF]))


UART_MODELS: dict[str, type[UartModel]] = {
    "cmsdk_uart": CmsdkUart,
    "stm32_usart": Stm32Usart,
    "stm32_usart_v2": Stm32UsartV2,
    "stm32_lpuart": Stm32UsartV2,
    "stellaris_uart": Pl011Uart,
    "pl011": Pl011Uart,
    "nrf_uarte": NrfUarte,
}


def uart_model(kind: str, emit: Callable[[bytes], None]) -> UartModel:
    """The model of console kind `kind` (a board's ``console.kind``), printing through `emit`."""
    try:
        return UART_MODELS[kind](emit)
    except KeyError:
        raise RunnerError(f"the Unicorn runner has no model of console kind {kind!r} "
                          f"(modelled: {', '.join(sorted(UART_MODELS))}, semihosting)") from None
