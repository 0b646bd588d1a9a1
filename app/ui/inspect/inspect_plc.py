"""The PLC of the Inspect workspace: its settings (kept in the project) and its server.

The server is app.core.plc's, the same one `lineside run --plc` serves: a PlcLink on
the line's LineSession, and the Modbus TCP or OPC UA server in front of it. Nothing
about the handshake is decided here.

Who can connect: the server listens on 127.0.0.1 unless the settings name another
address, so by default only programs on this PC reach it. OPC UA on any other address
runs encrypted only (Basic256Sha256 SignAndEncrypt, with user names when a users file
is given), as `lineside run --opcua-secure` does; Modbus TCP has no security at all.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

from app.core.errors import LinesideError

PLC_SETTING = "inspect/plc"
PROTOCOLS = (("off", "Off"), ("modbus", "Modbus TCP"), ("opcua", "OPC UA"))
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"modbus": 5020, "opcua": 4840}


@dataclass(frozen=True)
class PlcConfig:
    protocol: str = "off"  # "off", "modbus", "opcua"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORTS["modbus"]
    base: int = 0  # Modbus: the map's first address (docs/plc.md, "address base")
    handshake: bool = False  # preset of HandshakeEnable (the PLC can switch it)
    trigger_enabled: bool = False  # preset of TriggerEnable: accept triggers before the PLC sets it
    users_file: str = ""  # OPC UA: user names and password hashes (lineside plc-user)

    @property
    def enabled(self) -> bool:
        return self.protocol in DEFAULT_PORTS

    @property
    def protocol_name(self) -> str:
        return dict(PROTOCOLS).get(self.protocol, "Off")

    @property
    def local_only(self) -> bool:
        return is_loopback(self.host)

    @property
    def url(self) -> str:
        if self.protocol == "opcua":
            return f"opc.tcp://{self.host}:{self.port}/lineside/"
        return f"modbus://{self.host}:{self.port}"

    def describe(self) -> str:
        """One line for the signal panel's title."""
        if not self.enabled:
            return "PLC off"
        base = f", base {self.base}" if self.protocol == "modbus" and self.base else ""
        who = "this PC only" if self.local_only else "open to the network"
        return f"{self.protocol_name} {self.host}:{self.port}{base} · {who}"


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def load_plc(project) -> PlcConfig:
    """The project's PLC settings; anything unusable falls back to the default (off)."""
    raw: Any = project.get_setting(PLC_SETTING) if project is not None else None
    if not isinstance(raw, dict):
        return PlcConfig()
    config = PlcConfig()
    try:
        protocol = raw.get("protocol") if raw.get("protocol") in dict(PROTOCOLS) else "off"
        config = replace(
            config, protocol=protocol, host=str(raw.get("host") or DEFAULT_HOST).strip(),
            port=int(raw.get("port") or DEFAULT_PORTS.get(protocol, 5020)), base=int(raw.get("base") or 0),
            handshake=bool(raw.get("handshake")), trigger_enabled=bool(raw.get("trigger_enabled")),
            users_file=str(raw.get("users_file") or ""),
        )  # fmt: skip
    except (TypeError, ValueError):
        return PlcConfig()
    return config


def save_plc(project, config: PlcConfig) -> None:
    if project is not None:
        project.set_setting(PLC_SETTING, asdict(config))


def start_plc_server(link, config: PlcConfig):
    """Serve *link* as *config* says, the way `lineside run --plc` does; the started server.

    Blocks until it listens (call it off the GUI thread). LinesideError with the reason
    (port in use, extra not installed, bad users file).
    """
    try:
        if config.protocol == "modbus":
            from app.core.plc.modbus_server import ModbusServer

            return ModbusServer(link, config.host, config.port, base=config.base).start()
        from app.core.plc.opcua_server import OpcUaServer, read_users

        users = read_users(config.users_file) if config.users_file else None
        return OpcUaServer(link, config.url, secure=not config.local_only, users=users).start()
    except ImportError as exc:
        raise LinesideError(f"the PLC interface is not installed ({exc.name}); install the extra: "
                            "pip install 'lineside[plc]'.") from exc
    except (OSError, ValueError) as exc:
        raise LinesideError(f"the PLC server on {config.url} cannot start: {exc}") from exc


_plc_stops: list[threading.Thread] = []  # appended on the GUI thread, waited for on a line's starter
_plc_stops_lock = threading.Lock()


def stop_plc_in_background(server, link) -> None:
    """An OPC UA server takes about a second to stop: not on the GUI thread."""

    def stop() -> None:
        try:
            if server is not None:
                server.stop()
        finally:
            link.close()

    thread = threading.Thread(target=stop, name="lineside-plc-stop", daemon=True)
    thread.start()
    with _plc_stops_lock:
        _plc_stops.append(thread)


def wait_for_stopped_plc_servers(timeout: float = 15.0) -> None:
    """Until the PLC servers of stopped lines have let go of their ports."""
    with _plc_stops_lock:
        waiting = list(_plc_stops)
    for thread in waiting:
        thread.join(timeout)
    with _plc_stops_lock:
        _plc_stops[:] = [t for t in _plc_stops if t.is_alive()]
