//! The canonical bytes a certificate's signature covers (RFC 8785 for format 2, pedf's own
//! form for format 1), the ed25519 check against the key a certificate names, key
//! fingerprints, and what a certificate of any format says about itself.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;

use super::{Certificate, FORMAT, FORMAT_V1};
use crate::merkle::{hex, merkle_root, unhex};
use crate::records::IntervalRecord;

/// Format 1's canonical JSON: keys sorted at every level (by bytes), no whitespace, numbers as
/// serde_json writes them (`12.0`). Only for checking version-1 certificates.
pub fn canonical_v1(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_v1(&map[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical_v1).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The canonical text of a certificate (any format) as JSON: JCS for format 2, format 1's own
/// rule for format 1.
pub fn canonical_text(cert: &Value) -> Result<String, String> {
    match cert.get("format").and_then(Value::as_str) {
        Some(FORMAT_V1) => Ok(canonical_v1(cert)),
        Some(FORMAT) => crate::jcs::canonicalize(cert),
        Some(other) => Err(format!(
            "format `{other}` is not one this version reads ({FORMAT_V1}, {FORMAT})"
        )),
        None => Err("no `format` member: not a pedf certificate".into()),
    }
}

/// The bytes the signature of a certificate (any format) covers: its canonical text without
/// the `signature` member.
pub fn signed_bytes_of(cert: &Value) -> Result<Vec<u8>, String> {
    let mut v = cert.clone();
    if let Value::Object(m) = &mut v {
        m.remove("signature");
    }
    canonical_text(&v).map(String::into_bytes)
}
/// A key's fingerprint as people compare it: the first 16 bytes of SHA-256 of the 32 key
/// bytes, hex in groups of four.
pub fn key_fingerprint(public_key_hex: &str) -> String {
    let bytes = unhex(public_key_hex).unwrap_or_default();
    let digest = crate::merkle::sha256_hex(&bytes);
    digest.as_bytes()[..32]
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// What a certificate file says about itself before any check: its format version, serial,
/// period and issuer key (read from the JSON of any format).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// 1 (`pedf-certificate/1`) or 2 (`pedf-certificate/2`).
    pub version: u32,
    /// The certificate's serial.
    pub serial: String,
    /// The issuer's ed25519 public key, hex, as the certificate names it.
    pub public_key: String,
}

/// Reads the header of a certificate of any format.
pub fn header(cert: &Value) -> Result<Header, String> {
    let version = match cert.get("format").and_then(Value::as_str) {
        Some(FORMAT_V1) => 1,
        Some(FORMAT) => 2,
        Some(other) => {
            return Err(format!(
                "format `{other}` is not one this version reads ({FORMAT_V1}, {FORMAT})"
            ))
        }
        None => return Err("no `format` member: not a pedf certificate".into()),
    };
    let text = |path: &[&str]| {
        let mut v = cert;
        for p in path {
            v = v.get(*p).ok_or(format!("no `{}` member", path.join(".")))?;
        }
        v.as_str()
            .map(str::to_string)
            .ok_or(format!("`{}` is not a string", path.join(".")))
    };
    Ok(Header {
        version,
        serial: text(&["serial"])?,
        public_key: text(&["issuer", "public_key"])?,
    })
}

/// Checks the signature of a certificate of any format against the key it names (whether that
/// key is trusted is the caller's question).
pub fn check_signature_value(cert: &Value) -> Result<(), String> {
    let h = header(cert)?;
    let key_bytes: [u8; 32] = unhex(&h.public_key)
        .and_then(|b| b.try_into().ok())
        .ok_or("issuer.public_key is not a 32-byte hex key")?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|e| format!("issuer.public_key is not a valid ed25519 key: {e}"))?;
    let sig_hex = cert
        .get("signature")
        .and_then(Value::as_str)
        .ok_or("the certificate is not signed")?;
    let sig_bytes: [u8; 64] = unhex(sig_hex)
        .and_then(|b| b.try_into().ok())
        .ok_or("signature is not 64 bytes of hex")?;
    key.verify(&signed_bytes_of(cert)?, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| "signature does not match: the certificate was changed after it was signed, or signed with another key".to_string())
}

/// Checks a format-2 certificate's signature against the key it names.
pub fn check_signature(cert: &Certificate) -> Result<(), String> {
    check_signature_value(&cert.value())
}
/// The Merkle root of a version-1 certificate's records recomputed (the leaf rule did not
/// change): `Ok(true)` when it matches the certificate's.
pub fn v1_records_match(
    cert: &Value,
    records: &[IntervalRecord],
    clock: pedf_core::time::ParkClock,
) -> Result<bool, String> {
    let period = |k: &str| {
        cert.get("period")
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .ok_or(format!("no period.{k}"))
            .and_then(|t| pedf_core::time::parse_rfc3339(t).map_err(|e| format!("period.{k}: {e}")))
    };
    let (from, to) = (period("from")?, period("to")?);
    let lines: Vec<String> = records
        .iter()
        .filter(|r| r.start >= from && r.start < to)
        .map(|r| r.canonical_line(&clock))
        .collect();
    let root = cert
        .get("records")
        .and_then(|r| r.get("merkle_root"))
        .and_then(Value::as_str)
        .ok_or("no records.merkle_root")?;
    Ok(hex(&merkle_root(&lines)) == root)
}
