"""The "PLC…" dialog of the Inspect workspace: protocol, bind address, port, address base,
handshake. Kept in the project (app.ui.inspect.inspect_plc); used from the next Start on.

The dialog says who can connect, because that is the decision being made: on
127.0.0.1 only programs on this PC reach the station; any other address lets every
machine that reaches it in, and Modbus TCP has no security of its own.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.plc.modbus_server import MAX_BASE
from app.ui.inspect.inspect_plc import DEFAULT_HOST, DEFAULT_PORTS, PROTOCOLS, PlcConfig, is_loopback
from app.ui.shared.style import FAIL, MUTED, WARN

LOCAL_TEXT = ("Only programs on this PC can connect (127.0.0.1). Other machines, the PLC "
              "included, can connect only if you change the bind address to this PC's address "
              "on the PLC's network.")
MODBUS_OPEN_TEXT = ("Modbus TCP has no security: every machine that reaches this address can "
                    "trigger the station and read results. Use a network that is the cell's alone.")
OPCUA_OPEN_TEXT = ("OPC UA beyond this PC runs encrypted only (Basic256Sha256 SignAndEncrypt): the PLC "
                   "must trust the station's certificate; a users file makes it log in (lineside plc-user).")


class PlcSettingsDialog(QDialog):
    def __init__(self, config: PlcConfig, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PLC")
        self.setMinimumWidth(600)
        self._config = config
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.protocol_combo = QComboBox()
        for key, text in PROTOCOLS:
            self.protocol_combo.addItem(text, key)
        self.protocol_combo.setCurrentIndex(max(0, self.protocol_combo.findData(config.protocol)))
        self.host_edit = QLineEdit(config.host)
        self.host_edit.setPlaceholderText(DEFAULT_HOST)
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(config.port)
        self.base_spin = QSpinBox()
        self.base_spin.setRange(0, MAX_BASE)
        self.base_spin.setValue(config.base)
        self.base_spin.setToolTip("The map's first address: 0 as in docs/plc.md (coil 0 = Trigger); "
                                  "1 for a PLC that counts Modbus addresses from 1; or the range your PLC program reserves")
        self.handshake_box = QCheckBox("Handshake: hold each result until the PLC's ResultAck")
        self.handshake_box.setChecked(config.handshake)
        self.enabled_box = QCheckBox("Accept triggers before the PLC sets TriggerEnable")
        self.enabled_box.setChecked(config.trigger_enabled)
        self.users_edit = QLineEdit(config.users_file)
        self.users_edit.setPlaceholderText("none: anonymous clients")
        self.users_button = QPushButton("Browse…")
        users_row = QHBoxLayout()
        users_row.addWidget(self.users_edit, 1)
        users_row.addWidget(self.users_button)
        form.addRow("Protocol", self.protocol_combo)
        form.addRow("Bind address", self.host_edit)
        form.addRow("Port", self.port_spin)
        form.addRow("Address base", self.base_spin)
        form.addRow("OPC UA users", users_row)
        form.addRow("", self.handshake_box)
        form.addRow("", self.enabled_box)
        layout.addLayout(form)
        self.who_label = QLabel("")
        self.who_label.setWordWrap(True)
        layout.addWidget(self.who_label)
        note = QLabel("Used from the next Start. The signals and their timing: docs/plc.md.")
        note.setStyleSheet(f"color: {MUTED};")
        layout.addWidget(note)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.protocol_combo.currentIndexChanged.connect(lambda _i: self._protocol_changed())
        self.host_edit.textChanged.connect(lambda _t: self._update())
        self.users_button.clicked.connect(lambda: self._browse_users())
        self._last_protocol = config.protocol
        self._update()

    def protocol(self) -> str:
        return str(self.protocol_combo.currentData())

    def _protocol_changed(self) -> None:
        # A port still at the old protocol's default moves to the new one's.
        new = self.protocol()
        if DEFAULT_PORTS.get(self._last_protocol) == self.port_spin.value() and new in DEFAULT_PORTS:
            self.port_spin.setValue(DEFAULT_PORTS[new])
        self._last_protocol = new
        self._update()

    def _browse_users(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "OPC UA users file", self.users_edit.text())
        if path:
            self.users_edit.setText(path)

    def _update(self) -> None:
        protocol = self.protocol()
        on = protocol != "off"
        for widget in (self.host_edit, self.port_spin, self.handshake_box, self.enabled_box):
            widget.setEnabled(on)
        self.base_spin.setEnabled(protocol == "modbus")
        self.users_edit.setEnabled(protocol == "opcua")
        self.users_button.setEnabled(protocol == "opcua")
        host = self.host_edit.text().strip() or DEFAULT_HOST
        if not on:
            text, color = "The station talks to no PLC; parts are taken by the mode and the trigger key.", MUTED
        elif is_loopback(host):
            text, color = LOCAL_TEXT, MUTED
        else:
            text = f"Machines that reach {host} can connect. " + (MODBUS_OPEN_TEXT if protocol == "modbus" else OPCUA_OPEN_TEXT)
            color = FAIL if protocol == "modbus" else WARN
        self.who_label.setText(text)
        self.who_label.setStyleSheet(f"color: {color};")

    def config(self) -> PlcConfig:
        """The settings as the dialog shows them."""
        return replace(
            self._config, protocol=self.protocol(), host=self.host_edit.text().strip() or DEFAULT_HOST,
            port=self.port_spin.value(), base=self.base_spin.value(), handshake=self.handshake_box.isChecked(),
            trigger_enabled=self.enabled_box.isChecked(), users_file=self.users_edit.text().strip(),
        )  # fmt: skip
