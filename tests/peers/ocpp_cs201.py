"""An OCPP 2.0.1 charging station pedf did not write, for pedf's CSMS tests.

Built on the `ocpp` package (mobilityhouse), which checks every message it sends and
receives against the official OCPP 2.0.1 JSON schemas, over `websockets`. It plays a
station with one EVSE (id 1, one connector) and a car behind it, and says what happens as
JSON lines on stdout:

    python ocpp_cs201.py URL IDENTITY PASSWORD SCENARIO

A `wss://` URL is TLS (OCPP security profile 2): the CSMS's certificate is trusted from the
PEM file the environment variable OCPP_CA names.

Scenarios:
- `session`: wrong-schema messages first (their CALLERRORs printed), then (holding a default
  profile another CSMS left at stack level 5) boot, status,
  authorize (a listed token and a stranger), a transaction (Started with the register,
  Updated every 0.2 s with meter values at the power the charging profiles allow, 11 kW at
  most) until the CSMS asks for a stop; the Ended sent twice (as after a lost answer).
- `reconnect`: a transaction started; the connection dropped; offline, the car charges on
  and the station queues its events; back, the queued Updated events go out marked offline,
  then the Ended; then a whole transaction held while offline (Started, Ended) is sent.
- `operate`: boot and available, then does what the CSMS asks (variables read and set, a
  transaction started and stopped remotely, availability changed, a message triggered)
  until it is reset.
"""

import asyncio
import base64
import json
import logging
import os
import ssl
import sys
import uuid
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint as Cp
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

MAX_KW = 11.0
PHASES = 3
VOLTS = 230.0


def say(**what):
    print(json.dumps(what), flush=True)


def now():
    return datetime.now(timezone.utc).isoformat()


class Station(Cp):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.profiles = {}  # (purpose, stack level) -> profile
        self.tx = None
        self.seq = 0
        self.wh = 1000
        self.stop_asked = asyncio.Event()
        self.reset_asked = asyncio.Event()
        self.variables = {("SampledDataCtrlr", "TxUpdatedInterval"): "60",
                          ("OCPPCommCtrlr", "HeartbeatInterval"): "300",
                          ("ChargingStation", "Model"): "Wallbox 22"}
        self.unavailable_after_tx = False
        self.start_token = None

    def limit_kw(self):
        """The composite limit now: the transaction's profile over the default ones, the
        highest stack level of each purpose first (payloads come with snake_case keys)."""
        def best(purpose):
            ps = [p for (pu, _), p in self.profiles.items() if pu == purpose]
            if purpose == "TxProfile":
                ps = [p for p in ps if p.get("transaction_id") == self.tx]
            return max(ps, key=lambda p: p["stack_level"]) if ps else None

        p = best("TxProfile") or best("TxDefaultProfile")
        if p is None:
            return MAX_KW, None
        s = p["charging_schedule"][0]
        period = s["charging_schedule_period"][0]
        limit = float(period["limit"])
        if s["charging_rate_unit"] == "A":
            kw = limit * VOLTS * period.get("number_phases", PHASES) / 1000.0
        else:
            kw = limit / 1000.0
        return min(kw, MAX_KW), p

    @on(Action.set_charging_profile)
    def on_set_profile(self, evse_id, charging_profile, **_):
        p = charging_profile
        s = p["charging_schedule"][0]
        if p["charging_profile_purpose"] == "TxProfile" and p.get("transaction_id") != self.tx:
            # K01.FR.09: a TxProfile needs the transaction it is for.
            say(event="profile_refused", transaction=p.get("transaction_id"))
            return call_result.SetChargingProfile(status="Rejected")
        self.profiles[(p["charging_profile_purpose"], p["stack_level"])] = p
        say(event="profile", evse=evse_id, purpose=p["charging_profile_purpose"],
            stack=p["stack_level"], id=p["id"], schedule_id=s["id"],
            transaction=p.get("transaction_id"), unit=s["charging_rate_unit"],
            limit=float(s["charging_schedule_period"][0]["limit"]),
            duration=s.get("duration"))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.get_composite_schedule)
    def on_composite(self, duration, evse_id, charging_rate_unit=None, **_):
        kw, p = self.limit_kw()
        if p is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        s = p["charging_schedule"][0]
        return call_result.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": now(),
                "charging_rate_unit": s["charging_rate_unit"],
                "charging_schedule_period": [{
                    k: (float(v) if k == "limit" else v)
                    for k, v in s["charging_schedule_period"][0].items()
                }],
            },
        )

    @on(Action.clear_charging_profile)
    def on_clear(self, charging_profile_id=None, charging_profile_criteria=None, **_):
        c = charging_profile_criteria or {}
        purpose, level = c.get("charging_profile_purpose"), c.get("stack_level")
        gone = [k for k, p in self.profiles.items()
                if (charging_profile_id is None or p["id"] == charging_profile_id)
                and (purpose is None or k[0] == purpose)
                and (level is None or k[1] == level)]
        for k in gone:
            del self.profiles[k]
        say(event="cleared", purpose=purpose, n=len(gone))
        return call_result.ClearChargingProfile(status="Accepted" if gone else "Unknown")

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id, **_):
        say(event="remote_stop", transaction=transaction_id)
        if transaction_id != self.tx:
            return call_result.RequestStopTransaction(status="Rejected")
        self.stop_asked.set()
        return call_result.RequestStopTransaction(status="Accepted")

    @on(Action.request_start_transaction)
    def on_request_start(self, id_token, remote_start_id, evse_id=None, **_):
        say(event="remote_start", id_token=id_token, evse=evse_id, remote_start_id=remote_start_id)
        if self.tx is not None or self.unavailable:
            return call_result.RequestStartTransaction(status="Rejected")
        self.start_token = (id_token, remote_start_id)
        return call_result.RequestStartTransaction(status="Accepted")

    @after(Action.request_start_transaction)
    async def after_request_start(self, **_):
        if self.start_token is None or self.tx is not None:
            return
        token, remote_id = self.start_token
        self.start_token = None
        await self.start_tx(token, trigger="RemoteStart", remote_start_id=remote_id)

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data, **_):
        results = []
        for d in set_variable_data:
            key = (d["component"]["name"], d["variable"]["name"])
            say(event="variable_set", component=key[0], variable=key[1], value=d["attribute_value"])
            if key == ("ChargingStation", "Model"):
                status = "Rejected"
            elif key in self.variables:
                self.variables[key] = d["attribute_value"]
                status = "Accepted"
            else:
                status = "UnknownComponent" if key[0] not in {k[0] for k in self.variables} \
                    else "UnknownVariable"
            results.append({"attribute_status": status, "component": d["component"],
                            "variable": d["variable"]})
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data, **_):
        results = []
        for d in get_variable_data:
            key = (d["component"]["name"], d["variable"]["name"])
            r = {"component": d["component"], "variable": d["variable"]}
            if key in self.variables:
                r.update(attribute_status="Accepted", attribute_value=self.variables[key])
            else:
                r.update(attribute_status="UnknownVariable")
            results.append(r)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.change_availability)
    def on_change_availability(self, operational_status, evse=None, **_):
        say(event="availability", evse=evse, status=operational_status)
        if operational_status == "Inoperative" and self.tx is not None:
            self.unavailable_after_tx = True
            return call_result.ChangeAvailability(status="Scheduled")
        self.unavailable = operational_status == "Inoperative"
        return call_result.ChangeAvailability(status="Accepted")

    @after(Action.change_availability)
    async def after_change_availability(self, operational_status, **_):
        if self.tx is None:
            await self.status("Unavailable" if operational_status == "Inoperative" else "Available")

    @on(Action.trigger_message)
    def on_trigger(self, requested_message, evse=None, **_):
        say(event="triggered", message=requested_message, evse=evse)
        if requested_message not in ("StatusNotification", "Heartbeat", "MeterValues"):
            return call_result.TriggerMessage(status="NotImplemented")
        return call_result.TriggerMessage(status="Accepted")

    @after(Action.trigger_message)
    async def after_trigger(self, requested_message, **_):
        if requested_message == "StatusNotification":
            await self.status("Occupied" if self.tx is not None else "Available")
        elif requested_message == "Heartbeat":
            await self.call(call.Heartbeat())
        elif requested_message == "MeterValues":
            await self.call(call.MeterValues(evse_id=1, meter_value=[self.values("Trigger")]))

    @on(Action.reset)
    def on_reset(self, type, **_):
        say(event="reset", type=type)
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    def after_reset(self, **_):
        self.reset_asked.set()

    unavailable = False

    async def status(self, status):
        await self.call(call.StatusNotification(
            timestamp=now(), connector_status=status, evse_id=1, connector_id=1))

    async def boot(self):
        r = await self.call(call.BootNotification(
            charging_station={"model": "Wallbox 22", "vendor_name": "PeerCo",
                              "firmware_version": "2.0.1-7"},
            reason="PowerUp"))
        say(event="boot", status=r.status, interval=r.interval, current_time=r.current_time)

    def values(self, context, dt=0.2):
        kw, _ = self.limit_kw()
        if context == "Sample.Periodic":
            self.wh += int(round(kw * 1000.0 * dt / 3600.0 * 60.0))  # a minute per tick
        amps = kw * 1000.0 / (VOLTS * PHASES)
        self.kw = kw
        return {
            "timestamp": now(),
            "sampled_value": [
                # The register in kWh (Wh with multiplier 3): scaled by the CSMS.
                {"value": self.wh / 1000.0, "measurand": "Energy.Active.Import.Register",
                 "unit_of_measure": {"unit": "Wh", "multiplier": 3}, "context": context,
                 "location": "Outlet"},
                {"value": round(kw * 1000.0, 1), "measurand": "Power.Active.Import",
                 "unit_of_measure": {"unit": "W"}, "context": context},
                {"value": round(amps, 1), "measurand": "Current.Import", "phase": "L1",
                 "unit_of_measure": {"unit": "A"}},
                {"value": round(amps, 1), "measurand": "Current.Import", "phase": "L2",
                 "unit_of_measure": {"unit": "A"}},
                {"value": round(amps, 1), "measurand": "Current.Import", "phase": "L3",
                 "unit_of_measure": {"unit": "A"}},
                {"value": 61, "measurand": "SoC", "unit_of_measure": {"unit": "Percent"},
                 "location": "EV"},
            ],
        }

    def event(self, kind, trigger, state=None, offline=None, token=None, reason=None,
              context="Sample.Periodic", remote_start_id=None):
        self.seq += 1
        info = {"transaction_id": self.tx}
        if state:
            info["charging_state"] = state
        if reason:
            info["stopped_reason"] = reason
        if remote_start_id is not None:
            info["remote_start_id"] = remote_start_id
        return call.TransactionEvent(
            event_type=kind, timestamp=now(), trigger_reason=trigger, seq_no=self.seq,
            transaction_info=info, meter_value=[self.values(context)],
            evse={"id": 1, "connector_id": 1} if kind == "Started" else None,
            id_token=token, offline=offline)

    async def start_tx(self, token, trigger="Authorized", remote_start_id=None):
        self.tx = str(uuid.uuid4())
        await self.status("Occupied")
        r = await self.call(self.event("Started", trigger, state="Charging", token=token,
                                       context="Transaction.Begin",
                                       remote_start_id=remote_start_id))
        say(event="started", transaction=self.tx, status=(r.id_token_info or {}).get("status"))

    async def meter(self):
        await self.call(self.event("Updated", "MeterValuePeriodic", state="Charging"))
        say(event="meter", wh=self.wh, kw=self.kw)

    async def stop_tx(self, reason="Remote", trigger="RemoteStop"):
        r = await self.call(self.event("Ended", trigger, state="EVConnected", reason=reason,
                                       context="Transaction.End"))
        say(event="stopped", transaction=self.tx, wh=self.wh, answer=r.id_token_info)
        return r


def headers(identity, password):
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def connect(url, identity, password):
    tls = ssl.create_default_context(cafile=os.environ["OCPP_CA"]) if url.startswith("wss://") else None
    # Both offered, 2.0.1 first: the CSMS takes the station's preference.
    return await websockets.connect(
        f"{url}/{identity}", subprotocols=["ocpp2.0.1", "ocpp1.6"],
        additional_headers=headers(identity, password), open_timeout=10, ssl=tls)


TAG = {"id_token": "TAG-0001", "type": "ISO14443"}


async def session(url, identity, password):
    async with await connect(url, identity, password) as ws:
        say(event="subprotocol", name=ws.subprotocol)
        # Messages the 2.0.1 schemas refuse, raw, before the library reads the connection.
        bad = [
            [2, "bad-1", "StatusNotification", {"timestamp": now(), "connectorStatus": "Charging",
                                                "evseId": 1, "connectorId": 1}],
            [2, "bad-2", "Heartbeat", {"extra": 1}],
            [2, "bad-3", "TransactionEvent", {"eventType": "Started", "timestamp": now(),
                                              "triggerReason": "Authorized", "seqNo": 0}],
            [2, "bad-4", "Authorize", {"idToken": {"idToken": "x" * 37, "type": "ISO14443"}}],
        ]
        for b in bad:
            await ws.send(json.dumps(b))
            say(event="callerror", answer=json.loads(await ws.recv()))
        await ws.send("not json")
        say(event="callerror", answer=json.loads(await ws.recv()))
        cp = Station(identity, ws)
        # A default profile another CSMS left at a higher stack level (22 kW): it would
        # stand over the CSMS's own until cleared.
        cp.profiles[("TxDefaultProfile", 5)] = {
            "id": 99, "stack_level": 5, "charging_profile_purpose": "TxDefaultProfile",
            "charging_profile_kind": "Absolute", "charging_schedule": [{
                "id": 99, "charging_rate_unit": "W",
                "charging_schedule_period": [{"start_period": 0, "limit": 22000.0}]}]}
        runner = asyncio.create_task(cp.start())
        await cp.boot()
        await cp.status("Available")
        r = await cp.call(call.Authorize(id_token=TAG))
        say(event="authorize", status=r.id_token_info["status"])
        r = await cp.call(call.Authorize(id_token={"id_token": "STRANGER", "type": "ISO14443"}))
        say(event="authorize_unknown", status=r.id_token_info["status"])
        await cp.start_tx(TAG)
        say(event="charging", transaction=cp.tx)
        while not cp.stop_asked.is_set():
            await cp.meter()
            try:
                await asyncio.wait_for(cp.stop_asked.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        await cp.stop_tx()
        # The same Ended again (as after a lost answer): taken once.
        cp.seq -= 1
        await cp.stop_tx()
        await cp.status("Available")
        runner.cancel()
    say(event="done")


async def reconnect(url, identity, password):
    ws = await connect(url, identity, password)
    cp = Station(identity, ws)
    runner = asyncio.create_task(cp.start())
    await cp.boot()
    await cp.start_tx(TAG)
    for _ in range(3):
        await cp.meter()
    runner.cancel()
    await ws.close()
    say(event="dropped", transaction=cp.tx, wh=cp.wh)
    # Offline: the car charges on; the station queues its events.
    queued = [cp.event("Updated", "MeterValuePeriodic", state="Charging", offline=True)
              for _ in range(3)]
    queued.append(cp.event("Ended", "EVDeparted", state="Idle", offline=True,
                           reason="EVDisconnected", context="Transaction.End"))
    first = (cp.tx, cp.wh)
    # A whole transaction while offline.
    cp.tx = str(uuid.uuid4())
    start_wh = cp.wh
    queued.append(cp.event("Started", "Authorized", state="Charging", offline=True, token=TAG,
                           context="Transaction.Begin"))
    queued += [cp.event("Updated", "MeterValuePeriodic", state="Charging", offline=True)
               for _ in range(2)]
    queued.append(cp.event("Ended", "StopAuthorized", state="EVConnected", offline=True,
                           reason="Local", context="Transaction.End"))
    second = (cp.tx, start_wh, cp.wh)
    await asyncio.sleep(0.3)
    ws = await connect(url, identity, password)
    cp2 = Station(identity, ws)
    cp2.profiles = cp.profiles
    runner = asyncio.create_task(cp2.start())
    await cp2.boot()
    say(event="back", first=first[0])
    for q in queued:
        await cp2.call(q)
    say(event="sent", first=first[0], first_wh=first[1], second=second[0],
        second_start_wh=second[1], second_wh=second[2])
    await cp2.status("Available")
    runner.cancel()
    await ws.close()
    say(event="done")


async def operate(url, identity, password):
    async with await connect(url, identity, password) as ws:
        cp = Station(identity, ws)
        runner = asyncio.create_task(cp.start())
        await cp.boot()
        await cp.status("Available")
        say(event="ready")
        while not cp.reset_asked.is_set():
            if cp.stop_asked.is_set() and cp.tx is not None:
                cp.stop_asked.clear()
                await cp.stop_tx()
                cp.tx = None
                if cp.unavailable_after_tx:
                    cp.unavailable_after_tx = False
                    cp.unavailable = True
                    await cp.status("Unavailable")
            if cp.tx is not None:
                await cp.meter()
            try:
                await asyncio.wait_for(cp.reset_asked.wait(), 0.1)
            except asyncio.TimeoutError:
                pass
        runner.cancel()
    say(event="done")


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    url, identity, password, scenario = sys.argv[1:5]
    run = {"session": session, "reconnect": reconnect, "operate": operate}[scenario]
    asyncio.run(asyncio.wait_for(run(url, identity, password), 60))


if __name__ == "__main__":
    main()
