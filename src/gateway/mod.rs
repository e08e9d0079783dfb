//! The SwiftPass (威富通) gateway: the protocol client ([`swiftpass`]) and the local simulator
//! that dev mode, tests and demos use instead of the real gateway ([`sandbox`]).

pub mod sandbox;
pub mod swiftpass;
