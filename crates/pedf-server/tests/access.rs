//! Who may change what, tried as another web page and as a guesser would: a change made with
//! the login cookie from a page of another origin (even on this host, another port: the
//! cookie goes along) is refused, the dashboard's own page and scripts with a bearer token are
//! not; the bearer scheme is case-insensitive; a peer that keeps failing to log in is made to
//! wait. (A cross-origin form could activate a plan with the operator's cookie; `bearer` was
//! refused; logins could be tried without end.)

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_changes_need_the_dashboards_origin_and_failed_logins_are_limited() {
    let srv = common::Server::new("access");
    let (state, admin, stop_rx) = (srv.state.clone(), srv.admin.clone(), srv.stop_rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let base = format!("http://{host}");
    let server = tokio::spawn(pedf_server::serve(listener, state, stop_rx));
    // reqwest uses rustls with the ring provider the server has (no aws-lc-sys build).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::new();
    let safe = r#"{"mode":"safe"}"#;
    let put_mode = |origin: Option<&str>, auth: (&str, String)| {
        let mut r = c
            .put(format!("{base}/api/v1/mode"))
            .header("Content-Type", "application/json")
            .header(auth.0, auth.1)
            .body(safe);
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send()
    };
    let cookie = ("Cookie", format!("pedf_token={admin}"));

    // Another page on this host (another port) with the cookie: refused, saying why.
    let r = put_mode(Some("http://127.0.0.1:1"), cookie.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("must come from the dashboard itself"),
        "{body}"
    );
    // No Origin at all with the cookie: refused too.
    let r = put_mode(None, cookie.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // The dashboard's own page: taken.
    let own = format!("http://{host}");
    let r = put_mode(Some(&own), cookie.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    // A script with the token in a header, any case of the scheme, any Origin: taken.
    let r = put_mode(
        Some("http://elsewhere.example"),
        ("Authorization", format!("bearer {admin}")),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Reading with the cookie needs no Origin.
    let r = c
        .get(format!("{base}/api/v1/mode"))
        .header(cookie.0, cookie.1.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Every error answer is JSON, axum's own rejections too (a path or query that does not
    // parse, a method the route lacks: they came as text/plain).
    for (method, path) in [
        ("GET", "/api/v1/plans/not-a-number"),
        ("GET", "/api/v1/events?limit=many"),
        ("DELETE", "/api/v1/state"),
    ] {
        let r = c
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }

    // Tokens are listed and revoked; a revoked token's open stream ends, and it is refused.
    let r = c
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body(r#"{"label":"wall screen","role":"viewer"}"#)
        .send()
        .await
        .unwrap();
    let made: serde_json::Value = r.json().await.unwrap();
    let (viewer, viewer_id) = (
        made["token"].as_str().unwrap().to_string(),
        made["id"].as_i64().unwrap(),
    );
    let mut stream = c
        .get(format!("{base}/api/v1/stream"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let first = stream.chunk().await.unwrap().unwrap_or_default();
    assert!(String::from_utf8_lossy(&first).contains("event: state"));
    let list: serde_json::Value = c
        .get(format!("{base}/api/v1/tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == viewer_id)
        .cloned()
        .unwrap();
    assert_eq!(
        (row["label"].as_str(), row["revoked"].as_bool()),
        (Some("wall screen"), Some(false))
    );
    assert!(
        list.to_string().find("pedf_").is_none(),
        "no token itself is listed"
    );
    let r = c
        .delete(format!("{base}/api/v1/tokens/{viewer_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The open stream ends (waited for with a deadline: nothing else would end it).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                _ => return true,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(ended, "the revoked token's stream went on");
    let r = c
        .get(format!("{base}/api/v1/mode"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // An admin token does not revoke itself.
    let admin_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "admin")
        .and_then(|t| t["id"].as_i64())
        .unwrap();
    let r = c
        .delete(format!("{base}/api/v1/tokens/{admin_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);

    // Ten wrong tokens, then this peer waits, even with the right one.
    let login = |token: String| {
        c.post(format!("{base}/api/v1/session"))
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"token":"{token}"}}"#))
            .send()
    };
    for k in 0..10 {
        let r = login(format!("wrong-{k}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = login(admin.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("failed logins from this address"));

    srv.stop_tx.send(true).unwrap();
    let _ = server.await;
}
