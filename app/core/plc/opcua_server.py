"""The PLC link over OPC UA (asyncua): opc.tcp://127.0.0.1:4840/lineside/ unless configured.

Address space (namespace "urn:lineside:station"), under Objects/Lineside:

- `CurrentState` (String): the OPC UA Machine Vision companion spec's (OPC 40100)
  VisionStateMachine state names where they fit: "Preoperational" (starting, no model
  yet), "Operational.Ready", "Operational.SingleExecution" (a triggered part is being
  judged), "Operational.ContinuousExecution" (free-run), "Error" (the inspection thread
  died), "Halted" (stopped). Differences: the spec's state machine is an object with
  transitions and events; here it is one string variable, and Error is left only by
  restarting the station (no Reset method).
- `Inputs/*`: the PLC's signals (signals.INPUTS, writable): Trigger, TriggerEnable,
  ResultAck, ResetCounters, SelectModel, HandshakeEnable, ModelNumber.
- `Outputs/*`: the station's signals (signals.OUTPUTS, read-only, pushed on change so
  subscriptions work): Ready, Busy, TriggerAck, ResultValid, Pass, Fail, DefectClassCode,
  Score, InspectionId, Heartbeat, ErrorCode, MissedTriggers, ...
- Methods (the spec's names where one exists): `StartSingleJob()` -> UInt32 trigger number
  (0: missed) is a Trigger pulse; `AcknowledgeResult()` is a ResultAck pulse;
  `ResetCounters()`; `SelectRecipe(UInt16 model number)` -> String version (the spec's
  recipes are our model versions; its job/part/measurement ids are not used).

Who can connect
---------------
- Default: the loopback interface only, no encryption, anonymous: any program on this
  PC, nobody else.
- `secure=True`: only the Basic256Sha256 SignAndEncrypt endpoint. The server's
  certificate is self-signed and generated once into `<data dir>/opcua/` (see
  app.core.userdirs); clients must trust it. Client certificates: if
  `<data dir>/opcua/trusted/` holds any, only clients with one of those (or signed by
  one) can open a channel; otherwise any client certificate is accepted for the
  encrypted channel and authentication rests on user names.
- `users` ({name: password hash}, see `hash_password` and `lineside plc-user`): when
  given, anonymous sessions are refused and a user name and password are required.
- Listening on an address other than loopback requires secure=True (or
  allow_insecure=True, stated in the log), so results are never sent in clear text on
  a network by accident.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from app.core.errors import LinesideError
from app.core.plc.loop_thread import LoopThreadServer
from app.core.plc.link import PlcLink
from app.core.plc.signals import BOOL, INPUTS, OUTPUTS, U16, U32, Signal

log = logging.getLogger(__name__)

DEFAULT_URL = "opc.tcp://127.0.0.1:4840/lineside/"
NAMESPACE = "urn:lineside:station"
APP_URI = "urn:lineside:station:server"
PBKDF2_ROUNDS = 200_000


def hash_password(password: str, salt: bytes | None = None, rounds: int = PBKDF2_ROUNDS) -> str:
    """A password as stored in a users file: pbkdf2_sha256$rounds$salt$hash."""
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, rounds)
    return f"pbkdf2_sha256${rounds}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, rounds, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        again = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(rounds))
        return hmac.compare_digest(again, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def read_users(path: Path | str) -> dict[str, str]:
    """A users file: one `name:pbkdf2_sha256$...` per line (# comments)."""
    users = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LinesideError(f"{path}: the OPC UA users file cannot be read ({exc.strerror or exc}).") from exc
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not stored.startswith("pbkdf2_sha256$"):
            raise LinesideError(f"{path}:{number}: expected NAME:pbkdf2_sha256$... (make it with `lineside plc-user`).")
        users[name.strip()] = stored.strip()
    if not users:
        raise LinesideError(f"{path}: the OPC UA users file names no user.")
    return users


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _variant_type(signal: Signal):
    from asyncua import ua

    return {BOOL: ua.VariantType.Boolean, U16: ua.VariantType.UInt16, U32: ua.VariantType.UInt32}[signal.kind]


def _value(signal: Signal, value: int) -> Any:
    return bool(value) if signal.kind == BOOL else int(value)


class OpcUaServer(LoopThreadServer):
    """Serves a PlcLink over OPC UA until stop()."""

    name = "OPC UA"

    def __init__(
        self,
        link: PlcLink,
        url: str = DEFAULT_URL,
        *,
        secure: bool = False,
        users: dict[str, str] | None = None,
        cert_dir: Path | str | None = None,
        allow_insecure: bool = False,
    ) -> None:
        super().__init__()
        parsed = urlparse(url)
        if parsed.scheme != "opc.tcp" or not parsed.hostname:
            raise LinesideError(f"{url}: an OPC UA endpoint looks like opc.tcp://127.0.0.1:4840/lineside/.")
        self.host, self.port = parsed.hostname, parsed.port or 4840
        if not _is_loopback(self.host) and not secure and not allow_insecure:
            raise LinesideError(
                f"{url}: listening beyond this PC needs encryption (--opcua-secure, with users); "
                "OPC UA without security would let anyone on the network trigger the station."
            )
        self.url = url if url.endswith("/") else url + "/"
        self.link = link
        self.secure = secure
        self.users = dict(users or {})
        self.cert_dir = Path(cert_dir) if cert_dir is not None else None
        self._inputs: dict[Any, Signal] = {}  # nodeid -> input signal
        self._outputs: dict[str, tuple[Any, Signal]] = {}  # name -> (nodeid, signal)
        self._state_node: Any = None
        self._shown: dict[str, Any] = {}
        self._push_pending = False
        self.certificate: Path | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> "OpcUaServer":
        self._start_thread(timeout, self.url)
        self.link.subscribe(self._wake)
        log.info("OPC UA server on %s (%s, %s)", self.url,
                 "Basic256Sha256 SignAndEncrypt" if self.secure else "no security",
                 f"{len(self.users)} users" if self.users else "anonymous")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)

    async def _shutdown(self) -> None:
        await self._server.stop()

    # -- the address space ---------------------------------------------------------------------

    async def _serve(self) -> None:
        from asyncua import Server, ua
        from asyncua.common.callback import CallbackType

        server = Server(user_manager=_Users(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("Lineside station")
        await server.set_application_uri(APP_URI)
        if self.secure:
            await self._load_certificate(server)
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.UserNameIdentityToken] if self.users else [ua.AnonymousIdentityToken])
        ns = await server.register_namespace(NAMESPACE)
        root = await server.nodes.objects.add_object(ns, "Lineside")
        self._state_node = await root.add_variable(ns, "CurrentState", "Preoperational", ua.VariantType.String)
        inputs = await root.add_object(ns, "Inputs")
        outputs = await root.add_object(ns, "Outputs")
        current = self.link.inputs()
        for signal in INPUTS:
            node = await inputs.add_variable(ns, signal.opcua, _value(signal, current[signal.name]),
                                             _variant_type(signal))
            await node.set_writable()
            self._inputs[node.nodeid] = signal
        now = self.link.outputs()
        for signal in OUTPUTS:
            node = await outputs.add_variable(ns, signal.opcua, _value(signal, now[signal.name]), _variant_type(signal))
            self._outputs[signal.name] = (node.nodeid, signal)
        await root.add_method(ns, "StartSingleJob", self._start_single_job, [], [ua.VariantType.UInt32])
        await root.add_method(ns, "AcknowledgeResult", self._acknowledge, [], [])
        await root.add_method(ns, "ResetCounters", self._reset_counters, [], [])
        await root.add_method(ns, "SelectRecipe", self._select_recipe, [ua.VariantType.UInt16], [ua.VariantType.String])
        server.subscribe_server_callback(CallbackType.PostWrite, self._on_write)
        await server.start()
        self._server = server
        await self._push()

    async def _load_certificate(self, server: Any) -> None:
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from asyncua.crypto.truststore import TrustStore
        from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
        from cryptography.x509.oid import ExtendedKeyUsageOID

        if self.cert_dir is None:
            from app.core.userdirs import data_dir

            self.cert_dir = data_dir() / "opcua"
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        key, cert = self.cert_dir / "server_key.pem", self.cert_dir / "server_cert.der"
        await setup_self_signed_certificate(
            key, cert, APP_URI, self.host, [ExtendedKeyUsageOID.SERVER_AUTH],
            {"countryName": "DE", "organizationName": "Lineside", "commonName": "Lineside station"},
        )  # fmt: skip
        try:
            os.chmod(key, 0o600)
        except OSError:
            pass
        self.certificate = cert
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        trusted = self.cert_dir / "trusted"
        if trusted.is_dir() and any(p.suffix.lower() in (".der", ".pem") for p in trusted.iterdir()):
            store = TrustStore([trusted], [])
            await store.load()
            server.set_certificate_validator(CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store))
            log.info("OPC UA: only client certificates in %s are accepted", trusted)

    # -- PLC -> station --------------------------------------------------------------------

    async def _on_write(self, event: Any, _dispatcher: Any) -> None:
        changes = {}
        statuses = event.response_params or []
        for index, item in enumerate(event.request_params.NodesToWrite):
            signal = self._inputs.get(item.NodeId)
            good = index >= len(statuses) or statuses[index].is_good()
            if signal is None or not good:
                continue
            changes[signal.name] = item.Value.Value.Value
        if changes:
            self.link.set_inputs(changes)
            await self._push()

    async def _pulse(self, name: str) -> None:
        self.link.set_inputs({name: 1})
        self.link.set_inputs({name: 0})
        await self._push()

    async def _start_single_job(self, parent: Any) -> list:
        from asyncua import ua

        before = self.link.session.triggers if self.link.session is not None else 0
        await self._pulse("trigger")
        after = self.link.session.triggers if self.link.session is not None else 0
        return [ua.Variant(after if after != before else 0, ua.VariantType.UInt32)]

    async def _acknowledge(self, parent: Any) -> list:
        await self._pulse("result_ack")
        return []

    async def _reset_counters(self, parent: Any) -> list:
        await self._pulse("reset_counters")
        return []

    async def _select_recipe(self, parent: Any, number: Any) -> list:
        from asyncua import ua

        session = self.link.session
        value = int(getattr(number, "Value", number))
        try:
            version = await asyncio.get_running_loop().run_in_executor(
                None, session.select_model, f"v{value}" if value else None)
        except LinesideError as exc:
            raise ua.UaStatusCodeError(ua.StatusCodes.BadInvalidArgument) from exc
        await self._push()
        return [ua.Variant(version, ua.VariantType.String)]

    # -- station -> PLC ----------------------------------------------------------------------

    def _wake(self) -> None:
        """PlcLink outputs changed (any thread): push them once on the server's loop."""
        loop = self._loop
        if loop is None or self._push_pending or not loop.is_running():
            return
        self._push_pending = True
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._push()))

    def _state(self, out: dict[str, int]) -> str:
        session = self.link.session
        if session is None or session.state in ("created", "starting") or session.model_version is None:
            return "Preoperational"
        if session.state == "stopped" or not session.running:
            return "Halted"
        if not session.alive:
            return "Error"
        if not session.triggered:
            return "Operational.ContinuousExecution"
        return "Operational.SingleExecution" if out["busy"] else "Operational.Ready"

    async def _push(self) -> None:
        from asyncua import ua

        self._push_pending = False
        server = self._server
        if server is None:
            return
        out = self.link.outputs()
        for name, (nodeid, signal) in self._outputs.items():
            value = _value(signal, out[name])
            if self._shown.get(name) != value:
                self._shown[name] = value
                await server.write_attribute_value(nodeid, ua.DataValue(ua.Variant(value, _variant_type(signal))))
        state = self._state(out)
        if self._shown.get("CurrentState") != state:
            self._shown["CurrentState"] = state
            await server.write_attribute_value(self._state_node.nodeid,
                                               ua.DataValue(ua.Variant(state, ua.VariantType.String)))


class _Users:
    """asyncua UserManager: names and pbkdf2 password hashes; nobody else."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        stored = self.users.get(username or "")
        if stored is None or password is None or not check_password(password, stored):
            log.warning("OPC UA: refused user %r", username)
            return None
        return User(role=UserRole.User, name=username)
