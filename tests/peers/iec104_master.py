"""An IEC 60870-5-104 master pedf did not write, for pedf's outstation tests.

Built on the `c104` package (PyPI, on lib60870-C): it connects to the station, starts data
transfer and then does what the test asks, one JSON object per line on stdin, answering
each with one JSON line on stdout:

    python iec104_master.py HOST PORT COMMON_ADDRESS

- {"do": "interrogate"}: a station interrogation; the answer says whether it was confirmed.
- {"do": "points"}: every monitoring point the master holds: address, type, value, quality,
  time tag.
- {"do": "clock"}: a clock synchronisation with the master's time.
- {"do": "set", "ioa": N, "value": X, "sbo": false}: a short-float setpoint (select before
  operate when `sbo`); the answer says whether the station confirmed it.
- {"do": "wait", "ioa": N, "near": X, "within": T, "seconds": S}: waits until the point's
  value is within T of X (sent spontaneously or periodically); with "below": X or
  "above": X instead, until it is at most or at least X.
- {"do": "quit"}.

c104 2.2.1 can lose a confirmation that arrives before it starts waiting for it
(`Connection::awaitCommandSuccess` waits on its condition variable without looking at the
state first): a station on loopback answers within microseconds. So the outcome of each
command is read from the frames c104 received (its `on_receive_raw`): the activation
confirmation, positive or negative, for the command's type and address; c104's own verdict is
said beside it. With IEC104_TRACE set, every frame sent and received is explained on stderr.
"""

import json
import os
import sys
import time

import c104


def say(**what):
    print(json.dumps(what), flush=True)


def main():
    host, port, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = c104.Client(tick_rate_ms=50, command_timeout_ms=3000)
    conn = client.add_connection(ip=host, port=port, init=c104.Init.NONE)
    station = conn.add_station(common_address=ca)

    # c104 checks a callback's annotations.
    def new_point(client: c104.Client, station: c104.Station, io_address: int,
                  point_type: c104.Type) -> None:
        station.add_point(io_address=io_address, type=point_type)

    client.on_new_point(callable=new_point)
    # Every I-frame c104 received: (type, cause, negative, address, select bit of a setpoint).
    wire = []

    trace = bool(os.environ.get("IEC104_TRACE"))

    def received_frame(connection: c104.Connection, data: bytes) -> None:
        if trace:
            print("<- " + c104.explain_bytes(apdu=data), file=sys.stderr, flush=True)
        if len(data) >= 15 and data[0] == 0x68 and data[2] & 1 == 0:
            a = data[6:]
            select = len(a) >= 14 and a[0] == 50 and bool(a[13] & 0x80)
            wire.append((a[0], a[2] & 0x3F, bool(a[2] & 0x40),
                         a[6] | a[7] << 8 | a[8] << 16, select))

    conn.on_receive_raw(callable=received_frame)

    def outcome(type_id, ioa, since, seconds=5.0, select=False, term=False):
        """The station's answer to a command from the frames received after `since`:
        True (confirmed, and terminated when `term`), False (refused), None (nothing)."""
        end = time.time() + seconds
        while time.time() < end:
            got = [w for w in wire[since:] if w[0] == type_id and w[3] == ioa and w[4] == select]
            con = [w for w in got if w[1] == 7]
            if con and con[0][2]:
                return False
            if con and (not term or any(w[1] == 10 for w in got)):
                return True
            time.sleep(0.02)
        return None
    if trace:
        def sent(connection: c104.Connection, data: bytes) -> None:
            print("-> " + c104.explain_bytes(apdu=data), file=sys.stderr, flush=True)

        conn.on_send_raw(callable=sent)
    client.start()
    deadline = time.time() + 10
    # Connected (muted: no data transfer yet), then started: STARTDT, confirmed.
    while not conn.is_connected and time.time() < deadline:
        time.sleep(0.02)
    conn.unmute()
    while conn.state != c104.ConnectionState.OPEN and time.time() < deadline:
        time.sleep(0.02)
    say(event="connected", ok=conn.state == c104.ConnectionState.OPEN, state=str(conn.state))
    commands = {}
    for line in sys.stdin:
        ask = json.loads(line)
        do = ask["do"]
        if do == "quit":
            break
        if do == "interrogate":
            since = len(wire)
            sent = conn.interrogation(common_address=ca, wait_for_response=False)
            say(event="interrogated", ok=sent and outcome(100, 0, since, term=True) is True)
        elif do == "clock":
            since = len(wire)
            sent = conn.clock_sync(common_address=ca, wait_for_response=False)
            say(event="clock", ok=sent and outcome(103, 0, since) is True)
        elif do == "points":
            out = []
            for p in station.points:
                v = p.value
                out.append({
                    "ioa": p.io_address, "type": str(p.type), "value":
                        v if isinstance(v, (int, float, bool)) or v is None else float(v),
                    "invalid": bool(p.quality is not None and p.quality.is_any()
                                    and c104.Quality.Invalid in p.quality),
                    "time": p.recorded_at.isoformat() if p.recorded_at else None,
                })
            say(event="points", points=out)
        elif do == "set":
            ioa = ask["ioa"]
            key = (ioa, ask.get("sbo", False))
            if key not in commands:
                cmd = station.add_point(io_address=ioa, type=c104.Type.C_SE_NC_1)
                if cmd is None:
                    cmd = station.get_point(io_address=ioa)
                cmd.command_mode = (c104.CommandMode.SELECT_AND_EXECUTE if ask.get("sbo")
                                    else c104.CommandMode.DIRECT)
                commands[key] = cmd
            cmd = commands[key]
            cmd.value = float(ask["value"])
            since = len(wire)
            verdict = cmd.transmit(cause=c104.Cot.ACTIVATION)
            retried = False
            # The selection was confirmed but c104 lost it and never executed (its lost
            # wake-up, more likely on a loaded machine): again, at most three times.
            for _ in range(3):
                if verdict or not ask.get("sbo") \
                        or outcome(50, ioa, since, 1.0, select=True) is not True \
                        or outcome(50, ioa, since, 0.2) is not None:
                    break
                retried = True
                since = len(wire)
                verdict = cmd.transmit(cause=c104.Cot.ACTIVATION)
            seen = outcome(50, ioa, since, term=bool(ask.get("sbo")))
            say(event="set", ioa=ioa, ok=seen is True, c104=verdict, retried=retried)
        elif do == "wait":
            def fits(v):
                if "below" in ask:
                    return v <= ask["below"]
                if "above" in ask:
                    return v >= ask["above"]
                return abs(v - ask["near"]) <= ask["within"]

            end = time.time() + ask["seconds"]
            got = None
            while time.time() < end:
                p = station.get_point(io_address=ask["ioa"])
                if p is not None and p.value is not None:
                    got = float(p.value)
                    if fits(got):
                        break
                time.sleep(0.02)
            say(event="waited", ioa=ask["ioa"], value=got, ok=got is not None and fits(got))
    client.stop()
    say(event="done")


if __name__ == "__main__":
    main()
