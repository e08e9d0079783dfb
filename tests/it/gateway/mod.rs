//! Tests of the SwiftPass gateway module: protocol vectors and signing, the XML envelope,
//! bills, the client against the sandbox, hand-built requests against the sandbox, notify
//! delivery and fault injection.

mod client;
mod faults;
mod notify;
mod sign;
pub mod support;
mod types;
mod wire;
mod xml;
