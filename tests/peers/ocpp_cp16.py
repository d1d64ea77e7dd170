"""An OCPP 1.6J charge point pedf did not write, for pedf's central system tests.

Built on the `ocpp` package (mobilityhouse), which checks every message it sends and
receives against the official OCPP 1.6 JSON schemas, over `websockets`. It plays one
charger with a car behind its connector 1 and says what happens as JSON lines on stdout:

    python ocpp_cp16.py URL IDENTITY PASSWORD SCENARIO

A `wss://` URL is TLS (OCPP security profile 2): the central system's certificate is trusted
from the PEM file the environment variable OCPP_CA names.

Scenarios:
- `session`: a wrong-schema message first (its CALLERROR printed), then boot, status,
  authorize, a transaction with meter values every 0.2 s at the power its charging profiles
  allow (11 kW at most), until the central system stops it remotely.
- `reconnect`: a transaction started; the connection dropped mid-transaction; back, the
  transaction goes on and stops after a few meter values, the stop sent on the new
  connection.
- `charge`: boot, a transaction with meter values every 0.2 s at the power its profiles
  allow, until fifteen meter values have charged under a limit of the EMS's own (stack
  level 1, above 0), or 30 s have passed; then the car leaves (a local stop).
- `refused`: connects with this password and prints how the handshake ended.
- `operate`: boot and available, then does what the central system asks (configuration
  read and changed, a transaction started and stopped remotely, availability changed, a
  message triggered) until it is reset.
"""

import asyncio
import base64
import json
import logging
import os
import ssl
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as Cp
from ocpp.v16 import call, call_result
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    AvailabilityStatus,
    ChargePointErrorCode,
    ChargePointStatus,
    ChargingProfileStatus,
    ClearChargingProfileStatus,
    ConfigurationStatus,
    GetCompositeScheduleStatus,
    RemoteStartStopStatus,
    ResetStatus,
    TriggerMessageStatus,
)

MAX_KW = 11.0
PHASES = 3
VOLTS = 230.0


def say(**what):
    print(json.dumps(what), flush=True)


def now():
    return datetime.now(timezone.utc).isoformat()


class Car(Cp):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.profiles = {}  # (purpose, stack level) -> profile
        self.tx = None
        self.wh = 1000
        self.stop_asked = asyncio.Event()
        self.reset_asked = asyncio.Event()
        self.config = {"MeterValueSampleInterval": "60", "HeartbeatInterval": "300"}
        self.unavailable_after_tx = False
        self.start_tag = None

    def limit_kw(self):
        """The composite limit now: a transaction's profile over the default ones, the
        highest stack level of each purpose first (the package hands payloads over with
        snake_case keys)."""
        def best(purpose):
            ps = [p for (pu, _), p in self.profiles.items() if pu == purpose]
            if purpose == "TxProfile":
                ps = [p for p in ps if p.get("transaction_id") == self.tx]
            return max(ps, key=lambda p: p["stack_level"]) if ps else None

        p = best("TxProfile") or best("TxDefaultProfile")
        if p is None:
            return MAX_KW, None
        s = p["charging_schedule"]
        period = s["charging_schedule_period"][0]
        limit = float(period["limit"])
        if s["charging_rate_unit"] == "A":
            kw = limit * VOLTS * period.get("number_phases", PHASES) / 1000.0
        else:
            kw = limit / 1000.0
        return min(kw, MAX_KW), p

    @on(Action.set_charging_profile)
    def on_set_profile(self, connector_id, cs_charging_profiles, **_):
        p = cs_charging_profiles
        s = p["charging_schedule"]
        self.profiles[(p["charging_profile_purpose"], p["stack_level"])] = p
        say(event="profile", connector=connector_id, purpose=p["charging_profile_purpose"],
            stack=p["stack_level"], id=p["charging_profile_id"],
            transaction=p.get("transaction_id"), unit=s["charging_rate_unit"],
            limit=float(s["charging_schedule_period"][0]["limit"]),
            duration=s.get("duration"))
        return call_result.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @on(Action.get_composite_schedule)
    def on_composite(self, connector_id, duration, charging_rate_unit=None, **_):
        kw, p = self.limit_kw()
        if p is None:
            return call_result.GetCompositeSchedule(status=GetCompositeScheduleStatus.rejected)
        s = p["charging_schedule"]
        return call_result.GetCompositeSchedule(
            status=GetCompositeScheduleStatus.accepted,
            connector_id=connector_id,
            schedule_start=now(),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": s["charging_rate_unit"],
                # The package reads a call's decimals as Decimal (for the schema's
                # multipleOf 0.1); they go back out as numbers.
                "charging_schedule_period": [{
                    k: (float(v) if k == "limit" else v)
                    for k, v in s["charging_schedule_period"][0].items()
                }],
            },
        )

    @on(Action.clear_charging_profile)
    def on_clear(self, id=None, connector_id=None, charging_profile_purpose=None,
                 stack_level=None, **_):
        gone = [k for k, p in self.profiles.items()
                if (id is None or p["charging_profile_id"] == id)
                and (charging_profile_purpose is None or k[0] == charging_profile_purpose)
                and (stack_level is None or k[1] == stack_level)]
        for k in gone:
            del self.profiles[k]
        say(event="cleared", purpose=charging_profile_purpose, n=len(gone))
        return call_result.ClearChargingProfile(
            status=ClearChargingProfileStatus.accepted if gone else ClearChargingProfileStatus.unknown)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id, **_):
        say(event="remote_stop", transaction=transaction_id)
        if transaction_id != self.tx:
            return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.rejected)
        self.stop_asked.set()
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value, **_):
        say(event="configured", key=key, value=value)
        if key == "NumberOfConnectors":
            return call_result.ChangeConfiguration(status=ConfigurationStatus.rejected)
        if key not in self.config:
            return call_result.ChangeConfiguration(status=ConfigurationStatus.not_supported)
        self.config[key] = value
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)

    @on(Action.get_configuration)
    def on_get_configuration(self, key=None, **_):
        known = dict(self.config, NumberOfConnectors="1")
        keys = key if key else list(known)
        return call_result.GetConfiguration(
            configuration_key=[{"key": k, "readonly": k == "NumberOfConnectors", "value": known[k]}
                               for k in keys if k in known],
            unknown_key=[k for k in keys if k not in known] or None,
        )

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, **_):
        say(event="remote_start", id_tag=id_tag, connector=connector_id)
        if self.tx is not None:
            return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.rejected)
        self.start_tag = id_tag
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, **_):
        if self.start_tag is None or self.tx is not None:
            return
        await self.status(ChargePointStatus.preparing)
        r = await self.call(call.StartTransaction(
            connector_id=1, id_tag=self.start_tag, meter_start=self.wh, timestamp=now()))
        self.tx = r.transaction_id
        say(event="started", transaction=self.tx, status=r.id_tag_info["status"])
        await self.status(ChargePointStatus.charging)
        await self.meter()

    @on(Action.change_availability)
    def on_change_availability(self, connector_id, type, **_):
        say(event="availability", connector=connector_id, type=type)
        if type == "Inoperative" and self.tx is not None:
            self.unavailable_after_tx = True
            return call_result.ChangeAvailability(status=AvailabilityStatus.scheduled)
        return call_result.ChangeAvailability(status=AvailabilityStatus.accepted)

    @after(Action.change_availability)
    async def after_change_availability(self, type, **_):
        if self.tx is None:
            await self.status(ChargePointStatus.unavailable if type == "Inoperative"
                              else ChargePointStatus.available)

    @on(Action.trigger_message)
    def on_trigger(self, requested_message, connector_id=None, **_):
        say(event="triggered", message=requested_message, connector=connector_id)
        if requested_message not in ("StatusNotification", "Heartbeat", "MeterValues"):
            return call_result.TriggerMessage(status=TriggerMessageStatus.not_implemented)
        return call_result.TriggerMessage(status=TriggerMessageStatus.accepted)

    @after(Action.trigger_message)
    async def after_trigger(self, requested_message, **_):
        if requested_message == "StatusNotification":
            await self.status(ChargePointStatus.charging if self.tx is not None
                              else ChargePointStatus.available)
        elif requested_message == "Heartbeat":
            await self.call(call.Heartbeat())
        elif requested_message == "MeterValues" and self.tx is not None:
            await self.meter()

    @on(Action.reset)
    def on_reset(self, type, **_):
        say(event="reset", type=type)
        return call_result.Reset(status=ResetStatus.accepted)

    @after(Action.reset)
    def after_reset(self, **_):
        # After the answer is sent: then the connection closes, as a charger restarting.
        self.reset_asked.set()

    async def status(self, status):
        await self.call(call.StatusNotification(
            connector_id=1, error_code=ChargePointErrorCode.no_error, status=status, timestamp=now()))

    async def boot(self):
        r = await self.call(call.BootNotification(
            charge_point_model="Wallbox 11", charge_point_vendor="PeerCo", firmware_version="1.2.3"))
        say(event="boot", status=r.status, interval=r.interval, current_time=r.current_time)

    async def start_tx(self):
        r = await self.call(call.Authorize(id_tag="TAG-0001"))
        say(event="authorize", status=r.id_tag_info["status"])
        r = await self.call(call.Authorize(id_tag="STRANGER"))
        say(event="authorize_unknown", status=r.id_tag_info["status"])
        await self.status(ChargePointStatus.preparing)
        r = await self.call(call.StartTransaction(
            connector_id=1, id_tag="TAG-0001", meter_start=self.wh, timestamp=now()))
        self.tx = r.transaction_id
        say(event="started", transaction=self.tx, status=r.id_tag_info["status"])
        await self.status(ChargePointStatus.charging)

    async def meter(self, dt=0.2):
        kw, _ = self.limit_kw()
        self.wh += int(round(kw * 1000.0 * dt / 3600.0 * 60.0))  # a minute of charging per tick
        amps = kw * 1000.0 / (VOLTS * PHASES)
        await self.call(call.MeterValues(connector_id=1, transaction_id=self.tx, meter_value=[{
            "timestamp": now(),
            "sampledValue": [
                {"value": str(self.wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh",
                 "context": "Sample.Periodic", "location": "Outlet"},
                {"value": f"{kw * 1000.0:.1f}", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": f"{amps:.1f}", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": f"{amps:.1f}", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
                {"value": f"{amps:.1f}", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
                {"value": "57", "measurand": "SoC", "unit": "Percent", "location": "EV"},
            ],
        }]))
        say(event="meter", wh=self.wh, kw=kw)

    async def stop_tx(self, reason="Remote"):
        r = await self.call(call.StopTransaction(
            meter_stop=self.wh, timestamp=now(), transaction_id=self.tx, reason=reason, id_tag="TAG-0001"))
        say(event="stopped", transaction=self.tx, wh=self.wh, status=r.id_tag_info["status"])
        await self.status(ChargePointStatus.finishing)
        await self.status(ChargePointStatus.available)


def headers(identity, password):
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def connect(url, identity, password):
    tls = ssl.create_default_context(cafile=os.environ["OCPP_CA"]) if url.startswith("wss://") else None
    return await websockets.connect(
        f"{url}/{identity}", subprotocols=["ocpp1.6"],
        additional_headers=headers(identity, password), open_timeout=10, ssl=tls)


async def session(url, identity, password):
    async with await connect(url, identity, password) as ws:
        # A message the schema refuses (a status 1.6 does not have), raw, before the
        # library reads the connection: the central system's CALLERROR.
        await ws.send(json.dumps([2, "bad-1", "StatusNotification",
                                  {"connectorId": 1, "errorCode": "NoError", "status": "Parked"}]))
        answer = json.loads(await ws.recv())
        say(event="callerror", answer=answer)
        await ws.send(json.dumps([2, "bad-2", "Heartbeat", {"extra": 1}]))
        say(event="callerror", answer=json.loads(await ws.recv()))
        await ws.send(json.dumps([2, "bad-3", "StartTransaction", {"connectorId": 1, "idTag": "T"}]))
        say(event="callerror", answer=json.loads(await ws.recv()))
        await ws.send("not json")
        say(event="callerror", answer=json.loads(await ws.recv()))
        cp = Car(identity, ws)
        runner = asyncio.create_task(cp.start())
        await cp.boot()
        await cp.status(ChargePointStatus.available)
        await cp.start_tx()
        say(event="charging", transaction=cp.tx)
        while not cp.stop_asked.is_set():
            await cp.meter()
            try:
                await asyncio.wait_for(cp.stop_asked.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        await cp.stop_tx()
        # The same stop again (as after a lost confirmation): confirmed.
        r = await cp.call(call.StopTransaction(
            meter_stop=cp.wh, timestamp=now(), transaction_id=cp.tx, reason="Remote"))
        say(event="stopped_again", status=(r.id_tag_info or {}).get("status"))
        runner.cancel()
    say(event="done")


async def reconnect(url, identity, password):
    ws = await connect(url, identity, password)
    cp = Car(identity, ws)
    runner = asyncio.create_task(cp.start())
    await cp.boot()
    await cp.start_tx()
    for _ in range(3):
        await cp.meter()
    tx, wh = cp.tx, cp.wh
    runner.cancel()
    await ws.close()
    say(event="dropped", transaction=tx, wh=wh)
    # Offline for a while: the car charges on at its limit.
    await asyncio.sleep(0.3)
    ws = await connect(url, identity, password)
    cp2 = Car(identity, ws)
    cp2.tx, cp2.wh, cp2.profiles = tx, wh, cp.profiles
    runner = asyncio.create_task(cp2.start())
    await cp2.boot()
    say(event="back", transaction=tx)
    for _ in range(3):
        await cp2.meter()
    await cp2.stop_tx(reason="EVDisconnected")
    runner.cancel()
    await ws.close()
    say(event="done")


async def charge(url, identity, password):
    async with await connect(url, identity, password) as ws:
        cp = Car(identity, ws)
        runner = asyncio.create_task(cp.start())
        await cp.boot()
        await cp.status(ChargePointStatus.available)
        await cp.start_tx()
        after, ticks = 0, 0
        # Fifteen meter values (3 s) charging under the EMS's own limit: a running EMS's live
        # state, slower on a loaded machine, sees the session, its energy and the setpoint
        # together. The EMS may hold a new session at 0 until its re-plan has the car (longer
        # on a loaded machine): those values do not count. 30 s at most.
        while after < 15 and ticks < 150:
            kw, _ = cp.limit_kw()
            await cp.meter()
            if kw > 0 and any(level >= 1 for (_, level) in cp.profiles):
                after += 1
            ticks += 1
            await asyncio.sleep(0.2)
        await cp.stop_tx(reason="EVDisconnected")
        runner.cancel()
    say(event="done")


async def operate(url, identity, password):
    async with await connect(url, identity, password) as ws:
        cp = Car(identity, ws)
        runner = asyncio.create_task(cp.start())
        await cp.boot()
        await cp.status(ChargePointStatus.available)
        say(event="ready")
        while not cp.reset_asked.is_set():
            if cp.stop_asked.is_set() and cp.tx is not None:
                cp.stop_asked.clear()
                await cp.stop_tx()
                cp.tx = None
                if cp.unavailable_after_tx:
                    cp.unavailable_after_tx = False
                    await cp.status(ChargePointStatus.unavailable)
            try:
                await asyncio.wait_for(cp.reset_asked.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        runner.cancel()
    say(event="done")


async def refused(url, identity, password):
    try:
        ws = await connect(url, identity, password)
        say(event="accepted")
        await ws.close()
    except websockets.exceptions.InvalidStatus as e:
        say(event="refused", status=e.response.status_code)


def main():
    # The package's own warnings and errors (a message it refused) on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    url, identity, password, scenario = sys.argv[1:5]
    run = {"session": session, "reconnect": reconnect, "charge": charge, "refused": refused,
           "operate": operate}[scenario]
    asyncio.run(asyncio.wait_for(run(url, identity, password), 60))


if __name__ == "__main__":
    main()
