//! The dashboard in headless Chromium (Debian `chromium` + `chromium-driver`, installed by
//! scripts/setup), driven over WebDriver with fantoccini, against a running EMS on the
//! simulated park: the page loads, a viewer logs in, live values follow a measurement, the
//! language switches, a viewer is refused a control action, an operator changes the mode.
//! Screenshots (desktop and phone width) go to target/browser-shots/.

#[path = "support/chromium.rs"]
mod chromium;
mod common;
#[path = "support/plans.rs"]
mod plans;

use std::time::Instant;

use chromium::{click, log_in, shot, start_browser, text, visible, wait_js, wait_text};
use common::{ems_origin, Ems, ROOT};
use fantoccini::Client;
use serde_json::json;

async fn set_mode(c: &Client, mode: &str) {
    c.execute(
        "document.getElementById('mode-select').value = arguments[0];",
        vec![json!(mode)],
    )
    .await
    .unwrap();
    click(c, "#mode-apply").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let ems = Ems::start("browser").await;
    let profile = ems.dir.join("chromium-profile");
    let (_driver, c) = start_browser(&profile).await;
    async {
        // Chinese by default; the login form first.
        c.goto(&ems.base).await.unwrap();
        let (ok, _) = wait_text(&c, "#login h2", 5.0, |t| t == "登录").await;
        assert!(ok, "login form in Chinese");
        assert!(!visible(&c, "#app").await);

        // A viewer logs in and sees the simulated park.
        log_in(&c, &ems.viewer).await;
        let (ok, t) = wait_text(&c, "#v-pv", 10.0, |t| t == "300.0 kW").await;
        assert!(ok, "PV value on the page: `{t}`");
        let (ok, t) = wait_text(&c, "#who", 2.0, |t| t.contains("viewer")).await;
        assert!(ok, "{t}");

        // A measurement changes: the page shows it (how fast is a bench figure, not an assert).
        let changed = Instant::now();
        ems.sim.set_grid_kw(-42.5);
        let (ok, t) = wait_text(&c, "#v-grid", 20.0, |t| t.starts_with("-42.5 kW")).await;
        let latency = changed.elapsed();
        assert!(ok, "grid value on the page: `{t}`");
        eprintln!("browser: measurement to page in {latency:?}");

        // The language switches.
        assert_eq!(text(&c, "[data-page=live]").await, "实时");
        click(&c, "#lang").await;
        let (ok, t) = wait_text(&c, "[data-page=live]", 2.0, |t| t == "Live").await;
        assert!(ok, "tab after switching: `{t}`");
        let lang = c
            .execute("return document.documentElement.lang;", vec![])
            .await
            .unwrap();
        assert_eq!(lang, json!("en"));
        let (ok, t) = wait_text(&c, "#mode-now", 2.0, |t| t == "Automatic").await;
        assert!(ok, "mode shown: `{t}`");
        // The month so far: its peak against the free level, and the park's budgets (the
        // reference park sets none).
        let (ok, t) = wait_text(&c, "#v-mpeak", 3.0, |t| {
            t.ends_with(" kW") && t.contains(" kW / ")
        })
        .await;
        assert!(ok, "month peak shown: `{t}`");
        let (ok, t) = wait_text(&c, "#v-budget-month", 2.0, |t| t == "not set").await;
        assert!(ok, "monthly budget shown: `{t}`");
        shot(&c, ROOT, "live-en-desktop.png").await;

        // The viewer is refused a control action, and the mode stays.
        set_mode(&c, "safe").await;
        let (ok, t) = wait_text(&c, "#msg", 3.0, |t| t.starts_with("Not allowed")).await;
        assert!(ok, "message after a viewer's mode change: `{t}`");
        // The refusal came back: the EMS's mode is as it was (asked of the server, not waited
        // for on the page), and the page says so.
        // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mode: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/mode", ems.base))
            .bearer_auth(&ems.viewer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(mode["mode"], "automatic", "{mode}");
        assert_eq!(text(&c, "#mode-now").await, "Automatic");

        // An operator logs in and changes the mode; the page shows the new mode from the
        // stream.
        click(&c, "#logout").await;
        let (ok, _) = wait_text(&c, "#login h2", 3.0, |t| t == "Log in").await;
        assert!(ok, "back at the login form");
        log_in(&c, &ems.operator).await;
        let (ok, t) = wait_text(&c, "#who", 5.0, |t| t.contains("operator")).await;
        assert!(ok, "{t}");
        set_mode(&c, "safe").await;
        let (ok, t) = wait_text(&c, "#mode-now", 3.0, |t| t == "Safe").await;
        assert!(ok, "mode after the operator's change: `{t}`");

        // An alarm to acknowledge: the operator does, and it leaves the list.
        pedf_store::Store::open(&ems.store)
            .unwrap()
            .event(ems_origin(), "alarm", "device", "bess-1 (battery) not answering: test")
            .unwrap();
        c.execute("loadAlarms();", vec![]).await.unwrap();
        let (ok, t) = wait_text(&c, "#alarm-log", 5.0, |t| {
            t.contains("bess-1 (battery) not answering: test") && t.contains("Acknowledge")
        })
        .await;
        assert!(ok, "the alarm to acknowledge: `{t}`");
        c.execute(
            "[...document.querySelectorAll('#alarm-log li[data-id]')].find((l) => l.textContent.includes('not answering: test')).querySelector('button').click();",
            vec![],
        )
        .await
        .unwrap();
        let (ok, t) = wait_text(&c, "#alarm-log", 5.0, |t| {
            !t.contains("not answering: test")
        })
        .await;
        assert!(ok, "acknowledged: `{t}`");

        // A request that was over before the EMS started (an import cap of 120 kW from 08:00
        // to 09:00 today, Friday), with the park's records of that hour: 200 kW on its five
        // like days (Friday 20 to Thursday 26 November), 100 kW today.
        {
            use pedf_core::grid_request::{GridRequest, RequestKind};
            let mut st = pedf_store::Store::open(&ems.store).unwrap();
            let eight = ems_origin() - chrono::Duration::hours(2);
            let q = chrono::Duration::minutes(15);
            let mut recs = Vec::new();
            for back in [0i64, 1, 2, 3, 4, 7] {
                let kwh = if back == 0 { 25.0 } else { 50.0 };
                for k in 0..4 {
                    recs.push(pedf_core::records::IntervalRecord {
                        start: eight - chrono::Duration::days(back) + q * k,
                        grid_import_kwh: kwh,
                        load_kwh: kwh,
                        ..Default::default()
                    });
                }
            }
            st.put_records(&recs, "measured").unwrap();
            st.put_grid_request(&pedf_store::TakenGridRequest {
                request: GridRequest {
                    id: "seeded-cap".into(),
                    start: eight,
                    end: eight + chrono::Duration::hours(1),
                    kind: RequestKind::CapImport(120.0),
                    price_cny_per_kwh: Some(3.0),
                    source: "aggregator".into(),
                },
                taken: eight - chrono::Duration::hours(1),
                held_kw: 120.0,
                note: "accepted: import at most 120.0 kW".into(),
                reference_plan: None,
            })
            .unwrap();
        }

        // The operator gives the grid a request from the dashboard (an import cap of 60 kW
        // over the running hour, 10:00 to 11:00 on the EMS's clock): the EMS holds it, the
        // answer is said and the list shows it in force.
        c.execute(
            "document.getElementById('rq-kind').value = 'cap_import';
             document.getElementById('rq-kw').value = '60';
             document.getElementById('rq-from').value = '10:00';
             document.getElementById('rq-to').value = '11:00';
             document.getElementById('rq-price').value = '3';",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#request-form button[type=submit]").await;
        // Waited for past the server's 30 s wait for the EMS's answer: an answer, or its error,
        // is on the page by then.
        let (ok, t) = wait_text(&c, "#msg", 35.0, |t| {
            t.starts_with("dash-2026-11-27-1000-cap_import: accepted")
        })
        .await;
        assert!(ok, "the EMS's answer: `{t}`");
        let (ok, t) = wait_text(&c, "#grid-requests", 5.0, |t| {
            t.contains("dash-2026-11-27-1000-cap_import")
                && t.contains("api: operator")
                && t.contains("import at most 60 kW")
                && t.contains("2026-11-27 10:00 – 11:00")
                && t.contains("in force")
        })
        .await;
        assert!(ok, "the request listed: `{t}`");
        // The one over: its delivery against the baseline, and interval by interval once its
        // row is clicked (the baseline's 200 kW, the 100 kW measured, 80 kW asked off it and
        // delivered).
        let (ok, t) = wait_text(&c, "#grid-requests", 5.0, |t| {
            t.contains("seeded-cap") && t.contains("80.0 / 80.0 kWh (100 %), against the baseline") && t.contains("240.00 CNY")
        })
        .await;
        assert!(ok, "the request over, measured: `{t}`");
        click(&c, "#grid-requests tr[data-id=seeded-cap]").await;
        let (ok, v) = wait_js(
            &c,
            "return [...document.querySelectorAll('#grid-requests tr.intervals[data-for=seeded-cap] tr')].map((r) => [...r.children].map((x) => x.textContent).join('|'));",
            5.0,
            |v| {
                v.as_array().is_some_and(|rows| {
                    rows.len() == 5
                        && rows[1] == json!("08:00|200.0|100.0|80.0|80.0")
                        && rows[4] == json!("08:45|200.0|100.0|80.0|80.0")
                })
            },
        )
        .await;
        assert!(ok, "the intervals under the row: `{v}`");
        c.execute(
            "document.querySelector('#grid-requests tr.intervals').scrollIntoView({block: 'center'});",
            vec![],
        )
        .await
        .unwrap();
        shot(&c, ROOT, "grid-requests-en.png").await;

        // The operator sets what the car on ev-01 needs and when it leaves, from its card.
        click(&c, ".charger[data-id=ev-01]").await;
        c.execute(
            "document.getElementById('session-kwh').value = '20';
             document.getElementById('session-dep').value = '18:00';",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#session-form button").await;
        let (ok, t) = wait_text(&c, "#msg", 5.0, |t| t == "Done: ev-01").await;
        assert!(ok, "the session set: `{t}`");
        let (ok, t) = wait_text(&c, ".charger[data-id=ev-01]", 10.0, |t| {
            t.contains("/ 20.0 kWh") && t.contains("2026-11-27 18:00")
        })
        .await;
        assert!(ok, "the card shows the session: `{t}`");
        // And the share of the car's energy today that came from the park's PV (shown once
        // the running interval has energy of the car's: waited for longer than the card, as
        // a loaded machine once took more than 10 s).
        let (ok, t) = wait_text(&c, ".charger[data-id=ev-01] .green", 30.0, |t| {
            t.starts_with("green share today ") && t.ends_with(" %")
        })
        .await;
        assert!(ok, "the session's green share: `{t}`");

        // The devices page lists every device with its communication quality.
        click(&c, "[data-page=devices]").await;
        let (ok, t) = wait_text(&c, "#devices", 3.0, |t| {
            t.contains("bess-1") && t.contains("ev-01") && t.contains("good")
        })
        .await;
        assert!(ok, "devices table: `{t}`");
        shot(&c, ROOT, "devices-en-desktop.png").await;
        // The operator sees no tokens; an admin creates one (shown once) and revokes it.
        assert!(!visible(&c, "#tokens-card").await);
        click(&c, "#logout").await;
        let (ok, _) = wait_text(&c, "#login h2", 3.0, |t| t == "Log in").await;
        assert!(ok, "back at the login form");
        log_in(&c, &ems.admin).await;
        let (ok, t) = wait_text(&c, "#who", 5.0, |t| t.contains("admin")).await;
        assert!(ok, "{t}");
        click(&c, "[data-page=devices]").await;
        let (ok, t) = wait_text(&c, "#tokens", 5.0, |t| t.contains("wall screen")).await;
        assert!(ok, "the tokens listed: `{t}`");
        c.execute(
            "document.getElementById('token-label').value = 'lobby screen';
             document.getElementById('token-role').value = 'viewer';
             document.getElementById('token-days').value = '30';",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#token-form button").await;
        let (ok, t) = wait_text(&c, "#token-new", 5.0, |t| t.contains("pedf_")).await;
        assert!(ok, "the new token shown once: `{t}`");
        let (ok, t) = wait_text(&c, "#tokens", 5.0, |t| t.contains("lobby screen")).await;
        assert!(ok, "the new token listed: `{t}`");
        c.execute(
            "[...document.querySelectorAll('#tokens tr')].find((r) => r.textContent.includes('lobby screen')).querySelector('button').click();",
            vec![],
        )
        .await
        .unwrap();
        let (ok, t) = wait_js(
            &c,
            "const r = [...document.querySelectorAll('#tokens tr')].find((r) => r.textContent.includes('lobby screen'));
             return r ? r.lastElementChild.textContent : null;",
            5.0,
            |v| *v == json!("revoked"),
        )
        .await;
        assert!(ok, "the token revoked: `{t}`");

        // A certificate for a day not over yet is refused, saying why (the day has a
        // measured interval: 08:00, before the EMS started at 10:00).
        pedf_store::Store::open(&ems.store)
            .unwrap()
            .put_records(
                &[pedf_core::records::IntervalRecord {
                    start: ems_origin() - chrono::Duration::hours(2),
                    pv_kwh: 100.0,
                    load_kwh: 95.0,
                    ..Default::default()
                }],
                "measured",
            )
            .unwrap();
        click(&c, "[data-page=carbon]").await;
        c.execute(
            "document.getElementById('carbon-from').value = '2026-11-27';
             document.getElementById('carbon-to').value = '2026-11-28';",
            vec![],
        )
        .await
        .unwrap();
        click(&c, "#cert-issue").await;
        let (ok, t) = wait_text(&c, "#msg", 10.0, |t| {
            t.contains("a period is certified once it is over")
        })
        .await;
        assert!(ok, "the refusal: `{t}`");
        // The server says it in the page's language: in Chinese on the Chinese page.
        click(&c, "#lang").await;
        click(&c, "#cert-issue").await;
        let (ok, t) = wait_text(&c, "#msg", 10.0, |t| t.contains("期间结束后才能核证")).await;
        assert!(ok, "the refusal in Chinese: `{t}`");
        click(&c, "#lang").await;

        // Phone-sized screen: the live page still shows the flow and values, one column.
        c.set_window_size(390, 844).await.unwrap();
        click(&c, "[data-page=live]").await;
        let width = c
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(width, json!(true), "no horizontal scrolling at phone width");
        assert!(visible(&c, "#v-grid").await);
        // A header of two short rows (it once took 150 px in four), flow values readable.
        let sizes = c
            .execute(
                "return [document.querySelector('header').getBoundingClientRect().height,
                         document.getElementById('v-grid').getBoundingClientRect().height];",
                vec![],
            )
            .await
            .unwrap();
        let (header, value) = (sizes[0].as_f64().unwrap(), sizes[1].as_f64().unwrap());
        assert!(header <= 90.0, "header {header} px high at phone width");
        assert!(value >= 12.0, "flow value {value} px high at phone width");
        shot(&c, ROOT, "live-en-phone.png").await;
    }
    .await;
    let _ = c.close().await;

    ems.stop().await;
}

/// The live page's plan-against-actual chart on the park's clock with the browser in UTC: an
/// intraday plan that starts at 10:30 is drawn from 10:30 and the records from their own
/// times (it once drew the plan from midnight); the hour ticks are the park's; the plan page
/// opens on the day's active plan with its terms named; and when the EMS stops, the page says
/// its data is out of date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_are_on_the_parks_clock_and_stale_data_is_said() {
    use pedf_core::records::IntervalRecord;
    use pedf_store::Store;
    let ems = Ems::start("charts").await;
    let park = pedf_core::config::load_park(
        "park",
        &std::fs::read(format!("{ROOT}/config/qingzhou-pedf.toml")).unwrap(),
    )
    .value
    .unwrap();
    let now = ems_origin();
    let day = park.clock.local(now).date_naive();
    let midnight = park.clock.start_of_local_day(day);
    let quarter = |k: i64| midnight + chrono::Duration::minutes(15 * k);
    {
        let mut st = Store::open(&ems.store).unwrap();
        // Measured 08:00 to 10:00 at 400 kW of import.
        let records: Vec<IntervalRecord> = (32..40)
            .map(|k| IntervalRecord {
                start: quarter(k),
                grid_import_kwh: 100.0,
                load_kwh: 95.0,
                ..Default::default()
            })
            .collect();
        st.put_records(&records, "measured").unwrap();
        // An intraday plan of the EMS's day from 10:30: the reference day's rule-based plan,
        // moved to this day.
        let example = chrono::NaiveDate::from_ymd_opt(2026, 6, 21).unwrap();
        let mut plan = plans::example_rule_plan(&park, ROOT, example);
        let shift = day - example;
        for i in plan.intervals.iter_mut() {
            i.start += shift;
        }
        plan.intervals
            .retain(|i| i.start.with_timezone(&chrono::Utc) >= quarter(42));
        assert_eq!(plan.intervals.len(), 96 - 42);
        let id = st
            .put_plan(
                now,
                &day.to_string(),
                "optimized, intraday",
                &serde_json::to_string(&plan).unwrap(),
            )
            .unwrap();
        st.activate_plan(id).unwrap();
    }
    let profile = ems.dir.join("chromium-profile");
    let (_driver, c) = start_browser(&profile).await;
    async {
        c.goto(&ems.base).await.unwrap();
        log_in(&c, &ems.viewer).await;
        let (ok, _) = wait_text(&c, "#who", 10.0, |t| t.contains("viewer")).await;
        assert!(ok, "logged in");
        // Wait (with a deadline) for both series.
        let (ok, drawn) = wait_js(
            &c,
            r#"const svg = document.getElementById('pva');
               const p = svg.querySelector('path.series.plan'), a = svg.querySelector('path.series.act');
               if (!p || !a) return null;
               const x0 = (e) => Number(e.getAttribute('d').match(/^M([0-9.]+)/)[1]);
               return { ticks: [...svg.querySelectorAll('text.xtick')].map((t) => [t.textContent, Number(t.getAttribute('x'))]),
                        plan: x0(p), actual: x0(a),
                        zone: Intl.DateTimeFormat().resolvedOptions().timeZone };"#,
            15.0,
            |v| !v.is_null(),
        )
        .await;
        assert!(ok, "the chart never drew both series");
        assert_eq!(drawn["zone"], "UTC", "the browser runs in UTC: {drawn}");
        let tick = |label: &str| {
            drawn["ticks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t[0] == label)
                .and_then(|t| t[1].as_f64())
                .unwrap_or_else(|| panic!("no {label} tick: {drawn}"))
        };
        // The park's hours (UTC would put 10:00 local at 02:00).
        let (x9, x12) = (tick("09:00"), tick("12:00"));
        let per_hour = (x12 - x9) / 3.0;
        let plan = drawn["plan"].as_f64().unwrap();
        let actual = drawn["actual"].as_f64().unwrap();
        assert!(
            (plan - (x9 + 1.5 * per_hour)).abs() < 0.5,
            "the plan starts at 10:30: x {plan}, 09:00 at {x9}, 12:00 at {x12}"
        );
        assert!(
            (actual - (x9 - per_hour)).abs() < 0.5,
            "the records start at 08:00: x {actual}, 09:00 at {x9}"
        );
        shot(&c, ROOT, "live-zh-chart.png").await;
        // Today's cost so far and what the active plan expects for the day.
        let (ok, t) = wait_text(&c, "#v-cost", 5.0, |t| t.ends_with(" CNY")).await;
        assert!(ok, "today's cost: `{t}`");
        let (ok, t) = wait_text(&c, "#v-cost-plan", 5.0, |t| t.ends_with(" CNY")).await;
        assert!(ok, "today's cost expected by the plan: `{t}`");
        // The strategy in the page's language (the plan starts at 10:30: none yet).
        let (ok, t) = wait_text(&c, "#v-strategy", 5.0, |t| t == "自发自用（无执行计划）").await;
        assert!(ok, "the strategy in Chinese: `{t}`");

        // A card per charger: its state and its power against the limit in force.
        let (ok, t) = wait_text(&c, ".charger[data-id=ev-01]", 5.0, |t| {
            t.starts_with("ev-01 · ") && t.contains(" kW")
        })
        .await;
        assert!(ok, "the charger's card: `{t}`");

        // The plan page opens on the day's active plan, its terms in the page's language.
        click(&c, "[data-page=plan]").await;
        let (ok, t) = wait_text(&c, "#plan-title", 10.0, |t| t.contains("2026-11-27")).await;
        assert!(ok, "the active plan shown: `{t}`");
        let (ok, t) = wait_text(&c, "#plan-terms", 5.0, |t| t.contains("需量电费 元")).await;
        assert!(ok, "terms named: `{t}`");
        shot(&c, ROOT, "plan-zh-desktop.png").await;

        // The month's bill on the history page: 800 kWh at the flat 0.65 CNY/kWh, and
        // 38 CNY/kW-month on the 400 kW peak; the terms add up to the total.
        click(&c, "[data-page=history]").await;
        let (ok, t) = wait_text(&c, "#history-months tr[data-month='2026-11']", 10.0, |t| {
            t.contains("520.00") && t.contains("15200.00") && t.contains("15720.00")
        })
        .await;
        assert!(ok, "the month's bill: `{t}` ({})", text(&c, "#msg").await);
        let (ok, t) = wait_text(&c, "#history-days", 5.0, |t| t.contains("2026-11-27")).await;
        assert!(ok, "the day's row: `{t}`");
        // This week (2026-11-27 is a Friday): from Monday, and the month's bill is still the
        // month's (its demand charge on the month's peak, not the week's alone).
        click(&c, "[data-range=week]").await;
        let (ok, v) = wait_js(
            &c,
            "return document.getElementById('history-from').value;",
            5.0,
            |v| *v == json!("2026-11-23"),
        )
        .await;
        assert!(ok, "the week's first day: {v}");
        let (ok, t) = wait_text(&c, "#history-months tr[data-month='2026-11']", 10.0, |t| {
            t.contains("15720.00")
        })
        .await;
        assert!(ok, "the month's bill in the week's view: `{t}`");
        shot(&c, ROOT, "history-zh-desktop.png").await;
        // The EMS's events in Chinese.
        click(&c, "[data-page=devices]").await;
        let (ok, t) = wait_text(&c, "#events", 5.0, |t| t.contains("pedf 开始运行：qingzhou-pedf")).await;
        assert!(ok, "the events in Chinese: `{t}`");

        // The EMS stops: within seconds the page says its data is out of date.
        click(&c, "[data-page=live]").await;
    }
    .await;
    ems.stop().await;
    // Its age counts up while the server is gone.
    let (ok, t) = wait_text(&c, "#stale", 20.0, |t| {
        t.starts_with("数据已过时")
            && t.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u64>()
                .is_ok_and(|n| n >= 2)
    })
    .await;
    assert!(ok, "stale data said with its age: `{t}`");
    let stale = c
        .execute("return document.body.classList.contains('stale');", vec![])
        .await
        .unwrap();
    assert_eq!(stale, json!(true));
    shot(&c, ROOT, "live-zh-stale.png").await;
    let _ = c.close().await;
}
