"""A DL/T 645-2007 meter pedf did not write, for pedf's meter tests.

Built on the `dlt645` package (PyPI), whose meter side answers a master's reads over TCP (as
a serial gateway would carry them) from its own register map. It plays the grid company's
billing meter of a park and says what happens as JSON lines on stdout:

    python dlt645_meter.py PORT ADDRESS SCENARIO

PORT `pty`: the meter on a serial line instead (the package's RTU server at 2400 Bd, 8E1, on
a pseudo-terminal), the line reached through a second pseudo-terminal whose path the `ready`
line gives (`path`): the bytes are carried between the two as an RS-485 converter would.

Scenarios:
- `static`: registers set once (forward 12345.67 kWh over four tariff periods, reverse
  89.01 kWh, power -12.3456 kW (exporting), phase A 230.1 V and -15.123 A, the month's
  maximum demand 45.6789 kW); serves until stdin closes.
- `counting`: the same, the forward register rising by 0.05 kWh every 0.1 s (the park
  importing 1.8 kW on the secondary side), its power following.
"""

import json
import os
import pty
import select
import sys
import threading
import time
from datetime import datetime

from dlt645 import MeterServerService
from dlt645.model.types.dlt645_type import Demand


def say(**what):
    print(json.dumps(what), flush=True)


def main():
    port, address, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    serial_path = None
    if port == "pty":
        # Two pseudo-terminals, their masters joined: the meter's line and pedf's.
        meter_master, meter_slave = pty.openpty()
        line_master, line_slave = pty.openpty()
        serial_path = os.ttyname(line_slave)

        def carry():
            while True:
                ready, _, _ = select.select([meter_master, line_master], [], [])
                for fd in ready:
                    data = os.read(fd, 4096)
                    os.write(line_master if fd == meter_master else meter_master, data)

        threading.Thread(target=carry, daemon=True).start()
        meter = MeterServerService.new_rtu_server(os.ttyname(meter_slave), 8, 1, 2400, "E", 5.0)
    else:
        meter = MeterServerService.new_tcp_server("127.0.0.1", int(port), 5.0)
    # The package keeps an address as the bytes on the wire; the standard puts the lowest
    # two digits of the nameplate's first: the nameplate's digits, reversed by byte.
    digits = address.rjust(12, "0")
    meter.set_address(bytes(int(digits[i:i + 2], 16) for i in range(10, -1, -2)))
    forward = 12345.67
    meter.set_00(0x00010000, forward)
    meter.set_00(0x00020000, 89.01)
    for k, v in enumerate([1000.11, 4000.22, 5000.33, 2345.01], start=1):
        meter.set_00(0x00010000 | (k << 8), v)
    meter.set_02(0x02030000, -12.3456)
    meter.set_02(0x02010100, 230.1)
    meter.set_02(0x02020100, -15.123)
    meter.set_01(0x01010000, Demand(45.6789, datetime(2026, 6, 3, 14, 15)))
    if not meter.start():
        say(event="failed")
        return
    say(event="ready", port=port, path=serial_path)
    stop = threading.Event()

    def count():
        nonlocal forward
        while not stop.wait(0.1):
            forward = round(forward + 0.05, 2)
            meter.set_00(0x00010000, forward)
            meter.set_02(0x02030000, 1.8)

    if scenario == "counting":
        threading.Thread(target=count, daemon=True).start()
    sys.stdin.read()
    stop.set()
    meter.stop()
    say(event="done")


if __name__ == "__main__":
    main()
