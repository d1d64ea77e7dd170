//! Every error the API answers is said in the language the request prefers: Chinese for the
//! dashboard's Chinese page (`Accept-Language: zh-CN`), English otherwise. The server's own
//! errors cannot be made without both texts (`ApiError` holds a `Message`); axum's
//! rejections (a path, query or body that does not parse, a method a route lacks) get a
//! Chinese frame around their English words. (Every server error reached the Chinese page in
//! English.)

mod common;

/// A request and the status it is answered with: method, path, token, (content type, body).
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<(&'a str, &'a str)>,
    u16,
);

fn chinese(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_said_in_the_requests_language() {
    let srv = common::Server::new("languages");
    let (state, admin, stop_rx) = (srv.state.clone(), srv.admin.clone(), srv.stop_rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(pedf_server::serve(listener, state, stop_rx));
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::new();

    // A viewer, to be refused an operator's action.
    let made: serde_json::Value = c
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"label": "wall", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let viewer = made["token"].as_str().unwrap().to_string();

    // (method, path, token, body, status): each a different error of the server's or axum's.
    let json = "application/json";
    let cases: Vec<Case> = vec![
        ("GET", "/api/v1/state", None, None, 401),
        ("GET", "/api/v1/state", Some("pedf_not_a_token"), None, 401),
        (
            "PUT",
            "/api/v1/mode",
            Some(&viewer),
            Some((json, r#"{"mode":"safe"}"#)),
            403,
        ),
        (
            "PUT",
            "/api/v1/mode",
            Some(&admin),
            Some((json, r#"{"mode":"turbo"}"#)),
            400,
        ),
        (
            "PUT",
            "/api/v1/mode",
            Some(&admin),
            Some((json, r#"{"mode":"manual"}"#)),
            400,
        ),
        (
            "PUT",
            "/api/v1/mode",
            Some(&admin),
            Some((json, r#"{"mode":"manual","battery_kw":1e9}"#)),
            400,
        ),
        (
            "PUT",
            "/api/v1/mode",
            Some(&admin),
            Some((json, r#"{"mode":"safe","x":1}"#)),
            422,
        ),
        (
            "PUT",
            "/api/v1/mode",
            Some(&admin),
            Some(("text/plain", "safe")),
            415,
        ),
        (
            "GET",
            "/api/v1/carbon?from=2026-06-01",
            Some(&admin),
            None,
            400,
        ),
        (
            "GET",
            "/api/v1/carbon?from=June&to=2026-06-02",
            Some(&admin),
            None,
            400,
        ),
        (
            "GET",
            "/api/v1/carbon?from=2026-06-02&to=2026-06-01",
            Some(&admin),
            None,
            400,
        ),
        (
            "GET",
            "/api/v1/history?from=2026-06-01&to=2026-06-02&format=xls",
            Some(&admin),
            None,
            400,
        ),
        (
            "GET",
            "/api/v1/carbon?from=2026-06-01&to=2026-06-02",
            Some(&admin),
            None,
            503,
        ),
        (
            "GET",
            "/api/v1/records?day=2026-13-01",
            Some(&admin),
            None,
            400,
        ),
        ("GET", "/api/v1/plans/4711", Some(&admin), None, 404),
        ("GET", "/api/v1/plans/not-a-number", Some(&admin), None, 400),
        ("GET", "/api/v1/events?limit=many", Some(&admin), None, 400),
        ("DELETE", "/api/v1/state", Some(&admin), None, 405),
        ("GET", "/api/v1/nowhere", Some(&admin), None, 404),
        ("POST", "/api/v1/events/4711/ack", Some(&admin), None, 404),
        (
            "PUT",
            "/api/v1/chargers/ev-99/session",
            Some(&admin),
            Some((json, r#"{"energy_kwh":20}"#)),
            404,
        ),
        (
            "PUT",
            "/api/v1/chargers/ev-01/session",
            Some(&admin),
            Some((json, r#"{"energy_kwh":-3}"#)),
            400,
        ),
        (
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            Some((json, r#"{"label":"x","role":"king"}"#)),
            400,
        ),
        ("DELETE", "/api/v1/tokens/4711", Some(&admin), None, 404),
        (
            "GET",
            "/api/v1/certificates/QZ-1/exe",
            Some(&admin),
            None,
            400,
        ),
    ];
    for (method, path, token, body, status) in cases {
        let mut said = Vec::new();
        for lang in ["zh-CN,zh;q=0.9", "en-US,en;q=0.9"] {
            let mut r = c
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .header("Accept-Language", lang);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            if let Some((ct, b)) = body {
                r = r.header("Content-Type", ct).body(b.to_string());
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), status, "{method} {path}");
            assert_eq!(
                r.headers()["content-type"],
                "application/json",
                "{method} {path}"
            );
            let v: serde_json::Value = r.json().await.unwrap();
            said.push(v["error"].as_str().unwrap_or_default().to_string());
        }
        let (zh, en) = (&said[0], &said[1]);
        assert!(chinese(zh), "{method} {path} in Chinese: {zh}");
        assert!(
            !en.is_empty() && !chinese(en),
            "{method} {path} in English: {en}"
        );
    }
    // No preference: English, as the API always answered.
    let r = c.get(format!("{base}/api/v1/state")).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no token")),
        "{v}"
    );

    srv.stop_tx.send(true).unwrap();
    server.await.unwrap().unwrap();
}
