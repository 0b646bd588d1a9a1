"""The PLC in Inspect: set up in the PLC… dialog, served with the line by app.core.plc's
own Modbus server, driven by a real Modbus client over loopback, and shown live in the
signal panel."""

from __future__ import annotations

import socket

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

pytest.importorskip("pymodbus")

from pymodbus.client import ModbusTcpClient  # noqa: E402

from app.core.plc.signals import INPUT_REGISTERS, SIGNALS, decode_output_registers  # noqa: E402
from app.ui.inspect.inspect_plc import PLC_SETTING, PlcConfig, load_plc  # noqa: E402
from app.ui.inspect.inspect_workspace import InspectWorkspace  # noqa: E402
from app.ui.inspect.plc_settings import LOCAL_TEXT  # noqa: E402
from tests.ui.workspace_fixtures import app_context, project, register_fixture_model, shown  # noqa: F401,E402

BASE = 100  # not a multiple of 16: the bit tables move too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def click(widget) -> None:
    assert widget.isVisible() and widget.isEnabled(), f"{widget} cannot be clicked"
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


class Plc:
    """The PLC's side: pymodbus's client, the station's map moved up by BASE."""

    def __init__(self, port: int) -> None:
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=3)

    def set(self, name: str, value: bool) -> None:
        reply = self.client.write_coil(BASE + SIGNALS[name].address, value)
        assert not reply.isError(), reply

    def outputs(self) -> dict[str, int]:
        reply = self.client.read_input_registers(BASE, count=INPUT_REGISTERS)
        assert not reply.isError(), reply
        return decode_output_registers(reply.registers)


@pytest.fixture
def workspace(qtbot, app_context, project):
    register_fixture_model(project)
    app_context._set_project(project)
    ws = shown(qtbot, InspectWorkspace(app_context), height=768)
    yield ws
    ws.shutdown()
    assert not ws.is_running()


def configure_plc(qtbot, ws, **fields) -> PlcConfig:
    click(ws.station.plc_button)
    qtbot.waitUntil(lambda: ws.station.plc_dialog is not None and ws.station.plc_dialog.isVisible(), timeout=5000)
    dialog = ws.station.plc_dialog
    dialog.protocol_combo.setCurrentIndex(dialog.protocol_combo.findData(fields.get("protocol", "modbus")))
    dialog.port_spin.setValue(fields["port"])
    dialog.base_spin.setValue(fields.get("base", 0))
    config = dialog.config()
    click(dialog.ok_button)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    return config


def test_plc_triggers_over_modbus_and_the_panel_shows_what_it_read(qtbot, workspace, project):
    ws = workspace
    assert not ws.station.plc_panel.isVisible()  # no PLC configured: no panel
    port = free_port()
    config = configure_plc(qtbot, ws, port=port, base=BASE)
    assert (config.host, config.port, config.base, config.protocol) == ("127.0.0.1", port, BASE, "modbus")
    assert load_plc(project) == config and project.get_setting(PLC_SETTING)["port"] == port
    panel = ws.station.plc_panel
    assert panel.isVisible() and f"Modbus TCP 127.0.0.1:{port}, base {BASE}" in panel.title.text() and "this PC only" in panel.title.text()

    click(ws.start_button)
    assert not ws.continuous() and not ws.mode_combo.isEnabled()  # the PLC triggers the parts, alone
    assert not ws.trigger_button.isEnabled()
    assert not ws.station.plc_button.isEnabled()  # settings apply from the next start
    plc = Plc(port)
    qtbot.waitUntil(plc.client.connect, timeout=20_000)  # the server listens once the line starts
    plc.set("trigger_enable", True)
    qtbot.waitUntil(lambda: plc.outputs()["ready"] == 1, timeout=20_000)
    qtbot.waitUntil(lambda: panel.lamps["trigger_enable"].on and panel.lamps["ready"].on, timeout=5000)

    plc.set("trigger", True)
    assert plc.outputs()["trigger_ack"] == 1  # decided while the write was answered
    qtbot.waitUntil(lambda: panel.lamps["trigger"].on or panel.lamps["result_valid"].on, timeout=5000)
    plc.set("trigger", False)
    qtbot.waitUntil(lambda: plc.outputs()["result_valid"] == 1, timeout=20_000)
    read = plc.outputs()
    assert read["passed"] + read["failed"] == 1

    def panel_shows_it() -> bool:
        shown = panel.shown_values()
        return (shown["result_valid"] == 1 and shown["inspection_id"] == read["inspection_id"]
                and shown["trigger"] == 0)

    qtbot.waitUntil(panel_shows_it, timeout=5000)
    shown = panel.shown_values()
    assert (shown["passed"], shown["failed"]) == (read["passed"], read["failed"])
    assert (shown["class_code"], shown["score"], shown["error_code"], shown["missed_triggers"]) == (
        read["class_code"], read["score"], read["error_code"], read["missed_triggers"])
    # What the PLC read is the part in the project's log and on the screen.
    row = project.inspections()[0]
    assert read["inspection_id"] == row["id"] and row["verdict"] == ("PASS" if read["passed"] else "FAIL")
    qtbot.waitUntil(lambda: ws.counters.parts == 1, timeout=5000)
    assert ws.banner.headline == row["verdict"]
    seen = set()
    qtbot.waitUntil(lambda: seen.add(panel.lamps["heartbeat"].on) or seen == {True, False}, timeout=5000)  # alive

    click(ws.start_button)  # Stop: the server goes with the line
    plc.client.close()
    assert not any(lamp.on for lamp in panel.lamps.values()) and panel.state.text() == "stopped"
    qtbot.waitUntil(lambda: not listening(port), timeout=10_000)


def test_plc_dialog_says_who_can_connect(qtbot, workspace, project):
    ws = workspace
    click(ws.station.plc_button)
    qtbot.waitUntil(lambda: ws.station.plc_dialog is not None and ws.station.plc_dialog.isVisible(), timeout=5000)
    dialog = ws.station.plc_dialog
    assert dialog.protocol() == "off" and not dialog.host_edit.isEnabled()
    dialog.protocol_combo.setCurrentIndex(dialog.protocol_combo.findData("modbus"))
    assert dialog.host_edit.text() == "127.0.0.1" and dialog.port_spin.value() == 5020
    assert dialog.who_label.text() == LOCAL_TEXT and "change the bind address" in LOCAL_TEXT
    dialog.host_edit.setText("192.168.0.10")
    assert "192.168.0.10" in dialog.who_label.text() and "no security" in dialog.who_label.text()
    dialog.protocol_combo.setCurrentIndex(dialog.protocol_combo.findData("opcua"))
    assert dialog.port_spin.value() == 4840 and not dialog.base_spin.isEnabled()
    assert "encrypted" in dialog.who_label.text()
    click(dialog.buttons.button(dialog.buttons.StandardButton.Cancel))
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    assert project.get_setting(PLC_SETTING) is None and not ws.station.plc_panel.isVisible()  # nothing kept


def test_a_port_in_use_stops_the_line_and_says_why(qtbot, workspace, project):
    ws = workspace
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        configure_plc(qtbot, ws, port=port)
        with qtbot.waitSignal(ws.context.status_message, timeout=20_000) as said:
            click(ws.start_button)
        assert str(port) in said.args[0] and "in use" in said.args[0]
        qtbot.waitUntil(lambda: not ws.is_running() and ws.start_button.text() == "&Start", timeout=20_000)
    assert ws.banner.headline == "ERROR" and ws.station.plc_button.isEnabled()
    assert project.inspections() == []


def test_opc_ua_serves_the_same_signals(qtbot, workspace):
    asyncua = pytest.importorskip("asyncua")
    import asyncio

    ws = workspace
    port = free_port()
    configure_plc(qtbot, ws, protocol="opcua", port=port)
    assert "OPC UA 127.0.0.1" in ws.station.plc_panel.title.text()
    click(ws.start_button)

    async def read_trigger_enabled_after_enabling() -> bool:
        async with asyncua.Client(f"opc.tcp://127.0.0.1:{port}/lineside/", timeout=5) as client:
            ns = await client.get_namespace_index("urn:lineside:station")
            lineside = await client.nodes.objects.get_child([f"{ns}:Lineside"])
            enable = await lineside.get_child([f"{ns}:Inputs", f"{ns}:TriggerEnable"])
            await enable.write_value(True)
            echo = await lineside.get_child([f"{ns}:Outputs", f"{ns}:TriggerEnabled"])
            return bool(await echo.read_value())

    def served() -> bool:
        try:
            return asyncio.run(read_trigger_enabled_after_enabling())
        except (OSError, asyncio.TimeoutError, ConnectionError):
            return False  # not listening yet: the line starts the server in the background

    qtbot.waitUntil(served, timeout=30_000)
    panel = ws.station.plc_panel
    qtbot.waitUntil(lambda: panel.lamps["trigger_enable"].on and panel.lamps["ready"].on, timeout=10_000)
    click(ws.start_button)
    qtbot.waitUntil(lambda: not listening(port), timeout=15_000)
