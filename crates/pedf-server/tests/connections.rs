//! Sockets that send nothing, or half a request, do not hold the server: each is closed after
//! the header timeout, and past its most connections the server closes new ones at once, so
//! the API answers again as soon as the idle ones are gone. (Idle and half-sent requests were
//! never closed: 260 idle sockets exhausted a 1024-descriptor service.)

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use pedf_server::ServeOptions;

/// An HTTP GET on a fresh connection; the status line, or `None` when the server closed it.
fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: pedf\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_sockets_are_closed_and_the_api_answers() {
    let srv = common::Server::new("conns");
    let (state, admin, stop_rx) = (srv.state.clone(), srv.admin.clone(), srv.stop_rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServeOptions {
        max_connections: 20,
        max_per_peer: 100,
        header_timeout: Duration::from_secs(1),
    };
    let server = tokio::spawn(pedf_server::serve_with(
        listener, state, None, options, stop_rx,
    ));

    let sockets = tokio::task::spawn_blocking(move || {
        // 30 idle sockets (10 over the limit) and 5 that send half a request.
        let mut open: Vec<std::net::TcpStream> = (0..30)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for _ in 0..5 {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /api/v1/state HTTP/1.1\r\nHost: pedf\r\n")
                .unwrap();
            open.push(s);
        }
        // Every one is closed by the server (end of stream) within a deadline far beyond
        // the 1 s header timeout.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut closed = 0;
        for mut s in open {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 512];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        closed += 1;
                        break;
                    }
                    // A 408 or another answer to the half-sent request: read on to the end.
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        closed += 1;
                        break;
                    }
                    Err(_) => assert!(Instant::now() < deadline, "a socket was never closed"),
                }
            }
        }
        // The API answers once they are gone, and /metrics counts the ones refused.
        let status = get(addr, "/api/v1/openapi.json");
        let metrics = {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: pedf\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        };
        (closed, status, metrics)
    })
    .await
    .unwrap();
    let (closed, status, metrics) = sockets;
    assert_eq!(closed, 35);
    assert_eq!(status.as_deref(), Some("HTTP/1.1 200 OK"));
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pedf_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refused counter in: {metrics}"));
    assert!(refused >= 1, "{metrics}");
    srv.stop_tx.send(true).unwrap();
    let _ = server.await;
}

/// A thousand idle sockets from one host do not stop the API for another: that host gets its
/// share (64) and the rest of its sockets are closed at once; an operator's request from
/// another address is answered while they are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sockets_from_one_host_leave_the_api_to_the_others() {
    let srv = common::Server::new("conns-1000");
    let (state, stop_rx) = (srv.state.clone(), srv.stop_rx.clone());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Idle sockets stay open for the test's length.
    let options = ServeOptions {
        header_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let server = tokio::spawn(pedf_server::serve_with(
        listener, state, None, options, stop_rx,
    ));
    let idle = tokio::task::spawn_blocking(move || {
        (0..1000)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    // An operator elsewhere: another loopback address stands for another host.
    let answered = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = sock
            .connect(format!("127.0.0.1:{port}").parse().unwrap())
            .await
            .unwrap();
        s.write_all(
            b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: pedf\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut text = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text)).await;
        text.lines().next().map(str::to_string)
    };
    drop(idle);
    assert_eq!(answered.as_deref(), Some("HTTP/1.1 200 OK"));
    srv.stop_tx.send(true).unwrap();
    let _ = server.await;
}
