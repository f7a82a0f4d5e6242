"""The program server: an OpenADR 2.0b VTN (OpenLEADR) for the utilities' programs.

``models`` (tables), ``repository`` (SQL), ``service`` (provisioning and registration),
``events`` (demand-response events and the VENs' answers), ``telemetry`` (report streams and
readings), ``server`` (the OpenLEADR VTN wired to those, and its loop). See
``docs/program-server.md``.
"""
