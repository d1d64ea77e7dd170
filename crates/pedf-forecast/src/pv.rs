//! PV power forecast of every array of a park for local days.
//!
//! For each interval the model is sampled every 5 minutes (at the middle of each 5-minute
//! step) and averaged, so an interval value is the interval's mean power, as the planner
//! expects. Each sample: solar position (SPA) → clear-sky irradiance (Ineichen-Perez) →
//! weather (GHI through its clear-sky index, or cloud cover by Kasten-Czeplak) → beam/diffuse
//! split (Erbs, or the clear-sky components when no weather is given) → plane of array
//! (Hay-Davies or isotropic, ground albedo) → glass reflection loss on the beam → cell
//! temperature (Sandia) → DC power (PVWatts) → system losses → converter curve and rating.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use pedf_core::park::Park;

use crate::irradiance::{
    erbs, extraterrestrial_normal, ghi_from_cloud_cover, ineichen_perez, plane_of_array,
    Components, Transposition,
};
use crate::pvwatts::{cell_temperature, converter_output, dc_power, glass_iam, Mounting};
use crate::spa::{
    cos_incidence, standard_pressure_hpa, Site, SolarPath, SolarPosition, SpaOptions,
};
use crate::weather::Weather;

/// Model settings that are not in the park file.
#[derive(Debug, Clone, PartialEq)]
pub struct PvModel {
    /// Linke turbidity per calendar month (January first). The default, 4.0 all year, is an
    /// assumption [U]: a typical value for hazy continental air; no monthly climatology for
    /// Qingzhou is bundled. A learned bias correction absorbs a wrong value.
    pub linke_turbidity: [f64; 12],
    /// Ground reflectance (0.2: PVWatts' default).
    pub albedo: f64,
    /// How irradiance is transposed to the plane of the array.
    pub transposition: Transposition,
    /// How the modules are mounted (their temperature model).
    pub mounting: Mounting,
    /// Air temperature and wind used when the weather gives none: 25 °C and 1 m/s [U].
    pub default_air_c: f64,
    /// Wind speed used when the weather gives none, m/s.
    pub default_wind_m_s: f64,
    /// Options of the solar position algorithm.
    pub spa: SpaOptions,
}

impl Default for PvModel {
    fn default() -> Self {
        PvModel {
            linke_turbidity: [4.0; 12],
            albedo: 0.2,
            transposition: Transposition::HayDavies,
            mounting: Mounting::OpenRack,
            default_air_c: 25.0,
            default_wind_m_s: 1.0,
            spa: SpaOptions::default(),
        }
    }
}

/// The forecast of one array.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayForecast {
    /// The PV array id.
    pub id: String,
    /// Mean power at the DC bus per interval, kW, never negative.
    pub kw: Vec<f64>,
}

impl ArrayForecast {
    /// Energy over the forecast, kWh, for intervals of `hours` each.
    pub fn energy_kwh(&self, hours: f64) -> f64 {
        self.kw.iter().sum::<f64>() * hours
    }
}

/// A PV forecast for one or more local days.
#[derive(Debug, Clone, PartialEq)]
pub struct PvForecast {
    /// Interval starts (UTC), on the park's clock.
    pub starts: Vec<DateTime<Utc>>,
    /// Each array's forecast, in the park's order.
    pub arrays: Vec<ArrayForecast>,
    /// What the forecast was made from, one line.
    pub source: String,
    /// Repairs and assumptions the user must know about.
    pub notes: Vec<String>,
}

impl PvForecast {
    /// Total over all arrays per interval, kW.
    pub fn total_kw(&self) -> Vec<f64> {
        (0..self.starts.len())
            .map(|i| self.arrays.iter().map(|a| a.kw[i]).sum())
            .collect()
    }
}

/// Why a forecast cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// The weather file does not cover the forecast's days.
    #[error("the weather file {file} covers {first} to {last}, not the forecast's {need_from} to {need_to}")]
    WeatherTooShort {
        /// The weather file.
        file: String,
        /// Its first hour.
        first: String,
        /// Its last hour.
        last: String,
        /// The forecast's first interval.
        need_from: String,
        /// The forecast's last interval.
        need_to: String,
    },
    /// The weather file lacks a value the forecast needs.
    #[error("the weather file {file} has no {what} for {at}")]
    WeatherMissing {
        /// The weather file.
        file: String,
        /// What is missing (irradiance or cloud cover).
        what: &'static str,
        /// The hour.
        at: String,
    },
    /// The Linke turbidity given is not a plausible one.
    #[error("Linke turbidity {0} is outside 1..10")]
    Turbidity(f64),
}

/// Weather quantities at one instant.
#[derive(Debug, Clone, Copy)]
struct Sky {
    components: Components,
    air_c: f64,
    wind_m_s: f64,
}

struct SkyModel<'a> {
    park_site: Site,
    pressure_ratio: f64,
    path: SolarPath,
    model: &'a PvModel,
    weather: Option<&'a Weather>,
}

impl SkyModel<'_> {
    fn clear(&self, t: DateTime<Utc>, pos: &SolarPosition) -> Components {
        let tl = self.model.linke_turbidity[t.month0() as usize];
        ineichen_perez(
            pos.zenith_deg,
            extraterrestrial_normal(pos.earth_sun_au),
            tl,
            self.park_site.elevation_m,
            self.pressure_ratio,
        )
    }

    /// Clear-sky index of the weather row `i`, when the sun is high enough for it to mean
    /// something (clear-sky GHI at least 50 W/m²).
    fn row_index(&self, i: usize) -> Option<f64> {
        let w = self.weather?;
        let row = &w.rows[i];
        let pos = self.path.at(row.time);
        let clear = self.clear(row.time, &pos).ghi;
        let ghi = row.ghi_w_m2?;
        (clear >= 50.0).then(|| (ghi / clear).clamp(0.0, 1.3))
    }

    fn sky(&self, t: DateTime<Utc>, pos: &SolarPosition) -> Result<Sky, ForecastError> {
        let clear = self.clear(t, pos);
        let Some(w) = self.weather else {
            return Ok(Sky {
                components: clear,
                air_c: self.model.default_air_c,
                wind_m_s: self.model.default_wind_m_s,
            });
        };
        let missing = |what| ForecastError::WeatherMissing {
            file: w.name.clone(),
            what,
            at: t.to_rfc3339(),
        };
        let (i, f) = w.bracket(t).ok_or_else(|| missing("row"))?;
        let j = (i + 1).min(w.rows.len() - 1);
        let e0 = extraterrestrial_normal(pos.earth_sun_au);
        let ghi = if w.has_ghi() {
            let index = match (self.row_index(i), self.row_index(j)) {
                (Some(a), Some(b)) => Some(a + (b - a) * f),
                (Some(a), None) | (None, Some(a)) => Some(a),
                (None, None) => None,
            };
            match index {
                Some(k) => k * clear.ghi,
                // Sun low at both rows: the plain interpolation of the given values.
                None => w
                    .interpolate(t, |r| r.ghi_w_m2)
                    .ok_or_else(|| missing("ghi_w_m2"))?
                    .min(clear.ghi * 1.3),
            }
        } else {
            let cloud = w
                .interpolate(t, |r| r.cloud_fraction)
                .ok_or_else(|| missing("cloud_cover_pct"))?;
            ghi_from_cloud_cover(clear.ghi, cloud)
        };
        Ok(Sky {
            components: erbs(ghi, pos.zenith_deg, e0),
            air_c: w
                .interpolate(t, |r| r.temp_air_c)
                .unwrap_or(self.model.default_air_c),
            wind_m_s: w
                .interpolate(t, |r| r.wind_speed_m_s)
                .unwrap_or(self.model.default_wind_m_s),
        })
    }
}

/// Forecasts every PV array of `park` for `days` local days from `first_day`.
pub fn forecast_pv(
    park: &Park,
    first_day: NaiveDate,
    days: u32,
    weather: Option<&Weather>,
    model: &PvModel,
) -> Result<PvForecast, ForecastError> {
    if let Some(&tl) = model
        .linke_turbidity
        .iter()
        .find(|tl| !(1.0..=10.0).contains(*tl))
    {
        return Err(ForecastError::Turbidity(tl));
    }
    let clock = &park.clock;
    let starts: Vec<DateTime<Utc>> = (0..days)
        .flat_map(|d| clock.intervals_of_local_day(first_day + Duration::days(i64::from(d))))
        .collect();
    let step = clock.interval.duration();
    let sub = Duration::minutes(5).min(step);
    let per_interval = (step.num_seconds() / sub.num_seconds()).max(1) as usize;
    let site = Site {
        latitude_deg: park.location.latitude_deg,
        longitude_deg: park.location.longitude_deg,
        elevation_m: park.location.altitude_m,
    };
    let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
        return Ok(PvForecast {
            starts,
            arrays: vec![],
            source: String::new(),
            notes: vec![],
        });
    };
    let end = last + step;
    let mut notes = Vec::new();
    if let Some(w) = weather {
        let (Some(a), Some(b)) = (w.rows.first(), w.rows.last()) else {
            unreachable!("a read weather file has rows")
        };
        // The samples run from first + sub/2 to end - sub/2.
        if a.time > first + sub / 2 || b.time < end - sub / 2 {
            return Err(ForecastError::WeatherTooShort {
                file: w.name.clone(),
                first: clock.format(a.time),
                last: clock.format(b.time),
                need_from: clock.format(first),
                need_to: clock.format(end),
            });
        }
        notes.extend(w.notes.iter().cloned());
        if !w.has_ghi() {
            notes.push(format!("{}: irradiance from cloud cover (Kasten-Czeplak 1980), a coarse model: expect errors of 20 % or more on broken-cloud days", w.name));
        }
        if w.rows.iter().all(|r| r.temp_air_c.is_none()) {
            notes.push(format!(
                "{}: no temp_air_c, {} °C assumed",
                w.name, model.default_air_c
            ));
        }
    } else {
        notes.push(format!(
            "no weather given: clear sky every day, air at {} °C, wind {} m/s (an upper bound, not an expectation)",
            model.default_air_c, model.default_wind_m_s
        ));
    }
    let pressure = model
        .spa
        .pressure_hpa
        .unwrap_or_else(|| standard_pressure_hpa(site.elevation_m));
    let sky_model = SkyModel {
        park_site: site,
        pressure_ratio: pressure / 1013.25,
        path: SolarPath::new(
            site,
            model.spa,
            first - Duration::hours(2),
            end + Duration::hours(2),
        ),
        model,
        weather,
    };
    let mut arrays: Vec<ArrayForecast> = park
        .pv
        .iter()
        .map(|a| ArrayForecast {
            id: a.id.clone(),
            kw: Vec::with_capacity(starts.len()),
        })
        .collect();
    for &start in &starts {
        let mut sums = vec![0.0; park.pv.len()];
        for k in 0..per_interval {
            let t = start + sub * k as i32 + sub / 2;
            let pos = sky_model.path.at(t);
            if pos.zenith_deg >= 90.0 {
                continue;
            }
            let sky = sky_model.sky(t, &pos)?;
            let e0 = extraterrestrial_normal(pos.earth_sun_au);
            for (a, sum) in park.pv.iter().zip(sums.iter_mut()) {
                let cos_aoi =
                    cos_incidence(pos.zenith_deg, pos.azimuth_deg, a.tilt_deg, a.azimuth_deg);
                let poa = plane_of_array(
                    sky.components,
                    pos.zenith_deg,
                    cos_aoi,
                    a.tilt_deg,
                    e0,
                    model.albedo,
                    model.transposition,
                );
                let aoi = cos_aoi.clamp(-1.0, 1.0).acos().to_degrees();
                let transmitted = poa.beam * glass_iam(aoi) + poa.sky_diffuse + poa.ground_diffuse;
                let cell = cell_temperature(poa.total(), sky.air_c, sky.wind_m_s, model.mounting);
                let dc = dc_power(
                    transmitted,
                    cell,
                    a.peak_power.0,
                    a.temperature_coefficient_per_c,
                ) * (1.0 - a.system_losses);
                *sum += converter_output(dc, a.converter_rating.0, a.converter_efficiency);
            }
        }
        for (arr, sum) in arrays.iter_mut().zip(sums) {
            arr.kw.push(sum / per_interval as f64);
        }
    }
    let source = match weather {
        Some(w) if w.has_ghi() => format!(
            "weather file {} (GHI), Ineichen-Perez clear sky as shape",
            w.name
        ),
        Some(w) => format!(
            "weather file {} (cloud cover), Ineichen-Perez clear sky",
            w.name
        ),
        None => "clear sky (Ineichen-Perez)".to_string(),
    };
    let tl = model.linke_turbidity;
    let source = if tl.iter().all(|&x| x == tl[0]) {
        format!(
            "{source}, Linke turbidity {}, {} sky diffuse, PVWatts DC/converter model",
            tl[0], model.transposition
        )
    } else {
        format!(
            "{source}, monthly Linke turbidity, {} sky diffuse, PVWatts DC/converter model",
            model.transposition
        )
    };
    Ok(PvForecast {
        starts,
        arrays,
        source,
        notes,
    })
}
