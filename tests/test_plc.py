"""The PLC handshake over real servers on loopback, driven by the real client libraries
(pymodbus, asyncua), and `lineside run` / `lineside plc-sim` as processes.

The station decides about a trigger while the PLC's write is being answered, so a
read right after a write shows the outcome: negative checks need no sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pymodbus")
pytest.importorskip("asyncua")

from pymodbus.client import ModbusTcpClient  # noqa: E402

from app.core.errors import LinesideError  # noqa: E402
from app.core.line_session import LineSession  # noqa: E402
from app.core.line_sources import make_source  # noqa: E402
from app.core.plc.link import PlcLink  # noqa: E402
from app.core.plc.modbus_server import ModbusServer  # noqa: E402
from app.core.plc.signals import (  # noqa: E402
    INPUT_REGISTERS,
    INPUTS,
    OUTPUTS,
    SIGNALS,
    ErrorCode,
    decode_output_registers,
)
from app.core.project import Project  # noqa: E402
from tests.test_line_session import BRIGHT_BLUE, DARK, GatedSource, Recorder, add_model, project  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(test, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Station:
    """A triggered LineSession + PlcLink + Modbus server on a free loopback port."""

    def __init__(self, project, sources, **link_options) -> None:
        self.rec = Recorder()
        self.session = LineSession(project, sources, [self.rec], triggered=True)
        self.link = PlcLink(**link_options).attach(self.session)
        self.server = ModbusServer(self.link, "127.0.0.1", free_port()).start()
        self.session.start()

    def close(self) -> None:
        self.session.stop()
        self.server.stop()
        self.link.close()


class Plc:
    """The PLC: pymodbus's synchronous client, coils for the inputs."""

    def __init__(self, port: int) -> None:
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
        assert self.client.connect()

    def set(self, name: str, value: bool) -> None:
        reply = self.client.write_coil(SIGNALS[name].address, value)
        assert not reply.isError(), reply

    def outputs(self) -> dict[str, int]:
        reply = self.client.read_input_registers(0, count=INPUT_REGISTERS)
        assert not reply.isError(), reply
        return decode_output_registers(reply.registers)

    def bits(self) -> list[bool]:
        reply = self.client.read_discrete_inputs(0, count=16)
        assert not reply.isError(), reply
        return reply.bits

    def wait(self, test, timeout: float = 10.0, what: str = "output"):
        return wait_until(lambda: (lambda o: o if test(o) else None)(self.outputs()), timeout, what)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def station(project):
    made = []

    def make(sources=None, **options) -> Station:
        made.append(Station(project, sources or [GatedSource([BRIGHT_BLUE, DARK])], **options))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_trigger_sets_ack_then_result_bits_of_a_committed_result(station, project):
    st = station()
    plc = Plc(st.server.port)
    try:
        plc.set("trigger_enable", True)
        out = plc.wait(lambda o: o["ready"], what="ready")
        assert out["trigger_enabled"] and out["running"] and not out["busy"] and not out["result_valid"]
        plc.set("trigger", True)
        assert plc.outputs()["trigger_ack"] == 1
        plc.set("trigger", False)
        assert plc.outputs()["trigger_ack"] == 0
        out = plc.wait(lambda o: o["result_valid"], what="result valid")
        assert (out["passed"], out["failed"], out["class_code"]) == (0, 1, 1)  # bright blue: scratch
        row = project.inspections()[0]  # valid only once it is in the store
        assert out["inspection_id"] == row["id"] and row["verdict"] == "FAIL"
        assert out["score"] == round(row["score"] * 10000)
        assert out["result_trigger"] == 1 and out["trigger_count"] == 1
        assert (out["parts"], out["pass_count"], out["fail_count"]) == (1, 0, 1)
        assert out["model_number_active"] == 1
        bits = plc.bits()  # the same status word as discrete inputs
        assert bits[SIGNALS["result_valid"].address] and bits[SIGNALS["failed"].address]
        assert not bits[SIGNALS["passed"].address]
        # Handshake off: the next accepted trigger clears ResultValid until its result.
        plc.set("trigger", True)
        assert plc.outputs()["result_valid"] == 0
        plc.set("trigger", False)
        out = plc.wait(lambda o: o["result_valid"], what="second result")
        assert (out["passed"], out["class_code"], out["result_trigger"]) == (1, 0, 2)
    finally:
        plc.close()


def test_control_word_in_holding_register_zero_works_like_the_coils(station):
    st = station()
    plc = Plc(st.server.port)
    try:
        enable, trigger = 1 << SIGNALS["trigger_enable"].address, 1 << SIGNALS["trigger"].address
        plc.client.write_register(0, enable)
        plc.wait(lambda o: o["ready"], what="ready")
        plc.client.write_register(0, enable | trigger)
        assert plc.outputs()["trigger_ack"] == 1
        plc.client.write_register(0, enable)
        assert plc.wait(lambda o: o["result_valid"])["inspection_id"] == 1
    finally:
        plc.close()


def test_handshake_buffers_results_until_each_is_acknowledged(station):
    st = station()
    plc = Plc(st.server.port)
    try:
        plc.set("handshake", True)
        plc.set("trigger_enable", True)
        plc.wait(lambda o: o["ready"] and o["handshake_on"])
        ids = []
        for _ in range(2):  # two parts before the PLC reads any result
            plc.wait(lambda o: o["ready"])
            plc.set("trigger", True)
            assert plc.outputs()["trigger_ack"]
            plc.set("trigger", False)
        out = plc.wait(lambda o: o["result_valid"] and o["buffered"] == 2, what="two buffered")
        assert out["result_trigger"] == 1 and out["failed"]  # the oldest first
        ids.append(out["inspection_id"])
        plc.set("result_ack", True)
        out = plc.outputs()
        assert out["result_valid"] == 0 and out["buffered"] == 1
        plc.set("result_ack", False)  # the next result appears once the PLC cleared its ack
        out = plc.outputs()
        assert out["result_valid"] and out["result_trigger"] == 2 and out["passed"]
        ids.append(out["inspection_id"])
        plc.set("result_ack", True)
        plc.set("result_ack", False)
        out = plc.outputs()
        assert out["result_valid"] == 0 and out["buffered"] == 0
        assert ids == [1, 2] and st.link.acknowledged == 2
    finally:
        plc.close()


def test_full_result_buffer_refuses_the_trigger_as_missed(station):
    st = station(buffer_size=1)
    plc = Plc(st.server.port)
    try:
        plc.set("handshake", True)
        plc.set("trigger_enable", True)
        plc.wait(lambda o: o["ready"])
        plc.set("trigger", True)
        plc.set("trigger", False)
        out = plc.wait(lambda o: o["result_valid"])
        assert out["ready"] == 0  # the one buffer place is taken
        plc.set("trigger", True)
        out = plc.outputs()
        assert (out["trigger_ack"], out["missed_triggers"], out["error_code"]) == (0, 1, ErrorCode.RESULT_BUFFER_FULL)
        plc.set("trigger", False)
    finally:
        plc.close()


def test_trigger_while_busy_is_counted_missed_and_signalled(station):
    camera = GatedSource([DARK])
    st = station([camera])
    plc = Plc(st.server.port)
    try:
        plc.set("trigger_enable", True)
        plc.wait(lambda o: o["ready"])
        camera.gate.clear()  # the camera takes its time: the station stays busy
        plc.set("trigger", True)
        plc.set("trigger", False)
        assert camera.snapping.wait(5)
        out = plc.outputs()
        assert out["busy"] and not out["ready"]
        plc.set("trigger", True)
        out = plc.outputs()
        assert out["trigger_ack"] == 0 and out["missed_triggers"] == 1
        assert out["error"] and out["error_code"] == ErrorCode.TRIGGER_WHILE_BUSY
        plc.set("trigger", False)
        camera.gate.set()
        out = plc.wait(lambda o: o["result_valid"])
        assert out["result_trigger"] == 1 and out["missed_triggers"] == 1
        assert st.session.counters.missed == 1 and st.session.counters.parts == 1
        plc.set("reset_counters", True)
        out = plc.outputs()
        assert (out["missed_triggers"], out["parts"]) == (0, 0)
    finally:
        plc.close()


def test_trigger_while_disabled_is_missed(station):
    st = station()
    plc = Plc(st.server.port)
    try:
        plc.wait(lambda o: o["running"])
        assert plc.outputs()["ready"] == 0  # TriggerEnable is 0
        plc.set("trigger", True)
        out = plc.outputs()
        assert (out["trigger_ack"], out["missed_triggers"], out["error_code"]) == (0, 1, ErrorCode.TRIGGER_DISABLED)
        assert st.session.counters.parts == 0
    finally:
        plc.close()


def test_unacknowledged_result_raises_ack_timeout_and_stays_valid(station):
    st = station(ack_timeout_s=0.3, heartbeat_s=0.05)
    plc = Plc(st.server.port)
    try:
        plc.set("handshake", True)
        plc.set("trigger_enable", True)
        plc.wait(lambda o: o["ready"])
        plc.set("trigger", True)
        plc.set("trigger", False)
        first = plc.wait(lambda o: o["result_valid"])
        assert first["error_code"] == 0
        out = plc.wait(lambda o: o["error_code"] == ErrorCode.ACK_TIMEOUT, what="ack timeout")
        assert out["result_valid"] and out["inspection_id"] == first["inspection_id"] and out["error"]
        plc.set("result_ack", True)
        out = plc.outputs()
        assert out["error_code"] == 0 and out["result_valid"] == 0
        plc.set("result_ack", False)
        # The heartbeat runs while the inspection thread lives.
        beat = plc.outputs()["heartbeat_count"]
        plc.wait(lambda o: o["heartbeat_count"] != beat, what="heartbeat")
    finally:
        plc.close()


def test_a_dropped_client_reconnects_and_finds_its_result_waiting(station):
    st = station()
    first = Plc(st.server.port)
    first.set("handshake", True)
    first.set("trigger_enable", True)
    first.wait(lambda o: o["ready"])
    first.set("trigger", True)
    first.set("trigger", False)
    first.client.close()  # the PLC's connection drops before it saw the result
    wait_until(lambda: st.rec.committed, what="commit")
    second = Plc(st.server.port)
    try:
        out = second.wait(lambda o: o["result_valid"])
        assert out["result_trigger"] == 1 and out["handshake_on"] and out["trigger_enabled"]
        second.set("result_ack", True)
        assert second.outputs()["result_valid"] == 0
        second.set("result_ack", False)
        second.set("trigger", True)
        assert second.outputs()["trigger_ack"]
        second.set("trigger", False)
        assert second.wait(lambda o: o["result_valid"])["result_trigger"] == 2
    finally:
        second.close()


def test_select_model_by_number(station, project):
    add_model(project, "v2", threshold=0.9, deploy=False)
    st = station()
    plc = Plc(st.server.port)
    try:
        plc.client.write_register(1, 2)
        plc.set("select_model", True)
        out = plc.wait(lambda o: o["model_selected"], what="model selected")
        assert out["model_number_active"] == 2 and st.session.model_version == "v2"
        plc.set("select_model", False)
        assert plc.outputs()["model_selected"] == 0
        plc.client.write_register(1, 9)
        plc.set("select_model", True)
        out = plc.wait(lambda o: o["error_code"] == ErrorCode.UNKNOWN_MODEL, what="error 8")
        assert out["model_selected"] == 0 and out["model_number_active"] == 2
    finally:
        plc.close()


def test_modbus_server_listens_on_loopback_by_default(project):
    from app.core.plc.modbus_server import DEFAULT_HOST

    assert DEFAULT_HOST == "127.0.0.1"
    link = PlcLink()
    server = ModbusServer(link, port=free_port()).start()
    try:
        assert server.host == "127.0.0.1"
        port = server.port
        with pytest.raises(LinesideError, match="in use"):
            ModbusServer(link, port=port).start()
    finally:
        server.stop()
        link.close()


# -- OPC UA ------------------------------------------------------------------------------


async def _opcua_nodes(client):
    from app.core.plc.opcua_server import NAMESPACE

    ns = await client.get_namespace_index(NAMESPACE)
    root = await client.nodes.objects.get_child([f"{ns}:Lineside"])
    ins = {s.name: await root.get_child([f"{ns}:Inputs", f"{ns}:{s.opcua}"]) for s in INPUTS}
    outs = {s.name: await root.get_child([f"{ns}:Outputs", f"{ns}:{s.opcua}"]) for s in OUTPUTS}
    return ns, root, ins, outs


async def _await_value(node, value, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (current := await node.read_value()) != value:
        assert time.monotonic() < deadline, f"{node} stayed {current!r}, expected {value!r}"
        await asyncio.sleep(0.005)
    return current


def test_opcua_trigger_result_handshake_and_methods(project):
    from asyncua import Client, ua

    from app.core.plc.opcua_server import OpcUaServer

    rec = Recorder()
    session = LineSession(project, [GatedSource([BRIGHT_BLUE, DARK])], [rec], triggered=True)
    link = PlcLink().attach(session)
    url = f"opc.tcp://127.0.0.1:{free_port()}/lineside/"
    server = OpcUaServer(link, url).start()
    session.start()

    async def plc() -> None:
        async with Client(url, timeout=5) as client:
            ns, root, ins, outs = await _opcua_nodes(client)
            state = await root.get_child([f"{ns}:CurrentState"])
            await ins["handshake"].write_value(True)
            await ins["trigger_enable"].write_value(True)
            await _await_value(outs["ready"], True)
            assert await state.read_value() == "Operational.Ready"
            await ins["trigger"].write_value(True)
            assert await outs["trigger_ack"].read_value() is True
            await ins["trigger"].write_value(False)
            await _await_value(outs["result_valid"], True)
            assert await outs["failed"].read_value() is True
            assert await outs["class_code"].read_value() == 1
            assert await outs["inspection_id"].read_value() == project.inspections()[0]["id"]
            await ins["result_ack"].write_value(True)
            await _await_value(outs["result_valid"], False)
            await ins["result_ack"].write_value(False)
            # The methods: a trigger pulse, an acknowledge pulse, reset, recipe.
            (number,) = [await root.call_method(f"{ns}:StartSingleJob")]
            assert number == 2
            await _await_value(outs["result_valid"], True)
            assert await outs["passed"].read_value() is True
            await root.call_method(f"{ns}:AcknowledgeResult")
            await _await_value(outs["result_valid"], False)
            await root.call_method(f"{ns}:ResetCounters")
            await _await_value(outs["parts"], 0)
            assert await root.call_method(f"{ns}:SelectRecipe", ua.Variant(1, ua.VariantType.UInt16)) == "v1"
            with pytest.raises(ua.UaStatusCodeError):
                await root.call_method(f"{ns}:SelectRecipe", ua.Variant(5, ua.VariantType.UInt16))
            with pytest.raises(ua.UaStatusCodeError):  # outputs are the station's
                await outs["passed"].write_value(False)

    try:
        asyncio.run(plc())
    finally:
        session.stop()
        server.stop()
        link.close()


def test_opcua_secure_endpoint_needs_encryption_and_a_user(project, tmp_path):
    from asyncua import Client
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    from app.core.plc.opcua_server import OpcUaServer, hash_password

    link = PlcLink()
    url = f"opc.tcp://127.0.0.1:{free_port()}/lineside/"
    server = OpcUaServer(link, url, secure=True, users={"line1": hash_password("s3cret-pass", rounds=1000)},
                         cert_dir=tmp_path / "opcua").start()
    client_cert, client_key = tmp_path / "client_cert.der", tmp_path / "client_key.pem"

    async def connect(user: str | None, password: str | None, secure: bool = True) -> None:
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        await setup_self_signed_certificate(client_key, client_cert, "urn:lineside:test:client", "localhost",
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test client"})
        client = Client(url, timeout=5)
        client.application_uri = "urn:lineside:test:client"
        if secure:
            await client.set_security(SecurityPolicyBasic256Sha256, str(client_cert), str(client_key),
                                      server_certificate=str(server.certificate))
        if user:
            client.set_user(user)
            client.set_password(password)
        async with client:
            _, _, _, outs = await _opcua_nodes(client)
            await outs["running"].read_value()

    try:
        assert server.certificate.is_file() and (tmp_path / "opcua" / "server_key.pem").is_file()
        asyncio.run(connect("line1", "s3cret-pass"))
        with pytest.raises(Exception):
            asyncio.run(connect("line1", "wrong-password"))
        with pytest.raises(Exception):
            asyncio.run(connect(None, None))  # anonymous
        with pytest.raises(Exception):
            asyncio.run(connect("line1", "s3cret-pass", secure=False))  # no plain endpoint
    finally:
        server.stop()
        link.close()


def test_opcua_refuses_an_unencrypted_endpoint_beyond_loopback():
    from app.core.plc.opcua_server import DEFAULT_URL, OpcUaServer

    assert "//127.0.0.1:" in DEFAULT_URL
    with pytest.raises(LinesideError, match="needs encryption"):
        OpcUaServer(PlcLink(), "opc.tcp://0.0.0.0:4840/lineside/")


def test_users_file_and_password_hashes(tmp_path):
    from app.core.plc.opcua_server import check_password, hash_password, read_users

    stored = hash_password("correct horse", rounds=1000)
    assert check_password("correct horse", stored) and not check_password("wrong horse", stored)
    (tmp_path / "users").write_text(f"# station users\nline1:{stored}\n")
    assert read_users(tmp_path / "users") == {"line1": stored}
    (tmp_path / "bad").write_text("line1:plaintext\n")
    with pytest.raises(LinesideError, match="lineside plc-user"):
        read_users(tmp_path / "bad")


# -- the commands ------------------------------------------------------------------------


def test_plc_sim_triggers_acknowledges_and_reports_latency(station, capsys):
    from app.cli import main

    st = station([make_source("sim", rate_hz=0)])
    assert main(["plc-sim", "--modbus", f"127.0.0.1:{st.server.port}", "--rate", "20", "--count", "12", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["results"] + figures["missed"] == 12 and figures["lost"] == 0
    assert figures["results"] == len(st.rec.committed) >= 1
    assert 0 < figures["latency_ms_p50"] <= figures["latency_ms_p99"] <= figures["latency_ms_max"]


def _count_inspections(path: Path) -> set[int]:
    with Project.open(path) as proj:
        return {row["id"] for row in proj.inspections()}


def test_sigterm_of_lineside_run_loses_no_acknowledged_result(project, tmp_path):
    port = free_port()
    env = dict(os.environ, LINESIDE_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    path = project.path
    project.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; raise SystemExit(main())", "run", str(path),
         "--source", "sim", "--plc", f"modbus://127.0.0.1:{port}", "--handshake", "--trigger-enabled",
         "--keep-pass-every", "5"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acknowledged: list[int] = []
    try:
        plc = wait_until(lambda: _try_plc(port), 60, "the station's Modbus server")
        plc.wait(lambda o: o["ready"], 30)
        while len(acknowledged) < 15:  # a PLC at work: trigger, read, acknowledge
            plc.wait(lambda o: o["ready"])
            plc.set("trigger", True)
            plc.set("trigger", False)
            out = plc.wait(lambda o: o["result_valid"])
            acknowledged.append(out["inspection_id"])
            plc.set("result_ack", True)
            plc.set("result_ack", False)
        plc.set("trigger", True)  # one more part in flight when the signal comes
        plc.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    stored = _count_inspections(path)
    assert set(acknowledged) <= stored  # nothing the PLC was told about is lost
    printed = [int(line.split()[0]) for line in out.splitlines() if line.strip()]
    assert set(printed) == stored and len(stored) >= len(acknowledged)  # and nothing judged either
    assert f"{len(stored)} results saved" in err
    assert (tmp_path / "home" / "logs" / "lineside-station.log").is_file()
    assert list((path / "retained").glob("*/*.png"))


def _try_plc(port: int):
    try:
        plc = Plc(port)
    except AssertionError:
        return None
    return plc


def test_signal_map_is_documented_once_each():
    doc = (ROOT / "docs" / "plc.md").read_text(encoding="utf-8")
    for signal_ in INPUTS + OUTPUTS:
        assert f"`{signal_.opcua}`" in doc, signal_.opcua
    for code in ErrorCode:
        assert f"| {int(code)} |" in doc, code


def test_lineside_run_modbus_base_moves_the_whole_map(project, tmp_path):
    """`--modbus-base 100`: a PLC that reserves addresses finds every signal N higher,
    through the real pymodbus client against `lineside run` on loopback."""
    port, base = free_port(), 100
    env = dict(os.environ, LINESIDE_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    path = project.path
    project.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; raise SystemExit(main())", "run", str(path),
         "--source", "sim", "--plc", f"modbus://127.0.0.1:{port}", "--modbus-base", str(base),
         "--trigger-enabled", "--no-keep"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
    try:
        wait_until(client.connect, 60, "the station's Modbus server")

        def outputs() -> dict[str, int]:
            reply = client.read_input_registers(base, count=INPUT_REGISTERS)
            assert not reply.isError(), reply
            return decode_output_registers(reply.registers)

        wait_until(lambda: outputs()["ready"], 30, "ready at the moved status word")
        assert client.read_input_registers(0, count=INPUT_REGISTERS).isError()  # nothing left at 0
        assert not client.write_coil(base + SIGNALS["trigger"].address, True).isError()
        assert outputs()["trigger_ack"] == 1
        client.write_coil(base + SIGNALS["trigger"].address, False)
        out = wait_until(lambda: (lambda o: o if o["result_valid"] else None)(outputs()), 10, "result valid")
        bits = client.read_discrete_inputs(base, count=16).bits
        assert bits[SIGNALS["result_valid"].address] and bits[SIGNALS["running"].address]
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=60)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "address base 100" in err
    assert out["inspection_id"] in _count_inspections(path)  # the result the PLC read is in the store
    assert int(stdout.split()[0]) == out["inspection_id"]


def test_lineside_run_modbus_base_is_refused_without_modbus(project, capsys):
    from app.cli import main

    url = f"opcua://127.0.0.1:{free_port()}"
    assert main(["run", str(project.path), "--source", "sim", "--plc", url, "--modbus-base", "1"]) == 2
    assert "--modbus-base applies to a Modbus PLC only" in capsys.readouterr().err
    assert main(["run", str(project.path), "--source", "sim", "--plc", f"modbus://127.0.0.1:{free_port()}",
                 "--modbus-base", "70000"]) == 2
    assert "--modbus-base is an address from 0 to" in capsys.readouterr().err
