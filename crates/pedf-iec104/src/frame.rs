//! IEC 60870-5-104 frames (APDUs): the APCI (start `68`, length, four control octets in the
//! I, S or U format) and the ASDUs pedf sends and takes (IEC 60870-5-101 section 7, with
//! 104's sizes: two octets of cause of transmission with the originator address, two of
//! common address, three of information object address).

use chrono::{DateTime, Datelike, FixedOffset, TimeZone, Timelike, Utc};

/// Sequence numbers count modulo 2^15.
pub const MODULO: u16 = 1 << 15;

/// The U-format functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UFunction {
    /// STARTDT act / con.
    StartDt(bool),
    /// STOPDT act / con.
    StopDt(bool),
    /// TESTFR act / con.
    TestFr(bool),
}

impl UFunction {
    fn bits(self) -> u8 {
        match self {
            UFunction::StartDt(false) => 0x07,
            UFunction::StartDt(true) => 0x0B,
            UFunction::StopDt(false) => 0x13,
            UFunction::StopDt(true) => 0x23,
            UFunction::TestFr(false) => 0x43,
            UFunction::TestFr(true) => 0x83,
        }
    }

    fn of(b: u8) -> Option<UFunction> {
        Some(match b {
            0x07 => UFunction::StartDt(false),
            0x0B => UFunction::StartDt(true),
            0x13 => UFunction::StopDt(false),
            0x23 => UFunction::StopDt(true),
            0x43 => UFunction::TestFr(false),
            0x83 => UFunction::TestFr(true),
            _ => return None,
        })
    }
}

/// An APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apdu {
    /// Information transfer: send and receive sequence numbers, the ASDU.
    I {
        /// N(S).
        send: u16,
        /// N(R).
        recv: u16,
        /// The ASDU's octets.
        asdu: Vec<u8>,
    },
    /// Supervisory: acknowledges up to N(R).
    S {
        /// N(R).
        recv: u16,
    },
    /// Unnumbered control functions.
    U(UFunction),
}

/// What is wrong with octets read as an APDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More octets are needed.
    #[error("{0} more octets needed")]
    Incomplete(usize),
    /// The first octet is not the start `68`.
    #[error("octet 0: {0:#04x} where an APDU starts with 68")]
    NoStart(u8),
    /// The length is outside 4..=253.
    #[error("octet 1: length {0}, an APDU's is 4 to 253")]
    Length(u8),
    /// A control field that is no format's.
    #[error("octets 2-5: control field {0:02x?} is no I, S or U format")]
    Control([u8; 4]),
}

impl Apdu {
    /// Its octets.
    pub fn encode(&self) -> Vec<u8> {
        let (cf, asdu): ([u8; 4], &[u8]) = match self {
            Apdu::I { send, recv, asdu } => (
                [
                    ((send << 1) & 0xFE) as u8,
                    (send >> 7) as u8,
                    ((recv << 1) & 0xFE) as u8,
                    (recv >> 7) as u8,
                ],
                asdu,
            ),
            Apdu::S { recv } => (
                [0x01, 0, ((recv << 1) & 0xFE) as u8, (recv >> 7) as u8],
                &[],
            ),
            Apdu::U(f) => ([f.bits(), 0, 0, 0], &[]),
        };
        let mut out = Vec::with_capacity(6 + asdu.len());
        out.push(0x68);
        out.push((4 + asdu.len()) as u8);
        out.extend_from_slice(&cf);
        out.extend_from_slice(asdu);
        out
    }

    /// Reads one APDU from the start of `b`: it and the octets it took.
    pub fn decode(b: &[u8]) -> Result<(Apdu, usize), FrameError> {
        if b.len() < 2 {
            return Err(FrameError::Incomplete(2 - b.len()));
        }
        if b[0] != 0x68 {
            return Err(FrameError::NoStart(b[0]));
        }
        let len = usize::from(b[1]);
        if !(4..=253).contains(&len) {
            return Err(FrameError::Length(b[1]));
        }
        if b.len() < 2 + len {
            return Err(FrameError::Incomplete(2 + len - b.len()));
        }
        let cf = [b[2], b[3], b[4], b[5]];
        let seq = |lo: u8, hi: u8| (u16::from(lo) >> 1) | (u16::from(hi) << 7);
        let apdu = if cf[0] & 1 == 0 {
            Apdu::I {
                send: seq(cf[0], cf[1]),
                recv: seq(cf[2], cf[3]),
                asdu: b[6..2 + len].to_vec(),
            }
        } else if cf[0] & 3 == 1 && len == 4 {
            Apdu::S {
                recv: seq(cf[2], cf[3]),
            }
        } else if cf[0] & 3 == 3 && len == 4 {
            Apdu::U(UFunction::of(cf[0]).ok_or(FrameError::Control(cf))?)
        } else {
            return Err(FrameError::Control(cf));
        };
        Ok((apdu, 2 + len))
    }
}

/// Type identifications pedf uses.
pub mod type_id {
    /// Single-point information.
    pub const M_SP_NA_1: u8 = 1;
    /// Measured value, short floating point.
    pub const M_ME_NC_1: u8 = 13;
    /// Single-point information with time tag CP56Time2a.
    pub const M_SP_TB_1: u8 = 30;
    /// Measured value, short floating point, with time tag CP56Time2a.
    pub const M_ME_TF_1: u8 = 36;
    /// Set-point command, short floating point.
    pub const C_SE_NC_1: u8 = 50;
    /// Interrogation command.
    pub const C_IC_NA_1: u8 = 100;
    /// Clock synchronisation command.
    pub const C_CS_NA_1: u8 = 103;
}

/// Causes of transmission pedf uses.
pub mod cot {
    /// Periodic, cyclic.
    pub const PERIODIC: u8 = 1;
    /// Spontaneous.
    pub const SPONTANEOUS: u8 = 3;
    /// Activation.
    pub const ACTIVATION: u8 = 6;
    /// Activation confirmation.
    pub const ACTIVATION_CON: u8 = 7;
    /// Deactivation.
    pub const DEACTIVATION: u8 = 8;
    /// Deactivation confirmation.
    pub const DEACTIVATION_CON: u8 = 9;
    /// Activation termination.
    pub const ACTIVATION_TERM: u8 = 10;
    /// Interrogated by station interrogation.
    pub const INTERROGATED: u8 = 20;
    /// Unknown type identification.
    pub const UNKNOWN_TYPE: u8 = 44;
    /// Unknown cause of transmission.
    pub const UNKNOWN_COT: u8 = 45;
    /// Unknown common address of ASDU.
    pub const UNKNOWN_CA: u8 = 46;
    /// Unknown information object address.
    pub const UNKNOWN_IOA: u8 = 47;
}

/// A received ASDU with one information object (the commands pedf takes have one).
#[derive(Debug, Clone, PartialEq)]
pub struct Asdu {
    /// Type identification.
    pub type_id: u8,
    /// Cause of transmission (six bits).
    pub cot: u8,
    /// Negative confirmation bit.
    pub negative: bool,
    /// Test bit.
    pub test: bool,
    /// Originator address.
    pub originator: u8,
    /// Common address.
    pub ca: u16,
    /// Information object address.
    pub ioa: u32,
    /// The information element's octets.
    pub element: Vec<u8>,
}

/// What is wrong with an ASDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ASDU: {0}")]
pub struct AsduError(pub String);

impl Asdu {
    /// Reads an ASDU's header and its first information object.
    pub fn decode(b: &[u8]) -> Result<Asdu, AsduError> {
        if b.len() < 9 {
            return Err(AsduError(format!(
                "{} octets, at least 9 (type, qualifier, cause, originator, common address, object address)",
                b.len()
            )));
        }
        Ok(Asdu {
            type_id: b[0],
            cot: b[2] & 0x3F,
            negative: b[2] & 0x40 != 0,
            test: b[2] & 0x80 != 0,
            originator: b[3],
            ca: u16::from_le_bytes([b[4], b[5]]),
            ioa: u32::from_le_bytes([b[6], b[7], b[8], 0]),
            element: b[9..].to_vec(),
        })
    }

    /// The ASDU's octets (one object).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            self.type_id,
            1,
            self.cot | if self.negative { 0x40 } else { 0 } | if self.test { 0x80 } else { 0 },
            self.originator,
        ];
        out.extend_from_slice(&self.ca.to_le_bytes());
        out.extend_from_slice(&self.ioa.to_le_bytes()[..3]);
        out.extend_from_slice(&self.element);
        out
    }

    /// The same ASDU sent back with another cause (a confirmation, termination or refusal).
    pub fn mirror(&self, cot: u8, negative: bool) -> Asdu {
        Asdu {
            cot,
            negative,
            ..self.clone()
        }
    }
}

/// An ASDU of several objects of one monitor type (SQ = 0: each with its address).
pub fn monitor(type_id: u8, cot: u8, ca: u16, objects: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![type_id, objects.len() as u8 & 0x7F, cot, 0];
    out.extend_from_slice(&ca.to_le_bytes());
    for (ioa, element) in objects {
        out.extend_from_slice(&ioa.to_le_bytes()[..3]);
        out.extend_from_slice(element);
    }
    out
}

/// Quality descriptor bits: invalid.
pub const INVALID: u8 = 0x80;

/// A short float's element: IEEE 754 little-endian and its quality descriptor.
pub fn short_float(v: Option<f64>) -> Vec<u8> {
    let (x, q) = match v {
        Some(v) if v.is_finite() => (v as f32, 0),
        _ => (0.0f32, INVALID),
    };
    let mut e = x.to_le_bytes().to_vec();
    e.push(q);
    e
}

/// A single point's SIQ.
pub fn single(v: Option<bool>) -> u8 {
    match v {
        Some(true) => 1,
        Some(false) => 0,
        None => INVALID,
    }
}

/// CP56Time2a: `t` in the station's time zone (`offset`).
pub fn cp56(t: DateTime<Utc>, offset: FixedOffset) -> [u8; 7] {
    let l = t.with_timezone(&offset);
    let ms = (l.second() * 1000 + l.nanosecond() / 1_000_000).min(59_999) as u16;
    let dow = l.weekday().number_from_monday() as u8;
    [
        ms as u8,
        (ms >> 8) as u8,
        l.minute() as u8,
        l.hour() as u8,
        (l.day() as u8) | (dow << 5),
        l.month() as u8,
        (l.year() % 100) as u8,
    ]
}

/// Reads a CP56Time2a in the station's time zone (years 2000-2099); `None` for a time that
/// is no date or is marked invalid.
pub fn read_cp56(b: &[u8], offset: FixedOffset) -> Option<DateTime<Utc>> {
    if b.len() < 7 || b[2] & 0x80 != 0 {
        return None;
    }
    let ms = u32::from(u16::from_le_bytes([b[0], b[1]]));
    let local = offset
        .with_ymd_and_hms(
            2000 + i32::from(b[6] & 0x7F),
            u32::from(b[5] & 0x0F),
            u32::from(b[4] & 0x1F),
            u32::from(b[3] & 0x1F),
            u32::from(b[2] & 0x3F),
            ms / 1000,
        )
        .single()?;
    Some((local + chrono::Duration::milliseconds(i64::from(ms % 1000))).with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apdus_are_written_and_read_as_the_standard_frames_them() {
        // STARTDT act: 68 04 07 00 00 00.
        assert_eq!(
            Apdu::U(UFunction::StartDt(false)).encode(),
            [0x68, 4, 7, 0, 0, 0]
        );
        let i = Apdu::I {
            send: 300,
            recv: 5,
            asdu: vec![100, 1, 6, 0, 1, 0, 0, 0, 0, 20],
        };
        let b = i.encode();
        assert_eq!(&b[..6], &[0x68, 14, 0x58, 0x02, 0x0A, 0x00]);
        assert_eq!(Apdu::decode(&b).unwrap(), (i, 16));
        assert_eq!(
            Apdu::decode(&[0x68, 4, 1, 0, 0x10, 0]).unwrap().0,
            Apdu::S { recv: 8 }
        );
        assert_eq!(Apdu::decode(&[0x68, 4]), Err(FrameError::Incomplete(4)));
        assert_eq!(Apdu::decode(&[0x69, 4]), Err(FrameError::NoStart(0x69)));
        assert_eq!(Apdu::decode(&[0x68, 2, 0, 0]), Err(FrameError::Length(2)));
        assert!(matches!(
            Apdu::decode(&[0x68, 4, 0x0F, 0, 0, 0]),
            Err(FrameError::Control(_))
        ));
    }

    #[test]
    fn time_tags_are_the_stations_local_time() {
        let beijing = FixedOffset::east_opt(8 * 3600).unwrap();
        let t = DateTime::parse_from_rfc3339("2026-06-21T02:03:04.567Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = cp56(t, beijing);
        // 10:03:04.567 on Sunday 21 June 2026.
        assert_eq!(b, [0xD7, 0x11, 3, 10, 21 | (7 << 5), 6, 26]);
        assert_eq!(read_cp56(&b, beijing), Some(t));
        let mut bad = b;
        bad[2] |= 0x80;
        assert_eq!(read_cp56(&bad, beijing), None);
    }

    #[test]
    fn asdus_mirror_with_their_cause() {
        let a = Asdu::decode(&[50, 1, 6, 3, 1, 0, 0x10, 0x27, 0, 0, 0, 0x48, 0x43, 0]).unwrap();
        assert_eq!(
            (a.type_id, a.cot, a.originator, a.ca, a.ioa),
            (50, 6, 3, 1, 10_000)
        );
        assert_eq!(
            f32::from_le_bytes([a.element[0], a.element[1], a.element[2], a.element[3]]),
            200.0
        );
        let con = a.mirror(cot::ACTIVATION_CON, true).encode();
        assert_eq!(con[2], 7 | 0x40);
        assert_eq!(short_float(None)[4], INVALID);
    }
}
