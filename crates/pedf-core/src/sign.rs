//! The one sign convention of pedf, stated once and used at every boundary.
//!
//! As in OpenEMS, the sign of a power is taken at the point where an asset meets the DC bus (or,
//! for the grid, the point of common coupling):
//!
//! | terminal | positive means | negative means |
//! |---|---|---|
//! | grid | import from the grid | export to the grid |
//! | battery | discharge into the bus | charge from the bus |
//! | PV | production | (never negative) |
//! | loads, EV chargers | consumption | V2G feed-in (EV only) |
//!
//! Device adapters translate whatever a vendor uses into this convention; nothing downstream
//! ever flips a sign again.

use crate::units::Kw;

/// Which kind of terminal a signed power belongs to; each has its own meaning of "positive".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Terminal {
    /// The grid connection: `+import / -export`.
    Grid,
    /// A battery: `+discharge / -charge`.
    Battery,
    /// A PV array: `+production`.
    Pv,
    /// A fixed or flexible load: `+consumption`.
    Load,
    /// An EV charger: `+consumption`, negative only when it feeds back (V2G).
    EvCharger,
}

impl Terminal {
    /// What a positive value means at this terminal, for labels and messages.
    pub fn positive_means(self) -> &'static str {
        match self {
            Terminal::Grid => "import",
            Terminal::Battery => "discharge",
            Terminal::Pv => "production",
            Terminal::Load | Terminal::EvCharger => "consumption",
        }
    }

    /// What a negative value means at this terminal (`None` where it is not physical).
    pub fn negative_means(self) -> Option<&'static str> {
        match self {
            Terminal::Grid => Some("export"),
            Terminal::Battery => Some("charge"),
            Terminal::EvCharger => Some("vehicle-to-grid feed-in"),
            Terminal::Pv | Terminal::Load => None,
        }
    }

    /// How much a positive power adds to the supply of the bus (sources `+1`, sinks `-1`).
    ///
    /// Summing `bus_supply_sign() * power` over every terminal of a bus gives zero when the
    /// bus balances, which is how balance checks are written.
    pub fn bus_supply_sign(self) -> f64 {
        match self {
            Terminal::Grid | Terminal::Battery | Terminal::Pv => 1.0,
            Terminal::Load | Terminal::EvCharger => -1.0,
        }
    }
}

/// Splits a signed power into its non-negative (positive part, negative part magnitudes).
fn split_signed(power: Kw) -> (Kw, Kw) {
    (power.max(Kw::ZERO), (-power).max(Kw::ZERO))
}

/// Splits a signed grid power into its non-negative (import, export) parts.
pub fn split_grid(power: Kw) -> (Kw, Kw) {
    split_signed(power)
}

/// Splits a signed battery power into its non-negative (discharge, charge) parts.
pub fn split_battery(power: Kw) -> (Kw, Kw) {
    split_signed(power)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_of_a_bus_sums_to_zero_with_supply_signs() {
        // 500 kW PV, battery charging 200 kW, loads 600 kW, so 300 kW imported.
        let flows = [
            (Terminal::Pv, 500.0),
            (Terminal::Battery, -200.0),
            (Terminal::Load, 600.0),
            (Terminal::Grid, 300.0),
        ];
        let net: f64 = flows.iter().map(|(t, p)| t.bus_supply_sign() * p).sum();
        assert!(net.abs() < 1e-12);
    }

    #[test]
    fn splits_follow_the_convention() {
        assert_eq!(split_grid(Kw(-50.0)), (Kw(0.0), Kw(50.0)));
        assert_eq!(split_grid(Kw(20.0)), (Kw(20.0), Kw(0.0)));
        assert_eq!(split_battery(Kw(-10.0)), (Kw(0.0), Kw(10.0)));
        assert_eq!(Terminal::Grid.positive_means(), "import");
        assert_eq!(Terminal::Pv.negative_means(), None);
    }
}
