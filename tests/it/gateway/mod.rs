//! Tests of the SwiftPass gateway module: protocol vectors and signing, the XML envelope,
//! bills, the client against the sandbox, hand-built requests against the sandbox, notify
//! delivery and fault injection.

mod client;
mod sign;
mod support;
mod xml;
