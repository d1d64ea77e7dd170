//! The auditor's procedure on a certificate file: whose signature, against which trusted keys;
//! the figures recomputed from the records; the entry in the hash-chained ledger. Each check
//! gives a [`Check`]: what was confirmed, or the problems found; a certificate is verified
//! only when every check asked for confirmed it. The application reads the files and prints.

use serde_json::Value;

use pedf_core::time::{parse_time_zone, IntervalLength, ParkClock};

use super::{
    canonical_text, check_signature_value, compare_with_data, header, key_fingerprint, read_ledger,
    v1_records_match, Certificate, Header, MeterInterval,
};
use crate::merkle::sha256_hex;
use crate::records::IntervalRecord;

/// The outcome of one check: confirmed (with what was confirmed) or the problems found.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The check passed; the sentence says what was confirmed.
    Confirmed(String),
    /// The check failed; one sentence per problem, each naming the member or file at fault.
    Problems(Vec<String>),
}

/// Reads a trust list: the issuer keys (ed25519 public keys, 64 hex digits) an auditor
/// accepts, one per line, `#` comments; a malformed line is an error naming `name:line`.
pub fn parse_trust_list(name: &str, text: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let k = line.split('#').next().unwrap_or("").trim();
        if k.is_empty() {
            continue;
        }
        if k.len() != 64 || !k.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{name}:{}: `{k}` is not an ed25519 public key (64 hex digits)",
                i + 1
            ));
        }
        keys.push(k.to_string());
    }
    Ok(keys)
}

/// A certificate file under verification: its JSON as signed, its header, and (format 2)
/// the certificate read whole.
pub struct Verification {
    name: String,
    value: Value,
    /// Format version, serial and issuer key, as the file states them.
    pub header: Header,
    cert: Option<Certificate>,
}

impl Verification {
    /// Reads a certificate file's text; `name` is how problems name the file.
    pub fn read(name: &str, text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("{name}: not JSON: {e}"))?;
        let header = header(&value).map_err(|e| format!("{name}: not a pedf certificate: {e}"))?;
        // Format 2 is read whole (every member known); format 1 is checked on its JSON as
        // signed.
        let cert = match header.version {
            2 => Some(
                serde_json::from_value(value.clone())
                    .map_err(|e| format!("{name}: not a pedf-certificate/2: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            value,
            header,
            cert,
        })
    }

    /// How the signed bytes are made, for the report.
    pub fn canonical_form(&self) -> &'static str {
        if self.header.version == 1 {
            "pedf's format-1 canonical JSON"
        } else {
            "RFC 8785 canonical JSON"
        }
    }

    /// The signature checked, and its key against the trusted ones. A certificate names its
    /// own key, so without a trusted key anyone can re-sign a changed copy: that is never
    /// confirmed.
    pub fn signature(&self, trusted: &[String]) -> Check {
        let key = &self.header.public_key;
        let fingerprint = key_fingerprint(key);
        match check_signature_value(&self.value) {
            Err(e) => Check::Problems(vec![format!("signature: {e}")]),
            Ok(()) if trusted.is_empty() => Check::Problems(vec![format!(
                "signature: consistent with the key the certificate names ({key}, fingerprint {fingerprint}), but no trusted key was given: anyone can change a copy and re-sign it with their own key; give the issuer's published key with --public-key HEX or --trusted-keys FILE"
            )]),
            Ok(()) if trusted.iter().any(|k| k.eq_ignore_ascii_case(key)) => Check::Confirmed(format!(
                "signature valid, by the trusted key {key} (ed25519, fingerprint {fingerprint})"
            )),
            Ok(()) => Check::Problems(vec![format!(
                "signature: signed by key {key} (fingerprint {fingerprint}), which is not a trusted key ({})",
                trusted.join(", ")
            )]),
        }
    }

    /// The clock the certificate's records are read with: the park's zone and interval as
    /// the certificate states them.
    pub fn clock(&self) -> Result<ParkClock, String> {
        let name = &self.name;
        let park = self.value.get("park").cloned().unwrap_or_default();
        let zone = park.get("time_zone").and_then(Value::as_str).unwrap_or("");
        let tz = parse_time_zone(zone)
            .ok_or_else(|| format!("{name}: park.time_zone `{zone}` is not an IANA zone"))?;
        let minutes = park
            .get("interval_minutes")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let interval = IntervalLength::from_minutes(minutes).ok_or_else(|| {
            format!("{name}: park.interval_minutes {minutes} is not 5, 15, 30 or 60")
        })?;
        Ok(ParkClock::new(tz, interval))
    }

    /// Every figure recomputed from the records (`data` names their file) and compared, and
    /// the billing meter's figures from its intervals where the certificate states them
    /// (`meter_intervals`: `None` when no file was given, a problem for a certificate that
    /// states them); a version-1 certificate has only its records' Merkle root compared.
    pub fn data(
        &self,
        data: &str,
        records: &[IntervalRecord],
        meter_intervals: Option<&[MeterInterval]>,
    ) -> Check {
        let clock = match self.clock() {
            Ok(c) => c,
            Err(e) => return Check::Problems(vec![format!("data: {e}")]),
        };
        match &self.cert {
            Some(cert) => match compare_with_data(cert, records, meter_intervals, clock) {
                Ok(diffs) if diffs.is_empty() => Check::Confirmed(format!(
                    "every figure recomputed from the {} records matches; Merkle root matches{}",
                    cert.records.count,
                    cert.billing_meter.as_ref().map_or(String::new(), |b| format!(
                        "; the billing meter's figures ({}, {} intervals) recomputed from its intervals match",
                        b.meters.join(", "),
                        b.intervals_counted
                    ))
                )),
                Ok(diffs) => {
                    Check::Problems(diffs.into_iter().map(|d| format!("data: {d}")).collect())
                }
                Err(e) => Check::Problems(vec![format!("data: {e}")]),
            },
            None => match v1_records_match(&self.value, records, clock) {
                Ok(true) => Check::Confirmed(
                    "the records' Merkle root matches; the figures of a version-1 certificate (methodology 1.0, avoided emissions on gross PV at the DC bus) are not recomputed by this version".into(),
                ),
                Ok(false) => Check::Problems(vec![format!(
                    "data: records.merkle_root: the records in {data} are not the ones the certificate was issued on"
                )]),
                Err(e) => Check::Problems(vec![format!("data: {e}")]),
            },
        }
    }

    /// The certificate's entry in a ledger (`ledger` names the file, `text` is its content):
    /// present, the hash chain intact, and the entry's hash that of this certificate.
    pub fn ledger(&self, ledger: &str, text: &str) -> Check {
        let serial = &self.header.serial;
        let own = canonical_text(&self.value).map(|c| sha256_hex(c.as_bytes()));
        match read_ledger(text, ledger) {
            Ok(entries) => match entries.iter().find(|e| &e.serial == serial) {
                Some(e) if own.as_deref() == Ok(e.certificate_sha256.as_str()) => {
                    Check::Confirmed(format!(
                        "entry {} of {}, hash chain intact, certificate hash matches",
                        e.seq,
                        entries.len()
                    ))
                }
                Some(e) => Check::Problems(vec![format!(
                    "ledger: entry {} for {serial} records another certificate content (hash differs)",
                    e.seq
                )]),
                None => Check::Problems(vec![format!("ledger: {serial} is not in {ledger}")]),
            },
            Err(e) => Check::Problems(vec![format!("ledger: {e}")]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trust_list_names_the_line_of_a_malformed_key() {
        let good = "ab".repeat(32);
        let text = format!("# issuers\n{good}  # park A\n\nnot-a-key\n");
        assert_eq!(
            parse_trust_list("trust.txt", &text),
            Err("trust.txt:4: `not-a-key` is not an ed25519 public key (64 hex digits)".into())
        );
        assert_eq!(
            parse_trust_list("trust.txt", &format!("{good}\n")),
            Ok(vec![good])
        );
    }

    #[test]
    fn a_file_that_is_not_a_certificate_is_named() {
        let e = Verification::read("x.json", r#"{"serial":"A"}"#)
            .err()
            .unwrap();
        assert!(e.starts_with("x.json: not a pedf certificate"), "{e}");
    }
}
