//! `pedf token list|create|revoke`: the EMS's API tokens in the store its run file names;
//! `pedf fleet token list|create|revoke`: the fleet hub's, in the store its hub file names.

use std::path::Path;

use pedf_server::auth::{create_expiring_token, Role};
use pedf_store::Store;

use crate::UserError;

fn store_of(config: &Path) -> Result<Store, UserError> {
    let cfg = pedf_runtime::run::RunConfig::load(config).map_err(UserError)?;
    Store::open(&cfg.store).map_err(|e| UserError(e.to_string()))
}

pub fn list(config: &Path) -> Result<(), UserError> {
    let store = store_of(config)?;
    let rows = store.all_tokens().map_err(|e| UserError(e.to_string()))?;
    let now = chrono::Utc::now();
    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    println!(
        "{:>4}  {:<8}  {:<20}  {:<20}  {:<8}  label",
        "id", "role", "made", "expires", "state"
    );
    for t in rows {
        let state = match (t.revoked, t.expires) {
            (true, _) => "revoked",
            (false, Some(e)) if e <= now => "expired",
            _ => "active",
        };
        println!(
            "{:>4}  {:<8}  {:<20}  {:<20}  {:<8}  {}",
            t.id,
            t.role,
            when(t.created),
            t.expires.map_or("never".to_string(), when),
            state,
            t.label
        );
    }
    Ok(())
}

pub fn create(
    config: &Path,
    role: &str,
    label: &str,
    expires_days: Option<u32>,
) -> Result<(), UserError> {
    let role = Role::parse(role)
        .ok_or_else(|| UserError(format!("--role `{role}`: give viewer, operator or admin")))?;
    let label = label.trim();
    if label.is_empty() || label.len() > 100 {
        return Err(UserError(
            "--label: give a name of 1 to 100 characters".into(),
        ));
    }
    if expires_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(UserError(
            "--expires-days: give 1 to 3650 days (or leave it out: never)".into(),
        ));
    }
    let mut store = store_of(config)?;
    let now = chrono::Utc::now();
    let expires = expires_days.map(|d| now + chrono::Duration::days(i64::from(d)));
    let (token, id) =
        create_expiring_token(&mut store, label, role, now, expires).map_err(UserError)?;
    let _ = store.event(
        now,
        "info",
        "auth",
        &format!(
            "token #{id} ({}) for {label} created on the command line",
            role.name()
        ),
    );
    eprintln!(
        "token #{id} ({}, {label}{}); shown once, keep it safe:",
        role.name(),
        expires.map_or(String::new(), |e| format!(", expires {e}"))
    );
    println!("{token}");
    Ok(())
}

pub fn revoke(config: &Path, id: i64) -> Result<(), UserError> {
    let mut store = store_of(config)?;
    if !store
        .revoke_token(id)
        .map_err(|e| UserError(e.to_string()))?
    {
        return Err(UserError(format!(
            "no token #{id} that is not revoked already (`pedf token list` shows them)"
        )));
    }
    let _ = store.event(
        chrono::Utc::now(),
        "info",
        "auth",
        &format!("token #{id} revoked on the command line"),
    );
    println!("token #{id} revoked");
    Ok(())
}

fn hub_store_of(config: &Path) -> Result<pedf_store::fleet::FleetStore, UserError> {
    let cfg = pedf_runtime::fleet::hub::HubConfig::load(config).map_err(UserError)?;
    pedf_store::fleet::FleetStore::open(&cfg.store).map_err(|e| UserError(e.to_string()))
}

pub fn hub_list(config: &Path) -> Result<(), UserError> {
    let rows = hub_store_of(config)?
        .all_tokens()
        .map_err(|e| UserError(e.to_string()))?;
    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    println!(
        "{:>4}  {:<8}  {:<20}  {:<20}  label",
        "id", "role", "made", "revoked"
    );
    for t in rows {
        println!(
            "{:>4}  {:<8}  {:<20}  {:<20}  {}",
            t.id,
            t.role,
            when(t.created),
            t.revoked.map_or("-".to_string(), when),
            t.label
        );
    }
    Ok(())
}

pub fn hub_create(config: &Path, role: &str, label: &str) -> Result<(), UserError> {
    let (role, label) = pedf_runtime::fleet::hub::token_wanted(role, label)
        .map_err(|e| UserError(format!("--{e}")))?;
    let mut store = hub_store_of(config)?;
    let (token, id) =
        pedf_runtime::fleet::hub::make_token(&mut store, label, role, chrono::Utc::now())
            .map_err(UserError)?;
    eprintln!(
        "the hub's token #{id} ({}, {label}); shown once, keep it safe:",
        role.name()
    );
    println!("{token}");
    Ok(())
}

pub fn hub_revoke(config: &Path, id: i64) -> Result<(), UserError> {
    let mut store = hub_store_of(config)?;
    if !store
        .revoke_token(id, chrono::Utc::now())
        .map_err(|e| UserError(e.to_string()))?
    {
        return Err(UserError(format!(
            "no token #{id} that is not revoked already (`pedf fleet token list` shows them)"
        )));
    }
    println!("the hub's token #{id} revoked");
    Ok(())
}
