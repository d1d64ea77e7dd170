//! API tokens with roles. A token is `pedf_` + 64 hex digits of OS randomness; the store keeps
//! only its SHA-256 hash, so a copied database gives no access. Roles are ordered: a viewer
//! reads, an operator also acts on the park (mode, plans, certificates), an admin also manages
//! tokens.

use chrono::{DateTime, Utc};
use pedf_store::{Store, StoreError};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads the dashboard and the API.
    Viewer,
    /// Also changes the mode, plans and acknowledges alarms.
    Operator,
    /// Also manages tokens.
    Admin,
}

impl Role {
    /// The role's name in tokens and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named `s` (viewer, operator, admin), if any.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token.
pub fn new_token() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for a new token: {e}"))?;
    Ok(format!(
        "pedf_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// Creates a token with a role at `now` (the EMS's time); returns it (the only time it is
/// seen) and its id.
pub fn create_token(
    store: &mut Store,
    label: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<(String, i64), String> {
    create_expiring_token(store, label, role, now, None)
}

/// As [`create_token`], refused from `expires` on (never: `None`).
pub fn create_expiring_token(
    store: &mut Store,
    label: &str,
    role: Role,
    now: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
) -> Result<(String, i64), String> {
    let token = new_token()?;
    let id = store
        .add_token(now, label, role.name(), &hash_token(&token), expires)
        .map_err(|e| e.to_string())?;
    Ok((token, id))
}

/// On first start (no admin token yet) creates one and returns it to be printed once.
pub fn ensure_admin_token(store: &mut Store, now: DateTime<Utc>) -> Result<Option<String>, String> {
    if !store
        .tokens_with_role(Role::Admin.name())
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok(None);
    }
    create_token(store, "admin (created on first start)", Role::Admin, now).map(|(t, _)| Some(t))
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's row id.
    pub token_id: i64,
    /// The label given when the token was made.
    pub label: String,
    /// What the token may do.
    pub role: Role,
}

impl Caller {
    /// How the audit log names the caller.
    pub fn who(&self) -> String {
        format!("{} #{} ({})", self.role.name(), self.token_id, self.label)
    }
}

/// Looks a presented token up at `now` (the EMS's time): `None` when it is unknown, revoked or
/// expired.
pub fn lookup(
    store: &Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Caller>, StoreError> {
    // Cheap shape check first: anything else is not one of ours.
    if !(token.starts_with("pedf_") && token.len() == 69) {
        return Ok(None);
    }
    Ok(store.token_by_hash(&hash_token(token), now)?.and_then(|t| {
        Some(Caller {
            token_id: t.id,
            label: t.label,
            role: Role::parse(&t.role)?,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_found_by_hash() {
        let dir = std::env::temp_dir().join(format!("pedf-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut st = Store::open(&dir.join("s.sqlite")).unwrap();
        let at = chrono::DateTime::from_timestamp(1_782_000_000, 0).unwrap();
        let first = ensure_admin_token(&mut st, at)
            .unwrap()
            .expect("first start");
        assert!(
            ensure_admin_token(&mut st, at).unwrap().is_none(),
            "only once"
        );
        let c = lookup(&st, &first, at).unwrap().unwrap();
        assert_eq!(c.role, Role::Admin);
        let (viewer, id) = create_token(&mut st, "wall screen", Role::Viewer, at).unwrap();
        assert_eq!(
            lookup(&st, &viewer, at).unwrap().unwrap().role,
            Role::Viewer
        );
        // The plain token is nowhere in the file.
        drop(st);
        let bytes = std::fs::read(dir.join("s.sqlite")).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&first) && !text.contains(&viewer));
        let mut st = Store::open(&dir.join("s.sqlite")).unwrap();
        // A changed character, a wrong shape, a revoked token: no access.
        let mut wrong = viewer.clone();
        wrong.replace_range(10..11, if &viewer[10..11] == "a" { "b" } else { "a" });
        assert!(lookup(&st, &wrong, at).unwrap().is_none());
        assert!(lookup(&st, "admin", at).unwrap().is_none());
        assert!(st.revoke_token(id).unwrap());
        assert!(lookup(&st, &viewer, at).unwrap().is_none());
        // A token that expires: accepted until the instant it expires (on the EMS's clock).
        let until = at + chrono::Duration::days(30);
        let (temp, _) =
            create_expiring_token(&mut st, "contractor", Role::Operator, at, Some(until)).unwrap();
        assert!(lookup(&st, &temp, until - chrono::Duration::seconds(1))
            .unwrap()
            .is_some());
        assert!(lookup(&st, &temp, until).unwrap().is_none());
        let listed = st.all_tokens().unwrap();
        assert_eq!(listed.last().unwrap().expires, Some(until));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
