//! When to try a peer again (the MQTT broker, a webhook endpoint, the upload target): pure, one
//! policy for every outbound link.
//!
//! A van drives in and out of coverage many times a day, and it should be back on the map
//! within seconds of leaving a dead zone, however long it was in there. What a retry costs
//! depends on why the last one failed:
//! - **Unreachable** (no route, DNS failing, connection refused or reset, a connect timeout, the
//!   connection lost): nothing reached the peer, and trying again is one connect attempt: cheap
//!   for both sides. Probed every [`PROBE`], however long the outage: a growing backoff here is
//!   what kept a van off the map for 30 s after its broker came back.
//! - **Refused** (the peer answered and said no: MQTT CONNACK refusal, a TLS failure such as a
//!   bad certificate, a protocol error): trying again at once would hammer a peer that will keep
//!   saying no until someone changes something. Backed off from [`REFUSED_MIN`], doubling to
//!   [`REFUSED_MAX`]; the backoff starts again after a connection succeeds.
//!
//! Every wait has ±[`JITTER`], so that a fleet leaving a tunnel together does not retry in step.
//! (A delivery that reached a webhook receiver and failed there is not a reconnect: it follows
//! the webhook's own retry schedule, `webhook::schedule`.)

use std::time::Duration;

/// How often an unreachable peer is tried.
pub const PROBE: Duration = Duration::from_secs(1);
/// The first wait after a refusal.
pub const REFUSED_MIN: Duration = Duration::from_secs(1);
/// The longest wait after refusals.
pub const REFUSED_MAX: Duration = Duration::from_secs(60);
/// Jitter: ± this fraction of a wait.
pub const JITTER: f64 = 0.2;

/// Why an attempt to reach a peer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing reached the peer, or the connection was lost.
    Unreachable,
    /// The peer answered and refused.
    Refused,
}

/// The reconnect state of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconnect {
    /// Refusals since the last successful connection.
    refusals: u32,
}

impl Reconnect {
    /// A connection succeeded: the next refusal waits [`REFUSED_MIN`] again.
    pub fn connected(&mut self) {
        self.refusals = 0;
    }

    /// The wait before the next attempt after `failure`, with `jitter` in [-1, 1].
    pub fn after(&mut self, failure: Failure, jitter: f64) -> Duration {
        let base = match failure {
            Failure::Unreachable => PROBE,
            Failure::Refused => {
                self.refusals = self.refusals.saturating_add(1);
                let doublings = (self.refusals - 1).min(16);
                REFUSED_MIN.saturating_mul(1 << doublings).min(REFUSED_MAX)
            }
        };
        base.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0))
    }

    /// Refusals since the last successful connection.
    pub fn refusals(&self) -> u32 {
        self.refusals
    }
}

/// A jitter in [-1, 1] for [`Reconnect::after`].
pub fn jitter() -> f64 {
    rand::random_range(-1.0..=1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_peer_is_probed_every_second_however_long_the_outage() {
        let mut r = Reconnect::default();
        for _ in 0..10_000 {
            assert_eq!(r.after(Failure::Unreachable, 0.0), PROBE);
        }
        assert_eq!(r.after(Failure::Unreachable, 1.0), Duration::from_millis(1200));
        assert_eq!(r.after(Failure::Unreachable, -1.0), Duration::from_millis(800));
        assert_eq!(r.after(Failure::Unreachable, 7.0), Duration::from_millis(1200), "jitter is clamped");
    }

    #[test]
    fn a_refusing_peer_is_backed_off_to_a_minute_and_a_connection_starts_again() {
        let mut r = Reconnect::default();
        let waits: Vec<u64> = (0..9).map(|_| r.after(Failure::Refused, 0.0).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // Unreachable in between neither grows nor forgets the refusals.
        assert_eq!(r.after(Failure::Unreachable, 0.0), PROBE);
        assert_eq!(r.after(Failure::Refused, 0.0), REFUSED_MAX);
        for _ in 0..100 {
            r.after(Failure::Refused, 0.0);
        }
        assert_eq!(r.after(Failure::Refused, 0.0), REFUSED_MAX, "no overflow");
        r.connected();
        assert_eq!((r.refusals(), r.after(Failure::Refused, 0.0)), (0, REFUSED_MIN));
    }
}
