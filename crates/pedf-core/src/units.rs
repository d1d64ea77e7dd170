//! Physical and money quantities as newtypes, so a kW can never be added to a kWh.
//!
//! Units follow PRODUCT.md: power in kW, energy in kWh, money in CNY, emissions in kg CO2.
//! Each type wraps an `f64` and only offers arithmetic that keeps the unit right:
//! `Kw * Hours = Kwh`, `Kwh * CnyPerKwh = Cny`, `Kwh * KgCo2PerKwh = KgCo2`.

use std::fmt;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub f64);

        impl $name {
            /// Zero of this quantity.
            pub const ZERO: Self = Self(0.0);
            /// The unit symbol, for tables and messages.
            pub const UNIT: &'static str = $unit;

            /// The bare number, in the unit of the type.
            pub fn value(self) -> f64 {
                self.0
            }
            /// True when the value is neither NaN nor infinite.
            pub fn is_finite(self) -> bool {
                self.0.is_finite()
            }
            /// The larger of two quantities.
            pub fn max(self, other: Self) -> Self {
                Self(self.0.max(other.0))
            }
            /// The smaller of two quantities.
            pub fn min(self, other: Self) -> Self {
                Self(self.0.min(other.0))
            }
            /// The value limited to `[lo, hi]`.
            pub fn clamp(self, lo: Self, hi: Self) -> Self {
                Self(self.0.clamp(lo.0, hi.0))
            }
            /// The absolute value.
            pub fn abs(self) -> Self {
                Self(self.0.abs())
            }
        }

        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }
        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }
        impl SubAssign for $name {
            fn sub_assign(&mut self, rhs: Self) {
                self.0 -= rhs.0;
            }
        }
        impl Neg for $name {
            type Output = Self;
            fn neg(self) -> Self {
                Self(-self.0)
            }
        }
        impl Mul<f64> for $name {
            type Output = Self;
            fn mul(self, rhs: f64) -> Self {
                Self(self.0 * rhs)
            }
        }
        impl Div<f64> for $name {
            type Output = Self;
            fn div(self, rhs: f64) -> Self {
                Self(self.0 / rhs)
            }
        }
        /// The ratio of two quantities of the same unit is a plain number.
        impl Div for $name {
            type Output = f64;
            fn div(self, rhs: Self) -> f64 {
                self.0 / rhs.0
            }
        }
        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                // From +0: std's f64 sum of nothing is -0, which people would read as "-0".
                Self(iter.fold(0.0, |s, q| s + q.0))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Never "-0" (a negative zero, or a small negative value rounding to zero).
                let shown = |p: Option<usize>| {
                    let scale = 10f64.powi(p.map_or(17, |p| p as i32));
                    if (self.0 * scale).round() == 0.0 {
                        0.0
                    } else {
                        self.0
                    }
                };
                match f.precision() {
                    Some(p) => write!(f, "{:.*} {}", p, shown(Some(p)), $unit),
                    None => write!(f, "{} {}", shown(None), $unit),
                }
            }
        }
    };
}

quantity!(
    /// Power in kilowatts. Its sign follows the convention of [`crate::sign`].
    Kw, "kW"
);
quantity!(
    /// Energy in kilowatt-hours.
    Kwh, "kWh"
);
quantity!(
    /// Peak (nameplate) DC power of a PV array in kilowatts-peak.
    Kwp, "kWp"
);
quantity!(
    /// Money in Chinese yuan.
    Cny, "CNY"
);
quantity!(
    /// Emissions in kilograms of CO2 (equivalent where a method says so).
    KgCo2, "kg CO2"
);
quantity!(
    /// An energy price in CNY per kWh.
    CnyPerKwh, "CNY/kWh"
);
quantity!(
    /// A demand (capacity) charge in CNY per kW of monthly peak.
    CnyPerKwMonth, "CNY/kW/month"
);
quantity!(
    /// An emission factor in kg CO2 per kWh (numerically equal to t CO2 per MWh).
    KgCo2PerKwh, "kg CO2/kWh"
);
quantity!(
    /// A duration in hours, the bridge between power and energy.
    Hours, "h"
);

impl Mul<Hours> for Kw {
    type Output = Kwh;
    fn mul(self, rhs: Hours) -> Kwh {
        Kwh(self.0 * rhs.0)
    }
}
impl Div<Hours> for Kwh {
    type Output = Kw;
    fn div(self, rhs: Hours) -> Kw {
        Kw(self.0 / rhs.0)
    }
}
impl Div<Kw> for Kwh {
    type Output = Hours;
    fn div(self, rhs: Kw) -> Hours {
        Hours(self.0 / rhs.0)
    }
}
impl Mul<CnyPerKwh> for Kwh {
    type Output = Cny;
    fn mul(self, rhs: CnyPerKwh) -> Cny {
        Cny(self.0 * rhs.0)
    }
}
impl Mul<KgCo2PerKwh> for Kwh {
    type Output = KgCo2;
    fn mul(self, rhs: KgCo2PerKwh) -> KgCo2 {
        KgCo2(self.0 * rhs.0)
    }
}
impl Mul<CnyPerKwMonth> for Kw {
    type Output = Cny;
    fn mul(self, rhs: CnyPerKwMonth) -> Cny {
        Cny(self.0 * rhs.0)
    }
}

impl KgCo2 {
    /// The same mass in tonnes of CO2, the unit certificates show.
    pub fn tonnes(self) -> f64 {
        self.0 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_times_time_is_energy_and_back() {
        let e = Kw(400.0) * Hours(0.25);
        assert_eq!(e, Kwh(100.0));
        assert_eq!(e / Hours(0.25), Kw(400.0));
        assert_eq!(e / Kw(200.0), Hours(0.5));
    }

    #[test]
    fn energy_prices_and_factors_give_money_and_mass() {
        // DOMAIN.md worked example 4: 1,000 MWh at the 2023 North China factor = 636.1 t.
        let mass = Kwh(1_000_000.0) * KgCo2PerKwh(0.6361);
        assert!((mass.tonnes() - 636.1).abs() < 1e-9);
        assert_eq!(Kwh(10.0) * CnyPerKwh(0.2), Cny(2.0));
        assert_eq!(Kw(100.0) * CnyPerKwMonth(30.0), Cny(3000.0));
    }

    #[test]
    fn display_carries_the_unit_and_precision() {
        assert_eq!(format!("{:.1}", Kw(12.345)), "12.3 kW");
        assert_eq!(format!("{}", Kwh(2.0)), "2 kWh");
        let total: Kwh = [Kwh(1.0), Kwh(2.5)].into_iter().sum();
        assert_eq!(total, Kwh(3.5));
    }

    #[test]
    fn nobody_reads_minus_zero() {
        let none: Kwp = std::iter::empty().sum();
        assert!(none.0.is_sign_positive(), "the sum of nothing is +0");
        assert_eq!(format!("{none}"), "0 kWp");
        assert_eq!(format!("{}", Kw(-0.0)), "0 kW");
        assert_eq!(format!("{:.1}", Kw(-0.01)), "0.0 kW");
        assert_eq!(format!("{:.1}", Kw(-0.06)), "-0.1 kW");
    }
}
