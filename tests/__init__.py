"""OpenVPP wallet test suite."""
