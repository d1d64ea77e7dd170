//! Several batteries: pooled for the controller, its setpoint shared among them.

use pedf_control::{pool_batteries, share_battery_power, BatteryNow, BatteryUnit};

fn unit(id: &str, capacity: f64, kw: f64) -> BatteryUnit {
    BatteryUnit {
        id: id.into(),
        capacity_kwh: capacity,
        soc_min_pct: 10.0,
        soc_max_pct: 95.0,
        max_charge_kw: kw,
        max_discharge_kw: kw,
    }
}

fn now(id: &str, soc: f64, kw: f64) -> (String, BatteryNow) {
    (
        id.into(),
        BatteryNow {
            soc_pct: soc,
            max_charge_kw: kw,
            max_discharge_kw: kw,
        },
    )
}

#[test]
fn the_pool_sums_what_each_can_do_inside_its_own_window() {
    let units = [unit("a", 2000.0, 1000.0), unit("b", 1000.0, 500.0)];
    // b is at its minimum: it can charge, not discharge.
    let p = pool_batteries(&units, &[now("a", 60.0, 1000.0), now("b", 10.0, 500.0)]).unwrap();
    assert_eq!(p.max_discharge_kw, 1000.0);
    assert_eq!(p.max_charge_kw, 1500.0);
    assert!((p.soc_pct - (60.0 * 2000.0 + 10.0 * 1000.0) / 3000.0).abs() < 1e-12);
    // The BMS's limit now counts when lower than the rating.
    let p = pool_batteries(&units, &[now("a", 60.0, 300.0)]).unwrap();
    assert_eq!(
        (p.max_charge_kw, p.max_discharge_kw, p.soc_pct),
        (300.0, 300.0, 60.0)
    );
    assert_eq!(pool_batteries(&units, &[]), None, "none answers");
}

#[test]
fn the_setpoint_is_shared_by_what_each_can_do() {
    let units = [unit("a", 2000.0, 1000.0), unit("b", 1000.0, 500.0)];
    let both = [now("a", 60.0, 1000.0), now("b", 60.0, 500.0)];
    assert_eq!(
        share_battery_power(600.0, &units, &both),
        vec![("a".to_string(), 400.0), ("b".to_string(), 200.0)]
    );
    assert_eq!(
        share_battery_power(-300.0, &units, &both),
        vec![("a".to_string(), -200.0), ("b".to_string(), -100.0)]
    );
    // b full: a takes all the charge; b not answering: it is asked nothing.
    let b_full = [now("a", 60.0, 1000.0), now("b", 95.0, 500.0)];
    assert_eq!(
        share_battery_power(-300.0, &units, &b_full),
        vec![("a".to_string(), -300.0), ("b".to_string(), 0.0)]
    );
    assert_eq!(
        share_battery_power(300.0, &units, &both[..1]),
        vec![("a".to_string(), 300.0), ("b".to_string(), 0.0)]
    );
    // Never more than a battery can do, whatever the total asked.
    assert_eq!(
        share_battery_power(5000.0, &units, &both),
        vec![("a".to_string(), 1000.0), ("b".to_string(), 500.0)]
    );
}
