//! SunSpec register layouts for simulated devices: the "SunS" marker, a chain of models
//! (id, length, data) and the end marker, with model data laid out by the point tables of the
//! `sunspec` crate (generated from the official SunSpec model definitions).

use sunspec::models::{
    model1::Model1, model103::Model103, model123::Model123, model124::Model124, model203::Model203,
    model802::Model802,
};
use sunspec::{Group, Point, Value};

use crate::bank::Bank;

/// "SunS" as two registers.
pub const SUNS: [u16; 2] = [0x5375, 0x6e53];

/// Writes a value at a point of a model's data.
pub fn put<G: Group, T: Value>(data: &mut [u16], point: Point<G, T>, value: T) {
    let words = value.encode();
    let start = usize::from(point.offset);
    let n = words.len().min(usize::from(point.length));
    data[start..start + n].copy_from_slice(&words[..n]);
}

/// A model's data of the right length, every register 0.
pub fn blank<G: Group>() -> Vec<u16> {
    vec![0; usize::from(G::LEN)]
}

/// Builds a SunSpec register image.
#[derive(Debug, Clone)]
pub struct SunSpecImage {
    base: u16,
    words: Vec<u16>,
    /// Where each model's data starts (register address), by model id.
    pub data_addr: Vec<(u16, u16)>,
}

impl SunSpecImage {
    /// Starts an image at `base` (40000 is the usual address).
    pub fn new(base: u16) -> Self {
        SunSpecImage {
            base,
            words: SUNS.to_vec(),
            data_addr: Vec::new(),
        }
    }

    /// Appends a model; `len` is normally `data.len()` (a different value lies about it).
    pub fn model_with_len(mut self, id: u16, len: u16, data: &[u16]) -> Self {
        self.words.push(id);
        self.words.push(len);
        self.data_addr
            .push((id, self.base + self.words.len() as u16));
        self.words.extend_from_slice(data);
        self
    }

    /// Appends a model with its data (its length is the data's).
    pub fn model(self, id: u16, data: &[u16]) -> Self {
        let len = data.len() as u16;
        self.model_with_len(id, len, data)
    }

    /// The address of a model's data.
    pub fn addr_of(&self, id: u16) -> Option<u16> {
        self.data_addr
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, a)| *a)
    }

    /// Ends the chain and writes it into `bank`'s holding registers.
    pub fn install(mut self, bank: &mut Bank) -> Self {
        self.words.push(0xFFFF);
        self.words.push(0);
        bank.set(self.base, &self.words);
        self
    }
}

/// Common model (1): manufacturer, model, serial number.
pub fn common(manufacturer: &str, model: &str, serial: &str) -> Vec<u16> {
    let mut d = blank::<Model1>();
    put(&mut d, Model1::MN, manufacturer.to_string());
    put(&mut d, Model1::MD, model.to_string());
    put(&mut d, Model1::SN, serial.to_string());
    d
}

/// Three-phase inverter (103): AC power in W (scale factor 0: whole watts up to 32.7 kW; the
/// factor `w_sf` scales larger plants) and lifetime energy in Wh.
pub fn inverter(w: f64, w_sf: i16, wh: u32) -> Vec<u16> {
    let mut d = blank::<Model103>();
    put(
        &mut d,
        Model103::W,
        (w / 10f64.powi(i32::from(w_sf))).round() as i16,
    );
    put(&mut d, Model103::W_SF, w_sf);
    put(&mut d, Model103::WH, wh);
    put(&mut d, Model103::WH_SF, 0i16);
    d
}

/// Immediate controls (123): active power limit in % of WMax (scale factor -1).
pub fn controls(limit_pct: f64) -> Vec<u16> {
    let mut d = blank::<Model123>();
    put(
        &mut d,
        Model123::W_MAX_LIM_PCT,
        (limit_pct * 10.0).round() as u16,
    );
    put(&mut d, Model123::W_MAX_LIM_PCT_SF, -1i16);
    d
}

/// Storage (124): nameplate charge rate WChaMax in W (scale factor `sf`); charge and
/// discharge rates in 0.1 % steps.
pub fn storage(w_cha_max: f64, sf: i16) -> Vec<u16> {
    let mut d = blank::<Model124>();
    put(
        &mut d,
        Model124::W_CHA_MAX,
        (w_cha_max / 10f64.powi(i32::from(sf))).round() as u16,
    );
    put(&mut d, Model124::W_CHA_MAX_SF, sf);
    put(&mut d, Model124::IN_OUT_W_RTE_SF, Some(-1i16));
    d
}

/// Wye meter (203): total real power in W (sf `w_sf`), energy counters in Wh (sf 0).
pub fn meter(w: f64, w_sf: i16, imported_wh: u32, exported_wh: u32) -> Vec<u16> {
    let mut d = blank::<Model203>();
    put(
        &mut d,
        Model203::W,
        (w / 10f64.powi(i32::from(w_sf))).round() as i16,
    );
    put(&mut d, Model203::W_SF, w_sf);
    put(&mut d, Model203::TOT_WH_IMP, imported_wh);
    put(&mut d, Model203::TOT_WH_EXP, exported_wh);
    put(&mut d, Model203::TOT_WH_SF, 0i16);
    d
}

/// Lithium-ion battery (802): SoC in % (sf -1), power in W (sf `w_sf`), nameplate charge and
/// discharge rates in W (sf `rate_sf`).
pub fn battery(
    soc_pct: f64,
    w: f64,
    w_sf: i16,
    cha_max_w: f64,
    dis_max_w: f64,
    rate_sf: i16,
) -> Vec<u16> {
    let mut d = blank::<Model802>();
    let rate = |x: f64| (x / 10f64.powi(i32::from(rate_sf))).round() as u16;
    put(&mut d, Model802::SOC, (soc_pct * 10.0).round() as u16);
    put(&mut d, Model802::SOC_SF, -1i16);
    put(
        &mut d,
        Model802::W,
        (w / 10f64.powi(i32::from(w_sf))).round() as i16,
    );
    put(&mut d, Model802::W_SF, Some(w_sf));
    put(&mut d, Model802::W_CHA_RTE_MAX, rate(cha_max_w));
    put(&mut d, Model802::W_DIS_CHA_RTE_MAX, rate(dis_max_w));
    put(&mut d, Model802::W_CHA_DIS_CHA_MAX_SF, rate_sf);
    d
}

/// Nameplate (120): continuous power rating in W (scale factor `sf`).
pub fn nameplate(w_rtg: f64, sf: i16) -> Vec<u16> {
    use sunspec::models::model120::Model120;
    let mut d = blank::<Model120>();
    put(
        &mut d,
        Model120::W_RTG,
        (w_rtg / 10f64.powi(i32::from(sf))).round() as u16,
    );
    put(&mut d, Model120::W_RTG_SF, sf);
    d
}

/// DER AC measurement (701): active power in W (sf `w_sf`), energy injected in Wh (sf 0).
pub fn der_measure(w: f64, w_sf: i16, wh_injected: u64) -> Vec<u16> {
    use sunspec::models::model701::DerMeasureAc;
    let mut d = blank::<DerMeasureAc>();
    put(
        &mut d,
        DerMeasureAc::W,
        Some((w / 10f64.powi(i32::from(w_sf))).round() as i16),
    );
    put(&mut d, DerMeasureAc::W_SF, Some(w_sf));
    put(&mut d, DerMeasureAc::TOT_WH_INJ, Some(wh_injected));
    put(&mut d, DerMeasureAc::TOT_WH_SF, Some(0i16));
    d
}

/// MPPT (160): one 20-register module per DC power given (W, scale factor `sf`).
pub fn mppt(module_w: &[f64], sf: i16) -> Vec<u16> {
    use sunspec::models::model160::{Module, Mppt};
    let mut d = blank::<Mppt>();
    put(&mut d, Mppt::DCW_SF, Some(sf));
    put(&mut d, Mppt::N, Some(module_w.len() as u16));
    for &w in module_w {
        let mut m = blank::<Module>();
        put(
            &mut m,
            Module::DCW,
            Some((w / 10f64.powi(i32::from(sf))).round() as u16),
        );
        d.extend(m);
    }
    d
}
