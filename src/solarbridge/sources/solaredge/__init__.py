"""SolarEdge proprietary protocol: sans-IO codec, semonitor engine, transports, simulator and daemon source.

Modules, each one idea:

- ``crc``        CRC-16 (reflected 0x8005, init 0x5A5A) as the protocol uses it
- ``framing``    frame encode/decode and the streaming decoder (resync, drop counters)
- ``functions``  function-code names and the well-known codes
- ``messages``   payload parsers for the non-telemetry functions (param get/set, version, GMT, ...)
- ``records``    0x0500 telemetry device records: layouts as tables, one decoder, semonitor's dict
- ``render``     the same records written straight as semonitor's JSON text (fast ``semonitor -o``)
- ``crypto``     legacy AES scheme: key file, 0x0503 session key, 0x003d wrapper
- ``jsonout``    semonitor-identical JSON lines
- ``session``    the sans-IO monitor (frames in, replies + output records out) and the RS485 master side
                 (bus grants, command/answer matching)
- ``commands``   ``-c`` command strings and the sequence file
- ``transports`` file/stdin/follow, serial, TCP server byte streams
- ``readings``   canonical :class:`~solarbridge.model.Reading` objects from decoded records
- ``source``     the ``solaredge`` daemon source
- ``extract``    the SolarEdge stream out of packet captures (frame cutter over :mod:`solarbridge.capture`)
- ``simulator``  an inverter / RS485 bus speaking the real protocol over a pty or TCP
"""
