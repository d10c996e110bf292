//! The day's stops (the manifest) on the van: what a list must be ([`parse_list`], pure), and
//! each stop's state as its job's events make it ([`state`], pure). The list itself is kept in
//! the outbox's `stops` tree (see [`store`]), versioned so that a
//! replacement can say which list it replaces (`If-Match`).

pub mod eta;
pub mod geofence;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Milestone, Status};
use crate::input::Invalid;

/// Most stops in one list.
pub const MAX_STOPS: usize = 500;
/// Largest stop list accepted, in bytes of JSON (from the API and from the broker).
pub const MAX_LIST_BYTES: usize = 1 << 20;
/// Most item lines on one stop.
pub const MAX_ITEMS: usize = 200;
/// The geofence radius of a stop that does not give one, metres.
pub const DEFAULT_RADIUS_M: f64 = 75.0;

/// One stop of the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    /// The job delivered (or collected) there.
    pub job_id: String,
    /// Its place in the day's order (1 first).
    pub sequence: u32,
    /// Who or what is there.
    pub name: String,
    /// Where, as a person reads it.
    pub address: String,
    /// Latitude, degrees; `None`: the stop has no coordinates (never arrived by geofence).
    pub lat: Option<f64>,
    /// Longitude, degrees.
    pub lng: Option<f64>,
    /// Geofence radius, metres (`None`: the configured default).
    pub radius_m: Option<f64>,
    /// When the customer expects the van.
    pub window: Option<TimeWindow>,
    /// What to hand over.
    pub items: Vec<StopItem>,
    /// Notes for the driver.
    pub notes: Option<String>,
    /// What the tap at this stop needs.
    pub requires: Requires,
}

/// A delivery window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// From.
    pub from: DateTime<Utc>,
    /// To (not before `from`).
    pub to: DateTime<Utc>,
}

/// An item line of a stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopItem {
    /// Stock keeping unit.
    pub sku: String,
    /// What it is.
    pub desc: String,
    /// How many.
    pub qty: u32,
}

/// Proof a stop's delivery needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requires {
    /// At least one photo.
    pub photo: bool,
    /// A signature.
    pub signature: bool,
}

/// `[stops]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStopsConfig {
    /// Geofence radius of a stop that gives none, metres.
    pub radius_m: Option<f64>,
    /// Record `arrived` and `departed` from the geofence.
    pub auto_arrived: Option<bool>,
    /// How long inside makes an arrival (and outside a departure); stopped inside for a
    /// quarter of it makes one too.
    pub dwell: Option<String>,
    /// How far beyond the radius the van must be to have left, metres.
    pub hysteresis_m: Option<f64>,
}

/// `[stops]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StopsConfig {
    /// See [`RawStopsConfig::radius_m`].
    pub radius_m: f64,
    /// See [`RawStopsConfig::auto_arrived`].
    pub auto_arrived: bool,
    /// The geofence's rules.
    pub rules: geofence::Rules,
}

impl Default for StopsConfig {
    fn default() -> Self {
        StopsConfig { radius_m: DEFAULT_RADIUS_M, auto_arrived: true, rules: geofence::Rules::default() }
    }
}

/// Validates `[stops]`; an error is the key and what is wrong.
pub fn validate(raw: RawStopsConfig) -> Result<StopsConfig, (String, String)> {
    let d = StopsConfig::default();
    let radius_m = raw.radius_m.unwrap_or(d.radius_m);
    if !(5.0..=5000.0).contains(&radius_m) {
        return Err(("stops.radius_m".into(), format!("must be 5 to 5000 (metres), got {radius_m}")));
    }
    let hysteresis_m = raw.hysteresis_m.unwrap_or(d.rules.hysteresis_m);
    if !(0.0..=1000.0).contains(&hysteresis_m) {
        return Err(("stops.hysteresis_m".into(), format!("must be 0 to 1000 (metres), got {hysteresis_m}")));
    }
    let dwell =
        crate::units::duration(raw.dwell.as_deref(), "20s").map_err(|m| ("stops.dwell".to_string(), m.to_string()))?;
    if dwell.is_zero() || dwell > std::time::Duration::from_secs(600) {
        return Err(("stops.dwell".into(), "must be more than 0 and at most 10m".into()));
    }
    Ok(StopsConfig {
        radius_m,
        auto_arrived: raw.auto_arrived.unwrap_or(d.auto_arrived),
        // Stopped inside for a quarter of the dwell (5 s of the default 20 s) is an arrival too.
        rules: geofence::Rules { dwell, stopped_for: dwell / 4, hysteresis_m, ..d.rules },
    })
}

/// A stored list: its version (rises with every replacement) and its stops, in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StopList {
    /// 0 before any list was loaded.
    pub version: u64,
    /// The stops.
    pub stops: Vec<Stop>,
    /// When it was stored, unix seconds (the system clock); 0 for a list stored by an older
    /// version. OwnTracks calls it the regions' `wtst`.
    #[serde(default)]
    pub updated_at: i64,
    /// The day's route, when the list came with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// The day's route: `{"route": {"id", "date", "depot": {"lat", "lng", "radius_m"?}}, "stops":
/// [...]}` (the plain `{"stops": [...]}` is a day without one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// The back office's route id (an identifier, as a job id is).
    pub id: String,
    /// The day, `YYYY-MM-DD`.
    pub date: chrono::NaiveDate,
    /// Where the van loads and comes back to, if given.
    pub depot: Option<Depot>,
}

/// The depot of a [`Route`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Depot {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lng: f64,
    /// Its geofence radius, metres (`None`: the configured default).
    pub radius_m: Option<f64>,
}

/// Where a stop stands, from its job's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopState {
    /// Nothing yet.
    Pending,
    /// The driver is heading there.
    Heading,
    /// The van is there.
    Arrived,
    /// Finished; the final status says how.
    Done,
}

impl StopState {
    /// The name in JSON (`pending`, `heading`, `arrived`, `done`).
    pub fn as_str(self) -> &'static str {
        match self {
            StopState::Pending => "pending",
            StopState::Heading => "heading",
            StopState::Arrived => "arrived",
            StopState::Done => "done",
        }
    }
}

/// A stop's state and the status that made it (`None` while pending).
pub fn state(history: &[Milestone]) -> (StopState, Option<Status>) {
    // Leaving says nothing about how the job went: the state is what came before.
    match history.iter().rev().map(|m| m.status).find(|s| *s != Status::Departed) {
        None => (StopState::Pending, None),
        Some(s @ Status::HeadingTo) => (StopState::Heading, Some(s)),
        Some(s @ Status::Arrived) => (StopState::Arrived, Some(s)),
        Some(s) => (StopState::Done, Some(s)),
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), message: message.into() }
}

fn text(
    o: &serde_json::Map<String, Value>,
    at: &str,
    key: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, Invalid> {
    match o.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(invalid(format!("{at}.{key}"), "is required")),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(invalid(format!("{at}.{key}"), format!("must be at most {max} characters"))),
        Some(_) => Err(invalid(format!("{at}.{key}"), "must be a string")),
    }
}

fn number(
    o: &serde_json::Map<String, Value>,
    at: &str,
    key: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, Invalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if range.contains(&x) => Ok(Some(x)),
            _ => Err(invalid(
                format!("{at}.{key}"),
                format!("must be a number from {} to {}", range.start(), range.end()),
            )),
        },
    }
}

fn time(v: Option<&Value>, field: String) -> Result<DateTime<Utc>, Invalid> {
    v.and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| invalid(field, "must be an RFC 3339 time, e.g. 2026-11-23T09:00:00+01:00"))
}

fn only(o: &serde_json::Map<String, Value>, at: &str, known: &[&str]) -> Result<(), Invalid> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!("{at}.{k}"), format!("unknown field; expected one of {known:?}"))),
        None => Ok(()),
    }
}

/// Validates a stop list, `{"stops": [...]}`, naming the field at fault (`stops[3].lat`).
/// The stops come back in sequence order.
pub fn parse_list(body: &Value) -> Result<Vec<Stop>, Invalid> {
    parse_day(body).map(|(_, stops)| stops)
}

/// A day: the stop list with its route, if it has one (see [`Route`]); checked as
/// [`parse_list`] checks the stops.
pub fn parse_day(body: &Value) -> Result<(Option<Route>, Vec<Stop>), Invalid> {
    let obj = body.as_object().ok_or_else(|| invalid("body", "must be a JSON object {\"stops\": [...]}"))?;
    only(obj, "body", &["route", "stops"]).map_err(|e| invalid(e.field.trim_start_matches("body."), e.message))?;
    let route = match obj.get("route") {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => Some(parse_route(r)?),
        Some(_) => return Err(invalid("route", "must be {\"id\", \"date\", \"depot\"?}")),
    };
    Ok((route, parse_stops(obj)?))
}

fn parse_route(r: &serde_json::Map<String, Value>) -> Result<Route, Invalid> {
    only(r, "route", &["id", "date", "depot"])?;
    let id = text(r, "route", "id", 64, true)?.unwrap_or_default();
    crate::event::identifier(&id).map_err(|m| invalid("route.id", m.to_string()))?;
    let date = match r.get("date").and_then(Value::as_str) {
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| invalid("route.date", format!("must be a date YYYY-MM-DD, got {d:?}")))?,
        None => return Err(invalid("route.date", "is required: the day, YYYY-MM-DD")),
    };
    let depot = match r.get("depot") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            only(d, "route.depot", &["lat", "lng", "radius_m"])?;
            let (lat, lng) =
                (number(d, "route.depot", "lat", -90.0..=90.0)?, number(d, "route.depot", "lng", -180.0..=180.0)?);
            let (Some(lat), Some(lng)) = (lat, lng) else {
                return Err(invalid(
                    format!("route.depot.{}", if lat.is_none() { "lat" } else { "lng" }),
                    "is required",
                ));
            };
            Some(Depot { lat, lng, radius_m: number(d, "route.depot", "radius_m", 5.0..=5000.0)? })
        }
        Some(_) => return Err(invalid("route.depot", "must be {\"lat\", \"lng\", \"radius_m\"?}")),
    };
    Ok(Route { id, date, depot })
}

fn parse_stops(obj: &serde_json::Map<String, Value>) -> Result<Vec<Stop>, Invalid> {
    let list = obj.get("stops").and_then(Value::as_array).ok_or_else(|| invalid("stops", "must be an array"))?;
    if list.len() > MAX_STOPS {
        return Err(invalid("stops", format!("at most {MAX_STOPS} stops, got {}", list.len())));
    }
    let mut stops = Vec::with_capacity(list.len());
    let mut jobs = std::collections::HashSet::new();
    let mut sequences = std::collections::HashSet::new();
    for (i, v) in list.iter().enumerate() {
        let at = format!("stops[{i}]");
        let o = v.as_object().ok_or_else(|| invalid(&at, "must be an object"))?;
        only(
            o,
            &at,
            &[
                "job_id", "sequence", "name", "address", "lat", "lng", "radius_m", "window", "items", "notes",
                "requires",
            ],
        )?;
        let job_id = text(o, &at, "job_id", 64, true)?.unwrap_or_default();
        crate::event::identifier(&job_id).map_err(|m| invalid(format!("{at}.job_id"), m.to_string()))?;
        if !jobs.insert(job_id.clone()) {
            return Err(invalid(format!("{at}.job_id"), format!("{job_id:?} is another stop's job")));
        }
        let sequence = match o.get("sequence").and_then(Value::as_u64) {
            Some(s @ 1..=100_000) => s as u32,
            _ => return Err(invalid(format!("{at}.sequence"), "is required: a whole number from 1 to 100000")),
        };
        if !sequences.insert(sequence) {
            return Err(invalid(format!("{at}.sequence"), format!("{sequence} is another stop's sequence")));
        }
        let lat = number(o, &at, "lat", -90.0..=90.0)?;
        let lng = number(o, &at, "lng", -180.0..=180.0)?;
        if lat.is_some() != lng.is_some() {
            return Err(invalid(
                format!("{at}.{}", if lat.is_none() { "lat" } else { "lng" }),
                "lat and lng go together",
            ));
        }
        let radius_m = number(o, &at, "radius_m", 5.0..=5000.0)?;
        let window = match o.get("window") {
            None | Some(Value::Null) => None,
            Some(Value::Object(w)) => {
                only(w, &format!("{at}.window"), &["from", "to"])?;
                let from = time(w.get("from"), format!("{at}.window.from"))?;
                let to = time(w.get("to"), format!("{at}.window.to"))?;
                if to < from {
                    return Err(invalid(format!("{at}.window.to"), "is before window.from"));
                }
                Some(TimeWindow { from, to })
            }
            Some(_) => return Err(invalid(format!("{at}.window"), "must be {\"from\", \"to\"}")),
        };
        let items = match o.get("items") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_ITEMS => a
                .iter()
                .enumerate()
                .map(|(j, it)| {
                    let iat = format!("{at}.items[{j}]");
                    let io = it.as_object().ok_or_else(|| invalid(&iat, "must be an object"))?;
                    only(io, &iat, &["sku", "desc", "qty"])?;
                    let sku = text(io, &iat, "sku", 64, true)?.unwrap_or_default();
                    if sku.is_empty() {
                        return Err(invalid(format!("{iat}.sku"), "must not be empty"));
                    }
                    let qty = match io.get("qty").and_then(Value::as_u64) {
                        Some(q @ 1..=1_000_000) => q as u32,
                        _ => {
                            return Err(invalid(format!("{iat}.qty"), "is required: a whole number from 1 to 1000000"));
                        }
                    };
                    Ok(StopItem { sku, desc: text(io, &iat, "desc", 200, false)?.unwrap_or_default(), qty })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(format!("{at}.items"), format!("must be an array of at most {MAX_ITEMS} items")));
            }
        };
        let requires = match o.get("requires") {
            None | Some(Value::Null) => Requires::default(),
            Some(Value::Object(r)) => {
                only(r, &format!("{at}.requires"), &["photo", "signature"])?;
                let flag = |k: &str| match r.get(k) {
                    None => Ok(false),
                    Some(Value::Bool(b)) => Ok(*b),
                    Some(_) => Err(invalid(format!("{at}.requires.{k}"), "must be true or false")),
                };
                Requires { photo: flag("photo")?, signature: flag("signature")? }
            }
            Some(_) => return Err(invalid(format!("{at}.requires"), "must be {\"photo\": bool, \"signature\": bool}")),
        };
        stops.push(Stop {
            name: text(o, &at, "name", 200, false)?.unwrap_or_default(),
            address: text(o, &at, "address", 500, false)?.unwrap_or_default(),
            notes: text(o, &at, "notes", 2000, false)?,
            job_id,
            sequence,
            lat,
            lng,
            radius_m,
            window,
            items,
            requires,
        });
    }
    stops.sort_by_key(|s| s.sequence);
    Ok(stops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stop(job: &str, seq: u32) -> Value {
        json!({"job_id": job, "sequence": seq, "name": "Ada", "address": "1 Main St", "lat": 53.55, "lng": 9.99})
    }

    #[test]
    fn a_good_list_comes_back_in_sequence_order_with_defaults() {
        let list = parse_list(&json!({"stops": [stop("J2", 2), {
            "job_id": "J1", "sequence": 1, "radius_m": 40,
            "window": {"from": "2026-11-23T09:00:00+01:00", "to": "2026-11-23T11:00:00+01:00"},
            "items": [{"sku": "A", "desc": "Box", "qty": 2}], "notes": "ring twice",
            "requires": {"photo": true}
        }]}))
        .unwrap();
        assert_eq!(list.iter().map(|s| s.job_id.as_str()).collect::<Vec<_>>(), ["J1", "J2"]);
        assert_eq!(list[0].radius_m, Some(40.0));
        assert_eq!(list[0].lat, None, "no coordinates: never arrived by geofence");
        assert_eq!(list[0].requires, Requires { photo: true, signature: false });
        assert_eq!(list[0].window.unwrap().from.to_rfc3339(), "2026-11-23T08:00:00+00:00");
        assert_eq!(list[1].requires, Requires::default());
        assert!(parse_list(&json!({"stops": []})).unwrap().is_empty(), "an empty day is a list");
    }

    #[test]
    fn a_bad_list_names_the_field() {
        let cases = [
            (json!([]), "body"),
            (json!({"stops": {}}), "stops"),
            (json!({"stop": []}), "stop"),
            (json!({"stops": [stop("J1", 1), stop("J1", 2)]}), "stops[1].job_id"),
            (json!({"stops": [stop("J1", 1), stop("J2", 1)]}), "stops[1].sequence"),
            (json!({"stops": [stop("../x", 1)]}), "stops[0].job_id"),
            (json!({"stops": [{"job_id": "J1"}]}), "stops[0].sequence"),
            (json!({"stops": [{"job_id": "J1", "sequence": 1, "lat": 91, "lng": 0}]}), "stops[0].lat"),
            (json!({"stops": [{"job_id": "J1", "sequence": 1, "lat": 50}]}), "stops[0].lng"),
            (json!({"stops": [{"job_id": "J1", "sequence": 1, "radius_m": 0}]}), "stops[0].radius_m"),
            (
                json!({"stops": [{"job_id": "J1", "sequence": 1, "window": {"from": "2026-11-23T10:00:00Z", "to": "2026-11-23T09:00:00Z"}}]}),
                "stops[0].window.to",
            ),
            (
                json!({"stops": [{"job_id": "J1", "sequence": 1, "window": {"from": "9am", "to": "2026-11-23T09:00:00Z"}}]}),
                "stops[0].window.from",
            ),
            (
                json!({"stops": [{"job_id": "J1", "sequence": 1, "items": [{"sku": "A", "qty": 0}]}]}),
                "stops[0].items[0].qty",
            ),
            (
                json!({"stops": [{"job_id": "J1", "sequence": 1, "requires": {"photo": "yes"}}]}),
                "stops[0].requires.photo",
            ),
            (json!({"stops": [{"job_id": "J1", "sequence": 1, "colour": "red"}]}), "stops[0].colour"),
        ];
        for (body, field) in cases {
            assert_eq!(parse_list(&body).unwrap_err().field, field, "{body}");
        }
    }

    #[test]
    fn a_stops_state_follows_its_jobs_last_event() {
        let m = |status| Milestone {
            sequence: 1,
            status,
            occurred_at: Utc::now(),
            reason_code: None,
            reason: None,
            driver_id: None,
            vehicle_id: "v".into(),
            position: None,
            source: Default::default(),
        };
        assert_eq!(state(&[]), (StopState::Pending, None));
        assert_eq!(state(&[m(Status::HeadingTo)]).0, StopState::Heading);
        assert_eq!(state(&[m(Status::HeadingTo), m(Status::Arrived)]).0, StopState::Arrived);
        assert_eq!(state(&[m(Status::Arrived), m(Status::Failed)]), (StopState::Done, Some(Status::Failed)));
    }
}
