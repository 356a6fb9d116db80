//! What a subscription delivers, whichever bus it is on.

use vexil_proto::ChangeEvent;

/// What a [`Subscription`](crate::Subscription) delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A change event.
    Change(ChangeEvent),
    /// The subscription was re-established after a lost connection (Redis restarted, a cluster node
    /// failed over). Events published while it was down were not delivered and never will be: the
    /// subscriber should compare its revisions with [`Bus::environments`](crate::Bus::environments) now.
    Resubscribed,
}
