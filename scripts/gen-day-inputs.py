#!/usr/bin/env python3
"""Writes the example day inputs of the reference park (simulations/qingzhou-pedf/day-inputs).

Synthetic, deterministic data for 2026-06-18..24 (Asia/Shanghai, 15 min) until pedf's
simulator (issue 7) produces them:
- ../weather.csv: an hourly weather forecast (GHI from a simple solar-geometry model, GHI
  ~ 1000 W/m2 * sin(elevation)^1.15, thin clouds on 06-19 and 06-23 (60 % and 80 %), a diurnal
  air temperature and wind). pv.csv is then written by `pedf forecast pv` from it (README).
- loads.csv: office and lab shaped to ~300 kW at night and ~700 kW by day (PRODUCT.md); HVAC
  cooling demand peaking in the afternoon; a small deterministic ripple.
- ev-sessions.csv: about 30 sessions a day on the 20 chargers (commuters 08-10 h, visitors at
  midday, evening arrivals that stay overnight); seeded random, seed 7.
- carbon-intensity.csv: an illustrative hourly profile around the 2023 North China annual
  factor 0.6361 (lower at midday, higher in the evening). China publishes no hourly factor: this
  is a placeholder [U], not data.
Run from the repository root: python3 scripts/gen-day-inputs.py
"""
import math, random, datetime as dt

OUT = "simulations/qingzhou-pedf/day-inputs/"
TZ = dt.timezone(dt.timedelta(hours=8))
LAT, LON = 36.70, 118.47
ARRAYS = [("pv-roof-a", 1100, 1000, 0.14), ("pv-roof-b", 600, 550, 0.14), ("pv-carport", 300, 280, 0.15)]
DAYS = [dt.date(2026, 6, 18) + dt.timedelta(days=i) for i in range(7)]
CLOUD = {dt.date(2026, 6, 19): 0.6, dt.date(2026, 6, 23): 0.8}
STEP = dt.timedelta(minutes=15)

def starts():
    for d in DAYS:
        t = dt.datetime(d.year, d.month, d.day, tzinfo=TZ)
        for _ in range(96):
            yield t
            t += STEP

def elevation(t):
    mid = t + STEP / 2
    n = mid.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + n) / 365)
    b = 2 * math.pi * (n - 81) / 364
    eot = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)  # minutes
    utc = mid.astimezone(dt.timezone.utc)
    solar_min = utc.hour * 60 + utc.minute + LON * 4 + eot
    h = math.radians((solar_min / 4) - 180)
    lat = math.radians(LAT)
    return math.asin(math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(h))

def iso(t):
    return t.isoformat(timespec="seconds")

# weather.csv: an hourly "weather forecast" for the week (one hour either side), the input of
# `pedf forecast pv`, which writes pv.csv from it (see the folder's README).
with open(OUT + "../weather.csv", "w") as f:
    f.write("# Synthetic hourly weather forecast for the reference park, 2026-06-17 23:00 to 06-25 00:00:\n")
    f.write("# GHI ~ 1000 W/m2 * sin(elevation)^1.15 (a flat-plate approximation), thin cloud on 06-19\n")
    f.write("# (GHI x 0.6) and 06-23 (x 0.8); air temperature 22-31 C; wind 1.5-3.5 m/s. Written by\n")
    f.write("# scripts/gen-day-inputs.py; not measured data.\n")
    f.write("time,ghi_w_m2,temp_air_c,wind_speed_m_s\n")
    t = dt.datetime(2026, 6, 17, 23, tzinfo=TZ)
    while t <= dt.datetime(2026, 6, 25, 0, tzinfo=TZ):
        e = elevation(t - STEP / 2)  # elevation() looks at the middle of a 15-min step
        ghi = 1000 * max(0.0, math.sin(e)) ** 1.15 * CLOUD.get(t.date(), 1.0)
        hour = t.hour
        temp = 26.5 + 4.5 * math.cos(2 * math.pi * (hour - 15) / 24)
        wind = 2.5 + 1.0 * math.cos(2 * math.pi * (hour - 14) / 24)
        f.write(f"{iso(t)},{ghi:.1f},{temp:.1f},{wind:.1f}\n")
        t += dt.timedelta(hours=1)

def bump(hour, start, end, ramp=1.0):
    if hour <= start - ramp or hour >= end + ramp:
        return 0.0
    if hour < start:
        return (hour - (start - ramp)) / ramp
    if hour > end:
        return ((end + ramp) - hour) / ramp
    return 1.0

with open(OUT + "loads.csv", "w") as f:
    f.write("# Demand forecast, kW, interval average: fixed DC loads (office, lab) and the\n")
    f.write("# curtailable HVAC load's demand. Synthetic: see scripts/gen-day-inputs.py.\n")
    f.write("start,office,lab,hvac\n")
    for i, t in enumerate(starts()):
        h = t.hour + t.minute / 60 + 0.125
        weekend = t.weekday() >= 5
        occ = bump(h, 8.5, 17.5) * (0.35 if weekend else 1.0)
        ripple = 1 + 0.03 * math.sin(i * 0.7)
        office = (180 + 240 * occ) * ripple
        lab = (120 + 160 * bump(h, 8.0, 20.0) * (0.6 if weekend else 1.0)) * ripple
        hvac = 60 + 190 * bump(h, 11.0, 17.0, 3.0) * (0.7 if weekend else 1.0)
        f.write(f"{iso(t)},{office:.1f},{lab:.1f},{hvac:.1f}\n")

rng = random.Random(7)
rows = []
busy = {f"ev-{i:02d}": dt.datetime(2026, 6, 17, tzinfo=TZ) for i in range(1, 21)}
for d in DAYS:
    day0 = dt.datetime(d.year, d.month, d.day, tzinfo=TZ)
    weekend = d.weekday() >= 5
    plans = []
    for _ in range(8 if weekend else 18):   # commuters
        plans.append((8 + rng.random() * 2, 7.5 + rng.random() * 2.5, 15 + rng.random() * 30))
    for _ in range(7):                        # midday visitors
        plans.append((11 + rng.random() * 3, 1 + rng.random() * 2, 10 + rng.random() * 30))
    for _ in range(5):                        # evening, staying overnight
        plans.append((18 + rng.random() * 3, 10 + rng.random() * 2, 20 + rng.random() * 40))
    plans.sort()
    for k, (arr_h, dwell_h, kwh) in enumerate(plans):
        arr = day0 + dt.timedelta(minutes=round(arr_h * 60))
        dep = arr + dt.timedelta(minutes=round(dwell_h * 60))
        free = [c for c, until in busy.items() if until <= arr]
        if not free:
            continue
        c = rng.choice(sorted(free))
        busy[c] = dep + dt.timedelta(minutes=10)
        kwh = min(kwh, 60 * dwell_h * 0.8)
        rows.append((f"s{d.strftime('%m%d')}-{k + 1:02d}", c, iso(arr), iso(dep), f"{kwh:.1f}"))
with open(OUT + "ev-sessions.csv", "w") as f:
    f.write("# EV sessions: charger, arrival, departure (RFC 3339) and energy needed before departure.\n")
    f.write("# Synthetic, seeded: see scripts/gen-day-inputs.py.\n")
    f.write("id,charger,arrival,departure,energy_kwh\n")
    for r in rows:
        f.write(",".join(r) + "\n")

with open(OUT + "carbon-intensity.csv", "w") as f:
    f.write("# Grid carbon intensity, kg CO2/kWh. ILLUSTRATIVE [U]: China publishes no hourly factor.\n")
    f.write("# Shaped around the 2023 North China annual factor 0.6361 (MEE/NBS): lower when the\n")
    f.write("# province's PV is high, higher in the evening peak. See scripts/gen-day-inputs.py.\n")
    f.write("start,kg_per_kwh\n")
    for t in starts():
        h = t.hour + t.minute / 60 + 0.125
        v = 0.6361 - 0.12 * max(0.0, math.sin(math.pi * (h - 6) / 13)) + 0.06 * bump(h, 18, 22)
        f.write(f"{iso(t)},{v:.4f}\n")
print("wrote", OUT, len(rows), "sessions")
