#!/usr/bin/env python3
"""Reference figures for pedf-forecast's clear-day PV energy test, from pvlib's PVWatts chain.

Run:  python3 -m venv /tmp/pvl && /tmp/pvl/bin/pip install pvlib && /tmp/pvl/bin/python scripts/pvlib-reference.py

pvlib (https://pvlib-python.readthedocs.io) implements NREL's PVWatts v5 DC and inverter
models (pvwatts_dc, inverter.pvwatts, pvwatts_losses). The system below follows PVWatts'
defaults for a fixed open-rack array (tilt 20, azimuth 180, 14 % losses, nominal inverter
efficiency 0.96, DC/AC ratio 1.2, gamma -0.0037/C) at NREL's site in Golden, Colorado, on a
clear summer solstice, with a fixed Linke turbidity of 3 so that only the models differ.
The printed figures are pasted into crates/pedf-forecast/tests/pv.rs.
"""
import numpy as np
import pandas as pd
import pvlib
from pvlib import irradiance, iam, temperature, pvsystem, inverter, location

site = location.Location(39.742476, -105.1786, tz="Etc/GMT+7", altitude=1830.14)
times = pd.date_range("2026-06-21 00:00", "2026-06-21 23:59", freq="1min", tz=site.tz)
sol = site.get_solarposition(times)
cs = site.get_clearsky(times, model="ineichen", linke_turbidity=3.0, solar_position=sol)
dni_extra = irradiance.get_extra_radiation(times, solar_constant=1360.8)
tilt, az = 20.0, 180.0
pdc0, eta, dcac, gamma, losses = 4000.0, 0.96, 1.2, -0.0037, 14.0
aoi = irradiance.aoi(tilt, az, sol["apparent_zenith"], sol["azimuth"])
out = {}
for model in ["haydavies", "isotropic", "perez"]:
    poa = irradiance.get_total_irradiance(
        tilt, az, sol["apparent_zenith"], sol["azimuth"], cs["dni"], cs["ghi"], cs["dhi"],
        dni_extra=dni_extra, airmass=site.get_airmass(solar_position=sol)["airmass_relative"],
        albedo=0.2, model=model)
    transmitted = (poa["poa_direct"] * iam.physical(aoi, n=1.526, K=4.0, L=0.002)
                   + poa["poa_sky_diffuse"] + poa["poa_ground_diffuse"]).fillna(0)
    p = temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    tcell = temperature.sapm_cell(poa["poa_global"].fillna(0), 20.0, 1.0, **p)
    dc = pvsystem.pvwatts_dc(transmitted, tcell, pdc0, gamma) * (1 - losses / 100)
    ac = inverter.pvwatts(dc, pdc0 / dcac / eta, eta_inv_nom=eta)  # DC input at the AC rating
    ac = ac.clip(lower=0)
    out[model] = ac.sum() / 60 / 1000
    print(f"pvlib {pvlib.__version__} {model}: AC energy {out[model]:.4f} kWh, "
          f"POA {poa['poa_global'].fillna(0).sum() / 60 / 1000:.4f} kWh/m2, peak AC {ac.max():.1f} W")
