#!/usr/bin/env python3
"""
The cost of waking a sleeping thread on this machine, apart from any Tapestry code:
a UDP echo between two processes on loopback, pinged every 1 ms (the server stays
warm) and every 50 ms (it is asleep when each ping comes). Usage:
  python3 bench/wakeup.py server & python3 bench/wakeup.py client
bench/RESULTS.md ("Latency: where it goes") quotes its output.
"""
import socket, sys, time, os
if sys.argv[1] == 'server':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 47011)); s.settimeout(15)
    try:
        while True:
            d, a = s.recvfrom(100); s.sendto(d, a)
    except socket.timeout: pass
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for gap in (0.001, 0.05):
        ts = []
        for i in range(200):
            t = time.perf_counter(); s.sendto(b'x' * 64, ('127.0.0.1', 47011)); s.recvfrom(100); ts.append((time.perf_counter() - t) * 1e6); time.sleep(gap)
        ts.sort(); print(f'gap {gap*1000:.0f} ms: RTT p50 {ts[100]:.0f} us, p99 {ts[198]:.0f} us')
