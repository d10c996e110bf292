//! `antsroute`: AntsRoute's event catalogue (seed 003), one request per catalogue event: a
//! delivered tap with photos and a signature is three requests, `delivery_done`,
//! `proof_of_delivery_photo_added` and `customer_signature_added`, each with its own stable id
//! (`{event id}.{event}`). AntsRoute shows its request only as an image, so the body and the
//! wire names are curbside's: the shipped jq program `antsroute.jq` makes them, and an
//! integrator can copy it and set `format = "jq"`. Basic auth, as AntsRoute's form has it.

use super::Status;
use super::jq::Program;

/// The shipped program.
pub const PROGRAM: &str = include_str!("antsroute.jq");

/// The statuses the catalogue has an event for (delivery done or cancelled, loading done; the
/// route started and ended, loading and unloading done).
pub const DOCUMENTED: &[Status] = &[
    Status::Delivered,
    Status::PartiallyDelivered,
    Status::Failed,
    Status::PickedUp,
    Status::RouteStarted,
    Status::RouteEnded,
    Status::LoadingDone,
    Status::UnloadingDone,
];

/// The shipped program, compiled.
pub fn program() -> Program {
    Program::compile(PROGRAM).expect("the shipped AntsRoute program compiles")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::golden::*;
    use super::*;

    fn run(status: Status) -> Vec<Value> {
        let e = with_proof(status);
        program()
            .run_here(&crate::event::envelope(&e))
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_delivery_with_photos_and_a_signature_is_three_events() {
        let out = run(Status::Delivered);
        let names: Vec<&str> = out.iter().map(|v| v["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["delivery_done", "proof_of_delivery_photo_added", "customer_signature_added"]);
        assert_eq!(out[0]["delivery"]["job_id"], "TEST-0001");
        assert_eq!(out[1]["photos"].as_array().unwrap().len(), 2);
        assert_eq!(out[2]["signature"], json!("https://files.example/signature-1.png"));
    }

    #[test]
    fn a_route_event_is_one_request_with_the_route() {
        let mut e = with_proof(Status::RouteEnded);
        e.job_id = crate::event::ROUTE_KEY.into();
        e.attachments.clear();
        e.route = Some(crate::event::RouteMark { id: Some("R-7".into()), date: None, summary: None });
        let run = |e: &crate::event::StatusEvent| -> Vec<Value> {
            program()
                .run_here(&crate::event::envelope(e))
                .unwrap()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        for (status, name) in [
            (Status::RouteStarted, "route_started"),
            (Status::RouteEnded, "route_ended"),
            (Status::LoadingDone, "loading_done"),
            (Status::UnloadingDone, "unloading_done"),
        ] {
            e.status = status;
            let out = run(&e);
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(out[0]["event"], name);
            assert_eq!(out[0]["route"]["id"], "R-7");
            assert_eq!(out[0]["route"]["vehicle_id"], json!(e.vehicle_id));
            assert!(out[0].get("delivery").is_none());
        }
        e.status = Status::BreakStarted;
        assert!(run(&e).is_empty(), "a break is not in the catalogue");
    }

    #[test]
    fn a_status_outside_the_catalogue_makes_only_its_proof_events() {
        let out = run(Status::Arrived);
        assert!(out.iter().all(|v| v["event"] != "delivery_done"));
    }
}
