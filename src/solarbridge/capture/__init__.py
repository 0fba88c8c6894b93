"""Packet captures, shared by every family that reads them (``seextract``, ``semonitor --pcap``, the
Sunsynk capture).

Three sans-IO layers, each fed bytes and handing back results, so they can be fuzzed and reused on a
file, a growing file, a directory of rotated captures, a pipe from ``tcpdump -w -`` or a live socket:

* :mod:`.pcap`: classic pcap and pcapng (``CaptureParser``, fed in any chunks) and ``CaptureFile``,
  a file read with the memory of one chunk;
* :mod:`.packets`: link layer (Ethernet with VLAN tags, Linux cooked v1/v2, BSD loopback, raw IP) ->
  IPv4/IPv6 -> a TCP ``Segment`` or UDP ``Datagram``;
* :mod:`.tcp`: ``StreamReassembler``, one direction of one TCP connection: segments in any order in,
  contiguous bytes out, one piece per segment (so a protocol without a length header can still see
  where the sender's writes ended);
* :mod:`.files`: capture files, directories of rotated captures and pipes, read or followed.

A family keeps only its frame cutter: where its messages begin and end in the reassembled bytes.
"""
