//! The accounting: every interval's flows allocated at the DC bus, the battery as a carbon
//! store, and the figures of a period.
//!
//! **Allocation rule (proportional at the bus, each interval).** Sources put energy on the bus:
//! PV, battery discharge, and grid import less converter losses (when importing, the losses are
//! on the grid's side of the bus). Sinks take it: loads, EV chargers, battery charge, export,
//! and converter losses when not importing (export path and standby). Every sink receives from
//! every source in proportion to the source's share of the interval's bus supply. Each source
//! kWh carries a carbon intensity: PV 0; grid import all of `import x factor` on the energy
//! that reaches the bus (losses concentrate it); battery the stored intensity. Energy is
//! conserved by construction (rows and columns of the flow matrix sum to the sources and
//! sinks, to rounding of 1e-9 kWh); carbon is conserved through the store.
//!
//! **Battery carbon store (attributional).** Charging adds the charged kWh (bus side) and
//! their carbon; discharging `D` kWh at the bus removes `D / η_rt` charged kWh and their
//! carbon, so discharged energy carries the average intensity of what charged it, concentrated
//! by the round-trip losses: `EF_discharge = Σ E_charge·EF_src / E_discharge`. The store starts
//! with the battery's initial content at the grid factor (the conservative choice: it claims
//! nothing clean it cannot show). Discharging more than the store holds takes the excess at
//! the grid factor and flags the interval.
//!
//! **Several batteries.** Each battery has its own store and round-trip efficiency when the
//! records give each battery's charge and discharge (`charge:<id>`, `discharge:<id>` columns)
//! in every interval of the period where a battery moved; each battery's charge takes the
//! interval's charge mix. Records with only the totals cannot say which battery moved: then
//! the batteries are one pooled store at the **lowest** round-trip efficiency among them (the
//! conservative choice: more of the PV is counted as lost), and the result says so.
//!
//! **Avoided emissions on net delivered electricity (ACM0002 / AMS-I.D / AMS-I.F).** The
//! baseline emissions count the electricity the PV delivers, not what it generates at the bus:
//! EG = PV delivered to the park's consumption (directly or out of the battery's PV share,
//! after its round-trip losses) + PV delivered to the grid at the grid meter (AC, after the
//! converter's losses) - auxiliary imports (grid energy that fed only the conversion, nothing
//! of it reaching a load, a car or the battery). PV still in the battery at the end of the
//! period is not credited. BE = EG x the baseline factor; PE = LE = 0 for PV.
//!
//! **Gaps.** A missing interval is never invented as measured data. The conservative rule: it
//! contributes no PV (so no avoided emissions are claimed for it) and, to the inventory, the
//! mean grid import of the recorded intervals at the same time of day; such intervals are
//! counted and listed as estimated.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Timelike, Utc};
use pedf_core::time::ParkClock;

use crate::records::IntervalRecord;

/// Sources at the bus.
pub const SOURCES: [&str; 3] = ["pv", "battery", "grid"];
/// Sinks at the bus.
pub const SINKS: [&str; 5] = ["loads", "ev", "battery", "export", "losses"];
const PV: usize = 0;
const BAT: usize = 1;
const GRID: usize = 2;
const LOADS: usize = 0;
const EV: usize = 1;
const CHARGE: usize = 2;
const EXPORT: usize = 3;
const LOSSES: usize = 4;

/// Settings of an accounting run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Grid factor used where no hourly series value exists, kg/kWh.
    pub grid_factor: f64,
    /// Grid factors by start (kg/kWh), e.g. a user's hourly series; a value holds from its start
    /// until the next one, for at most an hour; elsewhere `grid_factor` applies.
    pub hourly_factors: BTreeMap<DateTime<Utc>, f64>,
    /// Factor of the baseline that PV generation displaces (ACM0002: the grid's combined margin,
    /// or the grid average for a park statement), kg/kWh.
    pub baseline_factor: f64,
    /// Residual-mix factor for market-based Scope 2, kg/kWh.
    pub residual_factor: f64,
    /// MWh of grid import covered by green certificates or contracts in the period.
    pub covered_mwh: f64,
    /// Share of grid electricity that is carbon-free, for the CFE score (0 unless the user has
    /// a figure: the conservative default).
    pub grid_cfe_share: f64,
    /// The park's batteries: round-trip efficiency (bus to bus) and energy at the start
    /// (bus-side kWh) of each. None: battery flows go through one lossless store that starts
    /// empty.
    pub batteries: Vec<BatteryParams>,
    /// The park's interval clock.
    pub clock: ParkClock,
}

impl Options {
    /// The accounting of a park with the factors chosen for its period (`choice`) and `covered_mwh`
    /// of grid import covered by instruments the park holds: each battery from its initial
    /// state of charge, no hourly factors, no carbon-free share of grid power (the
    /// conservative default). One function for the command line, the API and the live figures.
    pub fn for_park(
        park: &pedf_core::Park,
        choice: &crate::factors::FactorChoice,
        covered_mwh: f64,
    ) -> Options {
        Options {
            grid_factor: choice.location.value,
            hourly_factors: BTreeMap::new(),
            baseline_factor: choice.baseline,
            residual_factor: choice.residual.value,
            covered_mwh,
            grid_cfe_share: 0.0,
            batteries: BatteryParams::of_park(park),
            clock: park.clock,
        }
    }
}

/// One battery's carbon-store parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BatteryParams {
    /// The park asset id.
    pub id: String,
    /// Bus to bus.
    pub round_trip_efficiency: f64,
    /// Energy in it at the start, bus-side kWh (taken at the grid factor, no PV in it).
    pub initial_kwh: f64,
}

impl BatteryParams {
    /// The batteries of a park, their stores starting at their initial state of charge.
    pub fn of_park(park: &pedf_core::Park) -> Vec<BatteryParams> {
        park.batteries
            .iter()
            .map(|b| BatteryParams {
                id: b.id.clone(),
                round_trip_efficiency: b.round_trip_efficiency(),
                initial_kwh: b.capacity.0 * b.initial_soc,
            })
            .collect()
    }
}

/// How the batteries' carbon is kept over a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// One store per battery (the records split the flows by battery).
    PerBattery,
    /// One store for all, at the lowest round-trip efficiency.
    Pooled,
}

impl StorageMode {
    /// The rule as a certificate states it.
    pub fn rule(self, batteries: usize) -> String {
        match (self, batteries) {
            (_, 0) => "no battery".into(),
            (_, 1) => "one battery, one carbon store".into(),
            (StorageMode::PerBattery, n) => format!(
                "{n} batteries, each its own carbon store and round-trip efficiency (the records split the flows by battery)"
            ),
            (StorageMode::Pooled, n) => format!(
                "{n} batteries as one carbon store at the lowest round-trip efficiency among them (the records give only the totals; conservative)"
            ),
        }
    }
}

/// The result of one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalResult {
    /// Interval start.
    pub start: DateTime<Utc>,
    /// `flows[source][sink]`, kWh.
    pub flows: [[f64; 5]; 3],
    /// Carbon delivered to each sink, kg.
    pub sink_kg: [f64; 5],
    /// Carbon-free kWh delivered to each sink.
    pub sink_clean_kwh: [f64; 5],
    /// The grid's emission factor used in the interval, kg CO2/kWh.
    pub grid_factor: f64,
    /// Grid import x factor (location-based Scope 2), kg.
    pub location_kg: f64,
    /// PV energy delivered to the park's consumption (loads and EV at the bus), directly or
    /// through the battery's PV share (after its round-trip losses), kWh.
    pub pv_onsite_kwh: f64,
    /// PV energy delivered to the grid at the grid meter (AC, after the converter's losses),
    /// directly or through the battery's PV share, kWh.
    pub pv_export_kwh: f64,
    /// Grid import the park took only for its own conversion (nothing of it reached a load,
    /// a car or the battery): the plant's auxiliary consumption, kWh.
    pub aux_import_kwh: f64,
    /// PV energy lost in storage: the round-trip loss on the PV share of the discharge, kWh.
    pub pv_storage_losses_kwh: f64,
    /// Net delivered PV (onsite + export - auxiliary) x baseline factor, kg; 0 for an
    /// estimated interval.
    pub avoided_pv_kg: f64,
    /// Consequential effect of the battery at this interval's factor: what it discharges
    /// displaces grid supply, what it charges (from any source: PV charged would otherwise have
    /// displaced grid supply) adds it. Summed over a period with hourly factors this is the
    /// effect of shifting; with a flat factor it is the cost of the round-trip losses (kg;
    /// positive = avoided). Reported apart from the inventory.
    pub shifting_kg: f64,
    /// Energy in the battery's carbon store at the interval's end, kWh.
    pub battery_store_kwh: f64,
    /// Carbon in the battery's store at the interval's end, kg.
    pub battery_store_kg: f64,
    /// The interval was missing and is estimated (see the module documentation).
    pub estimated: bool,
    /// The battery gave more than it held; the excess was taken at the grid factor.
    pub store_overdrawn: bool,
}

/// Totals of a period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    /// Intervals accounted.
    pub intervals: usize,
    /// Of them, intervals missing from the records and estimated.
    pub estimated_intervals: usize,
    /// PV produced at the bus, kWh.
    pub pv_kwh: f64,
    /// Grid import at the meter, kWh.
    pub grid_import_kwh: f64,
    /// Grid export at the meter, kWh.
    pub grid_export_kwh: f64,
    /// Battery charge, kWh.
    pub battery_charge_kwh: f64,
    /// Battery discharge, kWh.
    pub battery_discharge_kwh: f64,
    /// Consumption on site (loads and EV), kWh.
    pub consumption_kwh: f64,
    /// Losses as a sink of the bus (on the export path and while not importing), kWh.
    pub losses_kwh: f64,
    /// All conversion losses that close the balance, on the grid side while importing too.
    pub conversion_losses_kwh: f64,
    /// `flows[source][sink]` summed, kWh.
    pub flows: [[f64; 5]; 3],
    /// Location-based Scope 2 (import x grid factor), kg.
    pub location_kg: f64,
    /// Market-based Scope 2 (covered MWh at 0, the rest at the residual mix), kg.
    pub market_kg: f64,
    /// See [`IntervalResult`]: PV delivered on site, PV delivered to the grid meter, auxiliary
    /// imports, PV lost in storage, kWh (estimated intervals count none).
    pub pv_onsite_kwh: f64,
    /// PV delivered to the grid meter, kWh (see [`IntervalResult::pv_export_kwh`]).
    pub pv_export_kwh: f64,
    /// Auxiliary imports, kWh (see [`IntervalResult::aux_import_kwh`]).
    pub aux_import_kwh: f64,
    /// PV lost in storage, kWh (see [`IntervalResult::pv_storage_losses_kwh`]).
    pub pv_storage_losses_kwh: f64,
    /// PV that charged the battery and was still in it at the end (charged kWh, not credited).
    pub pv_in_storage_end_kwh: f64,
    /// Net delivered electricity EG = onsite + export - auxiliary, per local month (`YYYY-MM`),
    /// kWh: what green certificates are matched against.
    pub net_delivered_by_month: BTreeMap<String, f64>,
    /// Net delivered PV x baseline factor, kg (avoided emissions).
    pub avoided_pv_kg: f64,
    /// The battery's shifting effect, kg (see [`IntervalResult::shifting_kg`]).
    pub shifting_kg: f64,
    /// Carbon in the energy the park consumed (loads and EV), kg.
    pub consumption_kg: f64,
    /// kg CO2 per kWh consumed.
    pub park_intensity: f64,
    /// Share of consumption served by the park's PV, directly or through the battery (its
    /// store's PV share: grid-charged energy counts as grid when it comes out).
    pub self_sufficiency: f64,
    /// Share of PV used in the park (loads, EV, battery).
    pub self_consumption: f64,
    /// Hourly carbon-free-energy score of consumption.
    pub cfe_score: f64,
    /// Carbon-free share of the energy given to EVs.
    pub ev_green_share: f64,
}

/// The accounting of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Accounting {
    /// Each interval's result, in order.
    pub intervals: Vec<IntervalResult>,
    /// The period's totals.
    pub totals: Totals,
    /// Interval starts that were missing and estimated.
    pub gaps: Vec<DateTime<Utc>>,
    /// How the batteries' carbon was kept.
    pub storage: StorageMode,
}

struct Store {
    kwh: f64,
    kg: f64,
    clean: f64,
    eta: f64,
}

fn share(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// Streaming accountant: push intervals in time order, read each result, take the totals at
/// the end. Memory stays constant per interval (the hourly CFE sums grow by one entry an
/// hour), so a year of 1-minute records needs no more than a day's.
pub struct Accountant {
    options: Options,
    /// One per battery (`ids` in the same order), or one pooled store (`ids` empty).
    stores: Vec<Store>,
    ids: Vec<String>,
    sums: Sums,
}

#[derive(Default)]
struct Sums {
    totals: Totals,
    hourly: BTreeMap<DateTime<Utc>, (f64, f64)>,
    ev_clean: f64,
    /// Consumption served by PV, directly or from the battery's PV share, kWh.
    pv_served: f64,
    import_kwh: f64,
}

impl Accountant {
    /// An accountant keeping the batteries as one pooled store (at the lowest round-trip
    /// efficiency among them): for records without a split by battery.
    pub fn new(options: Options) -> Self {
        Self::with_mode(options, StorageMode::Pooled)
    }

    /// An accountant in the given storage mode (`PerBattery` needs every record with battery
    /// flows to split them by battery: a battery missing from a record's split is idle).
    pub fn with_mode(options: Options, mode: StorageMode) -> Self {
        let store = |initial: f64, eta: f64| Store {
            kwh: initial.max(0.0),
            kg: initial.max(0.0) * options.grid_factor,
            clean: 0.0,
            eta: eta.clamp(0.01, 1.0),
        };
        let b = &options.batteries;
        let (stores, ids) = if mode == StorageMode::PerBattery && b.len() > 1 {
            (
                b.iter()
                    .map(|p| store(p.initial_kwh, p.round_trip_efficiency))
                    .collect(),
                b.iter().map(|p| p.id.clone()).collect(),
            )
        } else {
            let eta = b
                .iter()
                .map(|p| p.round_trip_efficiency)
                .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.min(e))))
                .unwrap_or(1.0);
            (
                vec![store(b.iter().map(|p| p.initial_kwh).sum(), eta)],
                Vec::new(),
            )
        };
        Accountant {
            options,
            stores,
            ids,
            sums: Sums::default(),
        }
    }

    /// The storage mode in use.
    pub fn mode(&self) -> StorageMode {
        if self.ids.is_empty() {
            StorageMode::Pooled
        } else {
            StorageMode::PerBattery
        }
    }

    /// The grid factor at `t`: a series value holds from its start until the next one, for at
    /// most an hour; elsewhere the annual factor.
    pub fn factor_at(&self, t: DateTime<Utc>) -> f64 {
        let o = &self.options;
        o.hourly_factors
            .range(..=t)
            .next_back()
            .filter(|(s, _)| t - **s < Duration::hours(1))
            .map_or(o.grid_factor, |(_, v)| *v)
    }

    /// Accounts one interval (`estimated`: a gap filled by the conservative rule).
    pub fn push(&mut self, rec: &IntervalRecord, estimated: bool) -> IntervalResult {
        let ef = self.factor_at(rec.start);
        // Each store's (charge, discharge): the record's split by battery, or the totals.
        let split: Vec<(f64, f64)> = if self.ids.is_empty() {
            vec![(rec.battery_charge_kwh, rec.battery_discharge_kwh)]
        } else {
            self.ids
                .iter()
                .map(|id| {
                    rec.batteries
                        .iter()
                        .find(|(b, _, _)| b == id)
                        .map_or((0.0, 0.0), |(_, c, d)| (*c, *d))
                })
                .collect()
        };
        let r = interval(
            rec,
            ef,
            self.options.baseline_factor,
            &mut self.stores,
            &split,
            estimated,
        );
        let s = &mut self.sums;
        let t = &mut s.totals;
        t.intervals += 1;
        t.estimated_intervals += usize::from(r.estimated);
        for i in 0..3 {
            for k in 0..5 {
                t.flows[i][k] += r.flows[i][k];
            }
        }
        t.location_kg += r.location_kg;
        t.avoided_pv_kg += r.avoided_pv_kg;
        if !r.estimated {
            t.pv_onsite_kwh += r.pv_onsite_kwh;
            t.pv_export_kwh += r.pv_export_kwh;
            t.aux_import_kwh += r.aux_import_kwh;
            t.pv_storage_losses_kwh += r.pv_storage_losses_kwh;
            let month = self
                .options
                .clock
                .local(r.start)
                .format("%Y-%m")
                .to_string();
            *t.net_delivered_by_month.entry(month).or_default() +=
                r.pv_onsite_kwh + r.pv_export_kwh - r.aux_import_kwh;
        }
        t.shifting_kg += r.shifting_kg;
        t.consumption_kg += r.sink_kg[LOADS] + r.sink_kg[EV];
        s.ev_clean += r.sink_clean_kwh[EV];
        s.pv_served += r.sink_clean_kwh[LOADS] + r.sink_clean_kwh[EV];
        s.import_kwh += rec.grid_import_kwh;
        t.conversion_losses_kwh += rec.losses().max(0.0);
        let demand = r.flows.iter().map(|f| f[LOADS] + f[EV]).sum::<f64>();
        let grid_to_demand = r.flows[GRID][LOADS] + r.flows[GRID][EV];
        let clean = r.sink_clean_kwh[LOADS]
            + r.sink_clean_kwh[EV]
            + grid_to_demand * self.options.grid_cfe_share;
        let hour = r.start
            - Duration::minutes(i64::from(r.start.minute()))
            - Duration::seconds(i64::from(r.start.second()));
        let h = s.hourly.entry(hour).or_default();
        h.0 += demand;
        h.1 += clean;
        r
    }

    /// The totals of everything pushed.
    pub fn totals(&self) -> Totals {
        let o = &self.options;
        let mut t = self.sums.totals.clone();
        let col = |k: usize| t.flows.iter().map(|f| f[k]).sum::<f64>();
        let row = |i: usize| t.flows[i].iter().sum::<f64>();
        t.pv_kwh = row(PV);
        t.battery_discharge_kwh = row(BAT);
        t.battery_charge_kwh = col(CHARGE);
        t.grid_export_kwh = col(EXPORT);
        t.losses_kwh = col(LOSSES);
        t.consumption_kwh = col(LOADS) + col(EV);
        t.grid_import_kwh = self.sums.import_kwh;
        t.pv_in_storage_end_kwh = self.stores.iter().map(|s| s.clean).sum();
        // Market-based: covered MWh at 0, the rest at the residual-mix factor.
        let uncovered = (t.grid_import_kwh - o.covered_mwh * 1000.0).max(0.0);
        t.market_kg = uncovered * o.residual_factor;
        t.park_intensity = share(t.consumption_kg, t.consumption_kwh);
        // On-site supply is PV's: direct, or through the battery's carbon store (a kWh the grid
        // put into the battery is grid energy when it comes out, DOMAIN.md "Storage").
        t.self_sufficiency = share(self.sums.pv_served, t.consumption_kwh);
        t.self_consumption = share(
            t.flows[PV][LOADS] + t.flows[PV][EV] + t.flows[PV][CHARGE],
            t.pv_kwh,
        );
        let (demand, cfe): (f64, f64) = self
            .sums
            .hourly
            .values()
            .fold((0.0, 0.0), |(d, c), (hd, hc)| (d + hd, c + hc.min(*hd)));
        t.cfe_score = share(cfe, demand);
        t.ev_green_share = share(self.sums.ev_clean, col(EV));
        t
    }
}

/// Accounts `records` over the intervals from `from` (inclusive) to `to` (exclusive) on the
/// options' clock. Records outside are ignored; intervals without a record are gaps.
pub fn account(
    records: &[IntervalRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    o: &Options,
) -> Accounting {
    let clock = o.clock;
    let step = clock.interval.duration();
    let by_start: BTreeMap<DateTime<Utc>, &IntervalRecord> = records
        .iter()
        .filter(|r| r.start >= from && r.start < to)
        .map(|r| (r.start, r))
        .collect();
    // Mean import by local time of day, for the gap rule.
    let mut tod: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for r in by_start.values() {
        let l = clock.local(r.start);
        let e = tod.entry(l.hour() * 60 + l.minute()).or_default();
        e.0 += r.grid_import_kwh;
        e.1 += 1;
    }
    // One store per battery only when every record that moved a battery says which.
    let split_everywhere = by_start.values().all(|r| {
        (r.battery_charge_kwh == 0.0 && r.battery_discharge_kwh == 0.0) || !r.batteries.is_empty()
    });
    let mode = if split_everywhere {
        StorageMode::PerBattery
    } else {
        StorageMode::Pooled
    };
    let mut acc = Accountant::with_mode(o.clone(), mode);
    let mut out = Vec::new();
    let mut gaps = Vec::new();
    let mut t = clock.interval_start(from);
    if t < from {
        t += step;
    }
    while t < to {
        let result = match by_start.get(&t) {
            Some(r) => acc.push(r, false),
            None => {
                let l = clock.local(t);
                let import = tod
                    .get(&(l.hour() * 60 + l.minute()))
                    .map_or(0.0, |(s, n)| s / *n as f64);
                gaps.push(t);
                acc.push(
                    &IntervalRecord {
                        start: t,
                        grid_import_kwh: import,
                        load_kwh: import,
                        ..Default::default()
                    },
                    true,
                )
            }
        };
        out.push(result);
        t += step;
    }
    let totals = acc.totals();
    Accounting {
        intervals: out,
        totals,
        gaps,
        storage: acc.mode(),
    }
}

fn interval(
    r: &IntervalRecord,
    ef: f64,
    baseline: f64,
    stores: &mut [Store],
    split: &[(f64, f64)],
    estimated: bool,
) -> IntervalResult {
    let losses = r.losses().max(0.0);
    let importing = r.grid_import_kwh > 0.0;
    // Grid energy reaching the bus; when importing, losses sit on the grid's side.
    let grid_bus = if importing {
        (r.grid_import_kwh - losses).max(0.0)
    } else {
        0.0
    };
    let loss_sink = if importing {
        (losses - r.grid_import_kwh).max(0.0)
    } else {
        losses
    };
    let sources = [r.pv_kwh, r.battery_discharge_kwh, grid_bus];
    let sinks = [
        r.load_kwh,
        r.ev_kwh,
        r.battery_charge_kwh,
        r.grid_export_kwh,
        loss_sink,
    ];
    let supply: f64 = sources.iter().sum();
    let mut flows = [[0.0; 5]; 3];
    for (i, s) in sources.iter().enumerate() {
        for (k, d) in sinks.iter().enumerate() {
            flows[i][k] = d * share(*s, supply);
        }
    }
    // Battery discharge leaves each store first (this interval's charge cannot feed it):
    // `D / eta` charged kWh and their carbon and PV share.
    let (mut dis_kg, mut dis_clean, mut clean_drawn, mut overdrawn) = (0.0, 0.0, 0.0, false);
    for (store, &(_, discharge)) in stores.iter_mut().zip(split) {
        let drawn = discharge / store.eta;
        if drawn <= 0.0 {
            continue;
        }
        overdrawn |= drawn > store.kwh + 1e-9;
        let from_store = drawn.min(store.kwh);
        let frac = share(from_store, store.kwh);
        dis_kg += store.kg * frac + (drawn - from_store) * ef;
        let clean_charged = store.clean * frac;
        store.kg -= store.kg * frac;
        store.clean -= clean_charged;
        store.kwh -= from_store;
        // Clean share of the discharged bus energy equals the clean share of what was drawn.
        dis_clean += discharge * share(clean_charged, drawn);
        clean_drawn += clean_charged;
    }
    let intensity = [
        0.0,
        share(dis_kg, r.battery_discharge_kwh),
        share(r.grid_import_kwh * ef, grid_bus),
    ];
    let clean_frac = [1.0, share(dis_clean, r.battery_discharge_kwh), 0.0];
    let mut sink_kg = [0.0; 5];
    let mut sink_clean = [0.0; 5];
    for i in 0..3 {
        for k in 0..5 {
            sink_kg[k] += flows[i][k] * intensity[i];
            sink_clean[k] += flows[i][k] * clean_frac[i];
        }
    }
    // When importing with nothing reaching the bus (all losses), the import's carbon still
    // happened: book it to losses.
    if importing && grid_bus == 0.0 {
        sink_kg[LOSSES] += r.grid_import_kwh * ef;
    }
    // Each battery's charge takes the interval's charge mix.
    let charged: f64 = split.iter().map(|(c, _)| c).sum();
    for (store, &(charge, _)) in stores.iter_mut().zip(split) {
        let f = share(charge, charged);
        store.kwh += charge;
        store.kg += sink_kg[CHARGE] * f;
        store.clean += sink_clean[CHARGE] * f;
    }
    // Net delivered electricity (ACM0002 / AMS-I.D / AMS-I.F): the PV energy that reached the
    // park's consumption or the grid meter, after the converter's losses on the export path
    // and the round-trip losses of the PV share of storage, less auxiliary imports (grid
    // energy that fed only the conversion: a PV-only plant's converter at night). Import-side
    // conversion losses while loads are served are the baseline's, not the plant's: the loads
    // would import through the same converter without the PV.
    let pv_onsite = sink_clean[LOADS] + sink_clean[EV];
    let pv_export = sink_clean[EXPORT];
    let aux = if importing && grid_bus == 0.0 {
        r.grid_import_kwh
    } else {
        0.0
    };
    IntervalResult {
        start: r.start,
        flows,
        sink_kg,
        sink_clean_kwh: sink_clean,
        grid_factor: ef,
        location_kg: r.grid_import_kwh * ef,
        pv_onsite_kwh: pv_onsite,
        pv_export_kwh: pv_export,
        aux_import_kwh: aux,
        pv_storage_losses_kwh: clean_drawn - dis_clean,
        avoided_pv_kg: if estimated {
            0.0
        } else {
            (pv_onsite + pv_export - aux) * baseline
        },
        shifting_kg: (r.battery_discharge_kwh - r.battery_charge_kwh) * ef,
        battery_store_kwh: stores.iter().map(|s| s.kwh).sum(),
        battery_store_kg: stores.iter().map(|s| s.kg).sum(),
        estimated,
        store_overdrawn: overdrawn,
    }
}

/// One EV session's energy, its carbon-free part and its carbon.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionShare {
    /// The session id.
    pub id: String,
    /// The charger's park asset id.
    pub charger: String,
    /// Energy delivered, kWh.
    pub kwh: f64,
    /// Of it carbon-free (PV directly or through the battery's PV share), kWh.
    pub green_kwh: f64,
    /// Carbon in the energy delivered, kg.
    pub kg: f64,
}

impl SessionShare {
    /// The carbon-free share of the session's energy, 0..1 (0 for an empty session).
    pub fn green_share(&self) -> f64 {
        share(self.green_kwh, self.kwh)
    }
}

/// Each session's green share: the charger's energy in every interval the car was present
/// (`ev:<charger>` columns of the records) times the EV sink's clean fraction and intensity of
/// that interval (all chargers of an interval get the same mix, by the proportional rule).
/// `sessions`: (id, charger, arrival, departure).
pub fn session_green_shares(
    records: &[IntervalRecord],
    results: &[IntervalResult],
    sessions: &[(String, String, DateTime<Utc>, DateTime<Utc>)],
    step: Duration,
) -> Vec<SessionShare> {
    let by_start: BTreeMap<DateTime<Utc>, &IntervalResult> =
        results.iter().map(|r| (r.start, r)).collect();
    let mut out: Vec<SessionShare> = sessions
        .iter()
        .map(|(id, charger, _, _)| SessionShare {
            id: id.clone(),
            charger: charger.clone(),
            kwh: 0.0,
            green_kwh: 0.0,
            kg: 0.0,
        })
        .collect();
    for rec in records {
        let Some(res) = by_start.get(&rec.start) else {
            continue;
        };
        let ev_total: f64 = res.flows.iter().map(|f| f[EV]).sum();
        let (clean_frac, kg_per_kwh) = (
            share(res.sink_clean_kwh[EV], ev_total),
            share(res.sink_kg[EV], ev_total),
        );
        for (charger, kwh) in &rec.ev_chargers {
            let end = rec.start + step;
            for (s, (_, c, arrival, departure)) in out.iter_mut().zip(sessions) {
                if c == charger && *arrival < end && rec.start < *departure {
                    s.kwh += kwh;
                    s.green_kwh += kwh * clean_frac;
                    s.kg += kwh * kg_per_kwh;
                }
            }
        }
    }
    out
}
