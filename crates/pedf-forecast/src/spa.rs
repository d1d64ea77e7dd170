//! Solar position by NREL's Solar Position Algorithm (SPA).
//!
//! Reda, I. and Andreas, A. (2004, revised 2008), "Solar Position Algorithm for Solar
//! Radiation Applications", NREL/TP-560-34302. Uncertainty ±0.0003° for years -2000..6000.
//! This is our own implementation of the paper's steps (section 3); the periodic terms are in
//! `spa_tables`. Angles are in degrees unless a name says otherwise.
//!
//! [`solar_position`] runs the whole algorithm for one instant. [`SolarPath`] is for long
//! series: the expensive geocentric part (the periodic series and nutation) changes slowly,
//! so it is computed once per hour and interpolated linearly; the observer-dependent part
//! (sidereal time, parallax, refraction) is computed exactly for every instant. The deviation
//! from the full algorithm is below 1e-5° (see the tests), far inside the SPA's own error.

use crate::spa_tables::{Term, B0, B1, L0, L1, L2, L3, L4, L5, NUTATION, R0, R1, R2, R3, R4};
use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// Julian day of the Unix epoch (1970-01-01T00:00Z).
const UNIX_EPOCH_JD: f64 = 2_440_587.5;
/// Julian day of J2000.0.
const J2000: f64 = 2_451_545.0;
/// Apparent radius of the sun's disc, degrees (SPA section 3.14).
const SUN_RADIUS_DEG: f64 = 0.26667;

/// Where the observer stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    /// Geodetic latitude, degrees north (negative south).
    pub latitude_deg: f64,
    /// Longitude, degrees east of Greenwich (negative west).
    pub longitude_deg: f64,
    /// Elevation above sea level, metres.
    pub elevation_m: f64,
}

/// Settings of the algorithm that are not the site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpaOptions {
    /// TT - UT1 in seconds; `None` uses [`delta_t_estimate`] for the year.
    pub delta_t_s: Option<f64>,
    /// UT1 - UTC in seconds (|value| < 0.9 s; IERS Bulletin A). 0 when unknown.
    pub delta_ut1_s: f64,
    /// Annual mean local pressure, hPa (mbar), for refraction; `None`: standard atmosphere at
    /// the site's elevation.
    pub pressure_hpa: Option<f64>,
    /// Annual mean local air temperature, °C, for refraction.
    pub temperature_c: f64,
    /// Atmospheric refraction at sunrise and sunset, degrees (0.5667 is the SPA's default).
    pub refraction_at_horizon_deg: f64,
}

impl Default for SpaOptions {
    fn default() -> Self {
        SpaOptions {
            delta_t_s: None,
            delta_ut1_s: 0.0,
            pressure_hpa: None,
            temperature_c: 12.0,
            refraction_at_horizon_deg: 0.5667,
        }
    }
}

impl SpaOptions {
    fn pressure(&self, site: &Site) -> f64 {
        self.pressure_hpa
            .unwrap_or_else(|| standard_pressure_hpa(site.elevation_m))
    }
}

/// Pressure of the ICAO standard atmosphere at an elevation, hPa.
pub fn standard_pressure_hpa(elevation_m: f64) -> f64 {
    1013.25 * (1.0 - 2.25577e-5 * elevation_m).powf(5.25588)
}

/// An estimate of ΔT = TT - UT1 in seconds for a (decimal) year.
///
/// 2017..2035: TT - UTC = 32.184 s + 37 s (TAI - UTC since the leap second of 2017-01-01, IERS
/// Bulletin C) minus UT1 - UTC, which stays within ±0.9 s: 69.2 s is within 1 s. Elsewhere the
/// polynomial fits of Espenak and Meeus ("Polynomial expressions for Delta T", NASA GSFC
/// eclipse web site, 2006): 2005..2050 and the long-term parabola beyond. A 1 s error in ΔT
/// moves the sun by about 1e-5°.
pub fn delta_t_estimate(year: f64) -> f64 {
    if (2017.0..2035.0).contains(&year) {
        69.2
    } else if (2005.0..2050.0).contains(&year) {
        let t = year - 2000.0;
        62.92 + 0.32217 * t + 0.005589 * t * t
    } else {
        let u = (year - 1820.0) / 100.0;
        -20.0 + 32.0 * u * u
    }
}

/// The sun as seen from a site at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolarPosition {
    /// Topocentric zenith angle with refraction, degrees (0 overhead, 90 at the horizon).
    pub zenith_deg: f64,
    /// Topocentric azimuth, degrees clockwise from north (navigators' convention).
    pub azimuth_deg: f64,
    /// Topocentric elevation without refraction, degrees.
    pub elevation_true_deg: f64,
    /// Geocentric right ascension, degrees.
    pub right_ascension_deg: f64,
    /// Geocentric declination, degrees.
    pub declination_deg: f64,
    /// Observer local hour angle, degrees (measured westward from south).
    pub hour_angle_deg: f64,
    /// Earth-sun distance, astronomical units.
    pub earth_sun_au: f64,
    /// Equation of time, minutes (apparent minus mean solar time).
    pub equation_of_time_min: f64,
}

impl SolarPosition {
    /// Apparent elevation with refraction, degrees.
    pub fn elevation_deg(&self) -> f64 {
        90.0 - self.zenith_deg
    }

    /// Angle of incidence of the beam on a surface tilted `tilt_deg` from horizontal whose
    /// normal points to `surface_azimuth_deg` (clockwise from north), degrees (SPA eq. 47,
    /// with the paper's azimuth rotation γ = surface azimuth - 180).
    pub fn incidence_deg(&self, tilt_deg: f64, surface_azimuth_deg: f64) -> f64 {
        cos_incidence(
            self.zenith_deg,
            self.azimuth_deg,
            tilt_deg,
            surface_azimuth_deg,
        )
        .clamp(-1.0, 1.0)
        .acos()
        .to_degrees()
    }
}

/// cos of the angle of incidence on a tilted surface (may be negative: sun behind the plane).
pub fn cos_incidence(zenith_deg: f64, azimuth_deg: f64, tilt_deg: f64, surface_az_deg: f64) -> f64 {
    let (z, t) = (zenith_deg.to_radians(), tilt_deg.to_radians());
    z.cos() * t.cos() + t.sin() * z.sin() * (azimuth_deg - surface_az_deg).to_radians().cos()
}

/// Julian day (UT) of an instant given as Unix seconds.
pub fn julian_day(unix_seconds: f64) -> f64 {
    unix_seconds / 86_400.0 + UNIX_EPOCH_JD
}

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) * 1e-9
}

fn decimal_year(jd: f64) -> f64 {
    2000.0 + (jd - J2000) / 365.25
}

fn limit_degrees(d: f64) -> f64 {
    d.rem_euclid(360.0)
}

fn limit_pm180(d: f64) -> f64 {
    let l = d.rem_euclid(360.0);
    if l > 180.0 {
        l - 360.0
    } else {
        l
    }
}

fn series(terms: &[Term], jme: f64) -> f64 {
    terms.iter().map(|&(a, b, c)| a * (b + c * jme).cos()).sum()
}

fn polynomial(parts: &[f64], x: f64) -> f64 {
    parts.iter().rev().fold(0.0, |acc, &p| acc * x + p)
}

/// The part of the SPA that does not depend on the observer (sections 3.1 to 3.9, and the
/// inputs of the equation of time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geocentric {
    /// Julian day (UT) this was computed for.
    pub jd: f64,
    /// Earth heliocentric longitude (L), latitude (B), degrees, and radius vector (R), AU.
    pub helio_longitude_deg: f64,
    /// Earth heliocentric latitude (B), degrees.
    pub helio_latitude_deg: f64,
    /// Earth radius vector (R), AU.
    pub earth_sun_au: f64,
    /// Nutation in longitude (Δψ) and obliquity (Δε), degrees.
    pub nutation_longitude_deg: f64,
    /// Nutation in obliquity (Δε), degrees.
    pub nutation_obliquity_deg: f64,
    /// True obliquity of the ecliptic (ε), degrees.
    pub obliquity_deg: f64,
    /// Apparent sun longitude (λ), degrees.
    pub apparent_longitude_deg: f64,
    /// Geocentric right ascension (α) and declination (δ), degrees.
    pub right_ascension_deg: f64,
    /// Geocentric declination (δ), degrees.
    pub declination_deg: f64,
    /// Sun's mean longitude (M of eq. A.1), degrees.
    pub mean_longitude_deg: f64,
}

/// Runs SPA sections 3.1 to 3.9 for a Julian day (UT) and ΔT.
pub fn geocentric(jd: f64, delta_t_s: f64) -> Geocentric {
    let jde = jd + delta_t_s / 86_400.0;
    let jce = (jde - J2000) / 36_525.0;
    let jme = jce / 10.0;

    let l_rad = polynomial(
        &[
            series(&L0, jme),
            series(&L1, jme),
            series(&L2, jme),
            series(&L3, jme),
            series(&L4, jme),
            series(&L5, jme),
        ],
        jme,
    ) / 1e8;
    let b_rad = polynomial(&[series(&B0, jme), series(&B1, jme)], jme) / 1e8;
    let r = polynomial(
        &[
            series(&R0, jme),
            series(&R1, jme),
            series(&R2, jme),
            series(&R3, jme),
            series(&R4, jme),
        ],
        jme,
    ) / 1e8;
    let l = limit_degrees(l_rad.to_degrees());
    let b = b_rad.to_degrees();

    // 3.3 geocentric longitude and latitude.
    let theta = limit_degrees(l + 180.0);
    let beta = -b;

    // 3.4 nutation: the five fundamental arguments (degrees), then the 63 terms.
    let x = [
        polynomial(
            &[297.85036, 445_267.111_480, -0.001_914_2, 1.0 / 189_474.0],
            jce,
        ),
        polynomial(
            &[357.52772, 35_999.050_340, -0.000_160_3, -1.0 / 300_000.0],
            jce,
        ),
        polynomial(
            &[134.96298, 477_198.867_398, 0.008_697_2, 1.0 / 56_250.0],
            jce,
        ),
        polynomial(
            &[93.27191, 483_202.017_538, -0.003_682_5, 1.0 / 327_270.0],
            jce,
        ),
        polynomial(
            &[125.04452, -1_934.136_261, 0.002_070_8, 1.0 / 450_000.0],
            jce,
        ),
    ];
    let (mut dpsi, mut deps) = (0.0, 0.0);
    for (mult, [a, b, c, d]) in NUTATION.iter() {
        let arg: f64 = mult
            .iter()
            .zip(x.iter())
            .map(|(&m, &xi)| f64::from(m) * xi)
            .sum();
        let arg = arg.to_radians();
        dpsi += (a + b * jce) * arg.sin();
        deps += (c + d * jce) * arg.cos();
    }
    let dpsi = dpsi / 36_000_000.0;
    let deps = deps / 36_000_000.0;

    // 3.5 true obliquity of the ecliptic.
    let u = jme / 10.0;
    let eps0 = polynomial(
        &[
            84381.448, -4680.93, -1.55, 1999.25, -51.38, -249.67, -39.05, 7.12, 27.87, 5.79, 2.45,
        ],
        u,
    );
    let eps = eps0 / 3600.0 + deps;

    // 3.6 aberration, 3.7 apparent sun longitude.
    let dtau = -20.4898 / (3600.0 * r);
    let lambda = theta + dpsi + dtau;

    // 3.9 geocentric right ascension and declination.
    let (lr, er, br) = (lambda.to_radians(), eps.to_radians(), beta.to_radians());
    let alpha = limit_degrees(
        (lr.sin() * er.cos() - br.tan() * er.sin())
            .atan2(lr.cos())
            .to_degrees(),
    );
    let delta = (br.sin() * er.cos() + br.cos() * er.sin() * lr.sin())
        .asin()
        .to_degrees();

    let mean_longitude = limit_degrees(polynomial(
        &[
            280.466_456_7,
            360_007.698_277_9,
            0.030_320_28,
            1.0 / 49_931.0,
            -1.0 / 15_300.0,
            -1.0 / 2_000_000.0,
        ],
        jme,
    ));

    Geocentric {
        jd,
        helio_longitude_deg: l,
        helio_latitude_deg: b,
        earth_sun_au: r,
        nutation_longitude_deg: dpsi,
        nutation_obliquity_deg: deps,
        obliquity_deg: eps,
        apparent_longitude_deg: lambda,
        right_ascension_deg: alpha,
        declination_deg: delta,
        mean_longitude_deg: mean_longitude,
    }
}

/// Mean sidereal time at Greenwich (ν0, SPA eq. 12), degrees.
fn mean_sidereal_time(jd: f64) -> f64 {
    let jc = (jd - J2000) / 36_525.0;
    limit_degrees(
        280.460_618_37 + 360.985_647_366_29 * (jd - J2000) + 0.000_387_933 * jc * jc
            - jc * jc * jc / 38_710_000.0,
    )
}

/// Apparent sidereal time at Greenwich (ν, SPA eq. 15), degrees.
fn apparent_sidereal_time(jd: f64, geo: &Geocentric) -> f64 {
    mean_sidereal_time(jd) + geo.nutation_longitude_deg * geo.obliquity_deg.to_radians().cos()
}

/// Equation of time (SPA eq. A.1 to A.3), minutes, limited to ±20 min.
fn equation_of_time(geo: &Geocentric) -> f64 {
    let e = 4.0
        * (geo.mean_longitude_deg - 0.005_718_3 - geo.right_ascension_deg
            + geo.nutation_longitude_deg * geo.obliquity_deg.to_radians().cos());
    let e = e.rem_euclid(1440.0);
    if e > 720.0 {
        e - 1440.0
    } else {
        e
    }
}

/// SPA sections 3.10 to 3.15: the observer's view of the geocentric sun.
fn topocentric(
    jd: f64,
    geo: &Geocentric,
    site: &Site,
    pressure_hpa: f64,
    options: &SpaOptions,
) -> SolarPosition {
    let nu = apparent_sidereal_time(jd, geo);
    let h = limit_degrees(nu + site.longitude_deg - geo.right_ascension_deg);

    // 3.12 parallax.
    let xi = (8.794 / (3600.0 * geo.earth_sun_au)).to_radians();
    let phi = site.latitude_deg.to_radians();
    let u = (0.996_647_19 * phi.tan()).atan();
    let x = u.cos() + site.elevation_m / 6_378_140.0 * phi.cos();
    let y = 0.996_647_19 * u.sin() + site.elevation_m / 6_378_140.0 * phi.sin();
    let (hr, dr) = (h.to_radians(), geo.declination_deg.to_radians());
    let denom = dr.cos() - x * xi.sin() * hr.cos();
    let dalpha = (-x * xi.sin() * hr.sin()).atan2(denom);
    let delta_p = ((dr.sin() - y * xi.sin()) * dalpha.cos()).atan2(denom);
    let h_p = hr - dalpha;

    // 3.14 elevation, refraction, zenith.
    let e0 = (phi.sin() * delta_p.sin() + phi.cos() * delta_p.cos() * h_p.cos())
        .asin()
        .to_degrees();
    let de = if e0 >= -(SUN_RADIUS_DEG + options.refraction_at_horizon_deg) {
        pressure_hpa / 1010.0 * 283.0 / (273.0 + options.temperature_c) * 1.02
            / (60.0 * (e0 + 10.3 / (e0 + 5.11)).to_radians().tan())
    } else {
        0.0
    };
    let zenith = 90.0 - (e0 + de);

    // 3.15 azimuth: astronomers' Γ from south, then Φ from north.
    let gamma = h_p
        .sin()
        .atan2(h_p.cos() * phi.sin() - delta_p.tan() * phi.cos())
        .to_degrees();
    let azimuth = limit_degrees(gamma + 180.0);

    SolarPosition {
        zenith_deg: zenith,
        azimuth_deg: azimuth,
        elevation_true_deg: e0,
        right_ascension_deg: geo.right_ascension_deg,
        declination_deg: geo.declination_deg,
        hour_angle_deg: h,
        earth_sun_au: geo.earth_sun_au,
        equation_of_time_min: equation_of_time(geo),
    }
}

fn delta_t_for(jd: f64, options: &SpaOptions) -> f64 {
    options
        .delta_t_s
        .unwrap_or_else(|| delta_t_estimate(decimal_year(jd)))
}

/// The full SPA for one instant (UTC).
pub fn solar_position(t: DateTime<Utc>, site: &Site, options: &SpaOptions) -> SolarPosition {
    let jd = julian_day(unix_seconds(t) + options.delta_ut1_s);
    let geo = geocentric(jd, delta_t_for(jd, options));
    topocentric(jd, &geo, site, options.pressure(site), options)
}

/// Solar positions for a long evenly spaced series, fast (see the module documentation).
#[derive(Debug, Clone)]
pub struct SolarPath {
    site: Site,
    options: SpaOptions,
    pressure_hpa: f64,
    /// Julian day of the first node; nodes are one hour apart.
    first_node_jd: f64,
    nodes: Vec<Geocentric>,
}

const NODE_STEP_DAYS: f64 = 1.0 / 24.0;

impl SolarPath {
    /// Prepares positions for instants from `from` to `to` (inclusive) at `site`.
    pub fn new(site: Site, options: SpaOptions, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        let jd_from = julian_day(unix_seconds(from) + options.delta_ut1_s);
        let jd_to = julian_day(unix_seconds(to) + options.delta_ut1_s).max(jd_from);
        let first = (jd_from / NODE_STEP_DAYS).floor() * NODE_STEP_DAYS;
        let count = ((jd_to - first) / NODE_STEP_DAYS).floor() as usize + 2;
        let nodes = (0..count)
            .map(|i| {
                let jd = first + i as f64 * NODE_STEP_DAYS;
                geocentric(jd, delta_t_for(jd, &options))
            })
            .collect();
        SolarPath {
            site,
            options,
            pressure_hpa: options.pressure(&site),
            first_node_jd: first,
            nodes,
        }
    }

    /// The position at `t`; outside the prepared span it falls back to the full algorithm.
    pub fn at(&self, t: DateTime<Utc>) -> SolarPosition {
        let jd = julian_day(unix_seconds(t) + self.options.delta_ut1_s);
        let pos = (jd - self.first_node_jd) / NODE_STEP_DAYS;
        let i = pos.floor();
        if i < 0.0 || i as usize + 1 >= self.nodes.len() {
            return solar_position(t, &self.site, &self.options);
        }
        let (a, b) = (&self.nodes[i as usize], &self.nodes[i as usize + 1]);
        let f = pos - i;
        let lerp = |x: f64, y: f64| x + (y - x) * f;
        let mut ra_b = b.right_ascension_deg;
        if ra_b - a.right_ascension_deg < -180.0 {
            ra_b += 360.0;
        }
        let mut ml_b = b.mean_longitude_deg;
        if ml_b - a.mean_longitude_deg < -180.0 {
            ml_b += 360.0;
        }
        let geo = Geocentric {
            jd,
            helio_longitude_deg: a.helio_longitude_deg,
            helio_latitude_deg: a.helio_latitude_deg,
            earth_sun_au: lerp(a.earth_sun_au, b.earth_sun_au),
            nutation_longitude_deg: lerp(a.nutation_longitude_deg, b.nutation_longitude_deg),
            nutation_obliquity_deg: lerp(a.nutation_obliquity_deg, b.nutation_obliquity_deg),
            obliquity_deg: lerp(a.obliquity_deg, b.obliquity_deg),
            apparent_longitude_deg: a.apparent_longitude_deg,
            right_ascension_deg: limit_degrees(lerp(a.right_ascension_deg, ra_b)),
            declination_deg: lerp(a.declination_deg, b.declination_deg),
            mean_longitude_deg: limit_degrees(lerp(a.mean_longitude_deg, ml_b)),
        };
        topocentric(jd, &geo, &self.site, self.pressure_hpa, &self.options)
    }
}

/// Sunrise, solar transit and sunset of one day (SPA appendix A.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SunTimes {
    /// Solar transit (local noon).
    pub transit: DateTime<Utc>,
    /// Sunrise and sunset: the upper limb on the horizon with standard refraction; `None` in
    /// polar day or night.
    pub sunrise: Option<DateTime<Utc>>,
    /// Sunset, as sunrise; `None` in polar day or night.
    pub sunset: Option<DateTime<Utc>>,
    /// Sun altitude at transit, degrees.
    pub transit_altitude_deg: f64,
}

/// Sunrise, transit and sunset for the day `date` in a zone `utc_offset_hours` from UTC
/// (the day runs from local midnight to midnight in that offset).
pub fn sun_times(
    date: NaiveDate,
    utc_offset_hours: f64,
    site: &Site,
    options: &SpaOptions,
) -> SunTimes {
    let midnight_utc = date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let jd0 = julian_day(unix_seconds(midnight_utc));
    let delta_t = delta_t_for(jd0, options);
    let h0_prime = -(SUN_RADIUS_DEG + options.refraction_at_horizon_deg);

    // ν at 0 UT; α and δ at 0 TT of the day before, the day and the day after.
    let geo0 = geocentric(jd0, delta_t);
    let nu = apparent_sidereal_time(jd0, &geo0);
    let mut alpha = [0.0; 3];
    let mut delta = [0.0; 3];
    for i in 0..3 {
        let g = geocentric(jd0 + i as f64 - 1.0, 0.0);
        alpha[i] = g.right_ascension_deg;
        delta[i] = g.declination_deg;
    }
    let phi = site.latitude_deg.to_radians();
    let m0 = (alpha[1] - site.longitude_deg - nu) / 360.0;
    let cos_h0 = (h0_prime.to_radians().sin() - phi.sin() * delta[1].to_radians().sin())
        / (phi.cos() * delta[1].to_radians().cos());

    let interpolate = |v: &[f64; 3], n: f64| {
        let mut a = v[1] - v[0];
        let mut b = v[2] - v[1];
        if a.abs() >= 2.0 {
            a = a.rem_euclid(1.0);
        }
        if b.abs() >= 2.0 {
            b = b.rem_euclid(1.0);
        }
        v[1] + n * (a + b + (b - a) * n) / 2.0
    };
    // Local hour angle and altitude at the day fraction m.
    let at = |m: f64| {
        let nu_m = nu + 360.985_647 * m;
        let n = m + delta_t / 86_400.0;
        let a = interpolate(&alpha, n);
        let d = interpolate(&delta, n);
        let h = limit_pm180(nu_m + site.longitude_deg - a);
        let (dr, hr) = (d.to_radians(), h.to_radians());
        let alt = (phi.sin() * dr.sin() + phi.cos() * dr.cos() * hr.cos())
            .asin()
            .to_degrees();
        (h, d, alt)
    };
    let frac = |m: f64| m.rem_euclid(1.0);
    let to_time =
        |m: f64| midnight_utc + chrono::Duration::microseconds((m * 86_400e6).round() as i64);

    // The UT day fractions of the local day: shift so events fall in that local day.
    let local_shift = -utc_offset_hours / 24.0;
    let place = |m: f64| frac(m - local_shift) + local_shift;

    let m_transit = frac(m0);
    let (h_t, _, alt_t) = at(m_transit);
    let transit = place(m_transit - h_t / 360.0);

    let (sunrise, sunset) = if cos_h0.abs() <= 1.0 {
        let h0 = cos_h0.acos().to_degrees();
        let event = |m: f64| {
            let m = frac(m);
            let (h, d, alt) = at(m);
            m + (alt - h0_prime) / (360.0 * d.to_radians().cos() * phi.cos() * h.to_radians().sin())
        };
        (
            Some(to_time(place(event(m0 - h0 / 360.0)))),
            Some(to_time(place(event(m0 + h0 / 360.0)))),
        )
    } else {
        (None, None)
    };
    SunTimes {
        transit: to_time(transit),
        sunrise,
        sunset,
        transit_altitude_deg: alt_t,
    }
}

/// Day of year of a UTC instant (1 = January 1st).
pub fn day_of_year(t: DateTime<Utc>) -> u32 {
    t.ordinal()
}
