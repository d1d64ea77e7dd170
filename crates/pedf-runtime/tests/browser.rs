//! The dashboard in headless Chromium (Debian `chromium` + `chromium-driver`, installed by
//! scripts/setup), driven over WebDriver with fantoccini, against a running EMS on the
//! simulated park: the page loads, a viewer logs in, live values follow a measurement, the
//! language switches, a viewer is refused a control action, an operator changes the mode.
//! Screenshots (desktop and phone width) go to target/browser-shots/.

#[path = "support/chromium.rs"]
mod chromium;
mod common;

use std::time::Instant;

use chromium::{click, log_in, shot, start_browser, text, visible, wait_text};
use common::{Ems, ROOT};
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

        // The devices page lists every device with its communication quality.
        click(&c, "[data-page=devices]").await;
        let (ok, t) = wait_text(&c, "#devices", 3.0, |t| {
            t.contains("bess-1") && t.contains("ev-01") && t.contains("good")
        })
        .await;
        assert!(ok, "devices table: `{t}`");
        shot(&c, ROOT, "devices-en-desktop.png").await;

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
        shot(&c, ROOT, "live-en-phone.png").await;
    }
    .await;
    let _ = c.close().await;

    ems.stop().await;
}
