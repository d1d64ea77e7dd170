//! What a certificate shows people: bilingual rows, closing lines and the title (laid out as
//! HTML and PDF by pedf-report); figures with their shortest digits, never `-0`.

use super::{key_fingerprint, Certificate};

/// A figure as people read it: shortest digits, never `-0`.
pub fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        crate::jcs::number(x).unwrap_or_else(|_| x.to_string())
    }
}
/// The certificate as labelled rows (Chinese label, English label, value): what the HTML and
/// PDF renderings show. Figures are written with their shortest digits, never `-0`.
pub fn rows(c: &Certificate) -> Vec<(String, String, String)> {
    let m = &c.monitored;
    let f = &c.figures;
    let mwh = |x: f64| format!("{} MWh", num(x));
    let mut r: Vec<(String, String, String)> = Vec::new();
    let mut add = |zh: &str, en: &str, v: String| r.push((zh.into(), en.into(), v));
    add("声明编号", "Serial", c.serial.clone());
    if let Some(what) = &c.data_quality.simulated {
        add(
            "数据性质",
            "Nature of the data",
            format!(
                "模拟数据，非真实园区测量。SIMULATED DATA, not a real park's measurements: {what}"
            ),
        );
    }
    add(
        "声明性质",
        "Status of this statement",
        c.methodology.claim_status.clone(),
    );
    add(
        "园区",
        "Park",
        format!(
            "{} {} ({})",
            c.park.name_zh.clone().unwrap_or_default(),
            c.park.name,
            c.park.id
        ),
    );
    add("业主", "Owner", c.park.owner.clone().unwrap_or_default());
    add(
        "位置",
        "Location",
        format!(
            "{:.4} N, {:.4} E",
            c.park.latitude_deg, c.park.longitude_deg
        ),
    );
    add(
        "装机",
        "Capacity",
        format!(
            "PV {} kWp, storage {} kWh",
            num(c.park.pv_kwp),
            num(c.park.battery_kwh)
        ),
    );
    add(
        "核算期",
        "Period",
        format!("{} – {} ({})", c.period.from, c.period.to, c.park.time_zone),
    );
    let md = &c.methodology;
    add(
        "方法学",
        "Methodology",
        format!("{} {}: {}", md.name, md.version, md.references.join("; ")),
    );
    add(
        "方法参数",
        "Parameters",
        format!(
            "storage: {}{}; initial battery content at the grid factor, no PV; grid import covered by instruments {} MWh; grid carbon-free share {}; allocation {}",
            md.storage_rule,
            md.batteries
                .iter()
                .map(|b| format!(
                    "; {} round trip {}, initially {} kWh",
                    b.id,
                    num(b.round_trip_efficiency),
                    num(b.initial_kwh)
                ))
                .collect::<String>(),
            num(md.covered_import_mwh),
            num(md.grid_cfe_share),
            md.allocation
        ),
    );
    for fu in &c.factors {
        add(
            "排放因子",
            &format!("Factor: {}", fu.applies_to),
            fu.description.clone(),
        );
    }
    for mu in &c.meters {
        add(
            "计量点",
            &format!("Meters: {}", mu.quantity),
            if mu.meters.is_empty() {
                mu.point.clone()
            } else {
                format!("{} ({})", mu.point, mu.meters.join(", "))
            },
        );
    }
    add(
        "光伏发电量（直流母线）",
        "PV generated (DC bus)",
        mwh(m.pv_generated_dc_bus_mwh),
    );
    add(
        "光伏园区内使用",
        "PV delivered on site",
        mwh(m.pv_delivered_on_site_mwh),
    );
    add(
        "光伏上网（关口表，交流）",
        "PV delivered at the grid meter (AC)",
        mwh(m.pv_delivered_grid_meter_mwh),
    );
    add(
        "光伏损耗（变流器 / 储能）",
        "PV losses (converter / storage)",
        format!(
            "{} / {} MWh; {} MWh still in storage at the end, not credited",
            num(m.pv_converter_losses_mwh),
            num(m.pv_storage_losses_mwh),
            num(m.pv_in_storage_at_end_mwh)
        ),
    );
    add(
        "厂用电（购电）",
        "Auxiliary imports",
        mwh(m.auxiliary_import_mwh),
    );
    add(
        "净上网/自用电量 EG",
        "Net delivered electricity EG",
        format!("{} ({})", mwh(m.net_delivered_mwh), md.net_delivered_rule),
    );
    for g in &c.green_certificates {
        add(
            "绿证",
            &format!("Green certificates {}", g.month),
            format!(
                "{} MWh, {}{}; EG of the period in the month {} MWh; subtracted {} MWh",
                num(g.mwh),
                g.status,
                if g.reference.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", g.reference)
                },
                num(g.net_delivered_mwh),
                num(g.subtracted_mwh)
            ),
        );
    }
    add(
        "声明电量（EG − 绿证）",
        "Claimed energy (EG − green certificates)",
        mwh(m.claimed_mwh),
    );
    add(
        "电网购电 / 上网",
        "Grid import / export (grid meter)",
        format!(
            "{} / {} MWh",
            num(m.grid_import_mwh),
            num(m.grid_export_mwh)
        ),
    );
    if let Some(b) = &c.billing_meter {
        add(
            "关口计量表（电网公司结算表）",
            "Billing meter (the grid company's)",
            format!(
                "{}: import {} / export {} MWh by its counters over {} intervals, against {} / {} MWh in the records ({}); intervals SHA-256 {}",
                b.meters.join(", "),
                num(b.import_mwh),
                b.export_mwh.map_or("–".into(), num),
                b.intervals_counted,
                num(b.records_import_mwh),
                num(b.records_export_mwh),
                b.import_difference_share.map_or("no import counted".into(), |s| format!(
                    "import {}{} %",
                    if s >= 0.0 { "+" } else { "" },
                    num((s * 1e4).round() / 1e2)
                )),
                b.intervals_sha256
            ),
        );
    }
    add(
        "储能充/放电",
        "Battery charged / discharged",
        format!(
            "{} / {} MWh",
            num(m.battery_charged_mwh),
            num(m.battery_discharged_mwh)
        ),
    );
    add(
        "用电量 / 变流器损耗",
        "Consumption / converter losses",
        format!(
            "{} / {} MWh",
            num(m.consumption_mwh),
            num(m.converter_losses_mwh)
        ),
    );
    add(
        "范围二（基于位置）",
        "Scope 2 location-based",
        format!("{} t CO2", num(f.scope2_location_based_t)),
    );
    add(
        "范围二（基于市场）",
        "Scope 2 market-based",
        format!("{} t CO2", num(f.scope2_market_based_t)),
    );
    add(
        "减排量 ER = BE − PE − LE",
        "Emission reductions",
        format!(
            "{} = {} − {} − {} t CO2e (PE: {}; LE: {})",
            num(f.emission_reductions_t),
            num(f.baseline_emissions_t),
            num(f.project_emissions_t),
            num(f.leakage_t),
            md.project_emissions_rule,
            md.leakage_rule
        ),
    );
    add(
        "声明减排量（向下取整）",
        "Reductions stated (rounded down)",
        format!("{} t CO2e", num(f.stated_reductions_t)),
    );
    add(
        "数据质量",
        "Data quality",
        format!(
            "{} of {} intervals recorded ({:.2} %), {} estimated: {}",
            c.data_quality.intervals_recorded,
            c.data_quality.intervals_expected,
            c.data_quality.coverage * 100.0,
            c.data_quality.estimated_intervals,
            c.data_quality.estimation_rule
        ),
    );
    add(
        "数据默克尔根",
        "Records Merkle root",
        format!(
            "{} ({} records; {})",
            c.records.merkle_root, c.records.count, c.records.leaf_rule
        ),
    );
    add(
        "图例",
        "Legend",
        "[C] 已在公开来源核实 confirmed in a published source; [S] 仅见于二手来源 seen only in secondary sources; [U] 未核实 unverified".into(),
    );
    add("签发时间", "Issued", c.issued_at.clone());
    add(
        "签发公钥 (ed25519)",
        "Issuer public key",
        format!(
            "{} (fingerprint {})",
            c.issuer.public_key,
            key_fingerprint(&c.issuer.public_key)
        ),
    );
    add(
        "签名（RFC 8785 规范化 JSON）",
        "Signature (over the RFC 8785 canonical JSON)",
        c.signature.clone().unwrap_or_default(),
    );
    r
}

/// The closing lines a rendering prints under the rows: how to verify, with the exact command
/// (a line starting with `$ `) holding the issuer's key, and its fingerprint to compare.
pub fn closing_lines(c: &Certificate) -> Vec<String> {
    vec![
        format!(
            "核验 Verify (签发密钥指纹 issuer key fingerprint {}):",
            key_fingerprint(&c.issuer.public_key)
        ),
        format!(
            "$ pedf certificate verify {0}.json --public-key {1} --data {0}.records.csv",
            c.serial, c.issuer.public_key
        ),
        format!(
            "记录文件 The records file: the one it was issued from; from a park's EMS, GET /api/v1/certificates/{}/records (exactly the records the Merkle root covers).",
            c.serial
        ),
        "只有当该密钥来自签发方公布的渠道时，核验才有意义。 The check means something only with the key from the issuer's published channel, not from this page alone.".into(),
    ]
}

/// The title of a statement, in Chinese and English.
pub const TITLE: (&str, &str) = (
    "碳减排自我声明",
    "Self-declared carbon-reduction statement (pedf certificate, not CCER)",
);
