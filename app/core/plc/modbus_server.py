"""The PLC link over Modbus TCP (pymodbus), on 127.0.0.1:5020 unless configured.

Modbus TCP has no security of its own: anyone who can reach the port can trigger the
station and read results. So it listens on the loopback interface by default; bind it
to the PLC network's interface (`--plc modbus://192.168.0.10:502`) only on a network
that is the PLC's alone (a separate cell network or VLAN, or a firewall rule admitting
the PLC's address). docs/plc.md has the map; app.core.plc.signals is its definition.

The server runs its own asyncio loop on a thread. pymodbus calls `_action` for every
request: a write updates the control word (coils 0..15 OR holding register 0) and the
model number (holding register 1) and hands them to the PlcLink, which acts on the
edges before the write is answered; a read is filled from PlcLink.outputs() at that
moment.

*base* moves the whole map (coils, discrete inputs and both register tables) up by that
many addresses: some PLC programs count Modbus addresses from 1, others reserve a range
for the station. The map keeps its order; only its first address changes.
"""

from __future__ import annotations

import logging
from typing import Any

from app.core.plc.loop_thread import LoopThreadServer
from app.core.plc.link import PlcLink
from app.core.plc.signals import (
    CONTROL_WORD_REGISTER,
    HOLDING_REGISTERS,
    INPUT_BITS,
    INPUT_REGISTERS,
    MODEL_NUMBER_REGISTER,
    OUTPUT_BITS,
    output_registers,
    pack_bits,
)

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5020  # 502 needs root on Linux; PLCs let you choose the port
_COILS = (1, 5, 15)
_DISCRETE = (2,)
_HOLDING = (3, 6, 16, 22, 23)
_INPUT = (4,)
MAX_BASE = 65535 - 64  # the map (19 input registers, 16 bits) must fit below 65536


class ModbusServer(LoopThreadServer):
    """Serves a PlcLink over Modbus TCP until stop()."""

    name = "Modbus"

    def __init__(self, link: PlcLink, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, base: int = 0) -> None:
        super().__init__()
        self.link = link
        self.host, self.port = host, int(port)
        if not 0 <= int(base) <= MAX_BASE:
            raise ValueError(f"the Modbus address base is 0..{MAX_BASE}, not {base}")
        self.base = int(base)
        # The control word as written through coils; it starts with the link's presets
        # (`lineside run --trigger-enabled / --handshake`), so a PLC writing only the
        # trigger coil does not clear them. A PLC using holding register 0 instead should
        # set those bits itself and run the station without the presets.
        inputs = link.inputs()
        self._coils = pack_bits(inputs, INPUT_BITS)
        self._holding = [0] * HOLDING_REGISTERS
        self._holding[MODEL_NUMBER_REGISTER] = inputs["model_number"]
        self.requests = 0

    @property
    def url(self) -> str:
        return f"modbus://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "ModbusServer":
        self._start_thread(timeout, f"{self.host}:{self.port}")
        log.info("Modbus TCP server on %s:%d", self.host, self.port)
        return self

    async def _shutdown(self) -> None:
        await self._server.shutdown()

    async def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        device = SimDevice(
            0,  # every unit id
            simdata=(
                [SimData(self.base, count=16, values=False, datatype=DataType.BITS)],  # coils
                [SimData(self.base, count=16, values=False, datatype=DataType.BITS)],  # discrete inputs
                [SimData(self.base, count=HOLDING_REGISTERS, values=0, datatype=DataType.REGISTERS)],
                [SimData(self.base, count=INPUT_REGISTERS, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._action,
        )
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    async def _action(self, fc: int, start: int, address: int, count: int,
                      registers: list[int], values: list | None) -> Any:
        """pymodbus calls this before every read and write (see the module docstring)."""
        self.requests += 1
        address -= self.base
        if values is not None:  # a write: take it in before it is answered
            if fc in _COILS:
                word = self._coils
                for i, value in enumerate(values):
                    bit = address + i
                    word = (word | (1 << bit)) if value else (word & ~(1 << bit))
                self._coils = word & 0xFFFF
            elif fc in _HOLDING:
                for i, value in enumerate(values):
                    self._holding[address + i] = int(value) & 0xFFFF
            self.link.set_control_word(self._coils | self._holding[CONTROL_WORD_REGISTER],
                                       self._holding[MODEL_NUMBER_REGISTER])
            return None
        if fc in _COILS:
            self._put_bits(registers, self._coils)
        elif fc in _DISCRETE:
            self._put_bits(registers, pack_bits(self.link.outputs(), OUTPUT_BITS))
        elif fc in _HOLDING:
            registers[:HOLDING_REGISTERS] = self._holding
        elif fc in _INPUT:
            registers[:INPUT_REGISTERS] = output_registers(self.link.outputs())
        return None

    def _put_bits(self, registers: list[int], word: int) -> None:
        """pymodbus keeps a bit table in whole registers starting at a multiple of 16
        below the base: the 16 bits go in at the base's place in those registers."""
        bits = word << (self.base % 16)
        registers[0] = bits & 0xFFFF
        if len(registers) > 1:
            registers[1] = (bits >> 16) & 0xFFFF


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "INPUT_BITS", "ModbusServer"]  # INPUT_BITS: the control word's bits
