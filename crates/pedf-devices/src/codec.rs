//! Modbus register values: decoding 16-bit words into numbers by type and word order, the
//! SunSpec "not implemented" sentinels, scale factors, and encoding setpoints back into words.
//!
//! Modbus registers are 16-bit big-endian; a 32- or 64-bit value spans consecutive registers
//! and devices differ in which register holds the high word ([`WordOrder`]).

use serde::Deserialize;

/// The data type of a register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegType {
    /// Unsigned 16 bit, one register.
    U16,
    /// Signed 16 bit, one register.
    I16,
    /// Unsigned 32 bit, two registers.
    U32,
    /// Signed 32 bit, two registers.
    I32,
    /// Unsigned 64 bit, four registers.
    U64,
    /// IEEE 754 single, two registers.
    F32,
}

impl RegType {
    /// Registers the value spans.
    pub fn words(self) -> usize {
        match self {
            RegType::U16 | RegType::I16 => 1,
            RegType::U32 | RegType::I32 | RegType::F32 => 2,
            RegType::U64 => 4,
        }
    }

    /// The names a template may use.
    pub const NAMES: [&'static str; 6] = ["u16", "i16", "u32", "i32", "u64", "f32"];
}

/// Which register of a multi-register value holds the most significant word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WordOrder {
    /// The first register holds the high word (Modbus "big-endian", SunSpec).
    #[default]
    HighFirst,
    /// The first register holds the low word ("word-swapped").
    LowFirst,
}

/// Why words could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Too few registers for the type.
    #[error("{ty:?} needs {need} register(s), got {got}")]
    Length {
        /// The type.
        ty: RegType,
        /// Registers it needs.
        need: usize,
        /// Registers given.
        got: usize,
    },
    /// The value is the SunSpec "not implemented" marker of its type.
    #[error("the value is the \"not implemented\" marker")]
    NotImplemented,
    /// A float that is NaN or infinite.
    #[error("the value is not a finite number")]
    NotFinite,
}

fn ordered(words: &[u16], order: WordOrder) -> Vec<u16> {
    let mut w = words.to_vec();
    if order == WordOrder::LowFirst {
        w.reverse();
    }
    w
}

/// Decodes `words` (exactly `ty.words()` of them) into a number. The SunSpec sentinels
/// (0xFFFF, 0x8000, 0xFFFFFFFF, 0x80000000, all-ones u64, NaN) are [`DecodeError::NotImplemented`]
/// when `sentinels` is true; a float that is NaN or infinite is always rejected.
pub fn decode(
    words: &[u16],
    ty: RegType,
    order: WordOrder,
    sentinels: bool,
) -> Result<f64, DecodeError> {
    if words.len() != ty.words() {
        return Err(DecodeError::Length {
            ty,
            need: ty.words(),
            got: words.len(),
        });
    }
    let w = ordered(words, order);
    let wide = w.iter().fold(0u64, |acc, &x| (acc << 16) | u64::from(x));
    let value = match ty {
        RegType::U16 => {
            if sentinels && wide == 0xFFFF {
                return Err(DecodeError::NotImplemented);
            }
            wide as f64
        }
        RegType::I16 => {
            if sentinels && wide == 0x8000 {
                return Err(DecodeError::NotImplemented);
            }
            f64::from(wide as u16 as i16)
        }
        RegType::U32 => {
            if sentinels && wide == 0xFFFF_FFFF {
                return Err(DecodeError::NotImplemented);
            }
            wide as f64
        }
        RegType::I32 => {
            if sentinels && wide == 0x8000_0000 {
                return Err(DecodeError::NotImplemented);
            }
            f64::from(wide as u32 as i32)
        }
        RegType::U64 => {
            if sentinels && wide == u64::MAX {
                return Err(DecodeError::NotImplemented);
            }
            wide as f64
        }
        RegType::F32 => {
            let f = f32::from_bits(wide as u32);
            if f.is_nan() && sentinels {
                return Err(DecodeError::NotImplemented);
            }
            if !f.is_finite() {
                return Err(DecodeError::NotFinite);
            }
            f64::from(f)
        }
    };
    Ok(value)
}

/// Why a value cannot be written as a register type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The value is outside the type's range.
    #[error("{value} does not fit {ty:?}")]
    OutOfRange {
        /// The value.
        value: f64,
        /// The type.
        ty: RegType,
    },
}

/// Encodes a number (already divided by the scale) as `ty`, rounding integers to nearest.
pub fn encode(value: f64, ty: RegType, order: WordOrder) -> Result<Vec<u16>, EncodeError> {
    let err = || EncodeError::OutOfRange { value, ty };
    if !value.is_finite() {
        return Err(err());
    }
    let r = value.round();
    let wide: u64 = match ty {
        RegType::U16 if (0.0..=65535.0).contains(&r) => r as u64,
        RegType::I16 if (-32768.0..=32767.0).contains(&r) => u64::from(r as i16 as u16),
        RegType::U32 if (0.0..=4294967295.0).contains(&r) => r as u64,
        RegType::I32 if (-2147483648.0..=2147483647.0).contains(&r) => u64::from(r as i32 as u32),
        RegType::U64 if (0.0..=1.8e19).contains(&r) => r as u64,
        RegType::F32 if value.abs() <= f64::from(f32::MAX) => u64::from((value as f32).to_bits()),
        _ => return Err(err()),
    };
    let n = ty.words();
    let mut words: Vec<u16> = (0..n)
        .map(|i| (wide >> (16 * (n - 1 - i))) as u16)
        .collect();
    if order == WordOrder::LowFirst {
        words.reverse();
    }
    Ok(words)
}

/// 10^sf for a SunSpec scale factor; `None` when sf is the sentinel or outside -10..10 (the
/// specification's range).
pub fn sunspec_scale(sf: i16) -> Option<f64> {
    (-10..=10).contains(&sf).then(|| 10f64.powi(i32::from(sf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_every_type_and_word_order() {
        assert_eq!(
            decode(&[0x1234], RegType::U16, WordOrder::HighFirst, true),
            Ok(4660.0)
        );
        assert_eq!(
            decode(&[0xFFFE], RegType::I16, WordOrder::HighFirst, true),
            Ok(-2.0)
        );
        assert_eq!(
            decode(&[0x0001, 0x0002], RegType::U32, WordOrder::HighFirst, true),
            Ok(65538.0)
        );
        assert_eq!(
            decode(&[0x0002, 0x0001], RegType::U32, WordOrder::LowFirst, true),
            Ok(65538.0)
        );
        assert_eq!(
            decode(&[0xFFFF, 0xFFFE], RegType::I32, WordOrder::HighFirst, true),
            Ok(-2.0)
        );
        assert_eq!(
            decode(&[0, 0, 1, 0], RegType::U64, WordOrder::HighFirst, true),
            Ok(65536.0)
        );
        let pi = 3.5f32.to_bits();
        assert_eq!(
            decode(
                &[(pi >> 16) as u16, pi as u16],
                RegType::F32,
                WordOrder::HighFirst,
                true
            ),
            Ok(3.5)
        );
    }

    #[test]
    fn sentinels_and_garbage_are_refused() {
        assert_eq!(
            decode(&[0xFFFF], RegType::U16, WordOrder::HighFirst, true),
            Err(DecodeError::NotImplemented)
        );
        assert_eq!(
            decode(&[0xFFFF], RegType::U16, WordOrder::HighFirst, false),
            Ok(65535.0)
        );
        assert_eq!(
            decode(&[0x8000], RegType::I16, WordOrder::HighFirst, true),
            Err(DecodeError::NotImplemented)
        );
        assert_eq!(
            decode(&[0x8000, 0], RegType::I32, WordOrder::HighFirst, true),
            Err(DecodeError::NotImplemented)
        );
        assert_eq!(
            decode(&[0x7FC0, 0], RegType::F32, WordOrder::HighFirst, true),
            Err(DecodeError::NotImplemented)
        );
        assert_eq!(
            decode(&[0x7F80, 0], RegType::F32, WordOrder::HighFirst, true),
            Err(DecodeError::NotFinite)
        );
        assert_eq!(
            decode(&[0x7FC0, 0], RegType::F32, WordOrder::HighFirst, false),
            Err(DecodeError::NotFinite)
        );
        assert!(matches!(
            decode(&[1], RegType::U32, WordOrder::HighFirst, true),
            Err(DecodeError::Length { .. })
        ));
        assert_eq!(sunspec_scale(-2), Some(0.01));
        assert_eq!(sunspec_scale(i16::MIN), None);
    }

    proptest! {
        // A fixed seed: the same cases on every run and machine.
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_207), ..ProptestConfig::default() })]

        #[test]
        fn encode_then_decode_is_identity(v in -30000i32..30000, order in prop_oneof![Just(WordOrder::HighFirst), Just(WordOrder::LowFirst)]) {
            for ty in [RegType::I16, RegType::I32, RegType::F32] {
                let words = encode(f64::from(v), ty, order).unwrap();
                prop_assert_eq!(decode(&words, ty, order, false).unwrap(), f64::from(v));
            }
            let u = f64::from(v.unsigned_abs());
            for ty in [RegType::U16, RegType::U32, RegType::U64] {
                let words = encode(u, ty, order).unwrap();
                prop_assert_eq!(decode(&words, ty, order, false).unwrap(), u);
            }
        }

        #[test]
        fn decode_never_panics(words in proptest::collection::vec(any::<u16>(), 0..6)) {
            for ty in [RegType::U16, RegType::I16, RegType::U32, RegType::I32, RegType::U64, RegType::F32] {
                for order in [WordOrder::HighFirst, WordOrder::LowFirst] {
                    if let Ok(v) = decode(&words, ty, order, true) {
                        prop_assert!(v.is_finite());
                    }
                }
            }
        }
    }

    #[test]
    fn encode_refuses_what_does_not_fit() {
        assert!(encode(70000.0, RegType::U16, WordOrder::HighFirst).is_err());
        assert!(encode(-1.0, RegType::U32, WordOrder::HighFirst).is_err());
        assert!(encode(f64::NAN, RegType::F32, WordOrder::HighFirst).is_err());
        assert_eq!(
            encode(-2.0, RegType::I32, WordOrder::LowFirst).unwrap(),
            vec![0xFFFE, 0xFFFF]
        );
    }
}
