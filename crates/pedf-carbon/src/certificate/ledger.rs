//! The hash-chained ledger of issued certificates (JSON lines, each entry hashing the one
//! before), held under the file's lock for an issue; the issuer key file; atomic writes.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Certificate;
use crate::merkle::{hex, sha256_hex, unhex};

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    /// Position in the ledger, from 1.
    pub seq: u64,
    /// The certificate's serial.
    pub serial: String,
    /// The park id.
    pub park: String,
    /// The period's start, RFC 3339.
    pub from: String,
    /// The period's end (exclusive), RFC 3339.
    pub to: String,
    /// SHA-256 of the certificate's canonical JSON (signature included).
    pub certificate_sha256: String,
    /// `hash` of the entry before (64 zeros for the first).
    pub prev: String,
    /// SHA-256 of this entry's canonical JSON without `hash`.
    pub hash: String,
}

impl LedgerEntry {
    fn compute_hash(&self) -> String {
        let mut v = serde_json::to_value(self).expect("an entry serialises");
        if let Value::Object(m) = &mut v {
            m.remove("hash");
        }
        sha256_hex(
            crate::jcs::canonicalize(&v)
                .expect("a ledger entry has no number but integers")
                .as_bytes(),
        )
    }
}

/// Reads and checks a ledger (JSON lines): sequence numbers, the hash chain, each entry's hash.
pub fn read_ledger(text: &str, name: &str) -> Result<Vec<LedgerEntry>, String> {
    let mut out: Vec<LedgerEntry> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e: LedgerEntry = serde_json::from_str(line)
            .map_err(|err| format!("{name}:{}: not a ledger entry: {err}", i + 1))?;
        let prev = out.last().map_or("0".repeat(64), |p| p.hash.clone());
        if e.seq != out.len() as u64 + 1 {
            return Err(format!(
                "{name}:{}: entry {} where {} was expected: entries were removed or reordered",
                i + 1,
                e.seq,
                out.len() + 1
            ));
        }
        if e.prev != prev {
            return Err(format!("{name}:{}: entry {} does not follow the entry before it (prev hash differs): the ledger was changed", i + 1, e.seq));
        }
        if e.compute_hash() != e.hash {
            return Err(format!(
                "{name}:{}: entry {} ({}) was changed after it was written",
                i + 1,
                e.seq,
                e.serial
            ));
        }
        out.push(e);
    }
    Ok(out)
}

/// The next entry for a certificate.
pub fn next_entry(ledger: &[LedgerEntry], cert: &Certificate) -> LedgerEntry {
    let mut e = LedgerEntry {
        seq: ledger.len() as u64 + 1,
        serial: cert.serial.clone(),
        park: cert.park.id.clone(),
        from: cert.period.from.clone(),
        to: cert.period.to.clone(),
        certificate_sha256: sha256_hex(cert.canonical_json().as_bytes()),
        prev: ledger.last().map_or("0".repeat(64), |p| p.hash.clone()),
        hash: String::new(),
    };
    e.hash = e.compute_hash();
    e
}

/// An issued certificate of the same park whose period overlaps `[from, to)`.
pub fn overlapping<'l>(
    ledger: &'l [LedgerEntry],
    park: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<&'l LedgerEntry> {
    ledger.iter().find(|e| {
        let (Ok(a), Ok(b)) = (
            pedf_core::time::parse_rfc3339(&e.from),
            pedf_core::time::parse_rfc3339(&e.to),
        ) else {
            return false;
        };
        e.park == park && a < to && from < b
    })
}

/// Loads the issuer key, or makes one (mode 0600) when the file does not exist.
pub fn load_or_create_key(path: &Path) -> Result<(SigningKey, bool), String> {
    let name = path.display();
    if path.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("{name}: {e}"))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{name}: the key file is readable by others (mode {mode:o}); chmod 600 it"
                ));
            }
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
        let bytes: [u8; 32] = unhex(text.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or(format!("{name}: not a 32-byte hex ed25519 secret key"))?;
        return Ok((SigningKey::from_bytes(&bytes), false));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness for a new key: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{name}: cannot create: {e}"))?;
    f.write_all(hex(&secret).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{name}: {e}"))?;
    Ok((SigningKey::from_bytes(&secret), true))
}

/// Writes a file so that it either appears whole under its name or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The ledger held for one issue: an exclusive lock on the ledger file from reading it to
/// appending the new entry, so two issues at once (two processes, or the API and the command
/// line) cannot both read the same ledger and certify one period twice. The operating system
/// releases the lock when the holder ends, also when it crashes.
pub struct LockedLedger {
    file: std::fs::File,
    name: String,
    /// The entries, read under the lock.
    pub entries: Vec<LedgerEntry>,
    /// Bytes of a torn last line cut off at opening (an append that never committed).
    pub repaired: Option<usize>,
}

impl LockedLedger {
    /// Opens (creating it empty if need be), locks (waiting for another holder) and reads the
    /// ledger at `path`.
    pub fn open(path: &Path) -> Result<LockedLedger, String> {
        Self::open_with(path, true)
    }

    /// As [`LockedLedger::open`], but gives up at once when another issue holds the ledger.
    pub fn try_open(path: &Path) -> Result<LockedLedger, String> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, wait: bool) -> Result<LockedLedger, String> {
        use std::io::{Read, Seek, Write};
        let name = path.display().to_string();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("{name}: cannot open the ledger: {e}"))?;
        if wait {
            file.lock()
                .map_err(|e| format!("{name}: cannot lock the ledger: {e}"))?;
        } else {
            file.try_lock().map_err(|e| match e {
                std::fs::TryLockError::WouldBlock => {
                    format!("{name}: another issue holds the ledger; try again")
                }
                std::fs::TryLockError::Error(e) => format!("{name}: cannot lock the ledger: {e}"),
            })?;
        }
        let mut text = String::new();
        file.rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .map_err(|e| format!("{name}: cannot read the ledger: {e}"))?;
        // An append is committed when its whole line is written and synced. A last line
        // without its newline is an append a crash or a full disk cut: cut off when it is not
        // a whole entry (it committed nothing), ended when it is.
        let mut repaired = None;
        if !text.is_empty() && !text.ends_with('\n') {
            let keep = text.rfind('\n').map_or(0, |i| i + 1);
            let whole = read_ledger(&text, &name).is_ok();
            let fix = if whole {
                file.write_all(b"\n").and_then(|()| file.sync_all())
            } else {
                file.set_len(keep as u64).and_then(|()| file.sync_all())
            };
            fix.map_err(|e| format!("{name}: cannot repair the ledger's torn last line: {e}"))?;
            if whole {
                text.push('\n');
            } else {
                repaired = Some(text[keep..].len());
                text.truncate(keep);
            }
        }
        let entries = read_ledger(&text, &name)?;
        Ok(LockedLedger {
            file,
            name,
            entries,
            repaired,
        })
    }

    /// Appends the entry of `cert` (synced) and returns it; the lock is kept until `self` is
    /// dropped.
    pub fn append(&mut self, cert: &Certificate) -> Result<LedgerEntry, String> {
        use std::io::Write;
        let entry = next_entry(&self.entries, cert);
        let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        let before = self
            .file
            .metadata()
            .map_err(|e| format!("{}: cannot append to the ledger: {e}", self.name))?
            .len();
        if let Err(e) = self
            .file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.file.sync_all())
        {
            // Whatever part of the line was written is taken back (a full disk): the ledger
            // stays as it was; were that to fail too, the next open cuts the torn line.
            let _ = self
                .file
                .set_len(before)
                .and_then(|()| self.file.sync_all());
            return Err(format!("{}: cannot append to the ledger: {e}", self.name));
        }
        self.entries.push(entry.clone());
        Ok(entry)
    }
}

/// Appends one line and syncs it.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_all()
}
