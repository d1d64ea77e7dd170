//! Ports for the servers tests start (the EMS, the hub, chromedriver, nats-server, the
//! outside test peers), shared by path by every test that needs one.

/// A free port below the kernel's ephemeral range (32768-60999 on Linux). A port taken from
/// that range (bind port 0, release it) can go to any outgoing connection before the server
/// binds it, the test's own clients or the server's among them, and the server then cannot
/// bind: a clean-clone CI run once met "connection refused" from a demo that had stopped so.
/// Ports count up from a start that depends on the process, each checked by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 1000) as u16 * 10;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 2000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
