//! A server certificate for `localhost` and 127.0.0.1 made by `openssl` (scripts/setup
//! installs it), for the tests of TLS (the dashboard's HTTPS, OCPP security profile 2).

use std::path::Path;
use std::process::Command;

/// Writes `name.crt` and `name.key` (PEM, valid one day) into `dir`.
pub fn self_signed(dir: &Path, name: &str) {
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(dir.join(format!("{name}.crt")))
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            // A server certificate, not a CA (webpki refuses a CA as the end entity).
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .output()
        .expect("openssl (scripts/setup installs it)");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}
