"""Sunsynk / Inteless WiFi dongle: passive capture of the reports it sends to its cloud.

``fields`` (the field table as data), ``codec`` (sans-IO report decoder), ``reassembly`` (the frame cutter:
reports out of TCP flows rebuilt by :mod:`solarbridge.capture`, which also reads pcap/pcapng files),
``live`` (receive-only AF_PACKET capture),
``source`` (the ``sunsynk_capture`` source), ``simulator`` (dongle + fake cloud on loopback).
"""
