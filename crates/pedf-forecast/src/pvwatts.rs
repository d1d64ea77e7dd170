//! A PVWatts-style power model (Dobos 2014, "PVWatts Version 5 Manual", NREL/TP-6A20-62641):
//! reflection losses at the glass, cell temperature, DC power with a temperature
//! coefficient, system losses, and the part-load efficiency curve of the power converter.
//!
//! Differences from PVWatts v5, on purpose: the sky diffuse model is Hay-Davies (or isotropic)
//! rather than Perez; cell temperature is the Sandia model (King et al. 2004) rather than
//! PVWatts' Fuentes model; the "inverter" is each array's DC/DC converter onto the park's DC
//! bus, whose nominal efficiency and rating come from the park file.

/// Angle-of-incidence modifier of a glass cover (PVWatts v5 manual section 3.2; De Soto et al.
/// 2006): Fresnel reflection at n = 1.526 with absorption K·L = 4 m⁻¹ × 2 mm, normalised to
/// normal incidence. 1 at normal incidence, 0 at 90°.
pub fn glass_iam(aoi_deg: f64) -> f64 {
    const N: f64 = 1.526;
    const KL: f64 = 4.0 * 0.002;
    fn transmittance(theta: f64) -> f64 {
        if theta < 1e-6 {
            let r = ((1.0 - N) / (1.0 + N)).powi(2);
            return (-KL).exp() * (1.0 - r);
        }
        let theta_r = (theta.sin() / N).asin();
        let s = ((theta_r - theta).sin() / (theta_r + theta).sin()).powi(2);
        let p = ((theta_r - theta).tan() / (theta_r + theta).tan()).powi(2);
        (-KL / theta_r.cos()).exp() * (1.0 - 0.5 * (s + p))
    }
    if !(0.0..90.0).contains(&aoi_deg) {
        return 0.0;
    }
    (transmittance(aoi_deg.to_radians()) / transmittance(0.0)).clamp(0.0, 1.0)
}

/// How modules are mounted, for the Sandia cell temperature model (King, Boyson & Kratochvil
/// 2004, "Photovoltaic Array Performance Model", SAND2004-3535, Table 1: glass/cell/polymer
/// sheet modules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mounting {
    /// Open rack: a = -3.56, b = -0.075, ΔT = 3 °C.
    #[default]
    OpenRack,
    /// Close roof mount: a = -2.81, b = -0.0455, ΔT = 0 °C.
    CloseRoof,
}

/// Cell temperature, °C, from plane-of-array irradiance (W/m²), air temperature (°C) and wind
/// speed at 10 m (m/s).
pub fn cell_temperature(poa: f64, air_c: f64, wind_m_s: f64, mounting: Mounting) -> f64 {
    let (a, b, dt) = match mounting {
        Mounting::OpenRack => (-3.56, -0.075, 3.0),
        Mounting::CloseRoof => (-2.81, -0.0455, 0.0),
    };
    let module = poa * (a + b * wind_m_s.max(0.0)).exp() + air_c;
    module + poa / 1000.0 * dt
}

/// PVWatts DC power (manual eq. 3.3): `p_dc0` at 1000 W/m² and 25 °C, scaled by the
/// irradiance reaching the cells and the temperature coefficient `gamma` (1/°C).
pub fn dc_power(transmitted_poa: f64, cell_c: f64, p_dc0: f64, gamma: f64) -> f64 {
    (transmitted_poa / 1000.0 * p_dc0 * (1.0 + gamma * (cell_c - 25.0))).max(0.0)
}

/// Output of a converter rated `p_out_rated` (output side) with nominal efficiency `eta_nom`
/// for DC input `p_dc`, on the PVWatts part-load curve (manual eq. 3.4, η_ref = 0.9637),
/// clipped at the rating. Zero input gives zero output (no night consumption is modelled).
pub fn converter_output(p_dc: f64, p_out_rated: f64, eta_nom: f64) -> f64 {
    if p_dc <= 0.0 || p_out_rated <= 0.0 {
        return 0.0;
    }
    const ETA_REF: f64 = 0.9637;
    let p_dc0 = p_out_rated / eta_nom;
    let zeta = p_dc / p_dc0;
    let eta = eta_nom / ETA_REF * (-0.0162 * zeta - 0.0059 / zeta + 0.9858);
    (p_dc * eta).clamp(0.0, p_out_rated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_is_one_at_normal_incidence_and_falls_off_steeply_past_60() {
        assert!((glass_iam(0.0) - 1.0).abs() < 1e-12);
        assert!(glass_iam(30.0) > 0.995);
        assert!(
            (0.9..0.99).contains(&glass_iam(60.0)),
            "{}",
            glass_iam(60.0)
        );
        assert!(glass_iam(80.0) < 0.7);
        assert_eq!(glass_iam(90.0), 0.0);
        let mut last = 1.0;
        for a in 0..90 {
            let v = glass_iam(f64::from(a));
            assert!(v <= last + 1e-12);
            last = v;
        }
    }

    #[test]
    fn cell_temperature_matches_the_sandia_table() {
        // Open rack at 1000 W/m², 1 m/s, 20 °C: module 20 + 1000·e^(-3.635) = 46.4, cell +3.
        let t = cell_temperature(1000.0, 20.0, 1.0, Mounting::OpenRack);
        assert!((t - 49.39).abs() < 0.05, "{t}");
        assert!(cell_temperature(1000.0, 20.0, 1.0, Mounting::CloseRoof) > t);
        assert_eq!(cell_temperature(0.0, 20.0, 1.0, Mounting::OpenRack), 20.0);
    }

    #[test]
    fn dc_power_is_nameplate_at_standard_conditions() {
        assert!((dc_power(1000.0, 25.0, 100.0, -0.0035) - 100.0).abs() < 1e-12);
        assert!((dc_power(1000.0, 45.0, 100.0, -0.0035) - 93.0).abs() < 1e-12);
        assert_eq!(dc_power(0.0, 25.0, 100.0, -0.0035), 0.0);
    }

    #[test]
    fn converter_reaches_nominal_efficiency_at_full_load_and_clips() {
        // At ζ = 1 the curve gives η_nom·(0.9637/0.9637).
        let rated = 100.0;
        let out = converter_output(rated / 0.96, rated, 0.96);
        assert!((out - 100.0).abs() < 1e-9, "{out}");
        // Part load: a little lower efficiency at 10 %.
        let p = 0.1 * rated / 0.96;
        let eta = converter_output(p, rated, 0.96) / p;
        assert!(eta < 0.96 && eta > 0.9, "{eta}");
        assert_eq!(converter_output(2.0 * rated, rated, 0.96), rated);
        assert_eq!(converter_output(0.0, rated, 0.96), 0.0);
    }
}
