//! The grid company's billing meters over DL/T 645-2007 (多功能电能表通信协议): a master
//! reading a meter's registers on an RS-485 bus, directly on a serial line or through a TCP
//! serial gateway.
//!
//! A frame (DL/T 645-2007 section 4): up to four wake-up bytes `FE`, then `68`, the meter's
//! address (six bytes of BCD, the lowest two digits first), `68` again, the control code, the
//! data length, the data (each byte sent plus `33` hexadecimal), a checksum (the sum of every
//! byte from the first `68` on, modulo 256) and `16`. pedf reads with control code `11`; a
//! meter answers `91` (`B1`: more follows, not asked for here) with the data identifier (DI,
//! four bytes, lowest first) and the value, or `D1` with an error byte. Values are BCD,
//! lowest byte first; a power or a current has its sign in the top bit of its highest byte
//! (set: reverse, the park exporting).
//!
//! What pedf reads of a meter ([`ITEMS`]): the forward and reverse active energy totals, the
//! forward energy of the four tariff periods (尖, 峰, 平, 谷: sharp, peak, flat, valley, in
//! that order as State Grid meters number them), the total active power, phase A voltage and
//! current, and the month's forward active maximum demand. A meter behind current and voltage
//! transformers reports secondary values: the device's `ct_ratio` and `pt_ratio` (the
//! 倍率 the bill multiplies by) bring them to the primary side. An item a meter says it does
//! not have (error byte bit 1, "no data requested") is not asked for again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::capability::{Capability, DeviceState, Field};
use crate::control::SetpointSink;
use crate::device::DeviceError;
use crate::modbus::LinkError;

/// A meter's address: twelve decimal digits as on its nameplate, most significant first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// Reads twelve decimal digits (`000012345678`); fewer are padded with leading zeros.
    pub fn parse(s: &str) -> Result<Address, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 12 || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "meter address `{s}`: give the meter's address as up to 12 decimal digits, as on its nameplate (e.g. \"000012345678\")"
            ));
        }
        let digits = format!("{s:0>12}");
        let b = digits.as_bytes();
        let mut wire = [0u8; 6];
        // The lowest two digits first on the wire.
        for (i, w) in wire.iter_mut().enumerate() {
            let hi = b[10 - 2 * i] - b'0';
            let lo = b[11 - 2 * i] - b'0';
            *w = (hi << 4) | lo;
        }
        Ok(Address(wire))
    }

    /// The address as printed: twelve digits, most significant first.
    pub fn digits(&self) -> String {
        self.0.iter().rev().map(|b| format!("{b:02x}")).collect()
    }
}

/// A frame as sent or received, its data without the `33` offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The meter's address.
    pub address: Address,
    /// The control code.
    pub control: u8,
    /// The data field.
    pub data: Vec<u8>,
}

/// Control code: read data (master to meter).
pub const READ: u8 = 0x11;
/// Control code bits of an answer: from the meter, an error answer (bit 5, more to follow,
/// is not asked for: every register pedf reads fits one frame).
const FROM_METER: u8 = 0x80;
const ERROR: u8 = 0x40;

impl Frame {
    /// The bytes on the line: four wake-up bytes, then the frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0xFE; 4];
        let start = out.len();
        out.push(0x68);
        out.extend_from_slice(&self.address.0);
        out.push(0x68);
        out.push(self.control);
        out.push(self.data.len() as u8);
        out.extend(self.data.iter().map(|b| b.wrapping_add(0x33)));
        let cs = out[start..].iter().fold(0u8, |a, b| a.wrapping_add(*b));
        out.push(cs);
        out.push(0x16);
        out
    }

    /// A request to read one data identifier.
    pub fn read(address: Address, di: u32) -> Frame {
        Frame {
            address,
            control: READ,
            data: di.to_le_bytes().to_vec(),
        }
    }
}

/// What is wrong with bytes read as a frame, with the offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More bytes are needed (not an error yet: keep reading).
    #[error("incomplete frame: {0} more bytes needed")]
    Incomplete(usize),
    /// A byte other than a wake-up byte `FE` before the start `68`.
    #[error("byte {at}: {byte:#04x} where a frame starts (68, after up to four FE)")]
    NoStart {
        /// Offset.
        at: usize,
        /// The byte found.
        byte: u8,
    },
    /// The second start byte is missing.
    #[error("byte {at}: {byte:#04x} where the address ends with 68")]
    NoSecondStart {
        /// Offset.
        at: usize,
        /// The byte found.
        byte: u8,
    },
    /// The checksum does not match.
    #[error("byte {at}: checksum {got:#04x}, the frame sums to {want:#04x}")]
    Checksum {
        /// Offset.
        at: usize,
        /// The checksum in the frame.
        got: u8,
        /// What the bytes sum to.
        want: u8,
    },
    /// The end byte is missing.
    #[error("byte {at}: {byte:#04x} where the frame ends with 16")]
    NoEnd {
        /// Offset.
        at: usize,
        /// The byte found.
        byte: u8,
    },
}

/// Reads one frame from the start of `bytes` (after any wake-up bytes): the frame and how
/// many bytes it took.
pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), FrameError> {
    let mut i = 0;
    while i < bytes.len() && bytes[i] == 0xFE {
        i += 1;
    }
    let start = i;
    let need = |n: usize| {
        if bytes.len() < start + n {
            Err(FrameError::Incomplete(start + n - bytes.len()))
        } else {
            Ok(())
        }
    };
    need(1)?;
    if bytes[start] != 0x68 {
        return Err(FrameError::NoStart {
            at: start,
            byte: bytes[start],
        });
    }
    need(10)?;
    if bytes[start + 7] != 0x68 {
        return Err(FrameError::NoSecondStart {
            at: start + 7,
            byte: bytes[start + 7],
        });
    }
    let len = usize::from(bytes[start + 9]);
    need(12 + len)?;
    let cs_at = start + 10 + len;
    let want = bytes[start..cs_at]
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b));
    if bytes[cs_at] != want {
        return Err(FrameError::Checksum {
            at: cs_at,
            got: bytes[cs_at],
            want,
        });
    }
    if bytes[cs_at + 1] != 0x16 {
        return Err(FrameError::NoEnd {
            at: cs_at + 1,
            byte: bytes[cs_at + 1],
        });
    }
    let mut address = [0u8; 6];
    address.copy_from_slice(&bytes[start + 1..start + 7]);
    Ok((
        Frame {
            address: Address(address),
            control: bytes[start + 8],
            data: bytes[start + 10..cs_at]
                .iter()
                .map(|b| b.wrapping_sub(0x33))
                .collect(),
        },
        cs_at + 2,
    ))
}

/// A BCD value, lowest byte first, with `decimals` digits after the point; `signed`: the top
/// bit of the highest byte is the sign (set: negative).
pub fn bcd(bytes: &[u8], decimals: i32, signed: bool) -> Result<f64, String> {
    let mut v: u64 = 0;
    let mut negative = false;
    for (k, b) in bytes.iter().rev().enumerate() {
        let mut b = *b;
        if k == 0 && signed {
            negative = b & 0x80 != 0;
            b &= 0x7F;
        }
        let (hi, lo) = (b >> 4, b & 0x0F);
        if hi > 9 || lo > 9 {
            return Err(format!(
                "{:02x?} is not BCD (byte {b:#04x})",
                bytes.iter().rev().collect::<Vec<_>>()
            ));
        }
        v = v * 100 + u64::from(hi) * 10 + u64::from(lo);
    }
    let x = v as f64 / 10f64.powi(decimals);
    Ok(if negative { -x } else { x })
}

/// What a meter's error byte says (DL/T 645-2007 table, bit by bit).
pub fn error_text(err: u8) -> String {
    let bits = [
        "other error",
        "no data requested (the meter does not have this item)",
        "password wrong or not authorised",
        "baud rate cannot be changed",
        "too many annual time zones",
        "too many daily time slots",
        "too many tariffs",
    ];
    let said: Vec<&str> = bits
        .iter()
        .enumerate()
        .filter(|(i, _)| err & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect();
    if said.is_empty() {
        format!("error byte {err:#04x}")
    } else {
        said.join(", ")
    }
}

/// How a register is turned into a field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Energy: times CT and PT ratios.
    Energy,
    /// Power: times CT and PT ratios.
    Power,
    /// Voltage: times the PT ratio.
    Voltage,
    /// Current: times the CT ratio.
    Current,
}

/// One register pedf reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item {
    /// Its data identifier (DI3 DI2 DI1 DI0 as the standard writes it).
    pub di: u32,
    /// The field it becomes.
    pub field: Field,
    /// Bytes of its value (the value's first bytes, for an item with more after it).
    pub len: usize,
    /// Digits after the point.
    pub decimals: i32,
    /// Whether its top bit is a sign.
    pub signed: bool,
    /// How the transformer ratios apply.
    pub scale: Scale,
}

/// The registers pedf reads of a meter, in the order asked.
pub const ITEMS: &[Item] = &[
    // 正向有功总电能, XXXXXX.XX kWh.
    Item {
        di: 0x0001_0000,
        field: Field::ImportKwh,
        len: 4,
        decimals: 2,
        signed: false,
        scale: Scale::Energy,
    },
    // 反向有功总电能.
    Item {
        di: 0x0002_0000,
        field: Field::ExportKwh,
        len: 4,
        decimals: 2,
        signed: false,
        scale: Scale::Energy,
    },
    // 瞬时总有功功率, XX.XXXX kW, signed (reverse: export).
    Item {
        di: 0x0203_0000,
        field: Field::PowerKw,
        len: 3,
        decimals: 4,
        signed: true,
        scale: Scale::Power,
    },
    // 正向有功费率 1 to 4 电能: 尖, 峰, 平, 谷.
    Item {
        di: 0x0001_0100,
        field: Field::ImportKwhSharp,
        len: 4,
        decimals: 2,
        signed: false,
        scale: Scale::Energy,
    },
    Item {
        di: 0x0001_0200,
        field: Field::ImportKwhPeak,
        len: 4,
        decimals: 2,
        signed: false,
        scale: Scale::Energy,
    },
    Item {
        di: 0x0001_0300,
        field: Field::ImportKwhFlat,
        len: 4,
        decimals: 2,
        signed: false,
        scale: Scale::Energy,
    },
    Item {
        di: 0x0001_0400,
        field: Field::ImportKwhValley,
        len: 4,
        decimals: 2,
        signed: false,
        scale: Scale::Energy,
    },
    // A 相电压, XXX.X V.
    Item {
        di: 0x0201_0100,
        field: Field::VoltageV,
        len: 2,
        decimals: 1,
        signed: false,
        scale: Scale::Voltage,
    },
    // A 相电流, XXX.XXX A, signed.
    Item {
        di: 0x0202_0100,
        field: Field::CurrentA,
        len: 3,
        decimals: 3,
        signed: true,
        scale: Scale::Current,
    },
    // 正向有功总最大需量及发生时间: XX.XXXX kW, then YYMMDDhhmm (not kept).
    Item {
        di: 0x0101_0000,
        field: Field::MaxDemandKw,
        len: 3,
        decimals: 4,
        signed: false,
        scale: Scale::Power,
    },
];

/// Where a bus of meters is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// A TCP serial gateway (transparent: the bytes of the RS-485 line).
    Tcp(SocketAddr),
    /// A serial line (8 data bits, even parity, 1 stop bit, as DL/T 645 asks).
    Serial {
        /// The serial device, e.g. /dev/ttyUSB0.
        path: String,
        /// Baud rate (2400 is the standard's default; 9600 on newer meters).
        baud: u32,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "dlt645-tcp {a}"),
            Endpoint::Serial { path, baud } => write!(f, "{path} at {baud} Bd 8E1"),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A bus of meters: one request on it at a time, shared by its meters' devices; connected on
/// the first request and again after a failure.
pub struct Dlt645Link {
    endpoint: Endpoint,
    timeout: Duration,
    stream: tokio::sync::Mutex<Option<Box<dyn Io>>>,
}

impl Dlt645Link {
    /// A link to `endpoint`; each request waits `timeout` for its answer.
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Arc<Dlt645Link> {
        Arc::new(Dlt645Link {
            endpoint,
            timeout,
            stream: tokio::sync::Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Box<dyn Io>, LinkError> {
        let failed = |why: String| LinkError::Connect {
            addr: self.endpoint.to_string(),
            why,
        };
        match &self.endpoint {
            Endpoint::Tcp(a) => {
                let s = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(a))
                    .await
                    .map_err(|_| failed("timed out".into()))?
                    .map_err(|e| failed(e.to_string()))?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            Endpoint::Serial { path, baud } => {
                let port = tokio_serial::SerialStream::open(
                    &tokio_serial::new(path, *baud)
                        .data_bits(tokio_serial::DataBits::Eight)
                        .parity(tokio_serial::Parity::Even)
                        .stop_bits(tokio_serial::StopBits::One),
                )
                .map_err(|e| failed(e.to_string()))?;
                Ok(Box::new(port))
            }
        }
    }

    /// Reads one data identifier of the meter at `address`: its value bytes (after the DI
    /// echoed). A meter's error answer is [`LinkError::Exception`] with what its error byte
    /// says; no answer in time, or bytes that are not its answer, drop the connection.
    pub async fn read(&self, address: Address, di: u32) -> Result<Vec<u8>, LinkError> {
        let mut guard = self.stream.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let Some(stream) = guard.as_mut() else {
            return Err(LinkError::Closed);
        };
        let outcome = tokio::time::timeout(self.timeout, exchange(stream, address, di)).await;
        match outcome {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(e)) => {
                // A refusal leaves the line in step; anything else may not.
                if !matches!(e, LinkError::Exception(_)) {
                    *guard = None;
                }
                Err(e)
            }
            Err(_) => {
                *guard = None;
                Err(LinkError::Timeout(self.timeout.as_millis() as u64))
            }
        }
    }
}

async fn exchange(
    stream: &mut Box<dyn Io>,
    address: Address,
    di: u32,
) -> Result<Vec<u8>, LinkError> {
    stream
        .write_all(&Frame::read(address, di).encode())
        .await
        .map_err(|e| LinkError::Io(e.to_string()))?;
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| LinkError::Io(e.to_string()))?;
        if n == 0 {
            return Err(LinkError::Io("the gateway closed the connection".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 4096 {
            return Err(LinkError::Protocol("no frame in 4096 bytes".into()));
        }
        match decode(&buf) {
            Err(FrameError::Incomplete(_)) => continue,
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
            Ok((f, used)) => {
                if f.address != address || f.control & FROM_METER == 0 {
                    // Another meter's answer, or an echo of the request on a half-duplex
                    // gateway: skipped.
                    buf.drain(..used);
                    continue;
                }
                if f.control & 0x1F != READ {
                    return Err(LinkError::Protocol(format!(
                        "control code {:#04x} answering a read (91 or D1 expected)",
                        f.control
                    )));
                }
                if f.control & ERROR != 0 {
                    let err = f.data.first().copied().unwrap_or(0);
                    return Err(LinkError::Exception(error_text(err)));
                }
                if f.data.len() < 4 || f.data[..4] != di.to_le_bytes() {
                    return Err(LinkError::Protocol(format!(
                        "the answer is for DI {:02x?}, not {di:08x}",
                        f.data.iter().take(4).rev().collect::<Vec<_>>()
                    )));
                }
                return Ok(f.data[4..].to_vec());
            }
        }
    }
}

/// A billing meter on a DL/T 645 bus, as a device of the park.
pub struct Dlt645Device {
    address: Address,
    ct_ratio: f64,
    pt_ratio: f64,
    link: Arc<Dlt645Link>,
    poll: Duration,
    /// Items the meter said it does not have.
    missing: Vec<u32>,
    state: DeviceState,
}

impl Dlt645Device {
    /// The meter `id` at `address` on `link`, its values times the transformer ratios, read
    /// every `poll` (the EMS's time), good for `stale_after`.
    pub fn new(
        id: &str,
        address: Address,
        (ct_ratio, pt_ratio): (f64, f64),
        link: Arc<Dlt645Link>,
        poll: Duration,
        stale_after: Duration,
    ) -> Dlt645Device {
        Dlt645Device {
            address,
            ct_ratio,
            pt_ratio,
            link,
            poll,
            missing: Vec::new(),
            state: DeviceState::new(id, Capability::Meter, stale_after),
        }
    }

    /// The items the meter said it does not have (not asked for again).
    pub fn missing(&self) -> &[u32] {
        &self.missing
    }

    /// Reads every item the meter has: its state, as of `now`. A failed link fails the
    /// read (the values read before it stay with their times); an item the meter does not
    /// have is left out from then on.
    pub async fn poll(&mut self, now: DateTime<Utc>) -> Result<(), DeviceError> {
        let mut got: Vec<(Field, Result<f64, String>)> = Vec::new();
        let outcome = self.read_all(&mut got).await;
        for (field, v) in got {
            match v {
                Ok(v) => self.state.set(field, v, now),
                Err(why) => self.state.set_bad(field, why),
            }
        }
        match &outcome {
            Ok(()) => self.state.poll_ok(now),
            Err(e) => self.state.poll_failed(e.to_string()),
        }
        outcome
    }

    async fn read_all(
        &mut self,
        got: &mut Vec<(Field, Result<f64, String>)>,
    ) -> Result<(), DeviceError> {
        for item in ITEMS {
            if self.missing.contains(&item.di) {
                continue;
            }
            let data = match self.link.read(self.address, item.di).await {
                Ok(d) => d,
                Err(LinkError::Exception(why)) if why.contains("no data requested") => {
                    self.missing.push(item.di);
                    continue;
                }
                Err(e) => return Err(DeviceError::Link(e)),
            };
            let value = match data.get(..item.len) {
                None => Err(format!(
                    "DI {:08x}: {} bytes, {} expected",
                    item.di,
                    data.len(),
                    item.len
                )),
                Some(bytes) => bcd(bytes, item.decimals, item.signed)
                    .map_err(|why| format!("DI {:08x}: {why}", item.di)),
            };
            let k = match item.scale {
                Scale::Energy | Scale::Power => self.ct_ratio * self.pt_ratio,
                Scale::Voltage => self.pt_ratio,
                Scale::Current => self.ct_ratio,
            };
            // Times the ratio, kept to the register's own digits (1.15 x 200 is 230, not
            // 229.99999999999997).
            let p = 10f64.powi(item.decimals);
            got.push((item.field, value.map(|v| (v * k * p).round() / p)));
        }
        Ok(())
    }

    /// The state last read.
    pub fn state(&self) -> &DeviceState {
        &self.state
    }
}

impl SetpointSink for Dlt645Device {
    fn write_setpoint(
        &mut self,
        _value: f64,
    ) -> impl std::future::Future<Output = Result<f64, DeviceError>> + Send {
        std::future::ready(Err(DeviceError::NotControllable))
    }
}

impl crate::unit::DeviceIo for Dlt645Device {
    async fn refresh(&mut self, now: DateTime<Utc>) -> DeviceState {
        let _ = self.poll(now).await;
        self.state.clone()
    }
    fn period(&self) -> Duration {
        self.poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_request_is_framed_as_the_standard_writes_it() {
        let a = Address::parse("000012345678").unwrap();
        assert_eq!(a.0, [0x78, 0x56, 0x34, 0x12, 0x00, 0x00]);
        assert_eq!(a.digits(), "000012345678");
        let bytes = Frame::read(a, 0x0001_0000).encode();
        // FE x4, 68, address, 68, 11, 04, DI + 33 (lowest first), CS, 16.
        assert_eq!(
            bytes,
            [
                0xFE, 0xFE, 0xFE, 0xFE, 0x68, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00, 0x68, 0x11, 0x04,
                0x33, 0x33, 0x34, 0x33, 0xC6, 0x16
            ]
        );
        let (f, used) = decode(&bytes).unwrap();
        assert_eq!((f.address, f.control, used), (a, READ, bytes.len()));
        assert_eq!(f.data, 0x0001_0000u32.to_le_bytes());
    }

    #[test]
    fn malformed_frames_say_where() {
        let a = Address::parse("1").unwrap();
        let good = Frame::read(a, 0x0203_0000).encode();
        assert_eq!(decode(&good[..10]), Err(FrameError::Incomplete(4)));
        let mut bad = good.clone();
        let cs = bad.len() - 2;
        bad[cs] ^= 1;
        assert!(matches!(decode(&bad), Err(FrameError::Checksum { at, .. }) if at == cs));
        let mut bad = good.clone();
        bad[11] = 0x00;
        assert_eq!(
            decode(&bad),
            Err(FrameError::NoSecondStart { at: 11, byte: 0 })
        );
        let mut bad = good.clone();
        *bad.last_mut().unwrap() = 0x17;
        assert!(matches!(decode(&bad), Err(FrameError::NoEnd { .. })));
        assert_eq!(
            decode(&[0xFE, 0x00]),
            Err(FrameError::NoStart { at: 1, byte: 0 })
        );
        assert!(Address::parse("12345678901234").is_err());
        assert!(Address::parse("12ab").is_err());
    }

    #[test]
    fn bcd_values_and_signs() {
        // 12345.67 kWh: 67 45 23 01.
        assert_eq!(bcd(&[0x67, 0x45, 0x23, 0x01], 2, false).unwrap(), 12345.67);
        // -12.3456 kW: 56 34 92 (sign bit on 12).
        assert_eq!(bcd(&[0x56, 0x34, 0x92], 4, true).unwrap(), -12.3456);
        assert!(bcd(&[0x5A], 0, false).is_err());
        assert!(error_text(0x02).contains("no data requested"));
    }
}
