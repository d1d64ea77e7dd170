//! Prometheus text exposition (format 0.0.4) of the park now and of the server.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::{AppState, Caller};

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escaped as the exposition format asks.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) async fn metrics(_c: Caller, State(s): State<AppState>) -> Response {
    let live = s.inner.live.borrow().clone();
    let c = &s.inner.counters;
    let mut o = String::with_capacity(4096);
    let f = &live.flows;
    family(
        &mut o,
        "pedf_power_kw",
        "gauge",
        "Power on each link of the park, kW (grid +import/-export, battery +discharge/-charge); absent while unknown.",
    );
    for (k, v) in [
        ("pv", f.pv_kw),
        ("pv_available", f.pv_available_kw),
        ("battery", f.battery_kw),
        ("load", f.load_kw),
        ("ev", f.ev_kw),
        ("converter_dc", f.converter_dc_kw),
        ("grid", f.grid_kw),
    ] {
        // A flow not known now (a device of it not answering) has no sample.
        if let Some(v) = v {
            let _ = writeln!(o, "pedf_power_kw{{flow=\"{k}\"}} {v}");
        }
    }
    if let Some(soc) = f.soc_pct {
        family(
            &mut o,
            "pedf_battery_soc_percent",
            "gauge",
            "Battery state of charge, %.",
        );
        let _ = writeln!(o, "pedf_battery_soc_percent {soc}");
    }
    family(
        &mut o,
        "pedf_device_up",
        "gauge",
        "1 when the device's last poll answered and its values are fresh.",
    );
    for d in &live.devices {
        let _ = writeln!(
            o,
            "pedf_device_up{{device=\"{}\",capability=\"{}\",quality=\"{}\"}} {}",
            esc(&d.id),
            esc(&d.capability),
            esc(&d.quality),
            u8::from(d.quality == "good")
        );
    }
    let t = &live.today;
    family(
        &mut o,
        "pedf_today_energy_kwh",
        "gauge",
        "Energy of the local day so far, kWh.",
    );
    for (k, v) in [
        ("pv", t.pv_kwh),
        ("grid_import", t.grid_import_kwh),
        ("grid_export", t.grid_export_kwh),
        ("load", t.load_kwh),
        ("ev", t.ev_kwh),
        ("battery_charge", t.battery_charge_kwh),
        ("battery_discharge", t.battery_discharge_kwh),
    ] {
        let _ = writeln!(o, "pedf_today_energy_kwh{{flow=\"{k}\"}} {v}");
    }
    family(
        &mut o,
        "pedf_today_co2_kg",
        "gauge",
        "CO2 of the local day so far, kg: location-based Scope 2 and avoided by PV.",
    );
    let _ = writeln!(
        o,
        "pedf_today_co2_kg{{kind=\"location\"}} {}",
        t.location_kg
    );
    let _ = writeln!(o, "pedf_today_co2_kg{{kind=\"avoided\"}} {}", t.avoided_kg);
    family(
        &mut o,
        "pedf_cycles_total",
        "counter",
        "Control cycles run.",
    );
    let _ = writeln!(o, "pedf_cycles_total {}", live.cycle);
    family(
        &mut o,
        "pedf_cycle_work_ms",
        "gauge",
        "Time the last control cycle's work took, ms.",
    );
    let _ = writeln!(o, "pedf_cycle_work_ms {}", live.cycle_work_ms);
    for (name, help, h) in [
        (
            "pedf_cycle_work_seconds",
            "Time each control cycle's work took (snapshot, control, apply, record), s.",
            &live.timing.work,
        ),
        (
            "pedf_cycle_lag_seconds",
            "How late each control cycle started against its period (jitter), s.",
            &live.timing.lag,
        ),
    ] {
        family(&mut o, name, "histogram", help);
        for (b, n) in h.bounds_ms.iter().zip(&h.at_or_below) {
            let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {n}", b / 1000.0);
        }
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(o, "{name}_sum {}", h.sum_ms / 1000.0);
        let _ = writeln!(o, "{name}_count {}", h.count);
    }
    family(
        &mut o,
        "pedf_alarms",
        "gauge",
        "Alarms raised in the last cycle.",
    );
    let _ = writeln!(o, "pedf_alarms {}", live.alarms.len());
    family(
        &mut o,
        "pedf_http_requests_total",
        "counter",
        "HTTP requests served.",
    );
    let _ = writeln!(
        o,
        "pedf_http_requests_total {}",
        c.requests.load(Ordering::Relaxed)
    );
    family(
        &mut o,
        "pedf_auth_failures_total",
        "counter",
        "Requests refused for a missing or invalid token.",
    );
    let _ = writeln!(
        o,
        "pedf_auth_failures_total {}",
        c.auth_failures.load(Ordering::Relaxed)
    );
    family(
        &mut o,
        "pedf_control_actions_total",
        "counter",
        "Operator control actions taken through the API.",
    );
    let _ = writeln!(
        o,
        "pedf_control_actions_total {}",
        c.control_actions.load(Ordering::Relaxed)
    );
    if let Some(k) = &live.influx {
        for (name, kind, help, v) in [
            (
                "pedf_influx_connected",
                "gauge",
                "1 when the InfluxDB sink's last write reached the server.",
                u64::from(k.connected),
            ),
            (
                "pedf_influx_buffer_bytes",
                "gauge",
                "Bytes waiting in the InfluxDB sink's disk buffer.",
                k.buffered_bytes,
            ),
            (
                "pedf_influx_rejected_lines_total",
                "counter",
                "Lines InfluxDB refused for good (kept aside, never retried).",
                k.rejected_lines,
            ),
            (
                "pedf_influx_dropped_lines_total",
                "counter",
                "Lines dropped because the InfluxDB sink's buffer was full.",
                k.dropped_lines,
            ),
        ] {
            family(&mut o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
    }
    family(
        &mut o,
        "pedf_http_connections_refused_total",
        "counter",
        "Connections closed at once because the server had its most open.",
    );
    let _ = writeln!(
        o,
        "pedf_http_connections_refused_total {}",
        c.connections_refused.load(Ordering::Relaxed)
    );
    family(
        &mut o,
        "pedf_stream_clients",
        "gauge",
        "Clients connected to the live stream.",
    );
    let _ = writeln!(
        o,
        "pedf_stream_clients {}",
        c.stream_clients.load(Ordering::Relaxed)
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        o,
    )
        .into_response()
}
