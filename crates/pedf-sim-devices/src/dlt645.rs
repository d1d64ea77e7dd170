//! A simulated DL/T 645-2007 billing meter behind a TCP serial gateway (for `pedf demo`):
//! it answers read requests (control code 11) for its address with its registers, as a
//! meter on an RS-485 bus does; a request for another address gets no answer, one for a data
//! identifier it does not keep gets the error answer (D1, "no data requested"). Written here
//! from the standard, apart from pedf's reader.
//!
//! The registers are the demo's physics' to set (`registers`): the forward and reverse
//! active energy, the forward energy of the four tariff periods (尖, 峰, 平, 谷), the total
//! active power (its sign bit set when the park exports), phase A voltage and current, the
//! maximum demand.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the simulated meter reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterRegisters {
    /// Forward (import) active energy, kWh.
    pub import_kwh: f64,
    /// Reverse (export) active energy, kWh.
    pub export_kwh: f64,
    /// Forward energy of tariff periods 1 to 4 (尖, 峰, 平, 谷), kWh.
    pub tariff_kwh: [f64; 4],
    /// Whether the meter keeps tariff registers (a single-rate meter answers "no data
    /// requested" for them).
    pub tariffs: bool,
    /// Total active power, kW (+import, −export).
    pub power_kw: f64,
    /// Phase A voltage, V.
    pub voltage_v: f64,
    /// Phase A current, A (negative when exporting).
    pub current_a: f64,
    /// The maximum demand, kW.
    pub max_demand_kw: f64,
}

/// A running simulated meter (or a bus of them behind one gateway).
pub struct SimDlt645Meter {
    /// Where its gateway listens.
    pub addr: SocketAddr,
    /// Its registers (the first meter's, on a bus).
    pub registers: Arc<Mutex<MeterRegisters>>,
    /// Every meter's registers on a bus, in the order of their addresses.
    pub bus: Vec<Arc<Mutex<MeterRegisters>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimDlt645Meter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimDlt645Meter {
    /// Starts a meter of address `digits` (twelve decimal digits, as on its nameplate) behind
    /// a gateway listening on `bind`.
    pub async fn start(bind: SocketAddr, digits: &str) -> std::io::Result<SimDlt645Meter> {
        SimDlt645Meter::start_bus(bind, &[digits]).await
    }

    /// Starts a bus of meters, one per address, behind one gateway on `bind`: one request on
    /// the line at a time, as RS-485 carries them.
    pub async fn start_bus(bind: SocketAddr, digits: &[&str]) -> std::io::Result<SimDlt645Meter> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let mut meters = Vec::new();
        for d in digits {
            let wire = wire_address(d).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("meter address `{d}` is not 12 decimal digits"),
                )
            })?;
            let registers = Arc::new(Mutex::new(MeterRegisters {
                voltage_v: 230.0,
                tariffs: true,
                ..MeterRegisters::default()
            }));
            meters.push((wire, registers));
        }
        let Some(registers) = meters.first().map(|m| m.1.clone()) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a bus needs at least one meter",
            ));
        };
        let bus = meters.iter().map(|m| m.1.clone()).collect();
        let meters = Arc::new(meters);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let meters = meters.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 256];
                    loop {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some((request, used)) = frame(&buf) {
                            buf.drain(..used);
                            for (wire, regs) in meters.iter() {
                                if let Some(answer) = answer(wire, &request, regs) {
                                    if s.write_all(&answer).await.is_err() {
                                        return;
                                    }
                                    break;
                                }
                            }
                        }
                        if buf.len() > 1024 {
                            buf.clear();
                        }
                    }
                });
            }
        });
        Ok(SimDlt645Meter {
            addr,
            registers,
            bus,
            task,
        })
    }
}

/// Twelve digits as the six address bytes on the wire (the lowest two digits first).
fn wire_address(digits: &str) -> Option<[u8; 6]> {
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d = digits.as_bytes();
    let mut out = [0u8; 6];
    for (i, o) in out.iter_mut().enumerate() {
        *o = ((d[10 - 2 * i] - b'0') << 4) | (d[11 - 2 * i] - b'0');
    }
    Some(out)
}

/// A request read from the bytes: (address, control, data less 33), bytes used; bytes that
/// cannot start a frame are skipped.
type Request = ([u8; 6], u8, Vec<u8>);

fn frame(buf: &[u8]) -> Option<(Request, usize)> {
    let start = buf.iter().position(|b| *b == 0x68)?;
    let b = &buf[start..];
    if b.len() < 12 {
        return None;
    }
    let len = usize::from(b[9]);
    if b.len() < 12 + len {
        return None;
    }
    let sum = b[..10 + len].iter().fold(0u8, |a, x| a.wrapping_add(*x));
    if b[7] != 0x68 || b[10 + len] != sum || b[11 + len] != 0x16 {
        // Not a frame here: skip this start byte.
        return Some((([0; 6], 0, Vec::new()), start + 1));
    }
    let mut address = [0u8; 6];
    address.copy_from_slice(&b[1..7]);
    let data = b[10..10 + len]
        .iter()
        .map(|x| x.wrapping_sub(0x33))
        .collect();
    Some(((address, b[8], data), start + 12 + len))
}

/// BCD of `v` in `len` bytes with `decimals` digits after the point, lowest byte first; the
/// top bit of the highest byte the sign when `signed`.
fn bcd(v: f64, len: usize, decimals: i32, signed: bool) -> Vec<u8> {
    // The highest digit of a signed value shares its byte with the sign: 7 at most.
    let full = 10u64.pow(2 * len as u32);
    let max = if signed { full / 10 * 8 - 1 } else { full - 1 };
    let mut n = ((v.abs() * 10f64.powi(decimals)).round() as u64).min(max);
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let lo = (n % 10) as u8;
        n /= 10;
        let hi = (n % 10) as u8;
        n /= 10;
        out.push((hi << 4) | lo);
    }
    if signed && v < 0.0 {
        if let Some(top) = out.last_mut() {
            *top |= 0x80;
        }
    }
    out
}

fn answer(wire: &[u8; 6], r: &Request, regs: &Mutex<MeterRegisters>) -> Option<Vec<u8>> {
    let (address, control, data) = r;
    let broadcast = address.iter().all(|b| *b == 0xAA);
    if (address != wire && !broadcast) || *control != 0x11 || data.len() < 4 {
        return None;
    }
    let di = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let m = *regs.lock().ok()?;
    let value = match di {
        0x0001_0000 => Some(bcd(m.import_kwh, 4, 2, false)),
        0x0002_0000 => Some(bcd(m.export_kwh, 4, 2, false)),
        0x0001_0100..=0x0001_0400 if di & 0xFF == 0 && m.tariffs => {
            let k = ((di >> 8) & 0xFF) as usize - 1;
            Some(bcd(m.tariff_kwh[k], 4, 2, false))
        }
        0x0203_0000 => Some(bcd(m.power_kw, 3, 4, true)),
        0x0201_0100 => Some(bcd(m.voltage_v, 2, 1, false)),
        0x0202_0100 => Some(bcd(m.current_a, 3, 3, true)),
        // The demand and when it was reached (the time not kept: zeros).
        0x0101_0000 => {
            let mut v = bcd(m.max_demand_kw, 3, 4, false);
            v.extend_from_slice(&[0; 5]);
            Some(v)
        }
        _ => None,
    };
    let (control, body) = match value {
        Some(v) => (0x91u8, [&data[..4], &v[..]].concat()),
        // Error answer: bit 1, no data requested.
        None => (0xD1u8, vec![0x02]),
    };
    let mut out = vec![0xFE, 0xFE, 0xFE, 0xFE, 0x68];
    out.extend_from_slice(wire);
    out.push(0x68);
    out.push(control);
    out.push(body.len() as u8);
    out.extend(body.iter().map(|b| b.wrapping_add(0x33)));
    let sum = out[4..].iter().fold(0u8, |a, x| a.wrapping_add(*x));
    out.push(sum);
    out.push(0x16);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bcd_lowest_byte_first_with_the_sign_on_top() {
        assert_eq!(bcd(12345.67, 4, 2, false), [0x67, 0x45, 0x23, 0x01]);
        assert_eq!(bcd(-12.3456, 3, 4, true), [0x56, 0x34, 0x92]);
        assert_eq!(
            wire_address("000012345678"),
            Some([0x78, 0x56, 0x34, 0x12, 0, 0])
        );
    }
}
