"""Test hosts for real-peer tests: network namespaces joined by veth pairs, Debian's
strongSwan as the client, and `ikebox daemon` as the box.

Every namespace and address here is made by the test itself: namespaces are named
ikbx-<tag>-<pid>-<role>, addresses come from 198.18.0.0/15 (the benchmarking range of
RFC 2544, which no real network uses), and everything is removed afterwards. Processes
are stopped by the PIDs this module started, never by name.
"""
