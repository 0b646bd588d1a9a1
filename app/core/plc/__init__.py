"""The station's PLC interface: one signal map (signals), one protocol-neutral
handshake (link), and its two faces on the wire: Modbus TCP (modbus_server, pymodbus)
and OPC UA (opcua_server, asyncua). pymodbus and asyncua are the optional extra `plc`;
only the servers import them."""
