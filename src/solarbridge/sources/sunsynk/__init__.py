"""Sunsynk / Inteless WiFi dongle: passive capture of the reports it sends to its cloud.

``fields`` (the field table as data), ``codec`` (sans-IO report decoder), ``reassembly`` (per-flow TCP
stream reassembly), ``pcapfile`` (streaming pcap/pcapng reader), ``live`` (receive-only AF_PACKET capture),
``source`` (the ``sunsynk_capture`` source), ``simulator`` (dongle + fake cloud on loopback).
"""
