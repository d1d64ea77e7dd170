//! A Modbus device: polled through a register-map template or SunSpec discovery, its values
//! kept in a [`DeviceState`] with time and quality, its setpoint written and read back.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::capability::{Capability, DeviceState, Field, Setpoint};
use crate::codec::{decode, encode, sunspec_scale, DecodeError, RegType, WordOrder};
use crate::modbus::{LinkError, ModbusLink};
use crate::sunspec::{self, ModelEntry, SunSpecError};
use crate::template::{DeviceConfig, Table, Template};

/// Why a device operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeviceError {
    /// The Modbus link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// SunSpec discovery failed.
    #[error(transparent)]
    SunSpec(#[from] SunSpecError),
    /// A register value could not be decoded.
    #[error("{0}")]
    Decode(String),
    /// A setpoint was written to a device without one.
    #[error("the device has no writable setpoint")]
    NotControllable,
    /// A setpoint cannot be encoded for the device's register.
    #[error("{value} cannot be written: {why}")]
    Encode {
        /// The value.
        value: f64,
        /// Why not.
        why: String,
    },
    /// An OCPP charger refused or did not answer a call, or answered what pedf cannot use.
    #[error("{0}")]
    Ocpp(String),
    /// The device reports another value than was written.
    #[error("asked for {asked}, the device reports {readback}")]
    Readback {
        /// The value written.
        asked: f64,
        /// The value read back.
        readback: f64,
    },
}

enum Driver {
    Template(Box<Template>),
    SunSpec {
        models: Option<Vec<ModelEntry>>,
        data: BTreeMap<u16, Vec<u16>>,
    },
}

/// A polled Modbus device.
pub struct ModbusDevice {
    /// The device's entry in the device file.
    pub config: DeviceConfig,
    link: ModbusLink,
    driver: Driver,
    /// What it last read, with times and quality.
    pub state: DeviceState,
    /// Invert the power sign of a SunSpec device (battery charge positive, meter export
    /// positive).
    invert_power: bool,
}

/// Registers to read: maximal runs of addresses, gaps under this many registers merged.
const MERGE_GAP: u16 = 16;

fn runs(mut addrs: Vec<(u16, usize)>) -> Vec<(u16, u16)> {
    addrs.sort();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, n) in addrs {
        let end = u32::from(a) + n as u32;
        if let Some(last) = out.last_mut() {
            let last_end = u32::from(last.0) + u32::from(last.1);
            if u32::from(a) <= last_end + u32::from(MERGE_GAP) && end - u32::from(last.0) <= 125 {
                last.1 = (end.max(last_end) - u32::from(last.0)) as u16;
                continue;
            }
        }
        out.push((a, n as u16));
    }
    out
}

impl ModbusDevice {
    /// A device read through a template.
    pub fn with_template(config: DeviceConfig, template: Template, link: ModbusLink) -> Self {
        let state = DeviceState::new(
            config.id.clone(),
            config.capability,
            Duration::from_millis(config.stale_after_ms),
        );
        ModbusDevice {
            config,
            link,
            driver: Driver::Template(Box::new(template)),
            state,
            invert_power: false,
        }
    }

    /// A SunSpec device (discovered on its first poll).
    pub fn sunspec(config: DeviceConfig, link: ModbusLink, invert_power: bool) -> Self {
        let state = DeviceState::new(
            config.id.clone(),
            config.capability,
            Duration::from_millis(config.stale_after_ms),
        );
        ModbusDevice {
            config,
            link,
            driver: Driver::SunSpec {
                models: None,
                data: BTreeMap::new(),
            },
            state,
            invert_power,
        }
    }

    /// The models found, for a SunSpec device already discovered.
    pub fn models(&self) -> Option<&[ModelEntry]> {
        match &self.driver {
            Driver::SunSpec { models, .. } => models.as_deref(),
            Driver::Template(_) => None,
        }
    }

    /// The continuous power rating a SunSpec device states in its nameplate model, kW.
    pub fn nameplate_kw(&self) -> Option<f64> {
        match &self.driver {
            Driver::SunSpec { data, .. } => sunspec::nameplate_kw(data),
            Driver::Template(_) => None,
        }
    }

    /// Polls once: every field is updated (good or bad); a link failure marks the poll failed
    /// and leaves the values to age into staleness.
    pub async fn poll(&mut self, now: DateTime<Utc>) -> Result<(), DeviceError> {
        let result = self.read_fields().await;
        match result {
            Ok(fields) => {
                for (f, v) in fields {
                    match v {
                        Ok(x) => self.state.set(f, x, now),
                        Err(why) => self.state.set_bad(f, why),
                    }
                }
                self.state.poll_ok(now);
                Ok(())
            }
            Err(e) => {
                if matches!(
                    e,
                    DeviceError::SunSpec(SunSpecError::Chain(_)) | DeviceError::Link(_)
                ) {
                    // Rediscover next time: the device may have restarted with another layout.
                    if let Driver::SunSpec { models, .. } = &mut self.driver {
                        *models = None;
                    }
                }
                self.state.poll_failed(e.to_string());
                Err(e)
            }
        }
    }

    async fn read_fields(&mut self) -> Result<Vec<sunspec::Decoded>, DeviceError> {
        let unit = self.config.unit_id;
        match &mut self.driver {
            Driver::Template(t) => read_template(&self.link, unit, t).await,
            Driver::SunSpec { models, data } => {
                if models.is_none() {
                    *models = Some(sunspec::discover(&self.link, unit).await?);
                }
                let list = models.as_deref().unwrap_or_default();
                *data = sunspec::read_models(&self.link, unit, list).await?;
                sunspec::decode(self.config.capability, data, self.invert_power)
                    .map_err(DeviceError::Decode)
            }
        }
    }

    /// Writes a setpoint (already made safe by the caller) and returns what the device reads
    /// back, in pedf's unit.
    pub async fn write_setpoint(&mut self, value: f64) -> Result<f64, DeviceError> {
        let unit = self.config.unit_id;
        match &self.driver {
            Driver::Template(t) => {
                let sp = t.setpoint.as_ref().ok_or(DeviceError::NotControllable)?;
                let field = match sp.kind {
                    Setpoint::PowerKw => Field::PowerKw,
                    Setpoint::PowerLimitPct => Field::PowerLimitPct,
                };
                let factor = sp.unit.factor_to(field).unwrap_or(1.0);
                let scale = sp.scale.unwrap_or(1.0);
                let order = sp.word_order.unwrap_or(t.template.word_order);
                let signed = if sp.invert { -value } else { value };
                let raw = signed / factor / scale;
                let words = encode(raw, sp.ty, order).map_err(|e| DeviceError::Encode {
                    value,
                    why: e.to_string(),
                })?;
                self.link.write(unit, sp.address, words).await?;
                let back_addr = sp.readback_address.unwrap_or(sp.address);
                let back = self
                    .link
                    .read(unit, Table::Holding, back_addr, sp.ty.words() as u16)
                    .await?;
                let raw_back = decode(&back, sp.ty, order, false)
                    .map_err(|e| DeviceError::Decode(e.to_string()))?;
                let mut readback = raw_back * scale * factor;
                if sp.invert {
                    readback = -readback;
                }
                let step = (scale * factor).abs();
                if (readback - value).abs() > step * 0.5 + 1e-9 {
                    return Err(DeviceError::Readback {
                        asked: value,
                        readback,
                    });
                }
                Ok(readback)
            }
            Driver::SunSpec { models, data } => {
                let models = models
                    .as_deref()
                    .ok_or(DeviceError::Decode("not discovered yet: poll first".into()))?;
                match self.config.capability {
                    Capability::PvInverter => {
                        let (limit, enable, scale) = sunspec::power_limit_registers(models, data)
                            .ok_or(DeviceError::NotControllable)?;
                        let raw = (value / scale).round();
                        let words =
                            encode(raw, RegType::U16, WordOrder::HighFirst).map_err(|e| {
                                DeviceError::Encode {
                                    value,
                                    why: e.to_string(),
                                }
                            })?;
                        self.link.write(unit, limit, words).await?;
                        self.link.write(unit, enable, vec![1]).await?;
                        let back = self.link.read(unit, Table::Holding, limit, 1).await?;
                        let readback = f64::from(back[0]) * scale;
                        if (readback - value).abs() > scale * 0.5 + 1e-9 {
                            return Err(DeviceError::Readback {
                                asked: value,
                                readback,
                            });
                        }
                        Ok(readback)
                    }
                    Capability::Battery => {
                        let ctl = sunspec::storage_control(models, data)
                            .ok_or(DeviceError::NotControllable)?;
                        let signed = if self.invert_power { -value } else { value };
                        let (out_rate, in_rate) = ctl.rates_for(signed);
                        self.link
                            .write(unit, ctl.out_rate, vec![out_rate as u16, in_rate as u16])
                            .await?;
                        self.link.write(unit, ctl.mode, vec![3]).await?;
                        let back = self
                            .link
                            .read(unit, Table::Holding, ctl.out_rate, 1)
                            .await?;
                        let mut readback = ctl.power_of(back[0] as i16);
                        if self.invert_power {
                            readback = -readback;
                        }
                        let step = ctl.rate_scale / 100.0 * ctl.w_cha_max_kw;
                        if (readback - value).abs() > step * 0.5 + 1e-9
                            && value.abs() <= ctl.w_cha_max_kw
                        {
                            return Err(DeviceError::Readback {
                                asked: value,
                                readback,
                            });
                        }
                        Ok(readback)
                    }
                    _ => Err(DeviceError::NotControllable),
                }
            }
        }
    }
}

async fn read_template(
    link: &ModbusLink,
    unit: u8,
    t: &Template,
) -> Result<Vec<sunspec::Decoded>, DeviceError> {
    // Gather every register the points need, per table, and read them in few requests.
    let mut need: BTreeMap<Table, Vec<(u16, usize)>> = BTreeMap::new();
    for p in &t.points {
        need.entry(p.table)
            .or_default()
            .push((p.address, p.ty.words()));
        if let Some(sf) = p.scale_register {
            need.entry(p.table).or_default().push((sf, 1));
        }
    }
    let mut regs: BTreeMap<(Table, u16), u16> = BTreeMap::new();
    for (table, addrs) in need {
        for (start, n) in runs(addrs) {
            let words = link.read(unit, table, start, n).await?;
            for (i, w) in words.into_iter().enumerate() {
                regs.insert((table, start + i as u16), w);
            }
        }
    }
    let get = |table: Table, a: u16, n: usize| -> Vec<u16> {
        (0..n)
            .filter_map(|i| regs.get(&(table, a + i as u16)).copied())
            .collect()
    };
    let mut out = Vec::new();
    for p in &t.points {
        let order = p.word_order.unwrap_or(t.template.word_order);
        let value = decode(
            &get(p.table, p.address, p.ty.words()),
            p.ty,
            order,
            t.template.sentinels,
        )
        .map_err(|e| match e {
            DecodeError::NotImplemented => {
                format!("{} is not implemented by the device", p.field.name())
            }
            other => format!("{}: {other}", p.field.name()),
        })
        .and_then(|raw| {
            let scale = match (p.scale, p.scale_register) {
                (Some(s), _) => s,
                (None, Some(a)) => {
                    let sf = get(p.table, a, 1).first().copied().unwrap_or(0x8000) as i16;
                    sunspec_scale(sf).ok_or_else(|| {
                        format!("{}: scale factor {sf} at {a} is not usable", p.field.name())
                    })?
                }
                (None, None) => 1.0,
            };
            let v = raw * scale * p.unit.factor_to(p.field).unwrap_or(1.0);
            Ok(if p.invert { -v } else { v })
        });
        out.push((p.field, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_near_registers_and_respect_the_request_limit() {
        assert_eq!(runs(vec![(10, 2), (0, 1), (12, 1)]), vec![(0, 13)]);
        assert_eq!(runs(vec![(0, 1), (100, 2)]), vec![(0, 1), (100, 2)]);
        assert_eq!(
            runs(vec![(0, 2), (110, 2), (124, 4)]),
            vec![(0, 2), (110, 18)]
        );
        assert_eq!(runs(vec![(0, 60), (70, 60)]), vec![(0, 60), (70, 60)]);
    }
}
