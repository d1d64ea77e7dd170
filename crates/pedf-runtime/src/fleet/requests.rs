//! Grid requests to the fleet (issue 24): the grid asks the fleet to take `kw` off its import
//! over a window; the hub splits it over the parks by the flexibility each park's plan offers
//! there and sends each park its part by request/reply on `pedf.<park>.requests`; each park's
//! EMS answers through the same verdict as a request given on its own API (it holds the part
//! in full, in part, or refuses it, saying why); each park measures what it delivered once
//! the window is over and sends that into the stream (`pedf.<park>.deliveries`).
//!
//! Only `reduce_import` is split over the fleet: it is what the parks' offered flexibility
//! down (`down_kw`: more from the batteries, flexible loads later) measures. A request to
//! raise the import (the flexibility up) has no kind of grid request in a park yet.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pedf_core::grid_request::{GridRequest, RequestKind};
use serde::{Deserialize, Serialize};

/// How long a park waits for its EMS's answer (taken at its next cycle; checked by a re-plan
/// where the run file has one).
pub const ANSWER_WAIT: Duration = Duration::from_secs(40);

/// A park's part of a fleet request, as the hub sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkRequest {
    /// The fleet request's id: the park's grid request has it.
    pub id: String,
    /// The kind of grid request (`reduce_import`).
    pub kind: String,
    /// The park's part, kW.
    pub kw: f64,
    /// The window, RFC 3339 (on the park's intervals).
    pub start: String,
    /// Its end.
    pub end: String,
    /// What a delivered kWh is paid, CNY/kWh.
    #[serde(default)]
    pub price_cny_per_kwh: Option<f64>,
}

/// A park's answer to its part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkAnswer {
    /// The fleet request's id.
    pub id: String,
    /// `accepted` (all of the part), `part` (some of it), `refused`.
    pub status: String,
    /// What the park's EMS holds of it, kW.
    pub held_kw: f64,
    /// What the EMS said (or why it refused).
    pub note: String,
}

impl ParkAnswer {
    fn refused(id: &str, why: String) -> ParkAnswer {
        ParkAnswer {
            id: id.to_string(),
            status: "refused".into(),
            held_kw: 0.0,
            note: why,
        }
    }
}

/// The grid request a park's part is, on the park's clock: every mistake said.
pub fn park_request(
    r: &ParkRequest,
    clock: &pedf_core::time::ParkClock,
) -> Result<GridRequest, String> {
    if !pedf_core::grid_request::id_ok(&r.id) {
        return Err(format!(
            "id `{}`: give 1 to 64 letters, digits, `-`, `_` or `.`",
            r.id.chars().take(80).collect::<String>()
        ));
    }
    let kind = RequestKind::of(&r.kind, r.kw)?;
    let time = |what: &str, t: &str| {
        pedf_core::time::parse_rfc3339(t)
            .map_err(|_| format!("{what}: `{t}` is not an RFC 3339 time"))
    };
    let g = GridRequest {
        id: r.id.clone(),
        start: time("start", &r.start)?,
        end: time("end", &r.end)?,
        kind,
        price_cny_per_kwh: r.price_cny_per_kwh,
        source: "fleet hub".into(),
    };
    g.check(clock)?;
    Ok(g)
}

/// The park's answer to a part sent to it (`body`): given to its EMS (`ems`, the channel its
/// API gives requests on; none: the park takes none), whose verdict it is.
pub async fn answer(
    body: &[u8],
    clock: &pedf_core::time::ParkClock,
    ems: Option<&pedf_server::GridRequests>,
) -> ParkAnswer {
    let r: ParkRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return ParkAnswer::refused("", format!("not a fleet grid request: {e}")),
    };
    let g = match park_request(&r, clock) {
        Ok(g) => g,
        Err(e) => return ParkAnswer::refused(&r.id, e),
    };
    let Some(tx) = ems else {
        return ParkAnswer::refused(&r.id, "this park's EMS takes no grid requests".into());
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    if tx.try_send((g, reply)).is_err() {
        return ParkAnswer::refused(
            &r.id,
            "the park's EMS is not taking grid requests now".into(),
        );
    }
    match tokio::time::timeout(ANSWER_WAIT, rx).await {
        Ok(Ok(Ok((held, note)))) => ParkAnswer {
            id: r.id,
            status: if held >= r.kw - 1e-6 {
                "accepted"
            } else {
                "part"
            }
            .into(),
            held_kw: held,
            note,
        },
        Ok(Ok(Err(why))) => ParkAnswer::refused(&r.id, why),
        _ => ParkAnswer::refused(
            &r.id,
            format!(
                "the park's EMS gave no answer within {} s",
                ANSWER_WAIT.as_secs()
            ),
        ),
    }
}

/// What a park offers a window: the least `down_kw` its plan's flexibility (JSON list of
/// `{start, down_kw, up_kw}`) has over the window's intervals, when the plan covers the
/// window (its intervals from `start`, none missing, to `end`); none otherwise.
pub fn offered_down(flexibility: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Option<f64> {
    let list: Vec<pedf_core::flexibility::IntervalFlexibility> =
        serde_json::from_str(flexibility).ok()?;
    let mut at = start;
    let mut least = f64::INFINITY;
    let mut step = None;
    for (k, x) in list.iter().enumerate() {
        let s = x.start.with_timezone(&Utc);
        if s < start || s >= end {
            continue;
        }
        if s != at {
            return None;
        }
        let next = list
            .get(k + 1)
            .map(|n| n.start.with_timezone(&Utc))
            .or(step.map(|d| s + d))?;
        step = Some(next - s);
        least = least.min(x.down_kw);
        at = next;
    }
    (at >= end && least.is_finite()).then_some(least.max(0.0))
}

/// The fleet request's `kw` split over the parks offering (`offers`, park and kW): each part
/// in proportion to the park's offer, none above it; all of each offer where they are short
/// of it. Parts are rounded down to 0.1 kW; parks left with less than 0.1 kW get none.
pub fn split(kw: f64, offers: &[(String, f64)]) -> Vec<(String, f64)> {
    let total: f64 = offers.iter().map(|o| o.1.max(0.0)).sum();
    if total <= 0.0 || kw <= 0.0 {
        return Vec::new();
    }
    let share = (kw / total).min(1.0);
    offers
        .iter()
        .map(|(p, o)| (p.clone(), (o.max(0.0) * share * 10.0 + 1e-9).floor() / 10.0))
        .filter(|(_, k)| *k >= 0.1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_split_by_the_parks_offers_none_above_its_own() {
        let offers = vec![
            ("a".to_string(), 300.0),
            ("b".to_string(), 100.0),
            ("c".to_string(), 0.04),
        ];
        // 200 of 400.04 offered: half of each (c's half is under 0.1 kW: none).
        assert_eq!(
            split(200.0, &offers),
            vec![("a".to_string(), 149.9), ("b".to_string(), 49.9)]
        );
        // More than offered: every offer in full.
        assert_eq!(
            split(1000.0, &offers[..2]),
            vec![("a".to_string(), 300.0), ("b".to_string(), 100.0)]
        );
        assert!(split(10.0, &[]).is_empty());
    }

    #[test]
    fn a_park_offers_its_least_down_over_a_window_its_plan_covers() {
        let iv = |t: &str, down: f64| serde_json::json!({ "start": format!("2026-06-22T{t}:00+08:00"), "down_kw": down, "up_kw": 0.0 });
        let f = serde_json::json!([
            iv("09:00", 100.0),
            iv("09:15", 80.0),
            iv("09:30", 90.0),
            iv("09:45", 120.0)
        ])
        .to_string();
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(&format!("2026-06-22T{s}:00+08:00"))
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(offered_down(&f, t("09:00"), t("09:30")), Some(80.0));
        assert_eq!(offered_down(&f, t("09:30"), t("10:00")), Some(90.0));
        // Beyond the plan, or not on its intervals: nothing offered.
        assert_eq!(offered_down(&f, t("09:30"), t("10:15")), None);
        assert_eq!(offered_down(&f, t("09:05"), t("09:35")), None);
        assert_eq!(offered_down("not json", t("09:00"), t("09:30")), None);
    }

    #[tokio::test]
    async fn a_part_goes_to_the_parks_ems_and_its_verdict_is_the_answer() {
        let clock = pedf_core::time::ParkClock::new(
            chrono_tz::Asia::Shanghai,
            pedf_core::time::IntervalLength::from_minutes(15).unwrap(),
        );
        let part = |kw: f64, start: &str| {
            serde_json::to_vec(&ParkRequest {
                id: "F-1".into(),
                kind: "reduce_import".into(),
                kw,
                start: format!("2026-06-22T{start}:00+08:00"),
                end: "2026-06-22T19:00:00+08:00".into(),
                price_cny_per_kwh: Some(1.2),
            })
            .unwrap()
        };
        // No EMS behind the park, or a window off its intervals: refused, saying why.
        let a = answer(&part(50.0, "18:00"), &clock, None).await;
        assert_eq!((a.status.as_str(), a.held_kw), ("refused", 0.0));
        assert!(a.note.contains("takes no grid requests"), "{a:?}");
        let a = answer(&part(50.0, "18:05"), &clock, None).await;
        assert!(
            a.note.contains("not on the park's 15-minute intervals"),
            "{a:?}"
        );
        let a = answer(b"{}", &clock, None).await;
        assert!(a.note.starts_with("not a fleet grid request"), "{a:?}");
        // An EMS that holds 30 of 50 kW: in part.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(GridRequest, pedf_server::GridRequestReply)>(1);
        let ems = tokio::spawn(async move {
            let (g, reply) = rx.recv().await.unwrap();
            let _ = reply.send(Ok((30.0, "held in part".into())));
            g
        });
        let a = answer(&part(50.0, "18:00"), &clock, Some(&tx)).await;
        assert_eq!((a.status.as_str(), a.held_kw), ("part", 30.0));
        let g = ems.await.unwrap();
        assert_eq!(
            (g.id.as_str(), g.kind),
            ("F-1", RequestKind::ReduceImport(50.0))
        );
        assert_eq!(g.source, "fleet hub");
    }
}
