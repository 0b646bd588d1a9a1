"""`lineside plc-sim`: play the PLC against a running station (`lineside run --plc ...`).

    lineside plc-sim --modbus 127.0.0.1:5020 --rate 10 --count 200
    lineside plc-sim --opcua opc.tcp://127.0.0.1:4840/lineside/ --rate 0 --count 100   # flat out

It enables triggers, switches the handshake on (--no-handshake: off), resets the
counters, then triggers at --rate parts per second (0: the next trigger as soon as the
station is Ready and the last result was read), reads every result when ResultValid
rises, acknowledges it, and prints the trigger-to-result-valid latency (p50, p99, max)
and the missed triggers. A real PLC triggers when the part arrives, busy or not: so
does this one, and what the station could not take shows up as missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from app.core.errors import LinesideError

POLL_S = 0.0005  # between two reads of the station's outputs
TRIGGER_ACK_TIMEOUT_S = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser(
        "plc-sim",
        help="simulate the PLC: trigger a running station, acknowledge, measure latency",
        description="Trigger a station running `lineside run --plc ...` like a PLC would, acknowledge "
        "each result and print the trigger-to-result-valid latency and missed triggers.",
    )
    where = sim.add_mutually_exclusive_group(required=True)
    where.add_argument("--modbus", metavar="HOST:PORT", help="the station's Modbus TCP server")
    where.add_argument("--opcua", metavar="URL", help="the station's OPC UA endpoint (opc.tcp://HOST:PORT/lineside/)")
    sim.add_argument("--rate", type=float, default=5.0, metavar="HZ", help="triggers per second (0: flat out)")
    sim.add_argument("--count", type=int, default=100, metavar="N", help="triggers to send")
    sim.add_argument("--no-handshake", action="store_true", help="do not acknowledge results (handshake off)")
    sim.add_argument("--timeout", type=float, default=10.0, metavar="S",
                     help="give up waiting for results S seconds after the last trigger")
    sim.add_argument("--user", help="OPC UA user name (the password from LINESIDE_OPCUA_PASSWORD)")
    sim.add_argument("--json", action="store_true", help="print the figures as JSON")
    sim.set_defaults(handler=run_plc_sim)


class ModbusPlc:
    """The PLC's side over Modbus TCP: control word in holding register 0."""

    def __init__(self, host: str, port: int) -> None:
        import pymodbus.client  # noqa: F401  (missing extra: said before the loop starts)

        self.host, self.port = host, port
        self.client = None
        self.word = 0
        self.where = f"{host}:{port}"

    async def connect(self) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        self.client = AsyncModbusTcpClient(self.host, port=self.port, timeout=2, retries=1)
        if not await self.client.connect():
            raise LinesideError(f"no Modbus server answers at {self.where}; is `lineside run --plc` running?")

    async def write(self, **inputs: int) -> None:
        from app.core.plc.signals import SIGNALS

        for name, value in inputs.items():
            bit = 1 << SIGNALS[name].address
            self.word = (self.word | bit) if value else (self.word & ~bit)
        await self.client.write_register(0, self.word)

    async def read(self) -> dict[str, int]:
        from app.core.plc.signals import INPUT_REGISTERS, decode_output_registers

        reply = await self.client.read_input_registers(0, count=INPUT_REGISTERS)
        if reply.isError():
            raise LinesideError(f"the station at {self.where} refused a read: {reply}")
        return decode_output_registers(reply.registers)

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()


class OpcUaPlc:
    """The PLC's side over OPC UA: writes Inputs/*, reads Outputs/*."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None) -> None:
        from asyncua import Client

        self.client = Client(url, timeout=4)
        if user:
            self.client.set_user(user)
            self.client.set_password(password or "")
        self.url = url
        self.inputs: dict = {}
        self.outputs: list = []
        self.names: list[str] = []

    async def connect(self) -> None:
        from app.core.plc.opcua_server import NAMESPACE
        from app.core.plc.signals import INPUTS, OUTPUTS

        try:
            await self.client.connect()
        except (OSError, asyncio.TimeoutError) as exc:
            raise LinesideError(f"no OPC UA server answers at {self.url} ({exc}).") from exc
        ns = await self.client.get_namespace_index(NAMESPACE)
        objects = self.client.nodes.objects
        for signal in INPUTS:
            self.inputs[signal.name] = (await objects.get_child([f"{ns}:Lineside", f"{ns}:Inputs",
                                                                 f"{ns}:{signal.opcua}"]), signal)
        for signal in OUTPUTS:
            self.outputs.append(await objects.get_child([f"{ns}:Lineside", f"{ns}:Outputs", f"{ns}:{signal.opcua}"]))
            self.names.append(signal.name)

    async def write(self, **inputs: int) -> None:
        from asyncua import ua

        from app.core.plc.opcua_server import _value, _variant_type

        nodes, values = [], []
        for name, value in inputs.items():
            node, signal = self.inputs[name]
            nodes.append(node)
            values.append(ua.DataValue(ua.Variant(_value(signal, value), _variant_type(signal))))
        await self.client.write_values(nodes, values)

    async def read(self) -> dict[str, int]:
        values = await self.client.read_values(self.outputs)
        return {name: int(value) for name, value in zip(self.names, values)}

    async def close(self) -> None:
        await self.client.disconnect()


async def wait_for(plc, test, timeout: float) -> dict[str, int] | None:
    """Poll the outputs until test(outputs) holds; None on timeout."""
    deadline = time.perf_counter() + timeout
    while True:
        out = await plc.read()
        if test(out):
            return out
        if time.perf_counter() > deadline:
            return None
        await asyncio.sleep(POLL_S)


async def play(plc, rate: float, count: int, handshake: bool = True, timeout: float = 10.0) -> dict:
    """Trigger *count* parts at *rate* (0: flat out), acknowledge results; the figures."""
    await plc.connect()
    try:
        await plc.write(trigger=0, result_ack=0, trigger_enable=1, handshake=int(handshake), reset_counters=1)
        await plc.write(reset_counters=0)
        if await wait_for(plc, lambda o: o["ready"], 30.0) is None:
            raise LinesideError("the station did not become Ready within 30 s.")
        start_missed = (await plc.read())["missed_triggers"]
        sent: dict[int, float] = {}  # trigger number (mod 65536) -> when it was sent
        latencies: list[float] = []
        results, refused, last_result = 0, 0, None
        period = 1.0 / rate if rate > 0 else 0.0
        began = time.perf_counter()
        next_at = began
        last_sent_at = began
        while True:
            now = time.perf_counter()
            out = await plc.read()
            # 1. a result: read it, acknowledge it
            key = (out["inspection_id"], out["result_trigger"])
            if out["result_valid"] and key != last_result:
                last_result = key
                at = sent.pop(out["result_trigger"], None)
                if at is not None:
                    latencies.append((now - at) * 1000.0)
                results += 1
                if handshake:
                    await plc.write(result_ack=1)
                    await wait_for(plc, lambda o: not o["result_valid"], 2.0)
                    await plc.write(result_ack=0)
                continue
            triggered = len(sent) + results + refused
            # 2. the next trigger, when due
            due = now >= next_at if period else (out["ready"] and not sent)
            if triggered < count and due:
                before = out["missed_triggers"]
                at = time.perf_counter()
                await plc.write(trigger=1)
                reply = await wait_for(plc, lambda o: o["trigger_ack"] or o["missed_triggers"] != before,
                                       TRIGGER_ACK_TIMEOUT_S)
                if reply is not None and reply["trigger_ack"]:
                    sent[reply["trigger_count"]] = at
                else:
                    refused += 1
                await plc.write(trigger=0)
                last_sent_at = time.perf_counter()
                next_at = max(next_at + period, now) if period else now
                continue
            if triggered >= count and (not sent or now - last_sent_at > timeout):
                break
            await asyncio.sleep(POLL_S)
        elapsed = time.perf_counter() - began
        final = await plc.read()
    finally:
        try:
            await plc.write(trigger=0, result_ack=0)
        except Exception:
            pass
        await plc.close()
    figures = {
        "triggers": count, "results": results, "lost": len(sent),
        "missed": final["missed_triggers"] - start_missed, "refused_seen": refused,
        "rate_hz": rate, "elapsed_s": round(elapsed, 3),
        "parts_per_s": round(results / elapsed, 2) if elapsed > 0 else 0.0,
    }  # fmt: skip
    if latencies:
        import numpy as np

        p50, p99 = np.percentile(latencies, [50, 99])
        figures.update(latency_ms_p50=round(float(p50), 2), latency_ms_p99=round(float(p99), 2),
                       latency_ms_max=round(max(latencies), 2))
    return figures


def make_plc(args: argparse.Namespace):
    import os

    try:
        if args.modbus:
            host, _, port = args.modbus.rpartition(":")
            if not host or not port.isdigit():
                raise LinesideError(f"--modbus {args.modbus}: expected HOST:PORT, e.g. 127.0.0.1:5020.")
            return ModbusPlc(host, int(port))
        url = args.opcua if "://" in args.opcua else f"opc.tcp://{args.opcua}/lineside/"
        url = url.replace("opcua://", "opc.tcp://")
        return OpcUaPlc(url, args.user, os.environ.get("LINESIDE_OPCUA_PASSWORD"))
    except ImportError as exc:
        raise LinesideError(f"the PLC client is not installed ({exc.name}); pip install 'lineside[plc]'.") from exc


def run_plc_sim(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise LinesideError("--count must be at least 1.")
    figures = asyncio.run(play(make_plc(args), args.rate, args.count, not args.no_handshake, args.timeout))
    if args.json:
        print(json.dumps(figures))
    else:
        rate = "flat out" if not args.rate else f"{args.rate:g}/s"
        line = (f"{figures['triggers']} triggers at {rate}: {figures['results']} results, "
                f"{figures['missed']} missed triggers, {figures['lost']} without a result; "
                f"{figures['parts_per_s']} parts/s")
        if "latency_ms_p50" in figures:
            line += (f"; trigger to result valid p50 {figures['latency_ms_p50']:.1f} ms, "
                     f"p99 {figures['latency_ms_p99']:.1f} ms, max {figures['latency_ms_max']:.1f} ms")
        print(line)
    return 0 if figures["lost"] == 0 else 1
