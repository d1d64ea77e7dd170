//! Headless Chromium over WebDriver (fantoccini), shared by the dashboard's browser test and
//! the demo's (tests/demo_browser.rs includes this file by path). Needs Debian `chromium` and
//! `chromium-driver`, which scripts/setup installs.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// chromedriver, killed when dropped.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "ports.rs"]
mod ports;
pub use ports::free_port;

pub async fn start_browser(profile: &std::path::Path) -> (Driver, Client) {
    let port = free_port();
    // Without --allowed-ips chromedriver listens on loopback only.
    // The browser in UTC: the dashboard must show the park's zone, not the viewer's.
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver; scripts/setup installs it)");
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    // chromedriver listens on loopback: plain HTTP.
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("a Chromium session through chromedriver");
    (driver, client)
}

pub async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits up to `secs` for the element's text to satisfy `f`; returns the last text seen.
pub async fn wait_text(
    c: &Client,
    css: &str,
    secs: f64,
    f: impl Fn(&str) -> bool,
) -> (bool, String) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let t = text(c, css).await;
        if f(&t) {
            return (true, t);
        }
        if Instant::now() > until {
            return (false, t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `secs` for a script's value to satisfy `f` (the same deadline wait as
/// [`wait_text`]); returns the last value seen.
pub async fn wait_js(
    c: &Client,
    script: &str,
    secs: f64,
    f: impl Fn(&serde_json::Value) -> bool,
) -> (bool, serde_json::Value) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        if f(&v) {
            return (true, v);
        }
        if Instant::now() > until {
            return (false, v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn visible(c: &Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Clicks the element `css` selects.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn log_in(c: &Client, token: &str) {
    let input = c.find(Locator::Css("#login-token")).await.unwrap();
    input.send_keys(token).await.unwrap();
    click(c, "#login-btn").await;
}

/// Saves a screenshot into `root`/target/browser-shots/.
pub async fn shot(c: &Client, root: &str, name: &str) {
    let dir = std::path::Path::new(root).join("target/browser-shots");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = c.screenshot().await {
        let _ = std::fs::write(dir.join(name), png);
    }
}
