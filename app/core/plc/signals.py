"""The PLC signal map: one definition for Modbus TCP, OPC UA, the docs and the tests.

The signals are the ones line integrators know from smart cameras: the PLC writes
trigger, trigger enable, result acknowledge, reset counters and a model (recipe)
selection; the station answers with ready, busy, trigger acknowledge, result valid,
PASS / FAIL, the defect class code, the score (0..10000), the inspection id, a
heartbeat, an error code and the missed-trigger count. docs/plc.md is the readable
version of this file (with the timing diagram).

Modbus TCP (unit id: any)
- Inputs (PLC -> station) are bits 0..15 of the *control word*: holding register 0,
  and the same bits as coils 0..15. The station sees coil OR register bit, so a PLC
  uses whichever its function blocks offer (FC 5/15 or FC 6/16).
- Holding register 1: the model number for select model (N = "vN", 0 = production).
- Outputs (station -> PLC) are bits 0..15 of the *status word*: input register 0,
  and the same bits as discrete inputs 0..15; then input registers 1.. (below).
  32-bit values take two registers, high word first.

OPC UA: the same names as variables under Objects/Lineside/Inputs and
Objects/Lineside/Outputs (see app.core.plc.opcua_server).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

BOOL, U16, U32 = "bool", "u16", "u32"
IN, OUT = "in", "out"

# Modbus addresses (0-based, as on the wire)
CONTROL_WORD_REGISTER = 0  # holding register: input bits (= coils 0..15)
MODEL_NUMBER_REGISTER = 1  # holding register
STATUS_WORD_REGISTER = 0  # input register: output bits (= discrete inputs 0..15)
HOLDING_REGISTERS = 2
SCORE_SCALE = 10000


@dataclass(frozen=True)
class Signal:
    name: str  # python name, also the key in PlcLink.outputs() / set_inputs()
    direction: str  # IN (PLC -> station) or OUT (station -> PLC)
    kind: str  # BOOL, U16, U32
    address: int  # BOOL: bit of the control/status word (= coil / discrete input);
    #               words: holding register (IN) or input register (OUT)
    opcua: str  # browse name of the OPC UA variable
    doc: str


INPUTS: tuple[Signal, ...] = (
    Signal("trigger", IN, BOOL, 0, "Trigger",
           "Rising edge: inspect the next part (all views). Hold it until TriggerAck rises, then clear it."),
    Signal("trigger_enable", IN, BOOL, 1, "TriggerEnable",
           "1: triggers are accepted. A trigger while 0 is counted as missed (error 3)."),
    Signal("result_ack", IN, BOOL, 2, "ResultAck",
           "Handshake on: rising edge = the PLC has read the result; clear it after ResultValid falls."),
    Signal("reset_counters", IN, BOOL, 3, "ResetCounters",
           "Rising edge: parts, PASS, FAIL, missed triggers and per-class counts go to 0."),
    Signal("select_model", IN, BOOL, 4, "SelectModel",
           "Rising edge: load model number ModelNumber (0 = production). ModelSelected follows it."),
    Signal("handshake", IN, BOOL, 5, "HandshakeEnable",
           "1: each result stays valid (and later ones wait in a buffer) until ResultAck; 0: latest result only."),
    Signal("model_number", IN, U16, MODEL_NUMBER_REGISTER, "ModelNumber",
           "Model for SelectModel: N means version vN, 0 the project's production model."),
)  # fmt: skip

OUTPUTS: tuple[Signal, ...] = (
    Signal("ready", OUT, BOOL, 0, "Ready",
           "A trigger now would be taken: running, model loaded, every view delivering, not busy, "
           "triggers enabled, result buffer not full."),
    Signal("busy", OUT, BOOL, 1, "Busy", "From an accepted trigger until that part's verdict is made."),
    Signal("trigger_ack", OUT, BOOL, 2, "TriggerAck",
           "Set when a trigger is accepted; cleared when the PLC clears Trigger. Not set for a missed trigger."),
    Signal("result_valid", OUT, BOOL, 3, "ResultValid",
           "The result registers hold a result that is already saved (committed) in the project."),
    Signal("passed", OUT, BOOL, 4, "Pass", "The valid result is PASS."),
    Signal("failed", OUT, BOOL, 5, "Fail", "The valid result is FAIL."),
    Signal("error", OUT, BOOL, 6, "Error", "ErrorCode is not 0."),
    Signal("heartbeat", OUT, BOOL, 7, "Heartbeat",
           "Toggles every heartbeat period while the inspection thread is alive."),
    Signal("trigger_enabled", OUT, BOOL, 8, "TriggerEnabled", "Echo of TriggerEnable."),
    Signal("handshake_on", OUT, BOOL, 9, "HandshakeOn", "Echo of HandshakeEnable."),
    Signal("model_selected", OUT, BOOL, 10, "ModelSelected",
           "Follows SelectModel once the model is loaded (or refused: then Error with code 8)."),
    Signal("drift", OUT, BOOL, 11, "Drift", "The drift monitor says the images moved away from training."),
    Signal("running", OUT, BOOL, 12, "Running", "The line session runs (0 while starting and stopping)."),
    Signal("class_code", OUT, U16, 1, "DefectClassCode",
           "0 = PASS; else the defect class's index in the model's class list (255: unnamed)."),
    Signal("score", OUT, U16, 2, "Score", "Score x 10000 (0..10000); FAIL at and above the threshold."),
    Signal("inspection_id", OUT, U32, 3, "InspectionId", "The result's id in the project's inspection log."),
    Signal("result_trigger", OUT, U16, 5, "ResultTrigger",
           "The trigger number (mod 65536) that took the valid result's part."),
    Signal("error_code", OUT, U16, 6, "ErrorCode", "The last error (table in docs/plc.md); 0 = none."),
    Signal("missed_triggers", OUT, U32, 7, "MissedTriggers",
           "Triggers that could not be taken (busy, disabled, buffer full), since the last reset."),
    Signal("heartbeat_count", OUT, U16, 9, "HeartbeatCount", "Counts up with every heartbeat toggle (mod 65536)."),
    Signal("buffered", OUT, U16, 10, "BufferedResults", "Results waiting for ResultAck (handshake on)."),
    Signal("model_number_active", OUT, U16, 11, "ActiveModelNumber", "N of the model judging parts (vN)."),
    Signal("parts", OUT, U32, 12, "Parts", "Parts judged since the last reset."),
    Signal("pass_count", OUT, U32, 14, "PassCount", "PASS parts since the last reset."),
    Signal("fail_count", OUT, U32, 16, "FailCount", "FAIL parts since the last reset."),
    Signal("trigger_count", OUT, U16, 18, "TriggerCount", "Accepted triggers (mod 65536)."),
)  # fmt: skip

INPUT_REGISTERS = 19
SIGNALS = {s.name: s for s in INPUTS + OUTPUTS}
INPUT_BITS = tuple(s for s in INPUTS if s.kind == BOOL)
OUTPUT_BITS = tuple(s for s in OUTPUTS if s.kind == BOOL)
OUTPUT_WORDS = tuple(s for s in OUTPUTS if s.kind != BOOL)


class ErrorCode(IntEnum):
    """The station's error codes (output ErrorCode). One table, also in docs/plc.md."""

    NONE = 0
    MODEL_NOT_AVAILABLE = 1
    TRIGGER_WHILE_BUSY = 2
    TRIGGER_DISABLED = 3
    NO_IMAGE = 4
    INSPECTION_FAILED = 5
    RESULT_BUFFER_FULL = 6
    ACK_TIMEOUT = 7
    UNKNOWN_MODEL = 8
    STORE_FAILED = 9
    SOURCE_LOST = 10
    NOT_READY = 11

    def describe(self) -> str:
        return ERROR_TEXT[self][0]


# code -> (what happened, what to do)
ERROR_TEXT: dict[ErrorCode, tuple[str, str]] = {
    ErrorCode.NONE: ("no error", ""),
    ErrorCode.MODEL_NOT_AVAILABLE: ("no model can be loaded (none deployed, or the file is damaged)",
                                    "deploy a model (`lineside deploy`), then restart the station"),
    ErrorCode.TRIGGER_WHILE_BUSY: ("trigger while busy: the part was not inspected (missed)",
                                   "trigger only while Ready; slow the line or add a station"),
    ErrorCode.TRIGGER_DISABLED: ("trigger while TriggerEnable is 0 (missed)", "set TriggerEnable"),
    ErrorCode.NO_IMAGE: ("no image from a view within the snap timeout after the trigger",
                         "check the camera, its cable and (hot folder) the writer"),
    ErrorCode.INSPECTION_FAILED: ("the part could not be inspected (bad frame, model error)", "see the station log"),
    ErrorCode.RESULT_BUFFER_FULL: ("handshake on and the result buffer is full: trigger refused (missed)",
                                   "acknowledge results (ResultAck) before triggering more"),
    ErrorCode.ACK_TIMEOUT: ("a valid result was not acknowledged within the acknowledge timeout",
                            "read the result and pulse ResultAck; the result stays valid meanwhile"),
    ErrorCode.UNKNOWN_MODEL: ("SelectModel named a model number the project does not have",
                              "use a version listed by `lineside models`; the current model stays"),
    ErrorCode.STORE_FAILED: ("results cannot be saved (disk full, project read-only or locked); retrying",
                             "free disk space / fix permissions; no result is made valid until saved"),
    ErrorCode.SOURCE_LOST: ("a camera or hot folder stopped delivering; reconnecting with back-off",
                            "check the camera and its cable"),
    ErrorCode.NOT_READY: ("trigger while the station is not running (starting or stopping)", "wait for Ready"),
}


def to_words(value: int, kind: str) -> list[int]:
    """A value as Modbus registers (U32: high word first)."""
    value = int(value)
    if kind == U32:
        value &= 0xFFFFFFFF
        return [value >> 16, value & 0xFFFF]
    return [value & 0xFFFF]


def width(kind: str) -> int:
    return 2 if kind == U32 else 1


def pack_bits(values: dict[str, int], signals: tuple[Signal, ...]) -> int:
    word = 0
    for signal in signals:
        if values.get(signal.name):
            word |= 1 << signal.address
    return word


def unpack_bits(word: int, signals: tuple[Signal, ...]) -> dict[str, int]:
    return {signal.name: (word >> signal.address) & 1 for signal in signals}


def output_registers(values: dict[str, int]) -> list[int]:
    """All input registers 0..INPUT_REGISTERS-1 for the station's output values."""
    registers = [0] * INPUT_REGISTERS
    registers[STATUS_WORD_REGISTER] = pack_bits(values, OUTPUT_BITS)
    for signal in OUTPUT_WORDS:
        words = to_words(values.get(signal.name, 0), signal.kind)
        registers[signal.address : signal.address + len(words)] = words
    return registers


def decode_output_registers(registers: list[int]) -> dict[str, int]:
    """The inverse of output_registers (for PLC-side code: the simulator, tests)."""
    values = unpack_bits(registers[STATUS_WORD_REGISTER], OUTPUT_BITS)
    for signal in OUTPUT_WORDS:
        if signal.kind == U32:
            values[signal.name] = (registers[signal.address] << 16) | registers[signal.address + 1]
        else:
            values[signal.name] = registers[signal.address]
    return values


def _check() -> None:
    """The map has no overlapping addresses (checked at import: a typo fails loudly)."""
    for group in (INPUT_BITS, OUTPUT_BITS):
        addresses = [s.address for s in group]
        assert len(set(addresses)) == len(addresses) and max(addresses) < 16, group
    taken: set[int] = {STATUS_WORD_REGISTER}
    for signal in OUTPUT_WORDS:
        span = set(range(signal.address, signal.address + width(signal.kind)))
        assert not span & taken and max(span) < INPUT_REGISTERS, signal
        taken |= span
    assert len({s.opcua for s in INPUTS + OUTPUTS}) == len(INPUTS + OUTPUTS)


_check()
